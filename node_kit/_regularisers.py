"""RNODE regularisers (Finlay et al. 2020, "How to train your neural ODE").

Both are integrated along the CNF's solve as extra state:

- kinetic energy `∫ ||f(t, z(t))||^2 dt`, which favours straight, constant-speed paths;
- Jacobian norm `∫ ||∂f/∂z (t, z(t))||_F^2 dt`, which favours smooth dynamics.

Their integrands reuse the field value and the vector-Jacobian products that the
trace estimator has already computed, so they cost no extra network passes.
"""

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._checks import check_choice, check_real


REGULARISER_NAMES = ("kinetic_energy", "jacobian_norm")


def kinetic_energy_integrand(f: Float[Array, " dim"]) -> Float[Array, ""]:
    """`||f||^2`, the kinetic-energy integrand, for one sample's field value `f`."""
    return jnp.sum(f**2)


def jacobian_norm_integrand(vjp: Float[Array, "*rows dim"]) -> Float[Array, ""]:
    """`||v^T ∂f/∂z||^2` summed over the rows of `vjp`: the Jacobian-norm integrand.

    With [`node_kit.ExactTrace`][] `vjp` is the full Jacobian and this is exactly
    `||∂f/∂z||_F^2`; with [`node_kit.HutchinsonTrace`][] it is `||ε^T ∂f/∂z||^2`, an
    unbiased estimate of it.
    """
    return jnp.sum(vjp**2)


def regulariser_integrands(
    f: Float[Array, " dim"], vjp: Float[Array, "*rows dim"]
) -> Float[Array, "2"]:
    """Both integrands, in the order of `REGULARISER_NAMES`, shape `(2,)`."""
    return jnp.stack([kinetic_energy_integrand(f), jacobian_norm_integrand(vjp)])


def check_coefficients(**coefficients: float) -> dict[str, float]:
    """Check the regulariser weights: non-negative Python numbers (config-level).

    **Returns:**

    The weights as floats, keyed by regulariser name.
    """
    checked = {}
    for name, value in coefficients.items():
        check_choice("regulariser", name, REGULARISER_NAMES)
        checked[name] = check_real(
            name,
            value,
            non_negative=True,
            expected="a non-negative Python float (a config-level weight, 0.0 to switch it off)",
        )
    return checked

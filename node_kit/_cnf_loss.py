"""The CNF training loss: the mean negative log-likelihood plus the RNODE penalties, for a
[`node_kit.CNF`][] or a [`node_kit.MultiscaleCNF`][]."""

import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._cnf import CNF
from ._multiscale import MultiscaleCNF
from ._regularisers import check_coefficients


def cnf_loss(
    cnf: CNF | MultiscaleCNF,
    xs: Float[Array, "batch data_size"],
    *,
    key: PRNGKeyArray | None = None,
    kinetic_energy: float = 0.0,
    jacobian_norm: float = 0.0,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """The CNF training loss: mean negative log-likelihood plus the RNODE penalties.

    The batch is solved as one ODE ([`node_kit.CNF.log_prob_and_stats_batched`][]).
    The regularisers are integrated only if a coefficient is positive. Use with
    `eqx.filter_value_and_grad(cnf_loss, has_aux=True)`; bind the coefficients with
    `functools.partial`.

    **Arguments:**

    - `cnf`: the [`node_kit.CNF`][] (or a [`node_kit.MultiscaleCNF`][], with `xs` images
        of shape `(batch, C, H, W)`).
    - `xs`: a batch of data, shape `(batch, data_size)`.
    - `key`: draws the Hutchinson probes (one per sample); unused by `ExactTrace`.
    - `kinetic_energy`, `jacobian_norm`: RNODE weights (Finlay et al. 2020), non-negative
        Python floats; `0.0` (default) switches a penalty off.

    **Returns:**

    `(loss, aux)`: `loss = nll + kinetic_energy * KE + jacobian_norm * JN` (the mean NLL
    when both weights are zero), a scalar; `aux` holds scalars `"nll"` (mean NLL),
    `"num_steps"` (of the solve, for logging NFE) and, if regularised, the batch means
    `"kinetic_energy"` and `"jacobian_norm"` of the integrals.
    """
    weights = check_coefficients(kinetic_energy=kinetic_energy, jacobian_norm=jacobian_norm)
    regularise = any(w > 0 for w in weights.values())
    log_prob, stats = cnf.log_prob_and_stats_batched(xs, key=key, regularise=regularise)
    nll = -jnp.mean(log_prob)
    aux = {"nll": nll, "num_steps": stats["num_steps"]}
    loss = nll
    if regularise:
        for name, weight in weights.items():
            aux[name] = jnp.mean(stats[name])
            loss = loss + weight * aux[name]
    return loss, aux

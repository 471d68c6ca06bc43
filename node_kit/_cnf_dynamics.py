"""The ODEs a [`node_kit.CNF`][] solves: the augmented field and its time reversal.

The state is `[z, ∫ tr, (∫ ||f||^2, ∫ ||∂f/∂z||_F^2)]` for ONE sample: the flow, the
log-density change, and the RNODE integrals when regularised. Sampling solves the
time-reversed field forward. The base distribution's log-density is here too.
"""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._custom_types import Args, Time
from ._regularisers import regulariser_integrands
from ._trace import AbstractTraceEstimator


class CNFDynamics(eqx.Module):
    """The augmented field `d/dt [z, Δlogp, (KE, JN)]` for ONE sample.

    The field is a module field and the probe arrives in `args`, so the parameters
    reach diffrax through `terms` (backsolve differentiates them) and the probe is
    the same at every evaluation of a solve.
    """

    field: Callable
    trace_estimator: AbstractTraceEstimator
    size: int = eqx.field(static=True)
    regularise: bool = eqx.field(static=True)

    def __call__(
        self, t: Time, state: Float[Array, " state"], probe: Float[Array, " dim"] | None
    ) -> Float[Array, " state"]:
        fn = lambda z: self.field(t, z, None)
        f, trace, vjp = self.trace_estimator(fn, state[: self.size], probe)
        parts = [f, trace[None]]
        if self.regularise:
            parts.append(regulariser_integrands(f, vjp))
        return jnp.concatenate(parts).astype(state.dtype)


class TimeReversed(eqx.Module):
    """`g(s, y, args) = -F(t1 - s, y, args)`: solving `g` from `s=0` to `t1` runs `F` backwards."""

    field: Callable
    t1: float = eqx.field(static=True)

    def __call__(self, s: Time, y: Float[Array, " state"], args: Args) -> Float[Array, " state"]:
        return -self.field(self.t1 - s, y, args)


def standard_normal_log_prob(z: Float[Array, "*batch dim"]) -> Float[Array, "*batch"]:
    """`log N(z; 0, I)` over the last axis."""
    return -0.5 * (jnp.sum(z**2, axis=-1) + z.shape[-1] * jnp.log(2 * jnp.pi))

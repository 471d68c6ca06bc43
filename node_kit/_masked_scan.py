"""The masked scan of a recurrent model over ONE irregular series (see `node_kit._ode_rnn`).

Time points with nothing observed change no carried state: the state and time of the last
observation are carried, and evolved over the whole gap at the next observed point.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


# `((h_last, t_last), (before, after), num_steps)`, see `scan_observations`.
ScanResult = tuple[
    tuple[Float[Array, " hidden"], Float[Array, ""]],
    tuple[Float[Array, "times hidden"], Float[Array, "times hidden"]],
    Int[Array, ""],
]


def scan_observations(
    evolve: Callable,
    update: Callable,
    h0: Float[Array, " hidden"],
    ts: Float[Array, " times"],
    values: Float[Array, "times data_size"],
    observed: Bool[Array, "times data_size"],
) -> ScanResult:
    """Run a recurrent model over one series, skipping time points with nothing observed.

    **Arguments:**

    - `evolve(h, t_last, t)`: `(state at t, solver steps taken)` from the state at the
        last observation.
    - `update(h, x, observed, gap)`: the state after reading the observation at `t`.
    - `h0`: the state at `ts[0]`; `ts`, `values`, `observed` as `check_series` returns.

    **Returns:**

    `((h_last, t_last), (before, after), num_steps)`: the state and time of the last
    observation (`h0` and `ts[0]` if there is none), the states at every time point
    before and after its update, each `(n, hidden)`, and the solver steps summed over
    all gaps. The state stays `h0` until the first observation, so time points with
    nothing observed influence no other state.
    """

    def step(carry: tuple, inputs: tuple) -> tuple[tuple, tuple[Array, Array]]:
        h, t_last, started, num_steps = carry
        t, x, m = inputs
        t_from = jnp.where(started, t_last, t)  # a zero gap until the first observation
        h_pred, gap_steps = evolve(h, t_from, t)
        seen = jnp.any(m)
        h_new = jnp.where(seen, update(h_pred, x, m, t - t_from), h_pred)
        carry = (
            jnp.where(seen, h_new, h),
            jnp.where(seen, t, t_last),
            started | seen,
            num_steps + gap_steps,
        )
        return carry, (h_pred, h_new)

    init = (h0, ts[0], jnp.array(False), jnp.array(0, jnp.int32))
    (h_last, t_last, _, num_steps), states = jax.lax.scan(step, init, (ts, values, observed))
    return (h_last, t_last), states, num_steps

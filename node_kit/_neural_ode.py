"""NeuralODE: an Equinox module around one `diffrax.diffeqsolve`."""

from collections.abc import Callable
from typing import Any

import diffrax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._checks import check_callable
from ._custom_types import Args, BatchStates, State, Times, Trajectory
from ._model import AbstractODEModel
from ._solve import saved_states, SolveSettings
from ._solve_inputs import check_state, check_times
from ._vector_field import field_sizes, pad_to_state


class NeuralODE(AbstractODEModel):
    """A neural ODE `dy/dt = f(t, y, args)` solved with diffrax.

    The field's parameters reach diffrax through the `terms` argument (the field is
    wrapped in a `diffrax.ODETerm`), never through a closure, so every adjoint,
    `BacksolveAdjoint` included, differentiates them.

    **Arguments:**

    - `vector_field`: any callable (usually an `eqx.Module`) `f(t, y, args) -> dy/dt`
        for ONE unbatched sample. If it is an [`node_kit.AbstractVectorField`][], `y0` is
        checked against its `data_size` and padded with zeros to its `state_size`.
    - `settings`: a [`node_kit.SolveSettings`][] (solver, step-size controller, adjoint,
        `dt0`, `max_steps`, `throw`); default `SolveSettings()`.
    - `**solve_keywords`: instead of `settings`, its arguments as keywords
        (`solver=...`, `adjoint="backsolve"`, ...), forwarded to `SolveSettings`.
    """

    vector_field: Callable
    settings: SolveSettings

    def __init__(
        self,
        vector_field: Callable,
        settings: SolveSettings | None = None,
        **solve_keywords: Any,
    ):
        self.vector_field = check_callable(
            "vector_field", vector_field, expected="a callable f(t, y, args) such as nk.MLPField"
        )
        self.settings = SolveSettings.of(settings, **solve_keywords)

    def __call__(self, ts: Times, y0: State, args: Args = None) -> Trajectory:
        """Solve from `ts[0]` and return the states at `ts`.

        **Arguments:**

        - `ts`: output times, 1-D, strictly increasing; the solve starts at `ts[0]`.
        - `y0`: initial state of ONE sample (e.g. shape `(data_size,)`).
        - `args`: passed to the vector field.

        **Returns:**

        The states at `ts`, shape `(len(ts), *y0.shape)` (augmented for an
        [`node_kit.AugmentedField`][]).
        """
        return saved_states(self.solve(ts, y0, args))

    def solve(self, ts: Times, y0: State, args: Args = None) -> diffrax.Solution:
        """Like `__call__` but returns the `diffrax.Solution`.

        `sol.ys` are the states, `sol.stats["num_steps"]` the number of steps (NFE is
        about `num_steps` times the solver's stages, 6 for Tsit5, which reuses its last stage),
        and `sol.result` the outcome (always successful when `settings.throw`).
        """
        ts = check_times(ts)
        y0 = self.initial_state(y0, batched=False)
        return self.solve_field(self.vector_field, ts, y0, args, times_checked=True)

    def batched(
        self, ts: Times, y0s: BatchStates, args: Args = None, *, args_axis: int | None = None
    ) -> Float[Array, "batch times ..."]:
        """Solve a batch as ONE ODE whose state is the whole batch.

        The per-sample field is vmapped inside a single solve, so all samples share
        step sizes (the adaptive error norm is taken over the batch, as FFJORD does).
        This is the cheap layout: one solver loop, and `BacksolveAdjoint` stays
        flat in memory (far less than `jax.vmap(model)`: measured in "Choosing an adjoint").
        Use `jax.vmap(model)` instead when each sample needs its own time grid or its
        own step sizes.

        **Arguments:**

        - `ts`: output times shared by the batch.
        - `y0s`: initial states with a leading batch axis, shape `(batch, *state)`.
        - `args`: passed to the field; `args_axis` says whether it is shared (`None`)
            or has one entry per sample along axis `0`.

        **Returns:**

        States of shape `(batch, len(ts), *state)`, like `jax.vmap(model)` returns.
        """
        sol = self.solve_batched(ts, y0s, args, args_axis=args_axis)
        return jnp.moveaxis(saved_states(sol), 0, 1)

    def solve_batched(
        self, ts: Times, y0s: BatchStates, args: Args = None, *, args_axis: int | None = None
    ) -> diffrax.Solution:
        """Like [`node_kit.NeuralODE.batched`][] but returns the `diffrax.Solution`
        (its `ys` are time-first: `(len(ts), batch, *state)`)."""
        ts = check_times(ts)
        y0s = self.initial_state(y0s, batched=True)
        return self.solve_field(
            self.vector_field,
            ts,
            y0s,
            args,
            batched=True,
            args_axis=args_axis,
            y0_name="y0s",
            times_checked=True,
        )

    def initial_state(self, y0: ArrayLike, *, batched: bool) -> Float[Array, "*batch state"]:
        """The checked initial state as the solver sees it (padded for an augmented field).

        **Arguments:** `y0` of one sample, or a batch `(batch, *state)` if `batched`.
        """
        y0 = check_state(y0, data_size=field_sizes(self.vector_field)[0], batched=batched)
        return pad_to_state(self.vector_field, y0)

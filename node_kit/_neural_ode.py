"""NeuralODE: an Equinox module around one `diffrax.diffeqsolve`."""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._adjoint import adjoint_from_name
from ._custom_types import Args, State, Times, Trajectory
from ._solve_checks import check_state, check_times, raise_if_failed
from ._vector_field import AugmentedField


DEFAULT_SOLVER = diffrax.Tsit5()
DEFAULT_CONTROLLER = diffrax.PIDController(rtol=1e-3, atol=1e-6)
DEFAULT_ADJOINT = diffrax.RecursiveCheckpointAdjoint()
"""Defaults shared by every model built on NeuralODE (CNF, ODERNN, LatentODE)."""


class BatchedField(eqx.Module):
    """The per-sample field vmapped over a leading batch axis: the batch is one ODE state.

    **Arguments:**

    - `field`: a per-sample vector field `f(t, y, args)`.
    - `args_axis`: `None` if `args` is shared by the batch, or the axis of `args`
        holding one entry per sample (`0`), as for `jax.vmap`'s `in_axes`.
    """

    field: Callable
    args_axis: int | None = eqx.field(static=True, default=None)

    def __call__(
        self, t, y: Float[Array, "batch ..."], args: Args
    ) -> Float[Array, "batch ..."]:
        return jax.vmap(self.field, in_axes=(None, 0, self.args_axis))(t, y, args)


class NeuralODE(eqx.Module):
    """A neural ODE `dy/dt = f(t, y, args)` solved with diffrax.

    The field's parameters reach diffrax through the `terms` argument (the field is
    wrapped in a `diffrax.ODETerm`), never through a closure, so every adjoint,
    `BacksolveAdjoint` included, differentiates them.

    **Arguments:**

    - `vector_field`: any callable (usually an `eqx.Module`) `f(t, y, args) -> dy/dt`
        for ONE unbatched sample. If it has a `data_size` attribute, `y0` is checked
        against it.
    - `solver`: a `diffrax.AbstractSolver`, default `diffrax.Tsit5()`.
    - `stepsize_controller`: default `diffrax.PIDController(rtol=1e-3, atol=1e-6)`;
        use `diffrax.ConstantStepSize()` with `dt0` for fixed steps.
    - `adjoint`: any `diffrax.AbstractAdjoint`, or a mode name (`"backsolve"`,
        `"checkpoint"`, `"direct"`, see [`node_kit.adjoint_from_name`][]). Default:
        `checkpoint` with diffrax's default number of checkpoints.
    - `dt0`: initial step size; `None` lets the adaptive controller choose.
    - `max_steps`: bound on solver steps (the reverse-mode adjoints size their
        buffers by it). A solve that needs more raises an error naming `max_steps`.
    - `throw`: if `True` (default) a failed solve raises; if `False` it returns, and
        the caller must check `solve(...).result`.
    """

    vector_field: Callable
    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    adjoint: diffrax.AbstractAdjoint
    dt0: float | None = eqx.field(static=True)
    max_steps: int | None = eqx.field(static=True)
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        vector_field: Callable,
        *,
        solver: diffrax.AbstractSolver = DEFAULT_SOLVER,
        stepsize_controller: diffrax.AbstractStepSizeController = DEFAULT_CONTROLLER,
        adjoint: diffrax.AbstractAdjoint | str = DEFAULT_ADJOINT,
        dt0: float | None = None,
        max_steps: int | None = 4096,
        throw: bool = True,
    ):
        _check_config(solver, stepsize_controller, dt0, max_steps)
        if isinstance(adjoint, str):
            adjoint = adjoint_from_name(
                adjoint, max_steps=max_steps, stepsize_controller=stepsize_controller
            )
        _check_adjoint(adjoint, max_steps)
        self.vector_field = vector_field
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        self.adjoint = adjoint
        self.dt0 = dt0
        self.max_steps = max_steps
        self.throw = throw

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
        return self.solve(ts, y0, args).ys

    def solve(self, ts: Times, y0: State, args: Args = None) -> diffrax.Solution:
        """Like `__call__` but returns the `diffrax.Solution`.

        `sol.ys` are the states, `sol.stats["num_steps"]` the number of steps (NFE is
        about `num_steps` times the solver's stages, 6 for Tsit5, which reuses its last stage), and `sol.result` the outcome
        (always successful when `throw=True`).
        """
        ts = check_times(ts)
        y0 = self._initial_state(y0, batched=False)
        return self._diffeqsolve(diffrax.ODETerm(self.vector_field), ts, y0, args)

    def batched(
        self, ts: Times, y0s: Float[Array, "batch ..."], args: Args = None, *, args_axis=None
    ) -> Float[Array, "batch times ..."]:
        """Solve a batch as ONE ODE whose state is the whole batch.

        The per-sample field is vmapped inside a single solve, so all samples share
        step sizes (the adaptive error norm is taken over the batch, as FFJORD does).
        This is the cheap layout: one solver loop, and `BacksolveAdjoint` stays
        flat in memory (measured ~100x less than `jax.vmap(model)` for backsolve).
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
        return jnp.moveaxis(self.solve_batched(ts, y0s, args, args_axis=args_axis).ys, 0, 1)

    def solve_batched(
        self, ts: Times, y0s: Float[Array, "batch ..."], args: Args = None, *, args_axis=None
    ) -> diffrax.Solution:
        """Like [`node_kit.NeuralODE.batched`][] but returns the `diffrax.Solution`
        (its `ys` are time-first: `(len(ts), batch, *state)`)."""
        ts = check_times(ts)
        y0s = self._initial_state(y0s, batched=True)
        term = diffrax.ODETerm(BatchedField(self.vector_field, args_axis))
        return self._diffeqsolve(term, ts, y0s, args)

    def _initial_state(self, y0, *, batched: bool):
        data_size = getattr(self.vector_field, "data_size", None)
        y0 = check_state(y0, data_size=data_size, batched=batched)
        if isinstance(self.vector_field, AugmentedField):
            y0 = self.vector_field.augment(y0)
        return y0

    def _diffeqsolve(self, term, ts, y0, args) -> diffrax.Solution:
        _check_field_output(term, ts, y0, args)
        sol = diffrax.diffeqsolve(
            term,
            self.solver,
            t0=ts[0],
            t1=ts[-1],
            dt0=self.dt0,
            y0=y0,
            args=args,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=self.stepsize_controller,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            throw=False,
        )
        if self.throw:
            sol = raise_if_failed(sol, ts, max_steps=self.max_steps)
        return sol


def _check_config(solver, stepsize_controller, dt0, max_steps) -> None:
    if not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(
            f"`solver` must be a diffrax.AbstractSolver such as diffrax.Tsit5(); got "
            f"{type(solver).__name__}."
        )
    if not isinstance(stepsize_controller, diffrax.AbstractStepSizeController):
        raise ValueError(
            "`stepsize_controller` must be a diffrax.AbstractStepSizeController such as "
            f"diffrax.PIDController(rtol=1e-3, atol=1e-6); got "
            f"{type(stepsize_controller).__name__}."
        )
    if dt0 is not None and not (isinstance(dt0, (int, float)) and dt0 > 0):
        raise ValueError(f"`dt0` must be a positive float or None; got {dt0!r}.")
    adaptive = isinstance(stepsize_controller, diffrax.AbstractAdaptiveStepSizeController)
    if dt0 is None and not adaptive:
        raise ValueError(
            "`dt0=None` needs an adaptive `stepsize_controller`; got "
            f"{type(stepsize_controller).__name__}. Pass `dt0` (the fixed step size)."
        )
    if adaptive and not isinstance(solver, diffrax.AbstractAdaptiveSolver):
        raise ValueError(
            f"`solver` {type(solver).__name__} has no error estimate, so it cannot be used "
            f"with the adaptive {type(stepsize_controller).__name__}. Pass "
            "`stepsize_controller=diffrax.ConstantStepSize()` and a `dt0`, or an adaptive "
            "solver such as diffrax.Tsit5()."
        )
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise ValueError(f"`max_steps` must be a positive int or None; got {max_steps!r}.")


def _check_adjoint(adjoint, max_steps) -> None:
    if not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise ValueError(
            "`adjoint` must be a diffrax.AbstractAdjoint or one of 'backsolve', "
            f"'checkpoint', 'direct'; got {type(adjoint).__name__}."
        )
    if max_steps is None and isinstance(
        adjoint, (diffrax.RecursiveCheckpointAdjoint, diffrax.DirectAdjoint)
    ):
        raise ValueError(
            f"`max_steps=None` cannot be used with {type(adjoint).__name__}: "
            "reverse-mode differentiation through the solver must know how much "
            "memory to allocate. Pass an integer `max_steps` (e.g. 4096), or use "
            "adjoint='backsolve'."
        )


def _check_field_output(term, ts, y0, args) -> None:
    try:
        out = jax.eval_shape(term.vector_field, ts[0], y0, args)
    except Exception as error:  # any failure to trace the field on this y0
        raise ValueError(
            f"`y0` of shape {tuple(y0.shape)} does not fit the vector field: calling "
            f"it raised {type(error).__name__}: {str(error).rstrip('.')}. Pass `y0` with the shape the "
            "field expects for one sample (batch with `model.batched` or jax.vmap)."
        ) from error
    if not (isinstance(out, jax.ShapeDtypeStruct) and out.shape == y0.shape):
        got = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"the vector field must return dy/dt with the shape of `y0` "
            f"{tuple(y0.shape)}; it returned {got}."
        )

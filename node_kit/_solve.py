"""The solve settings: one Module that owns THE `diffrax.diffeqsolve` call of node_kit.

[`node_kit.SolveSettings`][] carries the choices every model shares (solver, controller,
adjoint, `dt0`, `max_steps`, `throw`), checks them once, and runs every model's solve
through [`node_kit.SolveSettings.solve`][] with the same failure check. A changed copy
comes from [`node_kit.SolveSettings.replace`][] or `with_adjoint`, never `eqx.tree_at`.
"""

import dataclasses
import math
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from ._adjoint import adjoint_from_name
from ._checks import check_bool, check_optional_int, is_real, type_name
from ._custom_types import Args, CheckedTimes, State, VectorField
from ._events import check_event, join_event_outputs, save_at_with_event
from ._resources import check_stored_steps
from ._reversible import check_reversible, reversible_solve, ReversibleAdjoint
from ._solve_inputs import raise_if_failed as raise_if_failed, saved_states as saved_states
from ._terms import checked_term, ode_field


DEFAULT_SOLVER = diffrax.Tsit5()
DEFAULT_CONTROLLER = diffrax.PIDController(rtol=1e-3, atol=1e-6)
DEFAULT_ADJOINT = diffrax.RecursiveCheckpointAdjoint()


class SolveSettings(eqx.Module):
    """How to solve an ODE: solver, step sizes, adjoint and limits, checked once.

    Every model of node_kit holds one (`model.settings`) and hands its field to
    [`node_kit.SolveSettings.solve`][]; the models' constructors also accept these
    arguments as keywords and forward them here.

    **Arguments:**

    - `solver`: a `diffrax.AbstractSolver`, default `diffrax.Tsit5()`.
    - `stepsize_controller`: default `diffrax.PIDController(rtol=1e-3, atol=1e-6)`;
        use `diffrax.ConstantStepSize()` with `dt0` for fixed steps.
    - `adjoint`: any `diffrax.AbstractAdjoint`, or a mode name (`"backsolve"`,
        `"checkpoint"`, `"direct"`, `"reversible"`, see [`node_kit.adjoint_from_name`][]). Default:
        `checkpoint` with diffrax's default number of checkpoints.
    - `dt0`: initial step size; `None` lets the adaptive controller choose.
    - `max_steps`: bound on solver steps (the reverse-mode adjoints size their
        buffers by it). A solve that needs more raises an error naming `max_steps`.
    - `throw`: if `True` (default) a failed solve, a NaN or inf state, or a NaN or inf
        in the initial state raises; if `False` it returns, and the caller must check the
        solution's `result` and values.
    - `event`: `None`, or a `diffrax.Event` that stops the solve when its condition fires
        (with a root finder, at the exact time, differentiable under `checkpoint` and
        `direct`). The last output is then where the solve stopped: see
        [`node_kit.event_fired`][].
    """

    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    adjoint: diffrax.AbstractAdjoint
    dt0: float | None = eqx.field(static=True)
    max_steps: int | None = eqx.field(static=True)
    throw: bool = eqx.field(static=True)
    event: diffrax.Event | None

    def __init__(
        self,
        solver: diffrax.AbstractSolver = DEFAULT_SOLVER,
        stepsize_controller: diffrax.AbstractStepSizeController = DEFAULT_CONTROLLER,
        adjoint: diffrax.AbstractAdjoint | str = DEFAULT_ADJOINT,
        dt0: float | None = None,
        max_steps: int | None = 4096,
        throw: bool = True,
        event: diffrax.Event | None = None,
    ):
        _check_config(solver, stepsize_controller, dt0, max_steps)
        if isinstance(adjoint, str):
            adjoint = adjoint_from_name(
                adjoint, max_steps=max_steps, stepsize_controller=stepsize_controller
            )
        _check_adjoint(adjoint, solver, stepsize_controller, max_steps)
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        self.adjoint = adjoint
        self.dt0 = None if dt0 is None else float(dt0)
        self.max_steps = None if max_steps is None else int(max_steps)
        self.throw = check_bool("throw", throw)
        self.event = check_event(event, adjoint)

    @classmethod
    def of(cls, settings: "SolveSettings | None", **keywords: Any) -> "SolveSettings":
        """`settings`, or new settings from `keywords`: what model constructors accept.

        Passing both is an error (it would be ambiguous which wins).
        """
        if settings is None:
            _check_names(keywords)
            return cls(**keywords)
        if not isinstance(settings, cls):
            raise ValueError(
                f"`settings` must be a node_kit.SolveSettings; got {type_name(settings)}. "
                "Build one with nk.SolveSettings(solver=..., adjoint=...)."
            )
        if keywords:
            raise ValueError(
                f"pass either `settings` or the solve keywords ({', '.join(keywords)}), not "
                "both; change a setting with settings.replace(...)."
            )
        return settings

    def replace(self, **changes: Any) -> "SolveSettings":
        """A copy with some settings changed (checked again), e.g. `replace(max_steps=64)`.

        The keywords are those of the constructor; `adjoint` may be a mode name.
        """
        names = _check_names(changes)
        return SolveSettings(**{n: changes.get(n, getattr(self, n)) for n in names})

    def with_adjoint(self, adjoint: diffrax.AbstractAdjoint | str) -> "SolveSettings":
        """A copy with another adjoint (an object or a mode name)."""
        return self.replace(adjoint=adjoint)

    def _check_dt0_fits(self, ts: CheckedTimes) -> None:
        if self.dt0 is None or isinstance(ts, jax.core.Tracer):
            return
        values = np.asarray(ts)  # concrete; jnp arithmetic here would be staged under jit
        span = float(values[-1] - values[0])
        if span > 0 and self.dt0 > span:
            raise ValueError(
                f"`dt0`={self.dt0} is longer than the whole solve (ts[-1] - ts[0] = {span:.6g}), "
                "so it would take one step; pass a `dt0` of at most the interval, e.g. "
                f"{span / 10:.3g} for ten steps."
            )

    def solve(
        self,
        vector_field: VectorField | diffrax.AbstractTerm,
        ts: CheckedTimes,
        y0: State,
        args: Args = None,
        *,
        y0_name: str = "y0",
    ) -> diffrax.Solution:
        """Solve `dy/dt = vector_field(t, y, args)` (or a diffrax term) from `ts[0]`, saving
        at `ts`.

        The one `diffrax.diffeqsolve` call of node_kit. `vector_field` is a field
        `f(t, y, args)`, or any diffrax term: a `diffrax.ControlTerm(f, path)` solves the
        controlled equation `dy = f(t, y, args) dX(t)` (a neural CDE), and `f` must return
        an array of shape `y.shape + X.shape`; a `MultiTerm` sums its terms. `ts` must
        already be valid output times (see [`node_kit.NeuralODE.solve`][], which checks
        them); the field's output shape is checked against the state's when tracing. With
        `throw=True` a NaN or inf in `y0` raises an error naming `y0_name` (how the caller's
        user knows the initial state, e.g. `"xs"` for a CNF's data), and a failed solve one
        naming `max_steps` and where it stopped: one run-time check for both.

        **Returns:**

        The `diffrax.Solution`: `ys` at `ts` (time first), `stats["num_steps"]`, `result`.
        With an `event`, the last output is where the solve stopped ([`node_kit.event_fired`][]).
        """
        vector_field, y0, args = _to_common_dtype(ts, (vector_field, y0, args))
        check_stored_steps(self.adjoint, self.max_steps, y0)
        term = checked_term(vector_field, jnp.asarray(ts[0]))
        self._check_dt0_fits(ts)
        saveat = save_at_with_event(ts) if self.event else _save_at(ts, self.adjoint)
        if isinstance(self.adjoint, ReversibleAdjoint):
            assert self.max_steps is not None  # checked with the adjoint
            sol = reversible_solve(
                self.adjoint, self.solver, self.stepsize_controller, self.dt0,
                self.max_steps, ode_field(term, "reversible"), ts, y0, args,
            )  # fmt: skip
        else:
            sol = join_event_outputs(self._diffeqsolve(term, ts, y0, args, saveat))
        if self.throw:
            # Saved at t0, `ys[0]` is `y0` itself and the failure check sees it there.
            y0_finite = None if getattr(saveat.subs, "t0", False) else jnp.all(jnp.isfinite(y0))
            sol = raise_if_failed(
                sol, ts, max_steps=self.max_steps, y0_finite=y0_finite, y0_name=y0_name
            )
        return sol

    def _diffeqsolve(self, term, ts, y0, args, saveat) -> diffrax.Solution:
        try:
            return diffrax.diffeqsolve(
                term,
                self.solver,
                t0=ts[0],
                t1=ts[-1],
                dt0=self.dt0,
                y0=y0,
                args=args,
                saveat=saveat,
                stepsize_controller=self.stepsize_controller,
                adjoint=self.adjoint,
                max_steps=self.max_steps,
                throw=False,
                event=self.event,
            )
        except RuntimeError as error:
            if "Unexpected tangent" not in str(error) or not isinstance(
                self.adjoint, diffrax.BacksolveAdjoint
            ):
                raise
            raise ValueError(
                "the backsolve adjoint cannot differentiate the output times `ts` (diffrax's "
                "BacksolveAdjoint differentiates y0, args and the field's parameters only). "
                "Use adjoint='checkpoint' or 'direct' to take gradients with respect to `ts`."
            ) from None


def _save_at(ts: CheckedTimes, adjoint: diffrax.AbstractAdjoint) -> diffrax.SaveAt:
    """Where to save: at `ts`, without the machinery `SaveAt(ts=...)` needs when the output
    times are the solve's end points.

    - Two times (the solve is `[ts[0], ts[-1]]`: every CNF solve, every ODE-RNN gap):
      `SaveAt(t0=True, t1=True)`, the end states themselves, as hand-written diffrax
      saves them. `SaveAt(ts=ts)` would interpolate the last step at `ts[-1]` (equal up to
      float rounding) and compile the interpolation loop: a CNF training step under
      checkpointing is about a sixth smaller without it.
    - Under backsolve, the first time as `t0=True` and the rest as `ts[1:]`: the same
      values as `SaveAt(ts=ts)`, without a zero-length backward solve from `ts[0]` to `t0`
      (one compiled backward solve fewer).
    - Otherwise `SaveAt(ts=ts)`.
    """
    if ts.shape[0] == 2:
        return diffrax.SaveAt(t0=True, t1=True)
    ts = jnp.asarray(ts)  # a no-op: only the CNF's two concrete times are NumPy
    if not isinstance(adjoint, diffrax.BacksolveAdjoint):
        return diffrax.SaveAt(ts=ts)
    if ts.shape[0] == 1:
        return diffrax.SaveAt(t0=True)
    return diffrax.SaveAt(t0=True, ts=ts[1:])


def _to_common_dtype(ts, tree):
    """Cast the floating arrays of `tree` (field, `y0`, `args`) to one dtype, the widest.

    diffrax solves in the dtype of `y0` and the times; a field whose parameters have
    another dtype would get gradients in the solve's dtype from `backsolve` but in their
    own from the other adjoints. Cast before the solve, the gradient of every adjoint
    comes back through the cast in each parameter's own dtype. Arrays already of the
    common dtype are left as they are.
    """
    floats = [x for x in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(x)]
    dtype = jnp.result_type(ts, *floats)

    def cast(x: Any) -> Any:
        return x.astype(dtype) if eqx.is_inexact_array(x) and x.dtype != dtype else x

    return jax.tree_util.tree_map(cast, tree)


def _check_names(keywords) -> list[str]:
    names = [f.name for f in dataclasses.fields(SolveSettings)]
    unknown = sorted(set(keywords) - set(names))
    if unknown:
        raise ValueError(
            f"unknown solve setting(s) {', '.join(unknown)}; expected some of "
            f"{', '.join(names)}. A LatentODE's encoder takes `encoder_settings=`."
        )
    return names


def _check_config(solver, stepsize_controller, dt0, max_steps) -> None:
    if not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(
            f"`solver` must be a diffrax.AbstractSolver such as diffrax.Tsit5(); got "
            f"{type_name(solver)}."
        )
    if not isinstance(stepsize_controller, diffrax.AbstractStepSizeController):
        raise ValueError(
            "`stepsize_controller` must be a diffrax.AbstractStepSizeController such as "
            f"diffrax.PIDController(rtol=1e-3, atol=1e-6); got "
            f"{type_name(stepsize_controller)}."
        )
    if dt0 is not None and not (is_real(dt0) and 0 < dt0 < math.inf):
        raise ValueError(f"`dt0` must be a positive float or None; got {dt0!r}.")
    _check_tolerances(stepsize_controller)
    adaptive = isinstance(stepsize_controller, diffrax.AbstractAdaptiveStepSizeController)
    if isinstance(stepsize_controller, diffrax.StepTo):
        if dt0 is not None:
            raise ValueError(
                f"`dt0` must be None with diffrax.StepTo (it takes its steps from its own "
                f"`ts`); got dt0={dt0!r}. Pass dt0=None."
            )
    elif dt0 is None and not adaptive:
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
    check_optional_int("max_steps", max_steps, expected="a positive int or None")
    if max_steps is not None and max_steps > _MAX_STEPS_LIMIT:
        raise ValueError(
            f"`max_steps` must be at most 2**31 - 1 = {_MAX_STEPS_LIMIT} (diffrax counts steps "
            f"in 32-bit ints); got {max_steps}. Pass a bound the solve can reach, e.g. 4096."
        )


_MAX_STEPS_LIMIT = 2**31 - 1


def _check_tolerances(stepsize_controller) -> None:
    """A PID controller's rtol and atol: finite, non-negative, not both zero."""
    if not isinstance(stepsize_controller, diffrax.PIDController):
        return
    rtol, atol = stepsize_controller.rtol, stepsize_controller.atol
    if isinstance(rtol, jax.core.Tracer) or isinstance(atol, jax.core.Tracer):
        return
    values = np.concatenate([np.ravel(np.asarray(rtol, float)), np.ravel(np.asarray(atol, float))])
    if not (np.all(np.isfinite(values)) and np.all(values >= 0) and np.any(values > 0)):
        raise ValueError(
            "`stepsize_controller` tolerances must be finite and non-negative, and not both "
            f"zero; got rtol={rtol!r}, atol={atol!r}. Pass e.g. "
            "diffrax.PIDController(rtol=1e-3, atol=1e-6)."
        )
    if np.any(np.asarray(rtol, float) >= 1):
        raise ValueError(
            "`stepsize_controller` rtol must be below 1: a relative tolerance of 1 or more "
            f"accepts any step, so nothing is solved to any accuracy; got rtol={rtol!r}. Pass "
            "e.g. diffrax.PIDController(rtol=1e-3, atol=1e-6)."
        )


def _check_adjoint(adjoint, solver, stepsize_controller, max_steps) -> None:
    if not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise ValueError(
            "`adjoint` must be a diffrax.AbstractAdjoint or one of 'backsolve', "
            f"'checkpoint', 'direct'; got {type_name(adjoint)}."
        )
    if isinstance(adjoint, ReversibleAdjoint):
        check_reversible(solver, stepsize_controller, max_steps)
    if isinstance(adjoint, diffrax.BacksolveAdjoint) and isinstance(
        solver, diffrax.AbstractImplicitSolver
    ):
        raise ValueError(
            f"adjoint 'backsolve' cannot take the implicit solver {type(solver).__name__}: it "
            "solves the state backwards in time, where the fast decaying modes of a stiff "
            "system (the reason for an implicit solver) grow as fast as they decayed (a "
            "gradient of 1e133 for one of order 1 in tests/test_stiff.py). Use "
            "adjoint='checkpoint' or 'direct', which keep the forward states."
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

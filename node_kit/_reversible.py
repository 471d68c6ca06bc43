"""The reversible adjoint: the exact gradient of the solve, in memory that does not grow
with the number of solver steps.

McCallum and Foster (2024, "Efficient, Accurate and Stable Gradients for Neural ODEs",
arXiv 2410.11648) make any explicit single-step solver algebraically reversible. With
`Ψ_h(t, y)` the base solver's increment over a step `h` (one step from `y` gives
`y + Ψ_h(t, y)`), two states `y` (the solution) and `z` (its partner, `z_0 = y_0`) step as

    y_{n+1} = λ y_n + (1 - λ) z_n + Ψ_h(t_n, z_n)
    z_{n+1} = z_n - Ψ_{-h}(t_{n+1}, y_{n+1})

and each step inverts exactly in algebra:

    z_n = z_{n+1} + Ψ_{-h}(t_{n+1}, y_{n+1})
    y_n = (y_{n+1} - (1 - λ) z_n - Ψ_h(t_n, z_n)) / λ.

The forward pass keeps only the accepted step times; the backward pass rebuilds the
states from the last one, step by step, and backpropagates through each step. The
gradient is the exact gradient of this forward solve (as `direct`'s is of the plain one),
up to the float rounding of the rebuilt states.

Here the steps land exactly on every output time (a step that would pass the next output
time is shortened to it), so the saved states are the solver's own states, not an
interpolation between them.
"""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from ._checks import is_real, type_name
from ._custom_types import CheckedTimes


class ReversibleAdjoint(diffrax.AbstractAdjoint):
    """Exact gradients in memory independent of the number of solver steps: the
    reversible scheme of McCallum and Foster (2024) around the settings' solver.

    The forward solve runs the solver as a reversible pair of states (`y`, the solution,
    and a partner `z`, coupled by `coupling`); the backward pass rebuilds each step's
    states from the end and backpropagates through that step alone. Memory holds one
    step, the parameters' gradient and the accepted step times (`max_steps` scalars),
    whatever the number of steps; time is about twice `direct`'s (each step is two
    solver steps forward, and is rebuilt and differentiated backward).

    It works with the explicit single-step solvers (`diffrax.Euler`, `Heun`,
    `Midpoint`, `Ralston`, `Bosh3`, `Tsit5`, `Dopri5`, `Dopri8`, `node_kit.RK4`, any
    `diffrax.AbstractERK`), under `diffrax.ConstantStepSize` (with `dt0`),
    `diffrax.PIDController` or `diffrax.StepTo`. Steps are shortened to land on every
    output time, so the saved states are the solver's states, never interpolated. The
    adaptive controller reads the error estimate of the base step of `z`.

    The forward solve is a different (still order-`p`) method from the plain solver:
    its solution differs from the plain solve's by the method's error, and it costs two
    solver steps per step. With `coupling` below 1 it is stable where the dynamics
    decay slowly: the partner mode grows like `λ^-1 e^{-h·rate}` per step, so a very
    stiff decay or a long horizon at small `1 - λ` can grow it; rebuilding the states
    backwards divides by `λ` each step, so rounding errors grow like `λ^-N` over `N`
    steps (float64 is advised for thousands of steps).

    **Arguments:**

    - `coupling`: the coupling parameter `λ`, in `(0, 1)`; default 0.999, as the paper
        and its code use. Lower trades a larger forward stability region for faster
        growth of rounding error in the rebuilt states.
    """

    coupling: float = eqx.field(static=True)

    def __init__(self, coupling: float = 0.999):
        if not (is_real(coupling) and 0 < coupling < 1):
            raise ValueError(
                f"`coupling` must be a float in (0, 1) (the coupling parameter λ of the "
                f"reversible solver); got {coupling!r}. At 1 the scheme is unstable for "
                "decaying dynamics and at 0 it cannot be inverted; pass e.g. 0.999 (the "
                "default)."
            )
        self.coupling = float(coupling)

    def loop(self, **kwargs: Any) -> Any:
        """Not diffrax's loop: node_kit runs this adjoint's solve itself."""
        raise ValueError(
            "node_kit.ReversibleAdjoint runs through node_kit's solve "
            "(nk.SolveSettings(adjoint=nk.ReversibleAdjoint()).solve(...), or any node_kit "
            "model), not through diffrax.diffeqsolve."
        )


def check_reversible(solver, stepsize_controller, max_steps) -> None:
    """Raise a `ValueError` for a solver, controller or `max_steps` it cannot work with."""
    if not isinstance(solver, (diffrax.AbstractERK, diffrax.Euler)):
        kind = (
            "an implicit solver"
            if isinstance(solver, diffrax.AbstractImplicitSolver)
            else "not an explicit single-step Runge-Kutta solver"
        )
        raise ValueError(
            f"adjoint 'reversible' needs an explicit single-step solver (diffrax.Euler, "
            f"Heun, Midpoint, Tsit5, Dopri5, node_kit.RK4 or any diffrax.AbstractERK); "
            f"got {type(solver).__name__}, {kind}. Pass one of those, or use "
            "adjoint='checkpoint' with this solver."
        )
    if not isinstance(
        stepsize_controller,
        (diffrax.ConstantStepSize, diffrax.PIDController, diffrax.StepTo),
    ):
        raise ValueError(
            "adjoint 'reversible' works with diffrax.ConstantStepSize, PIDController or "
            f"StepTo; got {type_name(stepsize_controller)}. Pass one of those (a "
            "ClipStepSizeController's jumps are not supported), or use "
            "adjoint='checkpoint'."
        )
    if max_steps is None:
        raise ValueError(
            "`max_steps=None` cannot be used with adjoint 'reversible': it stores the "
            "accepted step times (max_steps scalars) for the backward pass. Pass an integer "
            "`max_steps` (e.g. 4096)."
        )


class _Static(eqx.Module):
    """What the solve does not differentiate: the scheme and its limits."""

    coupling: float = eqx.field(static=True)
    solver: diffrax.AbstractSolver
    controller: diffrax.AbstractStepSizeController
    dt0: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)


def reversible_solve(
    adjoint: ReversibleAdjoint,
    solver: diffrax.AbstractSolver,
    controller: diffrax.AbstractStepSizeController,
    dt0: float | None,
    max_steps: int,
    field: Callable,
    ts: CheckedTimes,
    y0: Any,
    args: Any,
) -> diffrax.Solution:
    """Solve `dy/dt = field(t, y, args)` from `ts[0]`, saving at `ts` (increasing), with
    the reversible scheme; its gradient comes from [`ReversibleAdjoint`][]'s backward
    pass. The solution is a `diffrax.Solution` like `diffeqsolve`'s: `ys` at `ts`
    (time first; `inf` after a failure, as diffrax fills them), `stats`, `result`."""
    ts = jnp.asarray(ts)
    static = _Static(adjoint.coupling, solver, controller, dt0, max_steps)
    # Arrays of the solver or controller (a StepTo's times) are not differentiated.
    static = jtu.tree_map(lambda x: jax.lax.stop_gradient(x) if eqx.is_array(x) else x, static)
    ys, num_steps, accepted, result = _solve((field, y0, args, ts), static)
    stats = {
        "num_steps": num_steps,
        "num_accepted_steps": accepted,
        "num_rejected_steps": num_steps - accepted,
    }
    return diffrax.Solution(
        t0=ts[0],
        t1=ts[-1],
        ts=ts,
        ys=ys,
        interpolation=None,
        stats=stats,
        result=diffrax.RESULTS.where(
            result, diffrax.RESULTS.successful, diffrax.RESULTS.max_steps_reached
        ),
        solver_state=None,
        controller_state=None,
        made_jump=None,
        event_mask=None,
    )


def _add(*trees):
    return jtu.tree_map(lambda *xs: sum(xs[1:], xs[0]), *trees)


def _scale(a, tree):
    return jtu.tree_map(lambda x: a * x, tree)


def _increment(solver, field, args, t0, t1, y):
    """`Ψ` of the base solver: its step from `(t0, y)` to `t1`, less `y`, and its error
    estimate. A fresh solver state each call: the two states' steps interleave, so a
    first-same-as-last slope from the other state's step would be wrong."""
    terms = diffrax.ODETerm(field)
    state = solver.init(terms, t0, t1, y, args)
    y1, error, _, _, _ = solver.step(terms, t0, t1, y, args, state, made_jump=False)
    return jtu.tree_map(jnp.subtract, y1, y), error


def _step(static: _Static, field, args, t0, t1, y0, z0):
    """One reversible step from `(t0, y0, z0)` to `t1`: `(y1, z1, error of y1)`."""
    lam = static.coupling
    dz, error = _increment(static.solver, field, args, t0, t1, z0)
    y1 = _add(_scale(lam, y0), _scale(1 - lam, z0), dz)
    dy, _ = _increment(static.solver, field, args, t1, t0, y1)
    z1 = jtu.tree_map(jnp.subtract, z0, dy)
    return y1, z1, error


def _fixed(static: _Static) -> bool:
    """Fixed steps: their times follow from `ts`, `dt0` and the steps per interval."""
    return isinstance(static.controller, diffrax.ConstantStepSize)


def _fixed_time(static: _Static, ts, j, i, count):
    """Under fixed steps, the end of step `i` of the interval `[ts[j], ts[j + 1]]` that
    takes `count` steps: `ts[j] + (i + 1) dt0`, the last one ending on `ts[j + 1]`.
    Written as a product, never a running sum, so the backward pass recomputes the very
    same times."""
    assert static.dt0 is not None
    return jnp.where(i + 1 >= count, ts[j + 1], ts[j] + (i + 1) * static.dt0)


def _forward(static: _Static, field, y0, args, ts):
    """The forward solve: `(ys, num_steps, accepted, succeeded)` and, for the backward
    pass, `(counts, times, y, z)`: the steps per interval between output times, the
    accepted step times (under an adaptive controller: `times[0] = ts[0]`, then one per
    accepted step; under fixed steps none are stored) and the final pair."""
    solver, controller = static.solver, static.controller
    terms = diffrax.ODETerm(field)
    error_order = solver.error_order(terms)
    n = ts.shape[0]
    fixed = _fixed(static)
    tnext, controller_state = controller.init(
        terms, ts[0], ts[-1], y0, static.dt0, args, solver.func, error_order
    )
    ys = jtu.tree_map(lambda x: jnp.full((n, *x.shape), jnp.inf, x.dtype).at[0].set(x), y0)
    times = jnp.full(0 if fixed else static.max_steps + 1, jnp.inf, ts.dtype)
    times = times if fixed else times.at[0].set(ts[0])
    counts = jnp.zeros(max(n - 1, 1), jnp.int32)
    eps = jnp.finfo(ts.dtype).eps

    def cond(carry):
        j, steps = carry[0], carry[-1]
        return (j < n) & (steps < static.max_steps)

    def body(carry):
        j, i, t, tnext, y, z, controller_state, ys, times, counts, accepted, steps = carry
        target, start = ts[j], ts[j - 1]
        if fixed:  # the step's end from its index: the backward pass recomputes it
            tnext = start + (i + 1) * static.dt0
        # A step that would reach (or all but reach) the next output time ends on it.
        hit = tnext >= target - 100 * eps * jnp.maximum(jnp.abs(target), jnp.abs(t))
        t1 = jnp.where(hit, target, tnext)
        y1, z1, error = _step(static, field, args, t, t1, y, z)
        if fixed:
            keep = jnp.array(True)
        else:  # every solver it accepts has an order, so an error order
            assert error_order is not None
            keep, _, tnext, _, controller_state, _ = controller.adapt_step_size(
                t, t1, y, y1, args, error, error_order, controller_state
            )
            keep = jnp.asarray(keep)
            times = times.at[accepted + 1].set(jnp.where(keep, t1, times[accepted + 1]))
        save = keep & hit
        ys = jtu.tree_map(lambda b, v: b.at[j].set(jnp.where(save, v, b[j])), ys, y1)
        counts = counts.at[j - 1].set(jnp.where(save, i + 1, counts[j - 1]))
        y = jtu.tree_map(lambda a, b: jnp.where(keep, b, a), y, y1)
        z = jtu.tree_map(lambda a, b: jnp.where(keep, b, a), z, z1)
        t = jnp.where(keep, t1, t)
        i = jnp.where(save, 0, i + keep)
        return (
            j + save, i, t, tnext, y, z, controller_state, ys, times, counts,
            accepted + keep, steps + 1,
        )  # fmt: skip

    zero, one = jnp.array(0, jnp.int32), jnp.array(1, jnp.int32)
    carry = (one, zero, ts[0], tnext, y0, y0, controller_state, ys, times, counts, zero, zero)
    carry = jax.lax.while_loop(cond, body, carry)
    j, _, _, _, y, z, _, ys, times, counts, accepted, steps = carry
    return (ys, steps, accepted, j == n), (counts, times, y, z)


@eqx.filter_custom_vjp
def _solve(inputs, static: _Static):
    field, y0, args, ts = inputs
    return _forward(static, field, y0, args, ts)[0]


@_solve.def_fwd
def _solve_fwd(perturbed, inputs, static: _Static):
    field, y0, args, ts = inputs
    return _forward(static, field, y0, args, ts)


@_solve.def_bwd
def _solve_bwd(residuals, grad_obj, perturbed, inputs, static: _Static):
    """Rebuild each accepted step from the last, and backpropagate through it."""
    field, _, args, ts = inputs
    if any(jtu.tree_leaves(perturbed[3])):
        raise ValueError(
            "the reversible adjoint cannot differentiate the output times `ts` (its step "
            "times are fixed by the forward solve). Use adjoint='checkpoint' or 'direct' "
            "to take gradients with respect to `ts`."
        )
    counts, times, y_end, z_end = residuals
    n = ts.shape[0]
    ys_bar = jtu.tree_map(
        lambda g, y: jnp.zeros((n, *y.shape), y.dtype) if g is None else g,
        grad_obj[0],
        y_end,
        is_leaf=lambda x: x is None,
    )
    lam = static.coupling
    params, rest = eqx.partition((field, args), eqx.is_inexact_array)

    def increment(p, t0, t1, y):
        f, a = eqx.combine(p, rest)
        return _increment(static.solver, f, a, t0, t1, y)[0]

    def step_times(j, i, k):
        if _fixed(static):
            return _fixed_time(static, ts, j, i - 1, counts[j]), _fixed_time(
                static, ts, j, i, counts[j]
            )
        return times[k], times[k + 1]

    def body(carry):
        # Step i of the interval [ts[j], ts[j + 1]], the k-th accepted step overall.
        j, i, k, y1, z1, y1_bar, z1_bar, params_bar = carry
        t0, t1 = step_times(j, i, k)
        t0 = jnp.where(i == 0, ts[j], t0)
        a, vjp_a = jax.vjp(lambda p, y: increment(p, t1, t0, y), params, y1)
        z0 = _add(z1, a)
        b, vjp_b = jax.vjp(lambda p, z: increment(p, t0, t1, z), params, z0)
        y0 = jtu.tree_map(lambda y, z, d: (y - (1 - lam) * z - d) / lam, y1, z0, b)
        p_a, y_a = vjp_a(z1_bar)
        y1_total = jtu.tree_map(jnp.subtract, y1_bar, y_a)
        p_b, z_b = vjp_b(y1_total)
        y0_bar = _scale(lam, y1_total)
        z0_bar = _add(z1_bar, _scale(1 - lam, y1_total), z_b)
        params_bar = jtu.tree_map(lambda g, ga, gb: g - ga + gb, params_bar, p_a, p_b)
        # The first step of an interval starts at the output time ts[j], saved there.
        first = i == 0
        y0_bar = jtu.tree_map(lambda g, s: g + jnp.where(first, s[j], 0), y0_bar, ys_bar)
        previous = jnp.maximum(j - 1, 0)
        j, i = jnp.where(first, j - 1, j), jnp.where(first, counts[previous] - 1, i - 1)
        return j, i, k - 1, y0, z0, y0_bar, z0_bar, params_bar

    # The last output time is the last accepted step's end (ts[0] alone: y0, no steps).
    last = max(n - 2, 0)
    y_bar = jtu.tree_map(lambda s: s[n - 1], ys_bar)
    z_bar = jtu.tree_map(jnp.zeros_like, z_end)
    params_bar = jtu.tree_map(jnp.zeros_like, params)
    j = jnp.array(n - 2, jnp.int32)  # -1 for ts[0] alone: the loop does not run
    carry = (j, counts[last] - 1, jnp.sum(counts) - 1, y_end, z_end, y_bar, z_bar, params_bar)
    carry = jax.lax.while_loop(lambda c: c[0] >= 0, body, carry)
    *_, y0_bar, z0_bar, params_bar = carry
    field_bar, args_bar = params_bar
    return field_bar, _add(y0_bar, z0_bar), args_bar, None

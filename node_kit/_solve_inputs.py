"""Checks of a solve's inputs: output times, initial states, and the field's output shape.

Concrete values are checked now with a `ValueError` that says what to pass; traced values
(inside `jit`) are checked at run time with `eqx.error_if`. The solve settings themselves
are checked in `_solve.py`; the messages of a failed solve are written here.
"""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from ._checks import as_array
from ._custom_types import Args, CheckedTimes, State, Time, Times, Trajectory
from ._events import event_fired, unreached


def check_finite_times(ts: Array, name: str = "ts") -> Array:
    """Refuse NaN or inf in times: a `ValueError` now, or `eqx.error_if` when traced."""
    if isinstance(ts, jax.core.Tracer):
        return eqx.error_if(
            ts, jnp.any(~jnp.isfinite(ts)), f"`{name}` must be finite (no NaN or inf)."
        )
    values = np.asarray(ts)
    if not np.all(np.isfinite(values)):
        i = int(np.argmax(~np.isfinite(values)))
        raise ValueError(
            f"`{name}` must be finite; got {name}[{i}]={float(values[i])}. Drop or fill the "
            "missing times."
        )
    return ts


def check_times(ts: Times) -> Float[Array, " times"]:
    """Check output times: 1-D, non-empty, strictly increasing; return a float array.

    Concrete `ts` are checked now with a `ValueError`; traced `ts` (inside `jit`)
    are checked at run time with `eqx.error_if`.
    """
    ts = as_array("ts", ts, "a 1-D array of increasing times")
    if ts.ndim != 1:
        raise ValueError(
            f"`ts` must be 1-D (the output times); got shape {tuple(ts.shape)}. "
            "For a batch with its own times per sample, use jax.vmap(model)."
        )
    if ts.shape[0] == 0:
        raise ValueError(
            "`ts` must contain at least one time (the first is the initial time); "
            "got an empty array."
        )
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = ts.astype(jnp.result_type(float))
    ts = check_finite_times(ts)
    if isinstance(ts, jax.core.Tracer):
        bad = jnp.any(jnp.diff(ts) <= 0)
        return eqx.error_if(
            ts, bad, "`ts` must be strictly increasing; sort the times and drop duplicates."
        )
    diffs = np.diff(np.asarray(ts))
    if np.any(diffs <= 0):
        i = int(np.argmax(diffs <= 0))
        raise ValueError(
            f"`ts` must be strictly increasing; got ts[{i + 1}]={float(ts[i + 1])} <= "
            f"ts[{i}]={float(ts[i])}. Sort the times and drop duplicates."
        )
    return ts


def check_state(y0: ArrayLike, *, data_size: int | None, batched: bool) -> Array:
    """Check an initial state's dtype and shape. Its values (NaN or inf) are checked by the
    solve's one run-time check ([`node_kit.SolveSettings.solve`][], with `throw`)."""
    name = "y0s" if batched else "y0"
    y0 = as_array(name, y0, "a floating-point array")
    if not jnp.issubdtype(y0.dtype, jnp.floating):
        raise ValueError(
            f"`{name}` must be a floating-point array; got dtype {y0.dtype}. "
            f"Convert it, e.g. `{name}.astype(jnp.float32)`."
        )
    if batched and y0.ndim < 1:
        raise ValueError(
            "`y0s` must have a leading batch axis; got a scalar. Use model(ts, y0) for one sample."
        )
    if data_size is not None:
        expected = (y0.shape[0], data_size) if batched and y0.ndim >= 1 else (data_size,)
        if y0.shape != expected:
            what = "(batch, data_size)" if batched else "(data_size,)"
            raise ValueError(
                f"`{name}` must have shape {what} = {expected} for this vector field "
                f"(data_size={data_size}); got {tuple(y0.shape)}."
            )
    return y0


class CheckedField(eqx.Module):
    """The vector field, checked where diffrax first traces it (no extra trace of its own).

    A field that fails on the state with a shape error raises a `ValueError` naming the
    shape of `y0`; one that returns dy/dt of another shape than the state, a `ValueError`
    naming both shapes. Any other error inside the field (a `KeyError`, `float()` of the
    traced state, `args` that is None) is the field's own and is raised as it is, with a
    note saying where it arose. Under `jit` the check costs nothing: shapes are known when
    tracing.
    """

    field: Callable

    def __call__(self, t: Time, y: State, args: Args) -> State:
        out = call_field(self.field, t, y, args)
        if not (eqx.is_array_like(out) and jnp.shape(out) == jnp.shape(y)):
            got = jnp.shape(out) if eqx.is_array_like(out) else type(out).__name__
            raise ValueError(
                f"the vector field must return dy/dt with the shape of `y0` "
                f"{tuple(jnp.shape(y))}; it returned {got}."
            )
        return out


def call_field(field: Callable, t: Time, y: State, args: Args) -> Any:
    """`field(t, y, args)`; a shape error is raised as a `ValueError` naming the shape of
    `y0`, any other error as the field's own with a note of where it arose."""
    try:
        return field(t, y, args)
    except (TypeError, ValueError) as error:
        if not _is_shape_error(error):
            raise _noted(error, y, args) from None
        raise ValueError(
            f"`y0` of shape {tuple(jnp.shape(y))} does not fit the vector field: calling "
            f"it raised {type(error).__name__}: {str(error).rstrip('.')}. Pass `y0` with the "
            "shape the field expects for one sample (batch with `model.batched` or jax.vmap)."
        ) from error
    except Exception as error:
        raise _noted(error, y, args) from None


_SHAPE_WORDS = ("shape", "dimension", "broadcast", "incompatible", "size")


def _is_shape_error(error: Exception) -> bool:
    """A shape mismatch of the state against the field's arrays (not a JAX tracer error,
    whose messages speak of shapes too: `float()` or `if` on the traced state)."""
    if isinstance(error, jax.errors.JAXTypeError | jax.errors.JAXIndexError):
        return False
    return any(word in str(error).lower() for word in _SHAPE_WORDS)


def _noted(error: Exception, y: State, args: Args) -> Exception:
    """`error`, with a note that it arose inside the vector field and what is the usual cause."""
    note = (
        f"node_kit: this was raised inside the vector field f(t, y, args), called with y of "
        f"shape {tuple(jnp.shape(y))} and args={'None' if args is None else type(args).__name__}."
    )
    if isinstance(error, jax.errors.JAXTypeError):
        note += (
            " The field is traced (diffrax compiles it): Python float(), bool(), `if` or "
            "np.asarray on the state need concrete values; use jnp functions and jnp.where."
        )
    elif args is None and isinstance(error, TypeError | KeyError | AttributeError):
        note += " No `args` was passed: pass them to the model call (model(ts, y0, args))."
    error.add_note(note)
    return error


def failure_messages(ts: CheckedTimes, max_steps: int | None, y0_name: str = "y0") -> list[str]:
    n = ts.shape[0]
    values = None if isinstance(ts, jax.core.Tracer) else np.asarray(ts)

    def where(i: int) -> str:
        if i >= n - 1:
            return "it stopped after the last output time"
        at = f" (t={values[i]:.6g} and t={values[i + 1]:.6g})" if values is not None else ""
        return f"it stopped between ts[{i}] and ts[{i + 1}]{at}"

    hit_max = [
        f"diffeqsolve hit max_steps={max_steps}: {where(i)}. Increase `max_steps`, "
        "loosen rtol/atol, or regularise the dynamics. (A vector field that returns NaN or "
        "inf also ends here: an adaptive controller rejects each such step and retries a "
        "smaller one. Check the field and its parameters for NaN.)"
        for i in range(n)
    ]
    other = [
        f"diffeqsolve failed (the step size collapsed or the state became NaN/inf): "
        f"{where(i)}. Check the inputs and parameters for NaN."
        for i in range(n)
    ]
    nonfinite = [
        f"the solution became NaN or inf at ts[{i}]"
        + (f" (t={values[i]:.6g})" if values is not None else "")
        + " although the solver reported success (a fixed step size does not "
        "check this). Use a smaller `dt0` or an adaptive controller, and check the "
        "inputs and parameters for NaN."
        for i in range(n)
    ]
    start = [f"`{y0_name}` contains NaN or inf; check the data."]
    return hit_max + other + nonfinite + start


def raise_if_failed(
    sol: diffrax.Solution,
    ts: CheckedTimes,
    *,
    max_steps: int | None,
    y0_finite: Bool[Array, ""] | None = None,
    y0_name: str = "y0",
) -> diffrax.Solution:
    """Raise an error naming `max_steps` and where the solve stopped, if it failed.

    diffrax fills the outputs after a failure with `inf`, so the first output time whose
    state is not finite tells how far the solve got. A solve that "succeeds" with NaN or inf
    states (possible with a fixed step size) is an error too, and so is a NaN or inf in
    the initial state (`y0_finite` false; `None` when `sol.ys[0]` is `y0` itself, saved at
    `t0`), named `y0_name`, which no solve can start from. A solve stopped by its event has
    succeeded; the output times it did not reach hold `inf` and are not checked.
    `eqx.branched_error_if` picks one of the pre-written messages, so this works under
    `jit`, `vmap` and `grad`.
    """
    n = ts.shape[0]
    solved = (sol.result == diffrax.RESULTS.successful) | event_fired(sol)
    hit_max = sol.result == diffrax.RESULTS.max_steps_reached
    # The first output time whose state is not finite, n if none. After a failure diffrax
    # fills the outputs with inf, so this is also how far a failed solve got; a fixed-step
    # solve reports success even when the state turns NaN, so it is checked there too.
    # One reduction over all of `ys`: each entry's output index where it is not finite.
    ys = saved_states(sol)
    at = jax.lax.broadcasted_iota(jnp.int32, ys.shape, 0)
    good = jnp.isfinite(ys) if sol.event_mask is None else jnp.isfinite(ys) | unreached(sol, ys)
    first_bad = jnp.min(jnp.where(good, n, at))
    bad_start = first_bad == 0 if y0_finite is None else ~y0_finite
    kind = jnp.where(hit_max, 0, jnp.where(solved, 2, 1))
    # A failed solve never reached ts[-1], so it stopped before the last output time, even
    # where diffrax saved its last state as the end state (SaveAt(t1=True)).
    stopped = jnp.clip(first_bad, 1, max(n - 1, 1)) - 1
    position = jnp.where(solved, jnp.minimum(first_bad, n - 1), stopped)
    index = jnp.where(bad_start, 3 * n, kind * n + position)
    failed = bad_start | ~solved | (first_bad < n)
    return eqx.branched_error_if(sol, failed, index, failure_messages(ts, max_steps, y0_name))


def saved_states(sol: diffrax.Solution) -> Trajectory:
    """`sol.ys` of a solve by [`node_kit.SolveSettings.solve`][], which always saves states."""
    assert sol.ys is not None, "SolveSettings.solve saves at `ts`, so `ys` is never None"
    return sol.ys

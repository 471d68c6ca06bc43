"""Input validation and failure reporting shared by every solve."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def check_times(ts) -> jax.Array:
    """Check output times: 1-D, non-empty, strictly increasing; return a float array.

    Concrete `ts` are checked now with a `ValueError`; traced `ts` (inside `jit`)
    are checked at run time with `eqx.error_if`.
    """
    ts = jnp.asarray(ts)
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


def check_state(y0, *, data_size: int | None, batched: bool) -> jax.Array:
    """Check an initial state's dtype, shape and values (NaN/inf raise at run time)."""
    y0 = jnp.asarray(y0)
    name = "y0s" if batched else "y0"
    if not jnp.issubdtype(y0.dtype, jnp.floating):
        raise ValueError(
            f"`{name}` must be a floating-point array; got dtype {y0.dtype}. "
            f"Convert it, e.g. `{name}.astype(jnp.float32)`."
        )
    if batched and y0.ndim < 1:
        raise ValueError(
            f"`y0s` must have a leading batch axis; got a scalar. Use model(ts, y0) "
            "for one sample."
        )
    if data_size is not None:
        expected = (y0.shape[0], data_size) if batched and y0.ndim >= 1 else (data_size,)
        if y0.shape != expected:
            what = "(batch, data_size)" if batched else "(data_size,)"
            raise ValueError(
                f"`{name}` must have shape {what} = {expected} for this vector field "
                f"(data_size={data_size}); got {tuple(y0.shape)}."
            )
    bad = jnp.any(~jnp.isfinite(y0))
    return eqx.error_if(y0, bad, f"`{name}` contains NaN or inf; check the data.")


def raise_if_failed(sol: diffrax.Solution, ts, *, max_steps: int | None) -> diffrax.Solution:
    """Raise an error naming `max_steps` and where the solve stopped, if it failed.

    diffrax fills the outputs after a failure with `inf`, so the number of finite
    output times tells how far the solve got. A solve that "succeeds" with NaN or inf
    states (possible with a fixed step size) is an error too. `eqx.branched_error_if` picks one of
    the pre-written messages, so this works under `jit`, `vmap` and `grad`.
    """
    n = ts.shape[0]
    reached = jnp.sum(jnp.isfinite(sol.ts), axis=-1)
    solved = sol.result == diffrax.RESULTS.successful
    hit_max = sol.result == diffrax.RESULTS.max_steps_reached
    # A fixed-step solve reports success even when the state turns NaN: check it too.
    finite_at = jnp.all(jnp.isfinite(sol.ys), axis=tuple(range(1, sol.ys.ndim)))
    first_bad = jnp.argmin(finite_at)
    kind = jnp.where(hit_max, 0, jnp.where(solved, 2, 1))
    position = jnp.where(solved, first_bad, jnp.clip(reached, 1, n) - 1)
    index = kind * n + position
    failed = ~solved | ~jnp.all(finite_at)
    return eqx.branched_error_if(sol, failed, index, _failure_messages(ts, max_steps))


def _failure_messages(ts, max_steps) -> list[str]:
    n = ts.shape[0]
    values = None if isinstance(ts, jax.core.Tracer) else np.asarray(ts)

    def where(i: int) -> str:
        if i >= n - 1:
            return "it stopped after the last output time"
        at = f" (t={values[i]:.6g} and t={values[i + 1]:.6g})" if values is not None else ""
        return f"it stopped between ts[{i}] and ts[{i + 1}]{at}"

    hit_max = [
        f"diffeqsolve hit max_steps={max_steps}: {where(i)}. Increase `max_steps`, "
        "loosen rtol/atol, or regularise the dynamics." for i in range(n)
    ]
    other = [
        f"diffeqsolve failed (the step size collapsed or the state became NaN/inf): "
        f"{where(i)}. Check the inputs and parameters for NaN." for i in range(n)
    ]
    nonfinite = [
        f"the solution became NaN or inf at ts[{i}]"
        + (f" (t={values[i]:.6g})" if values is not None else "")
        + " although the solver reported success (a fixed step size does not "
        "check this). Use a smaller `dt0` or an adaptive controller, and check the "
        "inputs and parameters for NaN." for i in range(n)
    ]
    return hit_max + other + nonfinite

"""Irregularly sampled series: one layout, its checks, and two batch helpers.

**Layout.** A series is three arrays: times `ts` `(n,)`, values `(n, data_size)` and a
`mask` of the same shape (1 or `True` = observed, 0 or `False` = missing). The models
([`node_kit.ODERNN`][], [`node_kit.GRUDelta`][], [`node_kit.LatentODE`][]) take ONE series;
a batch stacks series of equal length `n` along a leading axis, each with its own times,
and is run with `jax.vmap` (`in_axes=0` for all three arrays). This "padded per-series"
layout is chosen over the paper's union time grid because its cost grows with `n`, not with
the size of the batch times `n` (a union grid of 32 series of 100 random times has 3200
points, every one a solve for the ODE-RNN). Series with fewer points are padded at the end
with mask 0: for `ODERNN` and `GRUDelta` by repeating the last time (zero gaps, an exact
no-op); for `LatentODE`, whose decoder needs strictly increasing times, with any later times
(they only lengthen the decoder's solve). [`node_kit.union_grid`][] builds the paper's
layout instead (shared times, then `in_axes=(None, 0, 0)`).

**What a mask guarantees.** Values at masked-out entries never reach a computation: they
are replaced by zeros with `jnp.where` (so even NaN there is harmless) and the mask itself
is the second half of the recurrent input. A time point with nothing observed changes no
carried state: the recurrent models keep `(h, t)` of the last observation and evolve it over
the whole gap at the next one, so the states at every other point depend neither on its
values nor on its time (tested bit for bit). The latent ODE's decoder still solves through
such a point, as one of its output times; its likelihood term is zero, and it moves an
adaptive solver's steps by no more than the solver's tolerance.
"""

import equinox as eqx
import jax
import jax.core
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, Real

from ._checks import as_array, check_key, is_real
from ._custom_types import SeriesMask, SeriesValues, Times
from ._solve_inputs import check_finite_times


def check_series_times(ts: Times, *, strict: bool, name: str = "ts") -> Float[Array, " times"]:
    """Check one series' times: 1-D, non-empty, increasing; return a float array.

    `strict=True` asks for strictly increasing times (output times of an ODE solve);
    `strict=False` allows repeats (zero gaps). Concrete times raise a `ValueError`
    now; traced times (inside `jit`) are checked at run time with `eqx.error_if`.
    """
    ts = as_array(name, ts, "a 1-D array of times")
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 1-D array of times for ONE series; got shape "
            f"{tuple(ts.shape)}. Batch series with jax.vmap."
        )
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = ts.astype(jnp.result_type(float))
    order = "strictly increasing" if strict else "non-decreasing"
    ts = check_finite_times(ts, name)
    if isinstance(ts, jax.core.Tracer):
        diffs = jnp.diff(ts)
        bad = jnp.any(diffs <= 0) if strict else jnp.any(diffs < 0)
        return eqx.error_if(ts, bad, f"`{name}` must be {order} within a series.")
    diffs = np.diff(np.asarray(ts))
    bad = diffs <= 0 if strict else diffs < 0
    if np.any(bad):
        i = int(np.argmax(bad))
        relation = "<=" if strict else "<"
        raise ValueError(
            f"`{name}` must be {order} within a series; got {name}[{i + 1}]="
            f"{float(ts[i + 1])} {relation} {name}[{i}]={float(ts[i])}. Sort the "
            "observations by time" + (" and merge repeated times." if strict else ".")
        )
    return ts


def _check_binary(mask: Array) -> Bool[Array, "times data_size"]:
    if mask.dtype == jnp.bool_:
        return mask
    message = "`mask` must hold only 0 and 1 (1 = observed)."
    if isinstance(mask, jax.core.Tracer):
        mask = eqx.error_if(mask, jnp.any((mask != 0) & (mask != 1)), message)
        return mask != 0
    values = np.unique(np.asarray(mask))
    if not np.all(np.isin(values, (0, 1))):
        raise ValueError(f"{message[:-1]}; got the values {values[:5].tolist()}. Pass a bool mask.")
    return mask != 0


def check_series(
    ts: Times, values: SeriesValues, mask: SeriesMask, *, data_size: int, strict: bool
) -> tuple[Float[Array, " times"], Float[Array, "times data_size"], Bool[Array, "times data_size"]]:
    """Check one series against a model's `data_size`; return `(ts, values, observed)`.

    **Arguments:**

    - `ts`: times `(n,)`, strictly increasing if `strict`, else non-decreasing.
    - `values`: `(n, data_size)`, floating point; masked-out entries may hold anything
        (NaN included), observed ones must be finite (checked at run time).
    - `mask`: the shape of `values`, bool or 0/1 numbers.
    - `data_size`: the model's number of channels.

    **Returns:**

    The float times, the values, and the mask as a bool array.
    """
    ts = check_series_times(ts, strict=strict)
    values = as_array("values", values, f"a float array of shape (len(ts), {data_size})")
    expected = (ts.shape[0], data_size)
    if values.shape != expected or not jnp.issubdtype(values.dtype, jnp.floating):
        hint = " Add a channel axis: values[:, None]." if values.ndim == 1 else ""
        raise ValueError(
            f"`values` must be a float array of shape (len(ts), data_size) = {expected} for "
            f"this model (data_size={data_size}); got {values.dtype}{tuple(values.shape)}.{hint}"
        )
    mask = as_array("mask", mask, "a bool or 0/1 array of the shape of `values`")
    if mask.shape != values.shape:
        raise ValueError(
            f"`mask` must have the shape of `values` {expected} (1 = observed, 0 = missing); "
            f"got {tuple(mask.shape)}."
        )
    observed = _check_binary(mask)
    bad = jnp.any(observed & ~jnp.isfinite(values))
    message = "`values` holds NaN or inf at observed entries; fix them or set their mask to 0."
    return ts, eqx.error_if(values, bad, message), observed


def check_observed(
    observed: Bool[Array, "*batch times data_size"], name: str = "mask"
) -> Bool[Array, "*batch times data_size"]:
    """Refuse a series with nothing observed: every entry of its `observed` is `False`.

    For the ELBO, where such a series has no likelihood term (its ELBO would be `-KL`,
    silently). `observed` is one series `(n, data_size)` or a batch `(batch, n, data_size)`
    of bool masks. Concrete masks raise a `ValueError` now (naming the series of a batch);
    traced ones (inside `jit` or `vmap`) are checked at run time with `eqx.error_if`.
    """
    seen = jnp.any(observed, axis=(-2, -1))
    fix = (
        "A series with no observed entry has no likelihood term (its ELBO would be -KL); "
        "drop it, or fill a batch with copies of an observed series."
    )
    if isinstance(seen, jax.core.Tracer):
        message = f"`{name}` must observe at least one entry of every series. {fix}"
        return eqx.error_if(observed, ~jnp.all(seen), message)
    seen = np.asarray(seen)
    if not seen.all():
        where = f" (series {int(np.argmin(seen))} of the batch)" if seen.ndim else ""
        raise ValueError(
            f"`{name}` must observe at least one entry of every series; got a series with "
            f"every entry 0{where}. {fix}"
        )
    return observed


def _check_fraction(fraction) -> None:
    if not (is_real(fraction) and 0 < fraction <= 1):
        raise ValueError(
            "`fraction` (the share of observed time points to keep) must be a float in "
            f"(0, 1]; got fraction={fraction!r}. Pass e.g. 0.5 to keep half of them."
        )


def subsample_mask(
    key: PRNGKeyArray, mask: Real[ArrayLike, "times data_size"], fraction: float
) -> Real[Array, "times data_size"]:
    """Keep a random `fraction` of one series' observed time points, as the paper subsamples.

    A time point is observed if any of its channels is; a kept point keeps all its
    channels. Exactly `ceil(fraction * num_observed)` points are kept, so a series with at
    least one observation keeps at least one. Works under `jit`; `jax.vmap` it over a batch
    with one key per series.

    **Arguments:**

    - `key`: a `jax.random` key.
    - `mask`: `(n, data_size)`, bool or 0/1.
    - `fraction`: a Python float in `(0, 1]`.

    **Returns:**

    A mask of the same shape and dtype, a subset of `mask`.
    """
    _check_fraction(fraction)
    check_key("key", key)
    mask = as_array("mask", mask, "a bool or 0/1 array of shape (times, data_size)")
    if mask.ndim != 2:
        raise ValueError(
            f"`mask` must have shape (times, data_size) for ONE series; got "
            f"{tuple(mask.shape)}. Use jax.vmap for a batch."
        )
    point = jnp.any(mask != 0, axis=-1)
    scores = jnp.where(point, jr.uniform(key, point.shape), jnp.inf)
    rank = jnp.argsort(jnp.argsort(scores))
    keep = rank < jnp.ceil(fraction * jnp.sum(point))
    return jnp.where(keep[:, None], mask, jnp.zeros_like(mask))


def union_grid(
    ts_list: list[np.ndarray], values_list: list[np.ndarray], masks: list[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put series with their own times on the union of all their times (the paper's layout).

    NumPy, outside `jit`. Every series gets the shared grid; points it does not have are
    masked out (value 0). Run a model with `jax.vmap(model, in_axes=(None, 0, 0))`.

    **Arguments:**

    - `ts_list`: one array of strictly increasing times `(n_i,)` per series.
    - `values_list`: one array `(n_i, data_size)` per series.
    - `masks`: one mask per series, like its values; `None`: everything observed.

    **Returns:**

    `(grid, values, mask)` with shapes `(m,)`, `(batch, m, data_size)`, `(batch, m, data_size)`;
    `mask` is bool.
    """
    if len(ts_list) == 0 or len(ts_list) != len(values_list):
        raise ValueError(
            "`ts_list` and `values_list` must be non-empty lists of the same length (one "
            f"entry per series); got {len(ts_list)} and {len(values_list)}."
        )
    masks = [np.ones(np.shape(v), bool) for v in values_list] if masks is None else masks
    grid = np.unique(np.concatenate([np.asarray(t) for t in ts_list]))
    data_size = np.shape(values_list[0])[-1]
    values = np.zeros((len(ts_list), len(grid), data_size), np.result_type(*values_list))
    mask = np.zeros(values.shape, bool)
    for i, (t, v, m) in enumerate(zip(ts_list, values_list, masks)):
        t, _, m = check_series(t, v, m, data_size=data_size, strict=True)
        where = np.searchsorted(grid, np.asarray(t))
        mask[i, where] = np.asarray(m)
        values[i, where] = np.where(mask[i, where], np.asarray(v), 0)
    return grid, values, mask

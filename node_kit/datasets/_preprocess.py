"""FFJORD-style image preprocessing (dequantize, then logit) with its exact log-determinant.

Units, stated once: the raw data are integer pixels in `{0, ..., num_levels - 1}` (`num_levels =
17` for the 8x8 digits). Dequantizing adds `u ~ U[0, 1)` per pixel, giving `v = x + u` in the
cube `[0, num_levels)^dim`; "pixel units" below means densities over `v`. The model sees

    y = logit(alpha + (1 - 2 alpha) * v / num_levels).

`preprocess` returns `log|det dy/dv|` per sample, so a model's NLL of `y` converts to the NLL of
the dequantized pixels as `nll_v = nll_y - log_det`, and to bits per dimension as
`nll_v / (dim * ln 2)`. A model uniform over the cube scores `log2(num_levels)` bits/dim
(4.09 for 17 levels), and `nll_v` upper-bounds the discrete NLL of `x` (Theis et al. 2016).

`alpha` follows RealNVP / FFJORD: it keeps the logit away from 0 and 1. FFJORD uses
`alpha = 1e-6` for MNIST; the default here is `0.05` (RealNVP's CIFAR-10 value), because with
only 17 levels and mostly-zero 8x8 images a tiny alpha maps the background to a long tail around
`logit(1e-6) = -13.8` that dominates training.

All functions are `jax.numpy` only and act on the last axis, so they work per sample, batched,
and inside `jax.jit`.
"""

import math

import jax
import jax.core
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

from .._checks import check_int, check_key, is_real


DIGITS_NUM_LEVELS = 17
"""Grey levels of `sklearn.datasets.load_digits` pixels (integers 0..16)."""

DEFAULT_ALPHA = 0.05
"""Default logit squeeze for the small digits images (see the module docstring)."""


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, jax.core.Tracer):  # A traced alpha is not checked.
        return
    if not (is_real(alpha) and 0.0 <= alpha < 0.5):
        raise ValueError(
            f"`alpha` must satisfy 0 <= alpha < 0.5 (the logit input is alpha + (1 - 2 alpha) u); "
            f"got alpha={alpha!r}. The default is {DEFAULT_ALPHA}."
        )


def check_pixel_values(name: str, x, num_levels: int) -> None:
    """Raise a `ValueError` naming `name` unless `x` holds whole grey levels
    `0 .. num_levels - 1` (the pixels `dequantize` expects)."""
    values = np.asarray(x)
    if values.size == 0:
        return
    bad = (values < 0) | (values > num_levels - 1) | (values != np.round(values))
    if np.any(bad):
        raise ValueError(
            f"`{name}` must hold integer pixels in [0, {num_levels - 1}] ({num_levels} grey "
            f"levels); got {int(bad.sum())} outside (range {values.min()}..{values.max()}). "
            "Pass raw integer pixels (not images scaled to [0, 1]), or the right `num_levels`."
        )


def dequantize(
    x: Real[ArrayLike, "*batch dim"],
    *,
    key: PRNGKeyArray,
    num_levels: int = DIGITS_NUM_LEVELS,
) -> Float[Array, "*batch dim"]:
    """Uniform dequantization into `[0, 1)`: `(x + u) / num_levels` with `u ~ U[0, 1)`.

    **Arguments:**

    - `x`: integer pixels in `{0, ..., num_levels - 1}`, any shape (checked unless traced).
    - `key`: a JAX PRNG key; draw a fresh one per step.
    - `num_levels`: number of grey levels (17 for the digits).

    **Returns:**

    Floats in `[0, 1)` of `x`'s shape (default float dtype).
    """
    check_int("num_levels", num_levels, minimum=2, expected="an int of at least 2")
    check_key("key", key)
    if not isinstance(x, jax.core.Tracer):  # traced pixels (under jit) are not checked
        check_pixel_values("x", x, num_levels)
    x = jnp.asarray(x, dtype=jnp.result_type(float))
    return (x + jr.uniform(key, x.shape, dtype=x.dtype)) / num_levels


def logit_transform(
    u: Float[ArrayLike, "*batch dim"], *, alpha: float = DEFAULT_ALPHA
) -> tuple[Float[Array, "*batch dim"], Float[Array, "*batch"]]:
    """Map `u` in `[0, 1)` to `y = logit(alpha + (1 - 2 alpha) u)`, with the log-determinant.

    **Arguments:**

    - `u`: values in `[0, 1)`, last axis the data dimension.
    - `alpha`: squeeze, `0 <= alpha < 0.5`.

    **Returns:**

    `(y, log_det)`: `y` of `u`'s shape and `log_det = sum_i log|dy_i/du_i|` over the last axis.
    """
    _check_alpha(alpha)
    u = jnp.asarray(u, dtype=jnp.result_type(float))
    s = alpha + (1 - 2 * alpha) * u
    log_s, log_1ms = jnp.log(s), jnp.log1p(-s)
    log_det = jnp.sum(jnp.log1p(-2 * alpha) - log_s - log_1ms, axis=-1)
    return log_s - log_1ms, log_det


def inverse_logit_transform(
    y: Float[ArrayLike, "*batch dim"], *, alpha: float = DEFAULT_ALPHA
) -> Float[Array, "*batch dim"]:
    """Invert `logit_transform`: `u = (sigmoid(y) - alpha) / (1 - 2 alpha)`.

    **Arguments:**

    - `y`: values in logit space (for example a model's samples).
    - `alpha`: the squeeze used in the forward map.

    **Returns:**

    `u` of `y`'s shape; in `[0, 1)` when `y` came from `logit_transform`.
    """
    _check_alpha(alpha)
    return (jnp.reciprocal(1 + jnp.exp(-jnp.asarray(y))) - alpha) / (1 - 2 * alpha)


def preprocess(
    x: Real[ArrayLike, "*batch dim"],
    *,
    key: PRNGKeyArray,
    num_levels: int = DIGITS_NUM_LEVELS,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[Float[Array, "*batch dim"], Float[Array, "*batch"]]:
    """Dequantize integer pixels and move them to logit space, FFJORD-style.

    **Arguments:**

    - `x`: integer pixels in `{0, ..., num_levels - 1}`, last axis the data dimension.
    - `key`: a JAX PRNG key for the dequantization noise.
    - `num_levels`: number of grey levels (17 for the digits).
    - `alpha`: logit squeeze, `0 <= alpha < 0.5`.

    **Returns:**

    `(y, log_det)` where `log_det = log|det dy/dv|` per sample in pixel units, `v = x + u` in
    `[0, num_levels)^dim`. Convert a model's NLL of `y` with `bits_per_dim(nll_y, log_det)`.
    """
    u = dequantize(x, key=key, num_levels=num_levels)
    y, log_det = logit_transform(u, alpha=alpha)
    return y, log_det - y.shape[-1] * math.log(num_levels)


def bits_per_dim(
    nll_logit: Float[ArrayLike, "*batch"],
    log_det: Float[ArrayLike, "*batch"],
    *,
    dim: int,
) -> Float[Array, "*batch"]:
    """Convert an NLL in logit space (nats) to bits per dimension of the dequantized pixels.

    `nll_v = nll_logit - log_det` is the NLL of `v = x + u` in `[0, num_levels)^dim` (pixel
    units), and the result is `nll_v / (dim * ln 2)`.

    This is FFJORD's bits per dimension (its `compute_bits_per_dim`), which models
    `w = v / L` in `[0, 1)^dim` (`L = num_levels`, 256 for MNIST) and reports
    `-(log p(w) / dim - log L) / log 2`: since `log p(v) = log p(w) - dim log L`, the two
    are equal.

    **Arguments:**

    - `nll_logit`: `-log p(y)` from the model, per sample, in nats.
    - `log_det`: the per-sample log-determinant returned by `preprocess`.
    - `dim`: the data dimension (64 for the 8x8 digits).

    **Returns:**

    Bits per dimension, per sample.
    """
    check_int("dim", dim, show_name=True)
    return (jnp.asarray(nll_logit) - jnp.asarray(log_det)) / (dim * math.log(2.0))

"""Exact log densities of the 2-D toys that have one (8gaussians, checkerboard)."""

from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Real

from ._toy2d import (
    checkerboard_scale,
    eight_gaussians_centers,
    eight_gaussians_std,
    TOY2D_NAMES,
)


def _eight_gaussians_log_density(x: Any, xp: ModuleType) -> Any:
    centers = xp.asarray(eight_gaussians_centers(), dtype=x.dtype)
    var = eight_gaussians_std() ** 2
    sq_dist = xp.sum((x[..., None, :] - centers) ** 2, axis=-1)
    log_components = -sq_dist / (2 * var) - np.log(2 * np.pi * var) - np.log(8.0)
    peak = xp.max(log_components, axis=-1)
    return peak + xp.log(xp.sum(xp.exp(log_components - peak[..., None]), axis=-1))


def _on_black_square(u: Any, xp: ModuleType) -> Any:
    # Closed black squares: a point on an edge or corner counts as inside, so float32 rounding
    # of a sample onto a square's boundary never gives -inf. Cell k covers [k, k + 1].
    low = [xp.floor(u[..., i]) for i in range(2)]
    high = [xp.ceil(u[..., i]) - 1 for i in range(2)]
    inside = xp.zeros(u.shape[:-1], dtype=bool)
    for k1 in (low[0], high[0]):
        for k2 in (low[1], high[1]):
            in_board = (k1 >= -2) & (k1 <= 1) & (k2 >= -2) & (k2 <= 1)
            inside = inside | (in_board & ((k1 + k2) % 2 == 0))
    return inside


def _checkerboard_log_density(x: Any, xp: ModuleType) -> Any:
    scale = checkerboard_scale()
    u = x / scale
    inside = _on_black_square(u, xp)
    log_p = -np.log(checkerboard_area())
    return xp.where(inside, xp.asarray(log_p, dtype=x.dtype), xp.asarray(-np.inf, dtype=x.dtype))


def checkerboard_area() -> float:
    """Area of the checkerboard's support: 8 black unit squares, scaled by FFJORD's factor 2."""
    return 8 * checkerboard_scale() ** 2


_LOG_DENSITIES: dict[str, Callable[[Any, ModuleType], Any]] = {
    "8gaussians": _eight_gaussians_log_density,
    "checkerboard": _checkerboard_log_density,
}

ANALYTIC_NAMES: tuple[str, ...] = tuple(sorted(_LOG_DENSITIES))


def check_analytic_name(name: str) -> None:
    """Raise a `ValueError` unless `name` is a toy with an exact density."""
    if name in _LOG_DENSITIES:
        return
    if name in TOY2D_NAMES:
        raise ValueError(
            f"`name` must be a 2-D toy with an analytic density, one of {list(ANALYTIC_NAMES)}; "
            f"got name={name!r}, a toy without one (`log_density` and `true_entropy` need it)."
        )
    raise ValueError(
        f"`name` must be a 2-D toy with an analytic density, one of {list(ANALYTIC_NAMES)}; "
        f"got name={name!r}."
    )


def log_density(name: str, x: Real[ArrayLike, "*batch 2"]) -> Float[ArrayLike, "*batch"]:
    """Exact log density of a 2-D toy at the points `x`, vectorised over leading axes.

    NumPy input (or a list) is evaluated in NumPy and returns NumPy; a JAX array (or tracer) is
    evaluated with `jax.numpy`, so this works inside `jax.jit` with `name` static. The densities
    are those of the data FFJORD's generators produce: for `"8gaussians"` an equal mixture of 8
    isotropic Gaussians with centres `4 c / 1.414` (`c` on the unit circle) and standard deviation
    `0.5 / 1.414`; for `"checkerboard"` the uniform density `1 / 32` on the 8 closed black squares
    of side 2 inside `[-4, 4]^2`, and `-inf` elsewhere.

    **Arguments:**

    - `name`: `"8gaussians"` or `"checkerboard"`; other toys raise a `ValueError`.
    - `x`: points of shape `(..., 2)`.

    **Returns:**

    The log density, shape `(...)`, in `x`'s floating dtype (float64 for integer input).
    """
    check_analytic_name(name)
    xp = jnp if isinstance(x, jax.Array) else np
    x = xp.asarray(x)
    if not xp.issubdtype(x.dtype, xp.floating):
        x = x.astype(xp.float64 if xp is np else jnp.result_type(float))
    if x.ndim < 1 or x.shape[-1] != 2:
        raise ValueError(f"`x` must have shape (..., 2); got shape {tuple(x.shape)}.")
    return _LOG_DENSITIES[name](x, xp)

"""The multiscale continuous normalizing flow of FFJORD (Grathwohl et al. 2019, §4.1), after
RealNVP's multiscale architecture (Dinh et al. 2017).

An image `x` of shape `(C, H, W)` goes through `scales` scales. At scale `i` (of shape
`(c, h, w)`, starting at the image's):

1. `blocks` CNFs with a [`node_kit.ConvField`][] on `(c, h, w)`;
2. unless it is the last scale: a squeeze to `(4c, h/2, w/2)` (each 2x2 patch of a channel
   becomes four channels: a permutation, log-determinant 0), `blocks` CNFs on that shape,
   and half the channels factored out: `(2c, h/2, w/2)` are the base variables of this
   scale, the other `(2c, h/2, w/2)` go on to the next.

The base variables of every scale, flattened and joined (`C * H * W` in all), are standard
normal, and the log-density sums the log-determinants of every block:
`log p(x) = log N(z; 0, I) + Σ_blocks ∫ tr(∂f/∂h) dt`. Each block is a [`node_kit.CNF`][]
on the flattened image of its scale, so each has the CNF's trace estimators, adjoints and
failure checks; sampling runs the blocks backwards in reverse order.
"""

import itertools
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import as_array, check_int, check_key, check_optional_int
from ._cnf import CNF
from ._cnf_dynamics import standard_normal_log_prob
from ._conv_field import check_image_shape, ConvField, ImageShape
from ._solve import SolveSettings
from ._trace import AbstractTraceEstimator, ExactTrace


def squeeze(x: Float[Array, "*batch c h w"]) -> Float[Array, "*batch 4c h/2 w/2"]:
    """Each 2x2 patch of each channel becomes four channels (RealNVP's squeeze).

    Output channel `4k + 2a + b` holds input channel `k` at rows `2i + a`, columns
    `2j + b`: the layout of FFJORD's `SqueezeLayer`. `height` and `width` must be even.
    """
    *batch, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(
            f"squeeze needs an even height and width; got an image of shape {(c, h, w)}. Use "
            "fewer scales, or pad or crop the images to even sizes."
        )
    x = x.reshape(*batch, c, h // 2, 2, w // 2, 2)
    x = jnp.moveaxis(x, (-3, -1), (-4, -3))  # (*batch, c, 2, 2, h/2, w/2)
    return x.reshape(*batch, 4 * c, h // 2, w // 2)


def unsqueeze(x: Float[Array, "*batch c4 h w"]) -> Float[Array, "*batch c 2h 2w"]:
    """The inverse of [`node_kit.squeeze`][]."""
    *batch, c4, h, w = x.shape
    if c4 % 4:
        raise ValueError(f"unsqueeze needs channels divisible by 4; got {c4}.")
    x = x.reshape(*batch, c4 // 4, 2, 2, h, w)
    x = jnp.moveaxis(x, (-4, -3), (-3, -1))  # (*batch, c, h, 2, w, 2)
    return x.reshape(*batch, c4 // 4, 2 * h, 2 * w)


def default_scales(shape: ImageShape) -> int:
    """FFJORD's number of scales: one per halving while the height and width are at least 4
    (and even, so that the squeeze is defined): 3 for 28x28 MNIST, 2 for 8x8 digits."""
    _, h, w = check_image_shape("shape", shape)
    scales = 0
    while h >= 4 and w >= 4:
        scales += 1
        if h % 2 or w % 2:
            break
        h, w = h // 2, w // 2
    return max(scales, 1)


def scale_shapes(shape: ImageShape, scales: int) -> tuple[ImageShape, ...]:
    """The shape each scale starts at: `shape`, then `(2c, h/2, w/2)` after every squeeze and
    factor-out. A `ValueError` names `scales` when a squeeze would meet an odd size."""
    c, h, w = check_image_shape("shape", shape)
    check_int("scales", scales)
    shapes = [(c, h, w)]
    for _ in range(scales - 1):
        if h % 2 or w % 2:
            raise ValueError(
                f"`scales`={scales} squeezes the image {scales - 1} times, but the scale of "
                f"shape {(c, h, w)} has an odd height or width, which a squeeze cannot halve. "
                f"Use scales <= {len(shapes)} for images of shape {tuple(shape)}, or pad them "
                "to even sizes."
            )
        c, h, w = 2 * c, h // 2, w // 2
        shapes.append((c, h, w))
    return tuple(shapes)


class MultiscaleCNF(eqx.Module):
    """FFJORD's multiscale CNF on images `(C, H, W)` (see the module docstring).

    The flow's input is the image in the space its density is wanted in: for pixels, the
    dequantized and logit-transformed image of [`node_kit.datasets.preprocess`][], whose
    log-determinant converts the density to pixel units and to bits per dimension
    ([`node_kit.datasets.bits_per_dim`][]).

    **Arguments:**

    - `shape`: the image shape `(channels, height, width)`.
    - `scales`: number of scales; default [`node_kit.default_scales`][] (3 for 28x28).
        Every scale but the last squeezes, so it needs even sizes there.
    - `blocks`: CNF blocks per stage (two stages per scale but the last), default 2 as
        FFJORD's MNIST model.
    - `width`, `depth`, `kernel_size`, `activation`: of each block's
        [`node_kit.ConvField`][] (FFJORD: 64, 3, 3, softplus).
    - `trace_estimator`: of every block: `ExactTrace()` (default) or `HutchinsonTrace()`.
    - `t1`: each block's end time.
    - `settings`: a [`node_kit.SolveSettings`][] for every block; or its arguments as
        keywords (`solver=...`, `adjoint=...`).
    - `key`: a `jax.random` key, keyword-only.
    """

    shape: ImageShape = eqx.field(static=True)
    stages: tuple[tuple[CNF, ...], ...]

    def __init__(
        self,
        shape: ImageShape,
        *,
        scales: int | None = None,
        blocks: int = 2,
        width: int = 64,
        depth: int = 3,
        kernel_size: int = 3,
        activation: Callable = jax.nn.softplus,
        trace_estimator: AbstractTraceEstimator = ExactTrace(),
        t1: float = 1.0,
        settings: SolveSettings | None = None,
        key: PRNGKeyArray,
        **solve_keywords: Any,
    ):
        self.shape = check_image_shape("shape", shape)
        scales = check_optional_int("scales", scales)
        scales = default_scales(self.shape) if scales is None else scales
        check_int("blocks", blocks)
        settings = SolveSettings.of(settings, **solve_keywords)
        shapes = _stage_shapes(scale_shapes(self.shape, scales))
        keys = jr.split(check_key("key", key), len(shapes) * blocks)
        self.stages = tuple(
            tuple(
                CNF(
                    ConvField(
                        stage_shape,
                        width,
                        depth,
                        kernel_size=kernel_size,
                        activation=activation,
                        key=keys[i * blocks + j],
                    ),
                    trace_estimator=trace_estimator,
                    t1=t1,
                    settings=settings,
                )
                for j in range(blocks)
            )
            for i, stage_shape in enumerate(shapes)
        )

    @property
    def scales(self) -> int:
        """The number of scales (each but the last has two stages)."""
        return (len(self.stages) + 1) // 2

    @property
    def data_size(self) -> int:
        """`C * H * W`, the number of base variables."""
        return math.prod(self.shape)

    @property
    def settings(self) -> SolveSettings:
        """The blocks' solve settings."""
        return self.stages[0][0].settings

    def with_settings(self, settings: SolveSettings) -> "MultiscaleCNF":
        """The same flow with every block's settings replaced."""
        return self._map_blocks(lambda block: block.with_settings(settings))

    def with_trace_estimator(self, trace_estimator: AbstractTraceEstimator) -> "MultiscaleCNF":
        """The same flow with every block's trace estimator replaced."""
        return self._map_blocks(lambda block: block.with_trace_estimator(trace_estimator))

    def log_prob(
        self, x: Float[Array, "c h w"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, ""]:
        """Log-density of one image `(C, H, W)` (the batch of one, as one solve per block)."""
        return self.log_prob_batched(self._check_images(x, batched=False)[None], key=key)[0]

    def log_prob_batched(
        self, xs: Float[Array, "batch c h w"], *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " batch"]:
        """Log-densities of a batch of images `(batch, C, H, W)`."""
        return self.log_prob_and_stats_batched(xs, key=key)[0]

    def log_prob_and_stats_batched(
        self,
        xs: Float[Array, "batch c h w"],
        *,
        key: PRNGKeyArray | None = None,
        regularise: bool = False,
    ) -> tuple[Float[Array, " batch"], dict[str, Array]]:
        """Log-densities of a batch, each block solving the batch as ONE ODE.

        **Arguments:**

        - `xs`: images, shape `(batch, C, H, W)`, finite.
        - `key`: draws every block's Hutchinson probes (one key per block); unused by
            `ExactTrace`.
        - `regularise`: also integrate the RNODE regularisers in every block.

        **Returns:**

        `(log_prob, stats)`: `log_prob` of shape `(batch,)`; `stats["num_steps"]` the
        solver steps of all blocks together (a scalar) and `stats["num_steps_per_block"]`
        each block's, shape `(num_blocks,)`; with `regularise`, `"kinetic_energy"` and
        `"jacobian_norm"` summed over the blocks, shape `(batch,)`.
        """
        zs, log_det, stats = self.transform_and_log_det_batched(xs, key=key, regularise=regularise)
        return standard_normal_log_prob(zs) + log_det, stats

    def transform_and_log_det_batched(
        self,
        xs: Float[Array, "batch c h w"],
        *,
        key: PRNGKeyArray | None = None,
        regularise: bool = False,
    ) -> tuple[Float[Array, "batch dim"], Float[Array, " batch"], dict[str, Array]]:
        """The base variables of a batch, flattened and joined over the scales (finest
        first), with the summed log-determinant: `log p(x) = log N(z) + log_det`."""
        h = self._check_images(xs, batched=True)
        batch = h.shape[0]
        keys = self._block_keys(key)
        log_det = jnp.zeros((batch,), h.dtype)
        factored, steps, totals = [], [], {}
        for index, (stage, stage_keys) in enumerate(zip(self.stages, keys)):
            if index % 2 == 1:
                h = squeeze(h)
            for block, block_key in zip(stage, stage_keys):
                stage_shape = h.shape[1:]
                z, block_log_det, stats = block.transform_and_log_det_batched(
                    h.reshape(batch, -1), key=block_key, regularise=regularise
                )
                h = z.reshape(batch, *stage_shape)
                log_det = log_det + block_log_det
                steps.append(stats.pop("num_steps"))
                for name, value in stats.items():
                    totals[name] = totals.get(name, 0.0) + value
            if index % 2 == 1:
                half = h.shape[1] // 2
                factored.append(h[:, half:].reshape(batch, -1))
                h = h[:, :half]
        factored.append(h.reshape(batch, -1))
        steps = jnp.stack(steps)
        stats = {"num_steps": jnp.sum(steps), "num_steps_per_block": steps, **totals}
        return jnp.concatenate(factored, axis=1), log_det, stats

    def inverse_batched(self, zs: Float[Array, "batch dim"]) -> Float[Array, "batch c h w"]:
        """Map base variables `(batch, C * H * W)` (joined as
        [`node_kit.MultiscaleCNF.transform_and_log_det_batched`][] gives them) to images."""
        zs = as_array("zs", zs, "a floating-point array")
        if zs.ndim != 2 or zs.shape[1] != self.data_size:
            raise ValueError(
                f"`zs` must have shape (batch, {self.data_size}) (C * H * W base variables "
                f"per image of shape {self.shape}); got shape {tuple(zs.shape)}."
            )
        batch = zs.shape[0]
        shapes = _stage_shapes(scale_shapes(self.shape, self.scales))
        # The factored-out parts, finest scale first, then what reached the last scale.
        sizes = [math.prod(shapes[i]) // 2 for i in range(1, len(shapes), 2)]
        parts = jnp.split(zs, list(itertools.accumulate(sizes)), axis=1)
        h = parts[-1].reshape(batch, *shapes[-1])
        for index in reversed(range(len(self.stages))):
            stage_shape = shapes[index]
            if index % 2 == 1:
                out = (stage_shape[0] // 2, *stage_shape[1:])
                h = jnp.concatenate([h, parts[index // 2].reshape(batch, *out)], axis=1)
            for block in reversed(self.stages[index]):
                h = block.inverse_batched(h.reshape(batch, -1)).reshape(batch, *stage_shape)
            if index % 2 == 1:
                h = unsqueeze(h)
        return h

    def sample_batched(self, n: int, *, key: PRNGKeyArray) -> Float[Array, "n c h w"]:
        """Draw `n` images: standard normal base variables mapped back through every block."""
        check_int("n", n)
        zs = jr.normal(check_key("key", key), (n, self.data_size), dtype=jnp.result_type(float))
        return self.inverse_batched(zs)

    def _block_keys(self, key) -> list[list[Any]]:
        if key is None:
            return [[None] * len(stage) for stage in self.stages]
        check_key("key", key)
        flat = list(jr.split(key, sum(len(stage) for stage in self.stages)))
        out, start = [], 0
        for stage in self.stages:
            out.append(flat[start : start + len(stage)])
            start += len(stage)
        return out

    def _map_blocks(self, fn: Callable[[CNF], CNF]) -> "MultiscaleCNF":
        stages = tuple(tuple(fn(block) for block in stage) for stage in self.stages)
        return eqx.tree_at(lambda m: m.stages, self, stages)

    def _check_images(self, xs, *, batched: bool) -> Array:
        name = "xs" if batched else "x"
        xs = as_array(name, xs, "a floating-point array of images")
        expected = (-1, *self.shape) if batched else self.shape
        shape_ok = xs.ndim == len(expected) and xs.shape[xs.ndim - 3 :] == self.shape
        if not jnp.issubdtype(xs.dtype, jnp.floating) or not shape_ok:
            layout = "(batch, C, H, W)" if batched else "(C, H, W)"
            raise ValueError(
                f"`{name}` must be floating-point images of shape {layout} = "
                f"{'(batch, ' if batched else '('}{', '.join(map(str, self.shape))}); got "
                f"shape {tuple(xs.shape)} and dtype {xs.dtype}. Reshape flat data with "
                f"`{name}.reshape({'-1, ' if batched else ''}{', '.join(map(str, self.shape))})`"
                " and convert integer pixels with dequantize (and the logit transform) first."
            )
        return xs


def _stage_shapes(shapes: tuple[ImageShape, ...]) -> tuple[ImageShape, ...]:
    """The shape of each stage: per scale its own, then (but for the last) the squeezed."""
    out = []
    for index, (c, h, w) in enumerate(shapes):
        out.append((c, h, w))
        if index < len(shapes) - 1:
            out.append((4 * c, h // 2, w // 2))
    return tuple(out)

"""Convolutional vector fields for images: FFJORD's concat-squash convolution and a field
built from it.

The state of one image is `(channels, height, width)`. A [`node_kit.CNF`][] and
[`node_kit.NeuralODE`][] work on flat states, so [`node_kit.ConvField`][] takes either the
image or its flattening (row-major, `C * H * W` entries) and returns the same shape it was
given: any trace estimator and any adjoint then apply unchanged.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray, Real

from ._checks import check_callable, check_int, check_ints, check_key, type_name
from ._custom_types import Args
from ._resources import check_fits
from ._vector_field import AbstractVectorField


ImageShape = tuple[int, int, int]


def check_image_shape(name: str, shape) -> ImageShape:
    """`shape` as a `(channels, height, width)` tuple of positive ints, or a `ValueError`
    naming `name`."""
    ok = isinstance(shape, (tuple, list)) and len(shape) == 3
    if ok:
        try:
            return tuple(check_ints(1, **{f"{name}[{i}]": s for i, s in enumerate(shape)}))  # type: ignore[return-value]
        except ValueError:
            ok = False
    raise ValueError(
        f"`{name}` must be an image shape (channels, height, width) of three positive ints; "
        f"got {shape!r} ({type_name(shape)}). E.g. {name}=(1, 28, 28) for MNIST."
    )


class ConcatSquashConv2d(eqx.Module):
    """FFJORD's time-gated convolution: `conv(y) * sigmoid(g t + c) + h t`, per channel.

    Time enters every layer as in FFJORD's `ConcatSquashConv2d`: a gate and a bias, one
    per output channel, both affine in `t`. The convolution keeps the height and width
    (stride 1, "same" zero padding).

    **Arguments:**

    - `in_channels`, `out_channels`: channel counts, positive ints.
    - `kernel_size`: an odd positive int (default 3).
    - `key`: a `jax.random` key, keyword-only.
    """

    conv: eqx.nn.Conv2d
    gate: eqx.nn.Linear
    hyper_bias: eqx.nn.Linear

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, *, key: PRNGKeyArray
    ):
        in_channels, out_channels = check_ints(
            1, in_channels=in_channels, out_channels=out_channels
        )
        check_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"`kernel_size` must be odd so that the convolution keeps the image size; got "
                f"{kernel_size}. E.g. kernel_size=3."
            )
        k1, k2, k3 = jr.split(check_key("key", key), 3)
        self.conv = eqx.nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, key=k1
        )
        self.gate = eqx.nn.Linear(1, out_channels, key=k2)
        self.hyper_bias = eqx.nn.Linear(1, out_channels, use_bias=False, key=k3)

    def __call__(
        self, t: Real[Array, ""], y: Float[Array, "in height width"]
    ) -> Float[Array, "out height width"]:
        t = jnp.asarray(t, dtype=y.dtype)[None]
        gate = jax.nn.sigmoid(self.gate(t))[:, None, None]
        return self.conv(y) * gate + self.hyper_bias(t)[:, None, None]


class ConvField(AbstractVectorField):
    """A convolutional vector field on images: a stack of [`node_kit.ConcatSquashConv2d`][].

    `depth` hidden layers of `width` channels with `activation` between them, then a
    layer back to the image's channels (FFJORD's MNIST field is width 64, depth 3,
    softplus). The field maps an image `(C, H, W)`, or its row-major flattening
    `(C * H * W,)`, to the same shape, so `nk.CNF(ConvField(...))` trains on flat states.

    **Arguments:**

    - `shape`: the image shape `(channels, height, width)`.
    - `width`: hidden channels, a positive int.
    - `depth`: hidden layers, an int from 0 (0: one convolution).
    - `kernel_size`: an odd positive int (default 3).
    - `activation`: hidden nonlinearity (default softplus, smooth as an ODE needs).
    - `key`: a `jax.random` key, keyword-only.
    """

    shape: ImageShape = eqx.field(static=True)
    layers: tuple[ConcatSquashConv2d, ...]
    activation: Callable

    def __init__(
        self,
        shape: ImageShape,
        width: int,
        depth: int,
        *,
        kernel_size: int = 3,
        activation: Callable = jax.nn.softplus,
        key: PRNGKeyArray,
    ):
        self.shape = check_image_shape("shape", shape)
        (width,) = check_ints(1, width=width)
        (depth,) = check_ints(0, depth=depth)
        check_callable("activation", activation, expected="a callable such as jax.nn.softplus")
        check_key("key", key)
        channels = self.shape[0]
        sizes = [channels] + [width] * depth + [channels]
        num_weights = sum(i * o * kernel_size**2 + 3 * o for i, o in zip(sizes, sizes[1:]))
        check_fits(
            4 * num_weights,
            what=f"a ConvField of width={width} and depth={depth} (its float32 weights)",
            lower="Lower `width` (or `depth`).",
        )
        keys = jr.split(key, len(sizes) - 1)
        self.layers = tuple(
            ConcatSquashConv2d(i, o, kernel_size, key=k)
            for i, o, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.activation = activation

    @property
    def data_size(self) -> int:
        """`C * H * W`: the size of a flattened image."""
        channels, height, width = self.shape
        return channels * height * width

    @property
    def state_size(self) -> int:
        """The state is the image: `data_size`."""
        return self.data_size

    def __call__(
        self, t: Real[Array, ""], y: Float[Array, "..."], args: Args
    ) -> Float[Array, "..."]:
        del args
        if y.shape not in (self.shape, (self.data_size,)):
            raise ValueError(
                f"ConvField's state must be one image of shape {self.shape} or its flattening "
                f"({self.data_size},); got shape {tuple(y.shape)}. For a batch, use the "
                "models' *_batched methods or jax.vmap."
            )
        h = y.reshape(self.shape)
        for layer in self.layers[:-1]:
            h = self.activation(layer(t, h))
        return self.layers[-1](t, h).astype(y.dtype).reshape(y.shape)

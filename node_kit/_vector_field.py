"""Vector fields `f(t, y, args) -> dy/dt` for ONE unbatched sample.

Any callable with that signature is a vector field. One that also knows its sizes
subclasses [`node_kit.AbstractVectorField`][]: the models then check `y0` against
`data_size` and pad it with zeros up to `state_size` (an augmented field), by size and
never by type.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray, Real

from ._checks import check_callable, check_int, check_ints, check_key
from ._custom_types import Args
from ._resources import check_fits, mlp_parameter_bytes


class AbstractVectorField(eqx.Module):
    """A vector field `f(t, y, args)` for ONE sample that declares its sizes.

    Subclasses provide `data_size` and `state_size` (as fields or properties) and
    `__call__`. A field that knows no size (a wrapper around an arbitrary callable) may
    give `None` for both.

    - `data_size`: the size of the data `y0` a model is given, shape `(data_size,)`.
    - `state_size`: the size of the ODE state the field acts on: `data_size`, or more
        for an augmented field, whose extra entries start at zero.
    """

    data_size: eqx.AbstractVar[int | None]
    state_size: eqx.AbstractVar[int | None]

    @abc.abstractmethod
    def __call__(
        self, t: Real[Array, ""], y: Float[Array, " state"], args: Args
    ) -> Float[Array, " state"]:
        """`dy/dt` at `(t, y)`, the shape of `y`."""


def field_sizes(field: Callable) -> tuple[int | None, int | None]:
    """`(data_size, state_size)` of a field, `(None, None)` if it declares none."""
    if isinstance(field, AbstractVectorField):
        return field.data_size, field.state_size
    return None, None


def pad_to_state(field: Callable, y: Float[Array, "*batch data"]) -> Float[Array, "*batch state"]:
    """Pad `y` with zeros along its last axis from the field's `data_size` to `state_size`."""
    data_size, state_size = field_sizes(field)
    if data_size is None or state_size is None or state_size == data_size:
        return y
    return jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, state_size - data_size)])


def _check_mlp(
    data_size: int, width_size: int, depth: int, activation: Callable, key: PRNGKeyArray
) -> tuple[int, int, int]:
    """The checked sizes of a field's MLP (positive data and width, depth from 0), its
    hidden activation and its key."""
    data_size, width_size = check_ints(1, data_size=data_size, width_size=width_size)
    (depth,) = check_ints(0, depth=depth)
    check_callable("activation", activation, expected="a callable such as jnp.tanh")
    check_key("key", key)
    check_fits(
        mlp_parameter_bytes(data_size + 1, data_size, width_size, depth),
        what=f"a field MLP of width_size={width_size} and depth={depth} (its float32 weights)",
        lower="Lower `width_size` (or `depth`).",
    )
    return data_size, width_size, depth


class MLPField(AbstractVectorField):
    """A multilayer perceptron on `[t, y]`: time concatenated to the state.

    **Arguments:**

    - `data_size`: size of the state `y`, shape `(data_size,)`.
    - `width_size`, `depth`: hidden width and number of hidden layers.
    - `activation`: hidden nonlinearity (default softplus, smooth as an ODE needs).
    - `final_activation`: applied to the output (default identity; `jnp.tanh`
        bounds the field and often stabilises training).
    - `key`: a `jax.random` key, keyword-only.
    """

    data_size: int = eqx.field(static=True)
    mlp: eqx.nn.MLP

    def __init__(
        self,
        data_size: int,
        width_size: int,
        depth: int,
        *,
        activation: Callable = jax.nn.softplus,
        final_activation: Callable = lambda x: x,
        key: PRNGKeyArray,
    ):
        data_size, width_size, depth = _check_mlp(data_size, width_size, depth, activation, key)
        check_callable(
            "final_activation",
            final_activation,
            expected="a callable such as jnp.tanh (or lambda x: x)",
        )
        self.data_size = data_size
        self.mlp = eqx.nn.MLP(
            data_size + 1, data_size, width_size, depth, activation, final_activation, key=key
        )

    def __call__(
        self, t: Real[Array, ""], y: Float[Array, " data_size"], args: Args
    ) -> Float[Array, " data_size"]:
        del args
        t = jnp.asarray(t, dtype=y.dtype)
        return self.mlp(jnp.concatenate([t[None], y])).astype(y.dtype)

    @property
    def state_size(self) -> int:
        """The state is the data: `data_size`."""
        return self.data_size


class ConcatSquashLinear(eqx.Module):
    """FFJORD's time-gated linear layer: `(W y + b) * sigmoid(g t + c) + h t`."""

    linear: eqx.nn.Linear
    gate: eqx.nn.Linear
    hyper_bias: eqx.nn.Linear

    def __init__(self, in_size: int, out_size: int, *, key: PRNGKeyArray):
        in_size, out_size = check_ints(1, in_size=in_size, out_size=out_size)
        k1, k2, k3 = jr.split(check_key("key", key), 3)
        self.linear = eqx.nn.Linear(in_size, out_size, key=k1)
        self.gate = eqx.nn.Linear(1, out_size, key=k2)
        self.hyper_bias = eqx.nn.Linear(1, out_size, use_bias=False, key=k3)

    def __call__(self, t: Real[Array, ""], y: Float[Array, " in"]) -> Float[Array, " out"]:
        t = jnp.asarray(t, dtype=y.dtype)[None]
        return self.linear(y) * jax.nn.sigmoid(self.gate(t)) + self.hyper_bias(t)


class ConcatSquashField(AbstractVectorField):
    """FFJORD's vector field: a stack of [`node_kit.ConcatSquashLinear`][] layers.

    Time enters every layer through a sigmoid gate and a bias, so the field can
    change character along the flow (Grathwohl et al. 2019).

    **Arguments:**

    - `data_size`: size of the state, shape `(data_size,)`.
    - `width_size`, `depth`: hidden width and number of hidden layers.
    - `activation`: hidden nonlinearity (default `jnp.tanh`, as FFJORD's toys).
    - `key`: a `jax.random` key, keyword-only.
    """

    data_size: int = eqx.field(static=True)
    layers: tuple[ConcatSquashLinear, ...]
    activation: Callable

    def __init__(
        self,
        data_size: int,
        width_size: int,
        depth: int,
        *,
        activation: Callable = jnp.tanh,
        key: PRNGKeyArray,
    ):
        data_size, width_size, depth = _check_mlp(data_size, width_size, depth, activation, key)
        sizes = [data_size] + [width_size] * depth + [data_size]
        keys = jr.split(key, len(sizes) - 1)
        self.layers = tuple(
            ConcatSquashLinear(i, o, key=k) for i, o, k in zip(sizes[:-1], sizes[1:], keys)
        )
        self.activation = activation
        self.data_size = data_size

    def __call__(
        self, t: Real[Array, ""], y: Float[Array, " data_size"], args: Args
    ) -> Float[Array, " data_size"]:
        del args
        h = y
        for layer in self.layers[:-1]:
            h = self.activation(layer(t, h))
        return self.layers[-1](t, h).astype(y.dtype)

    @property
    def state_size(self) -> int:
        """The state is the data: `data_size`."""
        return self.data_size


class AugmentedField(AbstractVectorField):
    """Augmented neural ODE (ANODE, Dupont et al. 2019): extra zero-initialised dimensions.

    Wraps a field on the augmented state of size `data_size + augment_size`.
    [`node_kit.NeuralODE`][] accepts `y0` of size `data_size` and pads it with zeros
    (because `state_size > data_size`); the returned states are augmented (a classifier
    head may use the extra dimensions); [`node_kit.AugmentedField.project`][] drops them.

    **Arguments:**

    - `field`: an [`node_kit.AbstractVectorField`][] whose `data_size` is the augmented size.
    - `augment_size`: number of extra dimensions, a positive integer.
    """

    field: AbstractVectorField
    augment_size: int = eqx.field(static=True)
    data_size: int = eqx.field(static=True)

    def __init__(self, field: AbstractVectorField, augment_size: int):
        state_size = field_sizes(field)[0]
        if state_size is None:
            raise ValueError(
                "`field` must expose `data_size` (the augmented state size) so the "
                f"padding can be checked; got {type(field).__name__} without it. Use "
                "MLPField or ConcatSquashField with data_size = data + augment_size, or "
                "subclass node_kit.AbstractVectorField."
            )
        check_int(
            "augment_size",
            augment_size,
            minimum=1,
            maximum=state_size - 1,
            fix=f"The field's state has {state_size} dims.",
        )
        self.field = field
        self.augment_size = augment_size
        self.data_size = state_size - augment_size

    @property
    def state_size(self) -> int:
        """`data_size + augment_size`, the wrapped field's size."""
        return self.data_size + self.augment_size

    def __call__(
        self, t: Real[Array, ""], y: Float[Array, " state"], args: Args
    ) -> Float[Array, " state"]:
        return self.field(t, y, args)

    def augment(self, y: Float[Array, "*batch data_size"]) -> Float[Array, "*batch state"]:
        """Pad `y` with `augment_size` zeros along its last axis."""
        return pad_to_state(self, y)

    def project(self, ys: Float[Array, "*batch state"]) -> Float[Array, "*batch data_size"]:
        """Drop the augmented dimensions (the last `augment_size` entries)."""
        return ys[..., : self.data_size]

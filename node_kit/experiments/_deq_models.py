"""The three digit classifiers of `python -m node_kit.experiments.deq`, and their sizes.

Each one maps a batch of 64 scaled pixels to 10 logits and says how many forward
iterations it took:

- [`DEQClassifier`][]: `z* = tanh(W z* + U x + b)` (a [`node_kit.DEQ`][]), then a
    linear readout. `W` is rescaled to spectral norm at most `radius < 1` at each call,
    so `f` is a contraction in `z` (`tanh` is 1-Lipschitz): the fixed point exists and
    every solver converges, during training too.
- [`ODEClassifier`][]: a linear encoder, a [`node_kit.NeuralODE`][] over `t in [0, 1]`
    with an MLP field, a linear readout.
- [`MLPClassifier`][]: an `equinox.nn.MLP` with `depth` hidden layers.

[`matched_width`][] picks the hidden width that brings a model's parameter count
closest to a target (the DEQ's), so the comparison is at equal size.
"""

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, Int, PRNGKeyArray

import node_kit as nk
from node_kit._solve import saved_states


NUM_PIXELS = 64
NUM_CLASSES = 10


def parameter_count(model) -> int:
    """The number of trained scalars: the sizes of the floating arrays of `model` (arrays
    or, for a model built by `equinox.filter_eval_shape`, their shapes)."""
    leaves = jax.tree_util.tree_leaves(model)
    return int(
        sum(
            math.prod(leaf.shape)
            for leaf in leaves
            if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact)
        )
    )


class AbstractClassifier(eqx.Module):
    """A classifier of a batch: logits, and how many forward iterations it took."""

    @abc.abstractmethod
    def logits(self, xs: Float[Array, "batch 64"]) -> tuple[Float[Array, "batch 10"], dict]:
        """`(logits, stats)`: `stats` a dict of scalars to log (may be empty)."""

    @abc.abstractmethod
    def iterations(self, stats: dict) -> Int[Array, ""]:
        """The forward iterations of a batch, from the `stats` of its `logits`."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The architecture in a line, with its widths."""


class TanhCell(eqx.Module):
    """`f(z, u) = tanh(W z + u)`: the DEQ's layer; `u = U x + b` is injected from outside.

    [`TanhCell.contractive`][] gives the cell the classifier solves, whose `W` is
    rescaled to spectral norm at most `radius`.
    """

    weight: Float[Array, "width width"]
    radius: float = eqx.field(static=True)

    def __init__(self, width: int, radius: float, *, key: PRNGKeyArray):
        self.radius = radius
        # Spectral norm about radius / 2 at the start (about 2 / sqrt(width) for N(0, 1/width)).
        self.weight = jr.normal(key, (width, width)) * (0.25 * radius / width**0.5)

    def __call__(self, z: Float[Array, " width"], u: Float[Array, " width"]):
        return jnp.tanh(self.weight @ z + u)

    def contractive(self) -> "TanhCell":
        """This cell with `W` scaled down to spectral norm `radius` where it is larger.

        The norm is `|W v|` for `v` the top eigenvector of `W^T W` (not differentiated),
        which is exact and has the exact gradient; one 64-square `eigh`, about 1 ms.
        """
        gram = jax.lax.stop_gradient(self.weight.T @ self.weight)
        top = jnp.linalg.eigh(gram)[1][:, -1]
        norm = jnp.linalg.norm(self.weight @ top)
        scale = jnp.minimum(1.0, self.radius / jnp.maximum(norm, 1e-12))
        return eqx.tree_at(lambda cell: cell.weight, self, self.weight * scale)


class DEQClassifier(AbstractClassifier):
    """Pixels -> `u = U x + b` -> `z* = tanh(W z* + u)` -> linear readout."""

    injection: eqx.nn.Linear
    deq: nk.DEQ
    readout: eqx.nn.Linear

    def __init__(
        self,
        width: int,
        *,
        radius: float,
        solver,
        backward: str,
        max_steps: int,
        linear_solver=None,
        key: PRNGKeyArray,
    ):
        inject_key, cell_key, readout_key = jr.split(key, 3)
        self.injection = eqx.nn.Linear(NUM_PIXELS, width, key=inject_key)
        self.deq = nk.DEQ(
            TanhCell(width, radius, key=cell_key),
            width,
            solver=solver,
            backward=backward,
            max_steps=max_steps,
            linear_solver=linear_solver,
        )
        self.readout = eqx.nn.Linear(width, NUM_CLASSES, key=readout_key)

    def inputs(self, xs):
        """The injected inputs `u = U x + b` of a batch: what the DEQ's `f` sees."""
        return jax.vmap(self.injection)(xs)

    def layer(self) -> nk.DEQ:
        """The DEQ the classifier solves: its cell made contractive (`TanhCell.contractive`)."""
        return self.with_deq(f=self.deq.f.contractive()).deq

    def logits(self, xs):
        sol = self.layer().solve_batched(self.inputs(xs))
        stats = {"num_steps": sol.num_steps, "relative_residual": sol.relative_residual}
        return jax.vmap(self.readout)(sol.value), stats

    def iterations(self, stats):
        return stats["num_steps"]

    def describe(self):
        width = self.readout.in_features
        cell = self.deq.f
        return (
            f"u = U x + b (64 -> {width}); z* = tanh(W z* + u), |W|_2 <= {cell.radius}; "
            f"linear {width} -> 10"
        )

    def with_deq(self, **changes) -> "DEQClassifier":
        """The same parameters with other DEQ settings (`solver=`, `backward=`, `f=`...)."""
        return eqx.tree_at(lambda m: m.deq, self, self.deq.replace(**changes))


class ODEClassifier(AbstractClassifier):
    """Pixels -> linear encoder -> NeuralODE over `[0, 1]` (batch as one state) -> readout."""

    encoder: eqx.nn.Linear
    ode: nk.NeuralODE
    readout: eqx.nn.Linear

    def __init__(
        self, width: int, field_width: int, *, settings: nk.SolveSettings, key: PRNGKeyArray
    ):
        encoder_key, field_key, readout_key = jr.split(key, 3)
        self.encoder = eqx.nn.Linear(NUM_PIXELS, width, key=encoder_key)
        field = nk.MLPField(width, field_width, 1, activation=jnp.tanh, key=field_key)
        self.ode = nk.NeuralODE(field, settings)
        self.readout = eqx.nn.Linear(width, NUM_CLASSES, key=readout_key)

    def logits(self, xs):
        ts = jnp.array([0.0, 1.0], xs.dtype)
        sol = self.ode.solve_batched(ts, jax.vmap(self.encoder)(xs))
        final = saved_states(sol)[-1]
        return jax.vmap(self.readout)(final), {"num_steps": sol.stats["num_steps"]}

    def iterations(self, stats):
        return stats["num_steps"]

    def describe(self):
        mlp = self.ode.vector_field.mlp
        return (
            f"linear 64 -> {mlp.out_size}; dy/dt = MLP([t, y]) ({mlp.in_size} -> "
            f"{mlp.width_size} -> {mlp.out_size}, tanh) over [0, 1], Tsit5; linear "
            f"{mlp.out_size} -> 10"
        )


class MLPClassifier(AbstractClassifier):
    """Pixels -> `depth` tanh hidden layers -> logits: `depth + 1` layers, always."""

    mlp: eqx.nn.MLP

    def __init__(self, width: int, depth: int, *, key: PRNGKeyArray):
        self.mlp = eqx.nn.MLP(NUM_PIXELS, NUM_CLASSES, width, depth, activation=jnp.tanh, key=key)

    def logits(self, xs):
        return jax.vmap(self.mlp)(xs), {}

    def iterations(self, stats):
        return jnp.asarray(len(self.mlp.layers))

    def describe(self):
        hidden = " -> ".join([str(self.mlp.width_size)] * self.mlp.depth)
        return f"MLP 64 -> {hidden} -> 10 (tanh)"


def matched_width(build: Callable[[int], eqx.Module], target: int, *, limit: int = 4096) -> int:
    """The width in `[1, limit]` whose model, `build(width)`, has the parameter count
    closest to `target` (counted on shapes only, nothing is initialised).

    The count grows with the width, so a bisection finds it.
    """

    def count(width: int) -> int:
        return parameter_count(eqx.filter_eval_shape(build, width))

    low, high = 1, limit
    while low < high:  # the smallest width whose count reaches the target
        middle = (low + high) // 2
        low, high = (middle + 1, high) if count(middle) < target else (low, middle)
    candidates = [w for w in (low - 1, low) if w >= 1]
    return min(candidates, key=lambda w: abs(count(w) - target))

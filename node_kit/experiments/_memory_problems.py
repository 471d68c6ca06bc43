"""The memory command's problems: a neural ODE against solver steps, a DEQ against forward
iterations, and meta-learning against inner steps.

Plain problem definitions, built from the sizes of a [`Sizes`][] (the command's config):
each family builds, for a mode and a number of iterations K, the gradient of a loss with
respect to the parameters and its inputs, and its float64 reference. Measuring them is
`_memory_sweep`'s work: nothing here compiles, times or imports the rest of the command.

- `ode`: an MLP field solved with N fixed steps of the chosen solver, per adjoint mode
    and batch layout ([`build_problem`][]); reference: the float64 store-everything
    gradient ([`reference_gradient`][]).

- `deq`: a layer `f(z, x) = tanh(W z + U x + b)` with `|W|_2 = 0.9`, the batch as one
    fixed-point state, exactly K plain iterations (tolerances 0); modes are the
    [`node_kit.DEQ`][] backward passes. Reference: the exact equilibrium's gradient
    (float64, Broyden to 1e-12, implicit), so the error shows both the unconverged
    forward pass at small K and the phantom gradient's approximation.
- `inner`: few-shot sinusoid regression, one meta-gradient over a meta-batch of tasks
    with K inner SGD steps (lr 0.01); modes `maml` (second order, through the K steps),
    `fomaml` and `imaml` (proximal inner problem, reg 5, exactly K SGD steps, then at
    most 100 conjugate-gradient steps to rtol 1e-4). Reference: the same mode's
    meta-gradient in float64.
- `image`: FFJORD's multiscale CNF at MNIST's shape `1x28x28` (three scales, one block per
    stage, five in all, a [`node_kit.ConvField`][] of `width` channels and `depth`
    layers), one gradient of the mean negative log-likelihood of a batch of images
    (Hutchinson, a fixed probe) with N fixed steps of the solver in every block, per
    adjoint. Reference: the same
    forward method's gradient in float64.
"""

import dataclasses
from collections.abc import Callable
from typing import Protocol

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import optimistix as optx

import node_kit as nk

from ._choices import adjoint_from_mode, solver_from_name
from ._run import split_keys


LAYOUTS = ("batched", "vmap")
"""How the ODE family solves a batch: `batched`, the batch as one ODE state; `vmap`, one
solve per sample."""

T0, T1 = 0.0, 1.0


class Sizes(Protocol):
    """What a problem is built from (the memory command's `Config` has these)."""

    @property
    def dim(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def depth(self) -> int: ...
    @property
    def seed(self) -> int: ...


class ODESizes(Sizes, Protocol):
    """What an `ode` problem is built from: the sizes, and the solver it steps with (the
    other families have no solver to choose)."""

    @property
    def solver(self) -> str: ...


DEQ_CONTRACTION = 0.9
"""The spectral norm of the DEQ layer's `W`: the plain iteration's error shrinks by
about this factor per iteration."""


@dataclasses.dataclass(frozen=True)
class Family:
    """What the memory command sweeps for one family of gradients."""

    name: str
    modes: tuple[str, ...]
    default_modes: tuple[str, ...]
    layout: str
    axis: str
    title: str
    problem: Callable | None = None
    reference: Callable | None = None
    reference_per_mode: bool = False
    defaults: tuple[tuple[str, object], ...] = ()
    """Command defaults that differ for this family (sizes, steps), as `(field, value)`."""


class TanhLayer(eqx.Module):
    """`f(z, x) = tanh(W z + U x + b)`, with `W` scaled to spectral norm `contraction`."""

    w: jax.Array
    u: jax.Array
    b: jax.Array

    def __init__(self, dim: int, *, contraction: float, key):
        kw, ku, kb = jr.split(key, 3)
        w = jr.normal(kw, (dim, dim))
        self.w = contraction * w / jnp.linalg.norm(w, 2)
        self.u = jr.normal(ku, (dim, dim)) / jnp.sqrt(dim)
        self.b = 0.1 * jr.normal(kb, (dim,))

    def __call__(self, z, x):
        return jnp.tanh(self.w @ z + self.u @ x + self.b)


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, tree)


# ---------------------------------------------------------------------------------- ode


def build_problem(config: ODESizes, mode: str, n: int, dtype):
    """The model (fixed steps, `max_steps = N`), times and initial states in `dtype`."""
    keys = split_keys(config.seed, ("model", "data"))
    model = nk.NeuralODE(
        nk.MLPField(config.dim, config.width, config.depth, key=keys["model"]),
        solver=solver_from_name(config.solver),
        stepsize_controller=diffrax.ConstantStepSize(),
        adjoint=adjoint_from_mode(mode, max_steps=n),
        dt0=(T1 - T0) / n,
        max_steps=n,
    )
    model = _cast(model, dtype)
    y0s = jr.normal(keys["data"], (config.batch_size, config.dim), dtype=jnp.float32).astype(dtype)
    return model, jnp.array([T0, T1], dtype=dtype), y0s


def reference_method(mode: str) -> str:
    """The forward method whose exact gradient `mode` computes: the reversible adjoint
    differentiates its own (reversible) solve, every other mode the plain one."""
    return "reversible" if mode == "reversible" else "direct"


def reference_gradient(config: ODESizes, n: int, method: str = "direct") -> list[np.ndarray]:
    """float64 gradient of the same forward method, batch as one state: the exact
    reference (`method` "direct": the plain solve, storing every step; "reversible":
    the reversible solve, whose float64 gradient is exact to its own forward).

    With fixed steps both layouts compute the same numbers, so one reference serves
    both. Runs under `jax.enable_x64(True)`.
    """
    model, ts, y0s = build_problem(config, method, n, jnp.float32)
    with jax.enable_x64(True):
        model, ts, y0s = _cast((model, ts, y0s), jnp.float64)
        gradient = nk.compile_gradient(model, ts, y0s, batched=True)
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(gradient())]


# ---------------------------------------------------------------------------------- deq


def _deq_inputs(config: Sizes, dtype):
    """The layer and inputs, drawn in float32 (the same numbers for every dtype)."""
    keys = split_keys(config.seed, ("model", "data"))
    with jax.enable_x64(False):
        layer = TanhLayer(config.dim, contraction=DEQ_CONTRACTION, key=keys["model"])
        xs = jr.normal(keys["data"], (config.batch_size, config.dim))
    return _cast((layer, xs), dtype)


def _deq_gradient(deq: nk.DEQ):
    """`(params, xs) -> d mean(z*^2) / d params` of the DEQ, the batch as one state."""
    params, static = eqx.partition(deq, eqx.is_inexact_array)

    def gradient(params, xs):
        return jax.grad(lambda p: jnp.mean(eqx.combine(p, static).batched(xs) ** 2))(params)

    return gradient, params


def deq_problem(config: Sizes, mode: str, k: int, dtype):
    """The DEQ gradient through exactly `k` plain iterations, and its inputs."""
    layer, xs = _deq_inputs(config, dtype)
    deq = nk.DEQ(
        layer,
        config.dim,
        solver=nk.FixedPointIteration(rtol=0.0, atol=0.0),
        backward=mode,
        max_steps=k,
        throw=False,
    )
    gradient, params = _deq_gradient(deq)
    return gradient, (params, xs)


def deq_reference(config: Sizes, k: int, mode: str) -> list[np.ndarray]:
    """The exact equilibrium's gradient in float64 (the same for every K and mode)."""
    del k, mode
    with jax.enable_x64(True):
        layer, xs = _deq_inputs(config, jnp.float64)
        deq = nk.DEQ(
            layer,
            config.dim,
            solver=nk.Broyden(rtol=1e-12, atol=1e-12),
            max_steps=1000,
            linear_solver=lx.GMRES(rtol=1e-12, atol=1e-12),
        )
        gradient, params = _deq_gradient(deq)
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(gradient(params, xs))]


INNER_MODES = ("maml", "fomaml", "imaml")
INNER_LR = 0.01
IMAML_REG = 5.0
SHOTS = 10


def _inner_inputs(config: Sizes, dtype):
    """Finn et al.'s regression network (`width` x `depth`; tanh, as the meta command:
    iMAML's inner problem needs a smooth loss) and a meta-batch of `batch` sinusoid tasks
    with 10 support and 10 query points, drawn in float32."""
    from node_kit.datasets import sinusoid_tasks

    keys = split_keys(config.seed, ("model", "data"))
    with jax.enable_x64(False):
        model = eqx.nn.MLP(1, 1, config.width, config.depth, activation=jnp.tanh, key=keys["model"])
        tasks = sinusoid_tasks(keys["data"], config.batch_size, SHOTS, SHOTS)
    support = (tasks.support_x, tasks.support_y)
    query = (tasks.query_x, tasks.query_y)
    return _cast((model, support, query), dtype)


def _mse(model, data):
    x, y = data
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def _inner_learner(mode: str, k: int):
    """MAML / FOMAML with `k` SGD steps; iMAML with exactly `k` SGD steps on the proximal
    problem (tolerances 0, so the step count is `k` as for MAML)."""
    if mode in ("maml", "fomaml"):
        return nk.MAML(k, INNER_LR, first_order=mode == "fomaml")
    import optax

    solver = optx.OptaxMinimiser(optax.sgd(INNER_LR), rtol=0.0, atol=0.0)
    cg = lx.CG(rtol=1e-4, atol=1e-5, max_steps=100)  # the meta command's; 1e-5 fails in float32
    return nk.IMAML(IMAML_REG, solver=solver, linear_solver=cg, max_steps=k, throw=False)


def inner_problem(config: Sizes, mode: str, k: int, dtype):
    """The meta-gradient over a meta-batch with `k` inner steps, and its inputs."""
    model, support, query = _inner_inputs(config, dtype)
    learner = _inner_learner(mode, k)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def gradient(params, support, query):
        loss = lambda p: nk.meta_loss(learner, eqx.combine(p, static), _mse, support, query)
        return jax.grad(loss)(params)

    return gradient, (params, support, query)


def inner_reference(config: Sizes, k: int, mode: str) -> list[np.ndarray]:
    """The same meta-gradient in float64."""
    with jax.enable_x64(True):
        gradient, inputs = inner_problem(config, mode, k, jnp.float64)
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.jit(gradient)(*inputs))]


# -------------------------------------------------------------------------------- image

IMAGE_SHAPE = (1, 28, 28)
"""MNIST's image shape: the image family's gradients are at this size."""

IMAGE_BLOCKS = 1
"""CNF blocks per stage of the image family's flow (FFJORD's MNIST model has 2; one halves
the compile time of each of the sweep's 24 gradients, and memory per block is the same)."""

ADJOINT_MODES = ("backsolve", "checkpoint", "direct", "reversible")


def image_problem(config: ODESizes, mode: str, n: int, dtype):
    """The gradient of the multiscale CNF's mean NLL over a batch at MNIST's shape, with `n`
    fixed steps per block under adjoint `mode`, and its inputs (drawn in float32)."""
    keys = split_keys(config.seed, ("model", "data"))
    with jax.enable_x64(False):
        flow = nk.MultiscaleCNF(
            IMAGE_SHAPE,
            blocks=IMAGE_BLOCKS,
            width=config.width,
            depth=config.depth,
            trace_estimator=nk.HutchinsonTrace(),
            solver=solver_from_name(config.solver),
            stepsize_controller=diffrax.ConstantStepSize(),
            adjoint=adjoint_from_mode(mode, max_steps=n),
            dt0=(T1 - T0) / n,
            max_steps=n,
            key=keys["model"],
        )
        images = jr.normal(keys["data"], (config.batch_size, *IMAGE_SHAPE))
    flow, images = _cast((flow, images), dtype)
    params, static = eqx.partition(flow, eqx.is_inexact_array)
    probe_key = jr.fold_in(keys["data"], 1)

    def gradient(params, images):
        def nll(p):
            return -jnp.mean(eqx.combine(p, static).log_prob_batched(images, key=probe_key))

        return jax.grad(nll)(params)

    return gradient, (params, images)


def image_reference(config: ODESizes, n: int, mode: str) -> list[np.ndarray]:
    """The same forward method's gradient in float64 (the reversible solve for `reversible`,
    the plain one stored step by step otherwise)."""
    with jax.enable_x64(True):
        gradient, inputs = image_problem(config, reference_method(mode), n, jnp.float64)
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.jit(gradient)(*inputs))]


FAMILIES = {
    "ode": Family(
        "ode",
        (),
        ("backsolve", "checkpoint", "direct", "reversible"),
        "batched",
        "solver steps N",
        "Neural ODE gradient",
    ),
    "deq": Family(
        "deq",
        nk.BACKWARD_MODES,
        nk.BACKWARD_MODES,
        "batched",
        "forward iterations K",
        "DEQ gradient",
        deq_problem,
        deq_reference,
    ),
    "inner": Family(
        "inner",
        INNER_MODES,
        INNER_MODES,
        "tasks",
        "inner steps K",
        "Meta-gradient (sinusoid regression)",
        inner_problem,
        inner_reference,
        reference_per_mode=True,
    ),
    "image": Family(
        "image",
        ADJOINT_MODES,
        ADJOINT_MODES,
        "batched",
        "solver steps N per block",
        "Multiscale CNF gradient at MNIST's shape (1x28x28, 5 blocks)",
        image_problem,
        image_reference,
        reference_per_mode=True,
        defaults=(("solver_steps", (2, 8, 32)), ("batch_size", 4), ("width", 16)),
    ),
}
"""The families of the memory command, by name."""

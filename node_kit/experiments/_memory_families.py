"""The memory command's implicit-layer families: a DEQ against forward iterations, and
meta-learning against inner steps.

Each family builds, for a mode and a number of iterations K, the gradient of a loss
with respect to the parameters and its inputs; [`measure_family`][] compiles it, reads
XLA's memory, times it and compares it with the family's float64 reference, in the
same row format as the ODE sweep (`_memory_sweep.measure`), so the fits, table and
plots serve all three families.

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
"""

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import optimistix as optx

import node_kit as nk

from ._run import split_keys

if TYPE_CHECKING:
    from .memory import MemoryConfig

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
    return jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, tree
    )


def _deq_inputs(config: "MemoryConfig", dtype):
    """The layer and inputs, drawn in float32 (the same numbers for every dtype)."""
    keys = split_keys(config.seed, ("model", "data"))
    with jax.enable_x64(False):
        layer = TanhLayer(config.dim, contraction=DEQ_CONTRACTION, key=keys["model"])
        xs = jr.normal(keys["data"], (config.batch, config.dim))
    return _cast((layer, xs), dtype)


def _deq_gradient(deq: nk.DEQ):
    """`(params, xs) -> d mean(z*^2) / d params` of the DEQ, the batch as one state."""
    params, static = eqx.partition(deq, eqx.is_inexact_array)

    def gradient(params, xs):
        return jax.grad(lambda p: jnp.mean(eqx.combine(p, static).batched(xs) ** 2))(params)

    return gradient, params


def deq_problem(config: "MemoryConfig", mode: str, k: int, dtype):
    """The DEQ gradient through exactly `k` plain iterations, and its inputs."""
    layer, xs = _deq_inputs(config, dtype)
    deq = nk.DEQ(layer, config.dim, solver=nk.FixedPointIteration(rtol=0.0, atol=0.0),
                 backward=mode, max_steps=k, throw=False)
    gradient, params = _deq_gradient(deq)
    return gradient, (params, xs)


def deq_reference(config: "MemoryConfig", k: int, mode: str) -> list[np.ndarray]:
    """The exact equilibrium's gradient in float64 (the same for every K and mode)."""
    del k, mode
    with jax.enable_x64(True):
        layer, xs = _deq_inputs(config, jnp.float64)
        deq = nk.DEQ(layer, config.dim, solver=nk.Broyden(rtol=1e-12, atol=1e-12),
                     max_steps=1000, linear_solver=lx.GMRES(rtol=1e-12, atol=1e-12))
        gradient, params = _deq_gradient(deq)
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(gradient(params, xs))]


INNER_MODES = ("maml", "fomaml", "imaml")
INNER_LR = 0.01
IMAML_REG = 5.0
SHOTS = 10


def _inner_inputs(config: "MemoryConfig", dtype):
    """Finn et al.'s regression network (`width` x `depth`; tanh, as the meta command:
    iMAML's inner problem needs a smooth loss) and a meta-batch of `batch` sinusoid tasks
    with 10 support and 10 query points, drawn in float32."""
    from node_kit.datasets import sinusoid_tasks

    keys = split_keys(config.seed, ("model", "data"))
    with jax.enable_x64(False):
        model = eqx.nn.MLP(1, 1, config.width, config.depth, activation=jnp.tanh,
                           key=keys["model"])
        tasks = sinusoid_tasks(keys["data"], config.batch, SHOTS, SHOTS)
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


def inner_problem(config: "MemoryConfig", mode: str, k: int, dtype):
    """The meta-gradient over a meta-batch with `k` inner steps, and its inputs."""
    model, support, query = _inner_inputs(config, dtype)
    learner = _inner_learner(mode, k)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def gradient(params, support, query):
        loss = lambda p: nk.meta_loss(learner, eqx.combine(p, static), _mse, support, query)  # noqa: E731
        return jax.grad(loss)(params)

    return gradient, (params, support, query)


def inner_reference(config: "MemoryConfig", k: int, mode: str) -> list[np.ndarray]:
    """The same meta-gradient in float64."""
    with jax.enable_x64(True):
        gradient, inputs = inner_problem(config, mode, k, jnp.float64)
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.jit(gradient)(*inputs))]


FAMILIES = {
    "ode": Family("ode", (), ("backsolve", "checkpoint", "direct"), "batched",
                  "solver steps N", "Neural ODE gradient"),
    "deq": Family("deq", nk.BACKWARD_MODES, nk.BACKWARD_MODES, "batched",
                  "forward iterations K", "DEQ gradient", deq_problem, deq_reference),
    "inner": Family("inner", INNER_MODES, INNER_MODES, "tasks", "inner steps K",
                    "Meta-gradient (sinusoid regression)", inner_problem, inner_reference,
                    reference_per_mode=True),
}
"""The families of the memory command, by name."""


def measure_family(config: "MemoryConfig", mode: str, k: int, reference=None) -> dict:
    """Compile, time and check one (mode, K) of an implicit-layer family: one row."""
    from ._memory_sweep import relative_error, time_gradient

    family = FAMILIES[config.family]
    gradient, inputs = family.problem(config, mode, k, jnp.float32)
    compiled = nk.CompiledGradient.of(gradient, *inputs)
    seconds, runs, grads = time_gradient(compiled, config.repeats, config.time_limit_s)
    if callable(reference):
        reference = reference()
    memory = compiled.memory
    return {
        "mode": mode,
        "layout": family.layout,
        "steps": k,
        "checkpoints": k if mode in ("unrolled", "maml") else None,
        "temp_bytes": memory.temp_bytes,
        "argument_bytes": memory.argument_bytes,
        "output_bytes": memory.output_bytes,
        "total_bytes": memory.total_bytes,
        "peak_bytes": None,
        "compile_s": compiled.compile_seconds,
        "time_s": seconds,
        "timed_runs": runs,
        "grad_rel_error": None if reference is None else relative_error(grads, reference),
    }

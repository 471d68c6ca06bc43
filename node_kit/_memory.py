"""Compiled memory of a gradient through a solve, and checkpoints chosen from a budget.

XLA's `memory_analysis()` of a compiled gradient is exact and deterministic (on CPU it
is byte-identical across runs), so it is what node_kit measures and predicts.
[`node_kit.checkpoint_adjoint_for_budget`][] turns a memory budget into the largest
number of checkpoints that fits it.
"""

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from ._adjoint import checkpoint_adjoint
from ._checks import check_bool, check_callable, check_int, is_real, type_name
from ._custom_types import Args, BatchStates, Times
from ._model import BatchedField
from ._neural_ode import NeuralODE


MIB = 2**20


@dataclasses.dataclass(frozen=True)
class CompiledMemory:
    """The memory XLA reserves to run one compiled function, in bytes.

    - `temp_bytes`: scratch buffers (activations, checkpoints, solver stages); the
        part that depends on the adjoint and the number of steps.
    - `argument_bytes`, `output_bytes`: the inputs (parameters, `ts`, `y0s`) and
        outputs (the gradient).
    - `alias_bytes`: outputs that reuse an input's buffer (counted once).
    """

    temp_bytes: int
    argument_bytes: int
    output_bytes: int
    alias_bytes: int

    @property
    def total_bytes(self) -> int:
        """`temp + argument + output - alias`: everything the call needs at once."""
        return self.temp_bytes + self.argument_bytes + self.output_bytes - self.alias_bytes

    @classmethod
    def of(cls, compiled: jax.stages.Compiled) -> "CompiledMemory":
        """Read `compiled.memory_analysis()`.

        `peak_memory_in_bytes` is deliberately not read: on CPU it is not a peak.
        """
        analysis = compiled.memory_analysis()
        if analysis is None:
            raise RuntimeError(
                f"the {jax.default_backend()} backend gives no memory analysis for "
                "compiled functions, so compiled memory cannot be measured here."
            )
        return cls(
            temp_bytes=int(analysis.temp_size_in_bytes),
            argument_bytes=int(analysis.argument_size_in_bytes),
            output_bytes=int(analysis.output_size_in_bytes),
            alias_bytes=int(analysis.alias_size_in_bytes),
        )


@dataclasses.dataclass(frozen=True)
class CompiledGradient:
    """A compiled `jax.grad` of a loss of a solve, with its inputs and costs.

    Call it (no arguments) to run the gradient once; the result is a PyTree like
    `eqx.filter(model, eqx.is_inexact_array)`. Build it with
    [`node_kit.compile_gradient`][].
    """

    compiled: jax.stages.Compiled
    inputs: tuple
    memory: CompiledMemory
    compile_seconds: float

    def __call__(self) -> PyTree[Array]:
        return self.compiled(*self.inputs)

    @classmethod
    def of(cls, gradient: Callable, *inputs: Any) -> "CompiledGradient":
        """`jax.jit(gradient)` compiled for `inputs`, with its memory and compile time
        (tracing included). The inputs are arguments, not constants."""
        start = time.perf_counter()
        compiled = jax.jit(gradient).lower(*inputs).compile()
        seconds = time.perf_counter() - start
        return cls(compiled, inputs, CompiledMemory.of(compiled), seconds)


def default_loss(ys: Float[Array, "batch times ..."]) -> Float[Array, ""]:
    """Mean square of the final states: `mean(ys[:, -1] ** 2)`."""
    return jnp.mean(ys[:, -1] ** 2)


def compile_gradient(
    model: NeuralODE,
    ts: Times,
    y0s: BatchStates,
    args: Args = None,
    *,
    batched: bool = True,
    loss: Callable[[Array], Array] = default_loss,
) -> CompiledGradient:
    """Compile the gradient of `loss(solve(model))` with respect to the parameters.

    The parameters (the inexact-array leaves of `model`), `ts`, `y0s` and `args` are
    arguments of the compiled function, not constants, so they count as argument
    bytes and the parameters reach diffrax through the vector field's term.

    **Arguments:**

    - `model`: a [`node_kit.NeuralODE`][].
    - `ts`: output times shared by the batch.
    - `y0s`: initial states, shape `(batch, *state)`.
    - `args`: passed to the vector field, shared by the batch.
    - `batched`: `True` solves the batch as ONE ODE (`model.batched`); `False` solves
        each sample on its own (`jax.vmap(model)`).
    - `loss`: maps the states `(batch, len(ts), *state)` to a scalar; default
        `mean(ys[:, -1] ** 2)`.

    **Returns:**

    A [`node_kit.CompiledGradient`][] with its [`node_kit.CompiledMemory`][] and
    compile time (tracing included).
    """
    _check_model(model)
    check_bool("batched", batched)
    check_callable("loss", loss, expected="a callable mapping the states to a scalar")
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def gradient(params: PyTree[Array], ts: Array, y0s: Array, args: Args) -> PyTree[Array]:
        def scalar_loss(params: PyTree[Array]) -> Float[Array, ""]:
            solve = eqx.combine(params, static)
            if batched:
                ys = solve.batched(ts, y0s, args)
            else:
                ys = jax.vmap(solve, in_axes=(None, 0, None))(ts, y0s, args)
            return loss(ys)

        return jax.grad(scalar_loss)(params)

    return CompiledGradient.of(gradient, params, jnp.asarray(ts), jnp.asarray(y0s), args)


@dataclasses.dataclass(frozen=True)
class CheckpointMemoryModel:
    """Predicted compiled memory of a gradient with `c` checkpoints.

    Two effects, both measured with diffrax 0.7.2 / equinox 0.13:

    - Storage: each checkpoint holds the solver's loop state: the state `y` plus the
        solver's state (the FSAL derivative for Tsit5 or Dopri5, nothing for Euler),
        `bytes_per_checkpoint`. So `floor_bytes + (c - 1) * bytes_per_checkpoint`,
        with `floor_bytes` the compiled total at `c = 1`. This is exact to <0.2%
        up to a few dozen checkpoints, and at `c = max_steps` (store everything).
    - Sorting: above a count that depends on the sizes (about 20 to 150 in the
        benchmark), each further checkpoint costs 1.5x (Tsit5, batch as one state)
        to 2x (Euler; `jax.vmap` layout) `bytes_per_checkpoint`, but only while
        `c < max_steps`. The likely cause: equinox sorts the checkpoint buffer after
        the forward pass (a gather, so a copy) unless `c == max_steps`. This part is
        fitted: `anchors` are the measured totals at `c = ceil(max_steps / 2)` and
        `c = max_steps - 1`, and the prediction is the larger of the storage line and
        the line through the anchors.

    So `c = max_steps` can need LESS memory than `c = max_steps - 1`. Build it with
    [`node_kit.checkpoint_memory_model`][].
    """

    floor_bytes: int
    bytes_per_checkpoint: int
    max_steps: int
    anchors: tuple[tuple[int, int], ...] = ()

    def predict(self, checkpoints: int) -> int:
        """Predicted total compiled bytes with `checkpoints` checkpoints.

        Counts above `max_steps` are capped there, as diffrax does.
        """
        c = min(check_int("checkpoints", checkpoints), self.max_steps)
        stored = self.floor_bytes + (c - 1) * self.bytes_per_checkpoint
        if c in (1, self.max_steps) or not self.anchors:
            return stored
        (c_low, m_low), (c_high, m_high) = self.anchors[0], self.anchors[-1]
        slope = (m_high - m_low) / (c_high - c_low) if c_high > c_low else 0.0
        return max(stored, math.ceil(m_high + (c - c_high) * max(slope, 0.0)))

    def measured(self, checkpoints: int) -> int | None:
        """The compiled total measured while building this model (`c = 1` or an
        anchor), or `None` for a count that was not compiled."""
        return {1: self.floor_bytes, **dict(self.anchors)}.get(checkpoints)

    @property
    def ceiling_bytes(self) -> int:
        """Predicted bytes when every step is stored (`checkpoints = max_steps`)."""
        return self.predict(self.max_steps)

    def checkpoints_for(self, memory_budget_bytes: float) -> int:
        """The largest number of checkpoints (at most `max_steps`) predicted to fit.

        Storing every step is preferred whenever it fits (it also recomputes
        nothing). Raises `ValueError` if even one checkpoint does not fit.
        """
        memory_budget_bytes = _check_budget(memory_budget_bytes)
        if memory_budget_bytes < self.floor_bytes:
            raise ValueError(
                f"`memory_budget_bytes`={memory_budget_bytes} ({_mib(memory_budget_bytes)}) "
                f"is below the floor of checkpointed gradients for this model, batch and "
                f"solver: {self.floor_bytes} bytes ({_mib(self.floor_bytes)}) with one "
                f"checkpoint. Raise the budget to at least {self.floor_bytes} bytes, use "
                "adjoint='backsolve' (memory flat in the number of steps, approximate "
                "gradients), or shrink the batch or the state."
            )
        if self.ceiling_bytes <= memory_budget_bytes:
            return self.max_steps
        low, high = 1, self.max_steps - 1  # predict(low) fits; find the last that fits
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if self.predict(mid) <= memory_budget_bytes else (low, mid - 1)
        return low


def checkpoint_memory_model(
    model: NeuralODE,
    ts: Times,
    y0s: BatchStates,
    args: Args = None,
    *,
    batched: bool = True,
    loss: Callable[[Array], Array] = default_loss,
) -> CheckpointMemoryModel:
    """Measure the memory of checkpointed gradients for this solve: up to three compiles.

    Compiles `model` with `checkpoints=1` (the floor) and, when `max_steps >= 3`,
    with `ceil(max_steps / 2)` and `max_steps - 1` (the sorting regime, see
    [`node_kit.CheckpointMemoryModel`][]); the bytes per checkpoint come from the
    state and solver state's shapes.

    **Arguments:** as [`node_kit.compile_gradient`][]. `model.settings.max_steps` must be an
    int: the checkpointed adjoints size their buffers by it.

    **Returns:**

    A [`node_kit.CheckpointMemoryModel`][] for `model` with its adjoint replaced by
    checkpointing.
    """
    n = _check_max_steps(model)

    def measured(checkpoints: int) -> int:
        return _checkpointed_bytes(checkpoints, model, ts, y0s, args, batched, loss)

    counts = sorted({min(math.ceil(n / 2), n - 1), n - 1} - {0, 1}) if n >= 3 else []
    return CheckpointMemoryModel(
        floor_bytes=measured(1),
        bytes_per_checkpoint=_checkpoint_bytes(model, ts, y0s, args, batched),
        max_steps=n,
        anchors=tuple((c, measured(c)) for c in counts),
    )


def _checkpointed_bytes(checkpoints: int, model, ts, y0s, args, batched, loss) -> int:
    """The compiled gradient's total bytes with `checkpoints` checkpoints."""
    chosen = model.with_settings(model.settings.with_adjoint(checkpoint_adjoint(checkpoints)))
    compiled = compile_gradient(chosen, ts, y0s, args, batched=batched, loss=loss)
    return compiled.memory.total_bytes


def _checkpoint_bytes(
    model: NeuralODE, ts: Times, y0s: BatchStates, args: Args, batched: bool
) -> int:
    """Bytes diffrax stores per checkpoint: the state plus the solver's state.

    For the whole batch, in either layout (the scalar step counters and times,
    a few bytes, are left out). Computed from shapes only; nothing runs.
    """
    ts = jnp.asarray(ts)
    field = BatchedField(model.vector_field) if batched else model.vector_field

    def carry(y0: Array) -> tuple[Array, PyTree]:
        y0 = model.initial_state(y0, batched=batched)
        return y0, model.settings.solver.init(diffrax.ODETerm(field), ts[0], ts[-1], y0, args)

    shapes = eqx.filter_eval_shape(carry if batched else jax.vmap(carry), y0s)
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(shapes))


def checkpoint_adjoint_for_budget(
    memory_budget_bytes: float,
    *,
    model: NeuralODE,
    ts: Times,
    y0s: BatchStates,
    args: Args = None,
    batched: bool = True,
    loss: Callable[[Array], Array] = default_loss,
    verify: bool = True,
) -> diffrax.RecursiveCheckpointAdjoint:
    """The checkpointed adjoint with as many checkpoints as a memory budget allows.

    The budget counts the compiled gradient's total: XLA's temp, argument and output
    bytes (see [`node_kit.CompiledMemory`][]). The memory is predicted by a
    [`node_kit.CheckpointMemoryModel`][] from up to three compiles of `model` with
    small and large checkpoint counts (seconds each) and the state and solver
    state's size. More checkpoints than `model.settings.max_steps` are never chosen (that
    already stores every step). With `verify=True` the chosen count is compiled once
    more and, if it exceeds the budget, lowered until it fits, so the returned
    adjoint's compiled memory is within the budget.

    !!! warning

        The budget is for this gradient alone: optimiser state, other live arrays
        and, on a GPU, the allocator's fragmentation come on top. The gradient is
        computed for `loss`; a different loss in training can change the floor.

    **Arguments:**

    - `memory_budget_bytes`: the budget in bytes, an int or a float (`2.5e9`; rounded
        down to whole bytes), at least 1.
    - `model`, `ts`, `y0s`, `args`, `batched`, `loss`: the solve to budget for, as
        [`node_kit.compile_gradient`][] takes them; `model.settings.max_steps` must be an int.
    - `verify`: compile the chosen count to check it (one more compile); `False`
        trusts the prediction (measured within 3% with diffrax 0.7.2 on CPU).

    **Returns:**

    A `diffrax.RecursiveCheckpointAdjoint`; use it with
    `model.with_settings(model.settings.with_adjoint(adjoint))`.

    **Raises:**

    `ValueError` if the budget is below the one-checkpoint floor; the message gives
    the floor in bytes and MiB.
    """
    memory_budget_bytes = _check_budget(memory_budget_bytes)
    check_bool("verify", verify)
    memory = checkpoint_memory_model(model, ts, y0s, args, batched=batched, loss=loss)
    checkpoints = memory.checkpoints_for(memory_budget_bytes)
    while verify and checkpoints > 1:
        measured = memory.measured(checkpoints)
        if measured is None:
            measured = _checkpointed_bytes(checkpoints, model, ts, y0s, args, batched, loss)
        excess = measured - memory_budget_bytes
        if excess <= 0:
            break
        checkpoints = max(1, checkpoints - math.ceil(excess / memory.bytes_per_checkpoint))
    return checkpoint_adjoint(checkpoints)


def _check_budget(memory_budget_bytes) -> int:
    """A budget in bytes: an int or a float (`2.5e9`, NumPy scalars too), finite and at
    least one byte; returned as a whole number of bytes (a float is rounded down)."""
    value = memory_budget_bytes
    if not (is_real(value) and math.isfinite(value) and value >= 1):
        raise ValueError(
            "`memory_budget_bytes` must be a finite number of bytes >= 1, an int or a float "
            f"(e.g. 512 * 2**20 for 512 MiB, or 2.5e9); got {value!r}."
        )
    return math.floor(value)


def _check_model(model) -> None:
    if not isinstance(model, NeuralODE):
        raise ValueError(f"`model` must be a node_kit.NeuralODE; got {type_name(model)}.")


def _check_max_steps(model: Any) -> int:
    """`model.settings.max_steps`, which must be an int."""
    _check_model(model)
    max_steps = model.settings.max_steps
    if max_steps is None:
        raise ValueError(
            "`model.settings.max_steps` must be an int to budget checkpoints (the buffers are "
            "sized by it); got None. Build the NeuralODE with e.g. max_steps=4096, or "
            "max_steps=N for N fixed steps."
        )
    return max_steps


def _mib(nbytes: int) -> str:
    return f"{nbytes / MIB:.2f} MiB"

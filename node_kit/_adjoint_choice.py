"""An adjoint chosen from a memory budget, by measuring the candidates compiled.

[`node_kit.adjoint_for_budget`][] compiles the gradient of the user's own solve under
each adjoint (`direct`, `checkpoint` with as many checkpoints as the budget allows,
`reversible`, `backsolve`), reads each one's compiled memory, times each one, and picks
the fastest exact gradient that fits (or the smallest, on request), saying why.
"""

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any, Literal

import diffrax
import jax
from jaxtyping import Array

from ._adjoint import backsolve_adjoint, direct_adjoint
from ._checks import check_bool, check_choice, check_int
from ._custom_types import Args, BatchStates, Times
from ._memory import (
    _check_budget,
    _check_max_steps,
    checkpoint_adjoint_for_budget,
    compile_gradient,
    default_loss,
)
from ._neural_ode import NeuralODE
from ._reversible import check_reversible, ReversibleAdjoint


@dataclasses.dataclass(frozen=True)
class AdjointCandidate:
    """One adjoint measured for [`node_kit.adjoint_for_budget`][]: `name` (e.g.
    `checkpoint(12)`), `adjoint`, `exact` (the gradient of the computed solve, not an
    approximation), `memory_bytes` (the compiled gradient's total), `seconds` (the median
    of the timed gradients), `compile_seconds`, `fits` (within the budget), and `note`
    (why it was left out, if it was: it cannot run this solve)."""

    name: str
    adjoint: diffrax.AbstractAdjoint | None
    exact: bool
    memory_bytes: int | None = None
    seconds: float | None = None
    compile_seconds: float | None = None
    fits: bool = False
    note: str = ""


@dataclasses.dataclass(frozen=True)
class AdjointChoice:
    """What [`node_kit.adjoint_for_budget`][] chose: `adjoint` (use it with
    `model.with_settings(model.settings.with_adjoint(choice.adjoint))`), its `name`,
    `reason` (one sentence, with the figures), and every `candidates` measured."""

    adjoint: diffrax.AbstractAdjoint
    name: str
    reason: str
    candidates: tuple[AdjointCandidate, ...]


def adjoint_for_budget(
    memory_budget_bytes: float,
    *,
    model: NeuralODE,
    ts: Times,
    y0s: BatchStates,
    args: Args = None,
    batched: bool = True,
    loss: Callable[[Array], Array] = default_loss,
    prefer: Literal["time", "memory"] = "time",
    repeats: int = 3,
) -> AdjointChoice:
    """The adjoint for this solve and memory budget, chosen from measurements.

    Each candidate's gradient of `loss(solve(model))` is compiled (its memory read
    exactly from XLA, as [`node_kit.compile_gradient`][] does) and run `repeats` times
    after one warm-up (the median is its time):

    - `direct`: every step stored; exact.
    - `checkpoint(k)`: the most checkpoints that fit the budget
        ([`node_kit.checkpoint_adjoint_for_budget`][]); exact. Left out if even one
        checkpoint does not fit.
    - `reversible`: [`node_kit.ReversibleAdjoint`][], memory flat in the steps; exact
        for its own (reversible) solve, which differs from the plain solve by the method's
        error. Left out if the settings' solver or controller cannot run it.
    - `backsolve`: flat in the steps; approximate.

    The choice is the fastest exact candidate that fits (`prefer="memory"`: the
    smallest exact one that fits); if no exact one fits, `backsolve` if it fits, with a
    warning in the reason that its gradient is approximate.

    **Arguments:**

    - `memory_budget_bytes`: the budget in bytes for the compiled gradient's total
        (temp, arguments and outputs), an int or a float, at least 1.
    - `model`, `ts`, `y0s`, `args`, `batched`, `loss`: the solve, as
        [`node_kit.compile_gradient`][] takes them; `model.settings.max_steps` must be an
        int.
    - `prefer`: `"time"` (default) or `"memory"`.
    - `repeats`: timed gradients per candidate, at least 1.

    **Returns:**

    An [`node_kit.AdjointChoice`][].

    **Raises:**

    `ValueError` if no candidate fits the budget; the message gives the smallest.
    """
    budget = _check_budget(memory_budget_bytes)
    _check_max_steps(model)
    check_bool("batched", batched)
    check_choice("prefer", prefer, ("time", "memory"))
    check_int("repeats", repeats, expected="a positive int", fix="Pass e.g. 3.")
    settings = model.settings
    assert settings.max_steps is not None  # _check_max_steps
    problem = {"model": model, "ts": ts, "y0s": y0s, "args": args, "batched": batched, "loss": loss}
    candidates = [
        _measure("direct", direct_adjoint(settings.max_steps), True, budget, repeats, **problem)
    ]
    try:
        adjoint = checkpoint_adjoint_for_budget(budget, **problem)
        candidates.append(
            _measure(
                f"checkpoint({adjoint.checkpoints})", adjoint, True, budget, repeats, **problem
            )
        )
    except ValueError as error:  # below the one-checkpoint floor
        candidates.append(AdjointCandidate("checkpoint", None, True, note=str(error)))
    try:
        check_reversible(settings.solver, settings.stepsize_controller, settings.max_steps)
        candidates.append(
            _measure("reversible", ReversibleAdjoint(), True, budget, repeats, **problem)
        )
    except ValueError as error:
        candidates.append(AdjointCandidate("reversible", None, True, note=str(error)))
    try:  # not with an implicit solver or an event (the settings say why)
        candidates.append(
            _measure("backsolve", backsolve_adjoint(), False, budget, repeats, **problem)
        )
    except ValueError as error:
        candidates.append(AdjointCandidate("backsolve", None, False, note=str(error)))
    return _choose(budget, prefer, tuple(candidates))


def _measure(
    name: str, adjoint, exact: bool, budget: int, repeats: int, *, model, **problem: Any
) -> AdjointCandidate:
    """Compile `model` with `adjoint`, read its memory, time it."""
    candidate = model.with_settings(model.settings.with_adjoint(adjoint))
    gradient = compile_gradient(candidate, **problem)
    jax.block_until_ready(gradient())  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(gradient())
        seconds.append(time.perf_counter() - start)
    total = gradient.memory.total_bytes
    return AdjointCandidate(
        name, adjoint, exact, total, statistics.median(seconds), gradient.compile_seconds,
        total <= budget,
    )  # fmt: skip


def _choose(budget: int, prefer: str, candidates: tuple[AdjointCandidate, ...]) -> AdjointChoice:
    measured = [c for c in candidates if c.adjoint is not None]
    fitting = [c for c in measured if c.fits]
    key = (lambda c: c.seconds) if prefer == "time" else (lambda c: c.memory_bytes)
    exact = sorted((c for c in fitting if c.exact), key=key)
    budget_text = f"the budget of {_mib(budget)} ({budget} bytes)"
    if exact:
        best = exact[0]
        others = ", ".join(f"{c.name} {_figures(c)}" for c in measured if c is not best)
        reason = (
            f"{best.name} is the {'fastest' if prefer == 'time' else 'smallest'} exact "
            f"gradient within {budget_text}: {_figures(best)}; the others: {others}."
        )
        if best.name == "reversible":
            reason += (
                " It differentiates the reversible solve, another method of the same "
                "order as the settings' solver."
            )
        assert best.adjoint is not None  # measured
        return AdjointChoice(best.adjoint, best.name, reason, candidates)
    approximate = [c for c in fitting if not c.exact]
    if approximate:
        best = approximate[0]
        smallest = min((c for c in measured if c.exact), key=lambda c: c.memory_bytes or 0)
        reason = (
            f"no exact gradient fits {budget_text} (the smallest, {smallest.name}, needs "
            f"{_mib(smallest.memory_bytes)}); {best.name} does ({_figures(best)}), but its "
            "gradient is approximate: compare it with an exact one on a small batch."
        )
        assert best.adjoint is not None  # measured
        return AdjointChoice(best.adjoint, best.name, reason, candidates)
    smallest = min(measured, key=lambda c: c.memory_bytes or 0)
    raise ValueError(
        f"`memory_budget_bytes`: no adjoint's gradient fits {budget_text}; the smallest is "
        f"{smallest.name} at {_mib(smallest.memory_bytes)} ({smallest.memory_bytes} bytes). "
        "Raise the budget, or shrink the batch or the state."
    )


def _mib(nbytes: int | None) -> str:
    return f"{(nbytes or 0) / 2**20:.3g} MiB"


def _figures(c: AdjointCandidate) -> str:
    return f"{_mib(c.memory_bytes)}, {1e3 * (c.seconds or 0):.3g} ms per gradient"

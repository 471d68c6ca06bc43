"""Every command-line string mapped to its object, in one place.

Solvers come from one table, [`SOLVERS`][], in which each entry says whether the solver
has an embedded error estimate (`adaptive`): a command that drives its solves with a
PID controller offers [`ADAPTIVE_SOLVER_NAMES`][], one with fixed steps offers
[`SOLVER_NAMES`][]. Adjoint and trace-estimator names are node_kit's own
([`node_kit.adjoint_from_name`][], [`node_kit.trace_estimator_from_name`][]), re-exported
here so that a command imports its choices from this module alone. The memory sweep's
adjoint *modes* add a checkpoint count to an adjoint name (`checkpoint:16`).
"""

import dataclasses
from collections.abc import Callable

import diffrax

import node_kit as nk
from node_kit import (
    adjoint_from_name as adjoint_from_name,
    ADJOINT_NAMES as ADJOINT_NAMES,
    PROBE_NAMES as PROBE_NAMES,
    trace_estimator_from_name as trace_estimator_from_name,
    TRACE_ESTIMATOR_NAMES as TRACE_ESTIMATOR_NAMES,
)

from .._checks import check_choice


@dataclasses.dataclass(frozen=True)
class SolverChoice:
    """A solver a command can name: its flag value, its constructor, and whether it adapts.

    `adaptive`: the solver has an embedded error estimate, so a `diffrax.PIDController`
    can choose its steps; the others take fixed steps (`diffrax.ConstantStepSize`).
    """

    name: str
    make: Callable[[], diffrax.AbstractSolver]
    adaptive: bool


SOLVERS = (
    SolverChoice("euler", diffrax.Euler, adaptive=False),
    SolverChoice("rk4", nk.RK4, adaptive=False),
    SolverChoice("tsit5", diffrax.Tsit5, adaptive=True),
    SolverChoice("dopri5", diffrax.Dopri5, adaptive=True),
    SolverChoice("dopri8", diffrax.Dopri8, adaptive=True),
    SolverChoice("bosh3", diffrax.Bosh3, adaptive=True),
    SolverChoice("heun", diffrax.Heun, adaptive=True),
    SolverChoice("midpoint", diffrax.Midpoint, adaptive=True),
)
"""Every solver the commands offer, in the order their `--help` lists them."""

SOLVER_NAMES = tuple(s.name for s in SOLVERS)
"""All solver names (fixed steps can use any of them)."""

ADAPTIVE_SOLVER_NAMES = tuple(s.name for s in SOLVERS if s.adaptive)
"""The solvers with an embedded error estimate, as adaptive steps need."""


def solver_from_name(name: str, *, adaptive: bool = False) -> diffrax.AbstractSolver:
    """A new solver for `name`; with `adaptive=True` only the adaptive ones are accepted."""
    check_choice("solver", name, ADAPTIVE_SOLVER_NAMES if adaptive else SOLVER_NAMES)
    return next(s for s in SOLVERS if s.name == name).make()


def is_adaptive(name: str) -> bool:
    """Whether the solver `name` has an embedded error estimate."""
    check_choice("solver", name, SOLVER_NAMES)
    return next(s for s in SOLVERS if s.name == name).adaptive


MAX_STEPS = 4096
"""The most solver steps of a command's solve (diffrax's own default)."""


def solve_settings(
    solver: str, adjoint: str, *, rtol: float, atol: float, fixed_dt: float | None = None
) -> nk.SolveSettings:
    """[`node_kit.SolveSettings`][] from the command line's solver and adjoint names.

    An adaptive solver runs under `diffrax.PIDController(rtol, atol)`; a fixed-step one
    (`euler`, `rk4`) under `diffrax.ConstantStepSize()` with step `fixed_dt`. The adjoint is
    [`node_kit.adjoint_from_name`][] for that controller and `MAX_STEPS`.
    """
    if is_adaptive(solver):
        controller, dt0 = diffrax.PIDController(rtol=rtol, atol=atol), None
    else:
        if fixed_dt is None:
            raise ValueError(
                f"solver {solver!r} takes fixed steps, so it needs a step size; pass "
                "`fixed_dt`, or choose an adaptive solver such as tsit5."
            )
        controller, dt0 = diffrax.ConstantStepSize(), fixed_dt
    return nk.SolveSettings(
        solver=solver_from_name(solver),
        stepsize_controller=controller,
        adjoint=adjoint_from_name(adjoint, max_steps=MAX_STEPS, stepsize_controller=controller),
        dt0=dt0,
        max_steps=MAX_STEPS,
    )


MODES_HELP = (
    "backsolve, checkpoint (diffrax's default count), checkpoint:K (K checkpoints), "
    "direct (store every step), reversible (rebuild each step from the end)"
)


def parse_mode(mode: str) -> tuple[str, int | None]:
    """Split an adjoint mode into the node_kit adjoint name and a fixed checkpoint count.

    `"checkpoint:16"` gives `("checkpoint", 16)`; the other modes give `(mode, None)`.
    """
    name, _, count = str(mode).partition(":")
    if name in ADJOINT_NAMES and not count:
        return name, None
    if name == "checkpoint" and count.isdigit() and int(count) >= 1:
        return name, int(count)
    raise ValueError(
        f"`modes` entry {mode!r} is not a mode; expected one of: {MODES_HELP}, with K "
        "a positive int (e.g. checkpoint:16)."
    )


def adjoint_from_mode(mode: str, *, max_steps: int):
    """The diffrax adjoint of an adjoint mode (`backsolve`, `checkpoint:16`, ...)."""
    name, count = parse_mode(mode)
    return adjoint_from_name(name, max_steps=max_steps, checkpoints=count)


FIXED_POINT_SOLVER_NAMES = ("anderson", "broyden", "iteration")
"""The fixed-point solvers of a [`node_kit.DEQ`][] a command can name."""


def fixed_point_solver(name: str, *, rtol: float, atol: float):
    """`anderson` -> [`node_kit.AndersonAcceleration`][], `broyden` -> [`node_kit.Broyden`][],
    `iteration` -> [`node_kit.FixedPointIteration`][], each with `rtol` and `atol`."""
    check_choice("solver", name, FIXED_POINT_SOLVER_NAMES, what="fixed-point")
    make = {
        "anderson": nk.AndersonAcceleration,
        "broyden": nk.Broyden,
        "iteration": nk.FixedPointIteration,
    }[name]
    return make(rtol=rtol, atol=atol)

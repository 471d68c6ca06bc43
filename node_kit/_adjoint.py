"""The four adjoint modes by name: backsolve, checkpoint, direct, reversible.

Strings are mapped to `diffrax.AbstractAdjoint` objects in exactly one place,
[`node_kit.adjoint_from_name`][], which the command lines and configs use.
"""

import diffrax
import equinox as eqx

from ._checks import check_bool, check_choice, check_int
from ._reversible import ReversibleAdjoint


ADJOINT_NAMES = ("backsolve", "checkpoint", "direct", "reversible")


def backsolve_adjoint(
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    *,
    seminorm: bool = False,
) -> diffrax.BacksolveAdjoint:
    """The continuous adjoint: solve the adjoint ODE backwards in time.

    Memory does not grow with the number of solver steps: only the final state is
    stored, and the trajectory is recomputed backwards alongside the adjoint.

    !!! warning

        The gradients are approximate. The backward solve reconstructs `y(t)` by
        integrating the ODE in reverse, which accumulates its own truncation error
        (and can be unstable for dissipative dynamics), and the adjoint equation is a
        discretisation of the continuous adjoint, not the derivative of the forward
        discretisation ("optimise-then-discretise"). The error shrinks with the
        solver tolerance; it is not zero. Use `checkpoint` or `direct` for exact
        gradients of the computed solution.

    **Arguments:**

    - `stepsize_controller`: the forward controller. Only needed when `seminorm=True`.
    - `seminorm`: use the seminorm of Kidger et al. (2021) for the backward solve's
        error control: the parameter-adjoint components do not count towards the step
        size, which typically cuts backward steps by 40-60%. Needs a
        `diffrax.PIDController`.

    **Returns:**

    A `diffrax.BacksolveAdjoint`.
    """
    if stepsize_controller is not None and not isinstance(
        stepsize_controller, diffrax.AbstractStepSizeController
    ):
        raise ValueError(
            "`stepsize_controller` must be a diffrax step-size controller (the forward one, "
            f"e.g. diffrax.PIDController(rtol=1e-3, atol=1e-6)) or None; got "
            f"{type(stepsize_controller).__name__} {stepsize_controller!r}."
        )
    if not check_bool("seminorm", seminorm):
        return diffrax.BacksolveAdjoint()
    if not isinstance(stepsize_controller, diffrax.PIDController):
        raise ValueError(
            "`seminorm=True` needs the forward `stepsize_controller`, a "
            f"`diffrax.PIDController`; got {type(stepsize_controller).__name__}. "
            "Pass the controller used for the forward solve, or set `seminorm=False` "
            "(a fixed step size has no error control to apply a seminorm to)."
        )
    backward = eqx.tree_at(lambda c: c.norm, stepsize_controller, diffrax.adjoint_rms_seminorm)
    return diffrax.BacksolveAdjoint(stepsize_controller=backward)


def checkpoint_adjoint(checkpoints: int | None = None) -> diffrax.RecursiveCheckpointAdjoint:
    """Exact gradients by backpropagating through the solver with binomial checkpoints.

    `checkpoints` solver states are kept during the forward pass; the steps between
    them are recomputed during the backward pass (online binomial checkpointing,
    Stumm and Walther 2010). Memory is proportional to `checkpoints`, not to the
    number of steps.

    !!! note

        With `checkpoints=None` node_kit keeps diffrax's default, which is about
        `sqrt(2 * max_steps)` checkpoints (for example 90 at `max_steps=4096`), not
        `log(max_steps)`: each step is then recomputed at most about twice. Pass an
        integer to trade more recomputation for less memory.

    **Arguments:**

    - `checkpoints`: number of stored solver states, a positive integer, or `None` for
        diffrax's default.

    **Returns:**

    A `diffrax.RecursiveCheckpointAdjoint`.
    """
    if checkpoints is not None:
        check_int(
            "checkpoints", checkpoints, expected="a positive integer", fix="Pass an int >= 1."
        )
    return diffrax.RecursiveCheckpointAdjoint(checkpoints=checkpoints)


def direct_adjoint(max_steps: int) -> diffrax.RecursiveCheckpointAdjoint:
    """Backpropagation through every solver step, storing all of them.

    This is the "unrolled" solve: one checkpoint per step, so no recomputation and
    memory linear in `max_steps` (the buffer is sized by `max_steps`, not by the
    steps actually taken, so keep `max_steps` tight).

    It is built as `diffrax.RecursiveCheckpointAdjoint(checkpoints=max_steps)`.
    `diffrax.DirectAdjoint` is not used: measured with diffrax 0.7.2 its memory is
    nearly flat in the step count with a large constant (44-48 MiB from 10 to 1000
    steps), so it is not the store-everything unroll users mean.

    **Arguments:**

    - `max_steps`: the solve's `max_steps`, a positive integer.

    **Returns:**

    A `diffrax.RecursiveCheckpointAdjoint` with one checkpoint per step.
    """
    check_int("max_steps", max_steps, expected="a positive integer", fix="Pass an int >= 1.")
    return diffrax.RecursiveCheckpointAdjoint(checkpoints=max_steps)


def adjoint_from_name(
    name: str,
    *,
    max_steps: int | None,
    checkpoints: int | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    seminorm: bool = False,
) -> diffrax.AbstractAdjoint:
    """Map a mode name from a command line or config to a diffrax adjoint.

    **Arguments:**

    - `name`: one of `"backsolve"`, `"checkpoint"`, `"direct"`, `"reversible"` (a
        [`node_kit.ReversibleAdjoint`][] with its default coupling).
    - `max_steps`: the solve's `max_steps` (needed by `direct`).
    - `checkpoints`: for `checkpoint`; `None` is diffrax's default.
    - `stepsize_controller`, `seminorm`: for `backsolve`, see [`node_kit.backsolve_adjoint`][].

    **Returns:**

    A `diffrax.AbstractAdjoint`.
    """
    check_choice("adjoint", name, ADJOINT_NAMES)
    if name == "backsolve":
        return backsolve_adjoint(stepsize_controller, seminorm=seminorm)
    if name == "checkpoint":
        return checkpoint_adjoint(checkpoints)
    if name == "reversible":
        return ReversibleAdjoint()
    if max_steps is None:
        raise ValueError(
            "adjoint 'direct' stores every step, so it needs an integer `max_steps`; "
            "got max_steps=None. Pass e.g. max_steps=4096."
        )
    return direct_adjoint(max_steps)

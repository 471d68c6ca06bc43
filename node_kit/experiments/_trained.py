"""Using a trained run without training: loading it for `--sample` and `--evaluate`
(with the command line's evaluation flags), and the evaluation settings of a config.

The runner that trains and writes a run is `_run.Run`; this module reads one back.
"""

import dataclasses
from collections.abc import Sequence
from typing import Any

import equinox as eqx

import node_kit as nk

from .._checks import check_real
from ._cli import _module_name, flag
from ._protocol import option, ParallelConfig
from ._run import Run


@dataclasses.dataclass(frozen=True)
class EvaluationTolerances:
    """The flags of a command whose evaluation solves may use other tolerances than its
    training ones (see [`evaluation_tolerances`][])."""

    eval_rtol: float | None = option(
        None, "relative tolerance of the evaluation (test, validation) solves (None: --rtol)"
    )
    eval_atol: float | None = option(
        None, "absolute tolerance of the evaluation (test, validation) solves (None: --atol)"
    )


def solve_tolerance(name: str, default: float, solves: str) -> Any:
    """The `--rtol` or `--atol` field (`name`) of a command with [`EvaluationTolerances`][]:
    the tolerance of `solves`, which its evaluation solves take too unless `--eval-<name>`."""
    kind = {"rtol": "relative", "atol": "absolute"}[name]
    return option(default, f"{kind} tolerance of {solves} (and of evaluation unless --eval-{name})")


def load_trained(given, *, keys: Sequence[str], options: Sequence[str] = ()):
    """`(run, model)` to sample or evaluate the trained run in `given.out`, without training.

    The model and config come from `nk.load_run(given.out)` (a run of `given`'s own
    command). The config is the run's, with from `given` (the command line): `out`, what
    to do (`sample`, `evaluate`), `progress`, the device flags, and each of `options`
    (evaluation flags such as `eval_rtol`) that is not at its default. Any other flag
    set to something other than its default and the run's value is an error naming it.
    `run` is a [`Run`][] of that config (`training=False`) with the named `keys`.
    """
    model, recorded = nk.load_run(given.out, command=_module_name(type(given)))
    run = Run(trained_config(given, recorded, options=options), keys=keys, training=False)
    if run.data_parallel is not None:  # placed as training placed it (one compiled evaluation)
        model = run.data_parallel.replicate(model)
    return run, model


def trained_config(given, recorded, *, options: Sequence[str] = ()):
    """The config [`load_trained`][] uses: `recorded` with what `given` may set."""
    defaults = type(given)()
    from_given = {
        "out",
        "resume",
        "progress",
        "sample",
        "evaluate",
        "data_dir",  # where data is read and written is the user's choice, never the file's
        *(f.name for f in dataclasses.fields(ParallelConfig)),
    }
    values, conflicts = {}, []
    for name in (f.name for f in dataclasses.fields(given)):
        mine, default = getattr(given, name), getattr(defaults, name)
        theirs = getattr(recorded, name, default)
        if name in from_given or (name in options and mine != default):
            values[name] = mine
            continue
        values[name] = theirs
        if mine != default and mine != theirs:
            conflicts.append(f"{flag(name)} {mine!r} (the run's: {theirs!r})")
    if conflicts:
        allowed = "".join(flag(name) + ", " for name in options)
        raise ValueError(
            f"--sample and --evaluate use the run in {given.out} as it was trained; got "
            f"{'; '.join(conflicts)}. Drop {'them' if len(conflicts) > 1 else 'it'}: beside "
            f"--out only {allowed}--data-dir, --progress and the device flags may be given "
            "(to train with other settings, start a new run)."
        )
    return type(given)(**values)


def evaluation_tolerances(config) -> tuple[float, float]:
    """`(rtol, atol)` of a config's evaluation solves: `--eval-rtol` and `--eval-atol`,
    each the training one (`--rtol`, `--atol`) where not given."""
    rtol = config.rtol if config.eval_rtol is None else config.eval_rtol
    atol = config.atol if config.eval_atol is None else config.eval_atol
    return rtol, atol


def check_eval_tolerances(config) -> None:
    """`--eval-rtol` and `--eval-atol`: finite, non-negative, with the training ones where
    not given not both zero."""
    for name in ("eval_rtol", "eval_atol"):
        if getattr(config, name) is not None:
            check_real(
                flag(name),
                getattr(config, name),
                non_negative=True,
                fix=f"Leave it out to evaluate at the training tolerance ({flag(name[5:])}).",
            )
    if evaluation_tolerances(config) == (0, 0):
        raise ValueError(
            "the evaluation tolerances must not both be 0 (no error would be small enough); "
            "got rtol 0 and atol 0 from --eval-rtol / --eval-atol. Pass e.g. --eval-atol 1e-6."
        )


def with_weights(skeleton, trained):
    """`skeleton`'s structure and settings (e.g. other solver tolerances) with the arrays of
    `trained`, a model of the same shape."""
    return eqx.combine(
        eqx.filter(trained, eqx.is_array), eqx.filter(skeleton, eqx.is_array, inverse=True)
    )

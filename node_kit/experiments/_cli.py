"""A command's config dataclass <-> its command-line flags.

One flag per field (`--field-name`), typed from the field's annotation: booleans
(also `bool | None`) are `--flag/--no-flag`, a `tuple[T, ...]` field takes one or more
values (`--steps 10 100`). A field's `metadata` may give its `help` text, `aliases`
(other flag names) and `nargs` (e.g. `"*"` where an empty list is allowed).

The flag checks below ([`check_flags`][], [`check_tolerances`][], [`check_at_most`][]) raise
a `ValueError` naming the flag as the user typed it (`--batch-size`); `run_command` prints it
as `error: <message>` and exits with status 2, as argparse does for a malformed flag.
"""

import argparse
import dataclasses
import json
import sys
import types
import typing

from .._checks import check_int, check_real


# Help for the fields every command shares; a field's own `metadata={"help": ...}` wins.
COMMON_HELP = {
    "seed": "seed of every random draw of the run (weights, batches, noise)",
    "out": "folder the run writes to: results.json, history.csv, pictures, checkpoints",
    "resume": "continue the run in --out from its checkpoint (same model and data flags)",
    "progress": "show a progress bar",
    "steps": "training steps",
    "batch_size": "examples per training step (the global batch, split over the devices)",
    "lr": "peak learning rate of the cosine schedule",
    "data_dir": "folder of the built datasets (empty: the default, NODE_KIT_DATA_DIR or "
                "~/.cache/node_kit/tensorflow_datasets)",
    "rtol": "relative tolerance of the adaptive ODE solver",
    "atol": "absolute tolerance of the adaptive ODE solver",
    "width": "hidden width of the networks",
    "depth": "hidden layers of the networks",
    "adjoint": "how gradients flow through the ODE solve: backsolve (memory flat in steps), "
               "checkpoint (exact, recomputes) or direct (exact, stores every step)",
    "clip_norm": "clip the gradient's global norm to this (0: off)",
    "checkpoint_every": "steps between checkpoints (one is always written at the end)",
}


def help_text(field: dataclasses.Field) -> str:
    """A field's `--help` text: its own, else the shared one; `""` when it has none."""
    return field.metadata.get("help", COMMON_HELP.get(field.name, ""))


def parse_config(
    config_cls, argv=None, *, description: str, choices: dict | None = None, prog: str | None = None
):
    """Build a frozen config dataclass from command-line flags, one flag per field.

    `--field-name value`; booleans are `--flag/--no-flag`; tuple fields take several
    values; `choices` maps a field name to its allowed values (for a tuple field, of
    each value; argparse then lists them on a bad value). A field's
    `metadata={"help": ...}` becomes its `--help` text, followed by its default.
    The usage line names the command as it is run: `python -m <module of config_cls>`.
    """
    if prog is None:
        prog = f"python -m {_module_name(config_cls)}"
    parser = argparse.ArgumentParser(prog=prog, description=description)
    defaults = config_cls()
    hints = typing.get_type_hints(config_cls)
    tuples = []
    for field in dataclasses.fields(config_cls):
        default = getattr(defaults, field.name)
        flags = ["--" + field.name.replace("_", "-"), *field.metadata.get("aliases", ())]
        text = help_text(field)
        text = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        kind, many = _flag_type(hints[field.name])
        if kind is bool:
            parser.add_argument(
                *flags, dest=field.name, action=argparse.BooleanOptionalAction,
                default=default, help=text,
            )
            continue
        nargs = field.metadata.get("nargs", "+") if many else None
        if many:
            tuples.append(field.name)
        parser.add_argument(
            *flags, dest=field.name, type=kind, nargs=nargs, default=default,
            choices=(choices or {}).get(field.name), help=text,
        )
    values = vars(parser.parse_args(argv))
    for name in tuples:
        values[name] = tuple(values[name])
    return config_cls(**values)


def _module_name(config_cls) -> str:
    """The importable name of the module defining `config_cls` (not `__main__` under -m)."""
    module = sys.modules.get(config_cls.__module__)
    spec = getattr(module, "__spec__", None)
    return spec.name if spec is not None and spec.name else config_cls.__module__


def _flag_type(hint) -> tuple[type, bool]:
    """`(type of one value, takes several)` for a field annotation; `None` is dropped."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return _flag_type(args[0])
    if typing.get_origin(hint) is tuple:
        return args[0], True
    return (hint if isinstance(hint, type) else str), False


def run_meta(
    config,
    *,
    ignore=("out", "resume", "progress", "steps", "lr", "checkpoint_every", "clip_norm",
            "devices", "coordinator", "num_processes", "process_id", "distributed"),
) -> dict:
    """The part of a config that must match to resume a checkpoint.

    The step count and learning rate may change on resume (to train longer, or to
    recover from a divergence with a smaller rate), and so may the devices and processes
    (a batch split over devices gives the numbers of one device up to the order of sums);
    the model and data may not (nor `--per-device`, which solves differently).
    Values are as JSON gives them back (tuples become lists), so that a config with a
    tuple field matches the checkpoint it wrote.
    """
    kept = {k: v for k, v in dataclasses.asdict(config).items() if k not in ignore}
    return json.loads(json.dumps(kept))


# ------------------------------------------------------------------------- flag checks


def flag(name: str) -> str:
    """The flag of a config field, as the user types it: `batch_size` -> `--batch-size`."""
    return "--" + name.replace("_", "-")


def check_choices(config, choices: dict) -> None:
    """Each named field of `config` is one of its choices (argparse checks typed flags; this
    checks a config built in Python)."""
    for name, options in choices.items():
        value = getattr(config, name)
        if value not in options:
            raise ValueError(
                f"unknown {name} {value!r} ({flag(name)}); expected one of {', '.join(options)}."
            )


def check_flags(config, *, ints=(), counts=(), positive=(), non_negative=()) -> None:
    """Check numeric flags of `config`, each error naming the flag: `ints` positive ints,
    `counts` non-negative ints, `positive` and `non_negative` finite reals."""
    for name in ints:
        check_int(flag(name), getattr(config, name))
    for name in counts:
        check_int(flag(name), getattr(config, name), minimum=0)
    for name in positive:
        check_real(flag(name), getattr(config, name), positive=True)
    for name in non_negative:
        check_real(flag(name), getattr(config, name), non_negative=True)


def check_tolerances(config) -> None:
    """`--rtol` and `--atol`: finite, non-negative and not both zero, as adaptive steps need."""
    rtol = check_real("--rtol", config.rtol, non_negative=True, fix="E.g. --rtol 1e-3.")
    atol = check_real("--atol", config.atol, non_negative=True, fix="E.g. --atol 1e-6.")
    if rtol == 0 and atol == 0:
        raise ValueError(
            "--rtol and --atol must not both be 0 (no error would be small enough); got "
            "--rtol 0 --atol 0. Pass e.g. --rtol 1e-3 --atol 1e-6."
        )


def check_at_most(name: str, value: int, available: int, what: str) -> None:
    """A size flag no larger than the data it takes from: an error, never a silent clamp."""
    if value > available:
        raise ValueError(
            f"{flag(name)} must be at most the number of {what} ({available}); got {value}. "
            f"Pass {flag(name)} {available} or less."
        )

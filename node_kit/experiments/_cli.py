"""A command's config dataclass <-> its command-line flags.

One flag per field (`--field-name`), typed from the field's annotation: booleans
(also `bool | None`) are `--flag/--no-flag`, a `tuple[T, ...]` field takes one or more
values (`--steps 10 100`). A field's `metadata` may give its `help` text, `aliases`
(other flag names) and `nargs` (e.g. `"*"` where an empty list is allowed).
"""

import argparse
import dataclasses
import types
import typing


def parse_config(
    config_cls, argv=None, *, description: str, choices: dict | None = None, prog: str | None = None
):
    """Build a frozen config dataclass from command-line flags, one flag per field.

    `--field-name value`; booleans are `--flag/--no-flag`; tuple fields take several
    values; `choices` maps a field name to its allowed values (for a tuple field, of
    each value; argparse then lists them on a bad value). A field's
    `metadata={"help": ...}` becomes its `--help` text, followed by its default.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    defaults = config_cls()
    hints = typing.get_type_hints(config_cls)
    tuples = []
    for field in dataclasses.fields(config_cls):
        default = getattr(defaults, field.name)
        flags = ["--" + field.name.replace("_", "-"), *field.metadata.get("aliases", ())]
        text = field.metadata.get("help", "")
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
    ignore=("out", "resume", "progress", "steps", "lr", "checkpoint_every", "clip_norm"),
) -> dict:
    """The part of a config that must match to resume a checkpoint.

    The step count and learning rate may change on resume (to train longer, or to
    recover from a divergence with a smaller rate); the model and data may not.
    """
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in ignore}

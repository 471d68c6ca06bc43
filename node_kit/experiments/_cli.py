"""A command's config dataclass <-> its command-line flags.

One flag per field (`--field-name`), typed from the field's annotation: booleans
(also `bool | None`) are `--flag/--no-flag`, a `tuple[T, ...]` field takes one or more
values (`--steps 10 100`). A field's `metadata` may give its `help` text, `aliases`
(other flag names) and `nargs` (e.g. `"*"` where an empty list is allowed).

The flag checks below ([`check_flags`][], [`check_tolerances`][], [`check_at_most`][]) raise
a `ValueError` naming the flag as the user typed it (`--batch-size`); `Command.run` prints it
as `error: <message>` and exits with status 2, as argparse does for a malformed flag.
"""

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._checks import check_int, check_real


def help_text(field: dataclasses.Field, config_cls: type | None = None) -> str:
    """A field's `--help` text: its own, else that of the field of the same name in a base
    class of `config_cls` (a command that declares a shared flag again to change its
    default keeps the shared text); `""` when it has none."""
    text = field.metadata.get("help", "")
    for base in getattr(config_cls, "__mro__", ())[1:]:
        if text:
            break
        inherited = getattr(base, "__dataclass_fields__", {}).get(field.name)
        text = inherited.metadata.get("help", "") if inherited is not None else ""
    return text


def _declared_by(config_cls: type, name: str) -> type:
    """The first (most basic) class of `config_cls`'s bases that declares field `name`."""
    for base in reversed(config_cls.__mro__):
        if name in getattr(base, "__dataclass_fields__", {}):
            return base
    return config_cls


def ordered_fields(config_cls, shared: Sequence[type] = ()) -> list[dataclasses.Field]:
    """The fields of `config_cls`: its own first, then those declared by each of the
    `shared` classes in turn (the order of `--help`)."""
    order = {cls: i for i, cls in enumerate(shared)}
    return sorted(
        dataclasses.fields(config_cls),
        key=lambda f: order.get(_declared_by(config_cls, f.name), -1),
    )


def parse_config(
    config_cls,
    argv=None,
    *,
    description: str,
    choices: dict | None = None,
    prog: str | None = None,
    renamed: Mapping[str, str] | None = None,
    shared: Sequence[type] = (),
):
    """Build a frozen config dataclass from command-line flags, one flag per field.

    `--field-name value`; booleans are `--flag/--no-flag`; tuple fields take several
    values; `choices` maps a field name to its allowed values (for a tuple field, of
    each value; argparse then lists them on a bad value). A field's
    `metadata={"help": ...}` becomes its `--help` text, followed by its default.
    `--help` lists the command's own flags first, then those declared by the `shared`
    classes. `renamed` maps old field names to new ones: an old flag is refused with a
    message naming the new one. Flags are never abbreviated (`--batch` is not
    `--batch-size`). The usage line names the command as it is run: `python -m <module
    of config_cls>`.
    """
    if prog is None:
        prog = f"python -m {_module_name(config_cls)}"
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)
    own = parser.add_argument_group("flags of this command")
    common = parser.add_argument_group("flags shared by node_kit's commands")
    defaults = config_cls()
    hints = typing.get_type_hints(config_cls)
    tuples = []
    for field in ordered_fields(config_cls, shared):
        group = common if _declared_by(config_cls, field.name) in shared else own
        default = getattr(defaults, field.name)
        flags = [flag(field.name), *field.metadata.get("aliases", ())]
        text = help_text(field, config_cls)
        text = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        kind, many = _flag_type(hints[field.name])
        if kind is bool:
            group.add_argument(
                *flags,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=text,
            )
            continue
        nargs = field.metadata.get("nargs", "+") if many else None
        if many:
            tuples.append(field.name)
        group.add_argument(
            *flags,
            dest=field.name,
            type=kind,
            nargs=nargs,
            default=default,
            choices=(choices or {}).get(field.name),
            help=text,
        )
    argv = sys.argv[1:] if argv is None else list(argv)
    _refuse_renamed(parser, argv, renamed or {})
    values = vars(parser.parse_args(argv))
    for name in tuples:
        values[name] = tuple(values[name])
    return config_cls(**values)


def _refuse_renamed(
    parser: argparse.ArgumentParser, argv: Sequence[str], renamed: Mapping[str, str]
) -> None:
    """Exit with argparse's usage error for a flag spelt as before a rename."""
    old = {flag(name): flag(new) for name, new in renamed.items()}
    old |= {"--no-" + name[2:]: "--no-" + new[2:] for name, new in old.items()}
    for token in argv:
        if token == "--":
            break
        given = token.split("=", 1)[0]
        if given in old:
            parser.error(
                f"{given} was renamed {old[given]} (see CHANGELOG.md); pass {old[given]} instead."
            )


def config_flags(
    values: Mapping[str, Any], defaults: Mapping[str, Any], skip: Sequence[str] = ()
) -> list[str]:
    """The flags that rebuild a config's `values` (those that differ from `defaults`, a
    dict of the config's defaults; not those in `skip`): the inverse of
    [`parse_config`][]. JSON lists count as the tuples they were."""
    out = []
    for name, value in values.items():
        default = defaults.get(name)
        default = list(default) if isinstance(default, tuple) else default
        value = list(value) if isinstance(value, tuple) else value
        if name in skip or name not in defaults or value == default or value is None:
            continue
        if isinstance(value, bool):
            out.append(flag(name) if value else "--no-" + flag(name)[2:])
        elif isinstance(value, list):
            out += [flag(name), *map(str, value)]
        else:
            out += [flag(name), str(value)]
    return out


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
    ignore=(
        "out",
        "resume",
        "progress",
        "steps",
        "lr",
        "checkpoint_every",
        "clip_norm",
        "devices",
        "coordinator",
        "num_processes",
        "process_id",
        "distributed",
    ),
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


def check_batch_sizes(config, splits: tuple[int, int, int], unit: str, kept: str = "") -> None:
    """`--batch-size` at most the training split of `config.dataset`, `--eval-batch` at most
    its test split and, with `--eval-every`, its validation split. `splits` are the sizes
    `(train, validation, test)`, in `unit`s ("points"); `kept` follows the training split's
    name in the message where a flag shrank that split."""
    train, validation, test = splits
    name = config.dataset
    check_at_most("batch_size", config.batch_size, train, f"{name} training {unit}{kept}")
    check_at_most("eval_batch", config.eval_batch, test, f"{name} test {unit}")
    if config.eval_every:
        check_at_most(
            "eval_batch", config.eval_batch, validation, f"{name} validation {unit} (--eval-every)"
        )


def with_new_names(values: Mapping[str, Any], renamed: Mapping[str, str]) -> dict:
    """A recorded config's `values` with each field renamed since (`{old: new}`) under its
    new name."""
    values = dict(values)
    for old, new in renamed.items():
        if old in values and new not in values:
            values[new] = values.pop(old)
    return values


def config_from_record(
    config_cls,
    values: Mapping[str, Any],
    where: Path | str = "the run",
    *,
    renamed: Mapping[str, str] | None = None,
):
    """`config_cls(**values)` from a run's recorded (JSON) config: lists back to tuples,
    a field recorded under a name since `renamed` under its new name, fields added to the
    command since the run at their defaults; a field the command no longer has is an error."""
    values = with_new_names(values, renamed or {})
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(
            f"`run`: {where} was trained with settings this node_kit's {config_cls.__module__} "
            f"does not have ({', '.join(unknown)}). Load it with the node_kit version that "
            "wrote it."
        )
    hints = typing.get_type_hints(config_cls)
    return config_cls(**{name: _from_json(hints[name], value) for name, value in values.items()})


def _from_json(hint, value: Any) -> Any:
    """A JSON value back as the field's type: a list as a tuple for a tuple field."""
    hints = (hint, *typing.get_args(hint))
    if isinstance(value, list) and any(typing.get_origin(h) is tuple for h in hints):
        return tuple(value)
    return value

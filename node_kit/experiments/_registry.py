"""The list of commands: `python -m node_kit.experiments.<name>` for each name here.

The tests, `experiments/reproduce.py`, `experiments/tables.py`,
`experiments/check_reference.py`, the docs and [`node_kit.load_run`][] iterate this list;
nothing else names the commands. A command is a module that defines a
[`Command`][node_kit.experiments._protocol.Command] as `COMMAND` (see `_protocol.py`).
A user's own command joins for the running process with [`register`][].
"""

import importlib
import sys

from ._protocol import Command


COMMANDS = ("cnf", "timeseries", "spiral", "deq", "meta", "memory", "cnf_overhead")
"""The commands node_kit ships, modules of `node_kit.experiments`."""

PACKAGE = "node_kit.experiments"

_modules: dict[str, str] = {name: f"{PACKAGE}.{name}" for name in COMMANDS}
"""Every registered command's name -> its module."""


def names() -> tuple[str, ...]:
    """The names of the registered commands, node_kit's first."""
    return tuple(_modules)


def is_registered(module: str) -> bool:
    """Whether the importable `module` is a registered command's."""
    return module in _modules.values()


def commands() -> list[Command]:
    """Every registered command (importing each module)."""
    return [get(name) for name in _modules]


def get(name: str) -> Command:
    """The registered command called `name` (`"cnf"`) or defined by the module `name`
    (`"node_kit.experiments.cnf"`); a `ValueError` naming the registered ones otherwise."""
    if not isinstance(name, str):
        raise ValueError(f'a command is named by a str such as "cnf"; got {type(name).__name__}.')
    module = _modules.get(name) or (name if name in _modules.values() else None)
    if module is None:
        raise ValueError(
            f"{name!r} is not a registered command; the commands are {', '.join(_modules)} "
            "(a command of your own joins with node_kit.experiments._registry.register)."
        )
    return _command_of(module)


def register(module: str) -> Command:
    """Register the command that the importable `module` defines (its `COMMAND`), for this
    process: the tools that iterate the registry, and `nk.load_run`, then know it.
    Registering a module again is a no-op; another module under a taken name is an error."""
    command = _command_of(module)
    taken = _modules.get(command.name)
    if taken is not None and taken != module:
        raise ValueError(
            f"the command name {command.name!r} is taken by {taken}; give the "
            f"command in {module} another name."
        )
    _modules[command.name] = module
    return command


def unregister(name: str) -> None:
    """Drop a command registered with [`register`][], by its name or module (node_kit's own
    stay)."""
    command = get(name)
    if command.name in COMMANDS:
        raise ValueError(
            f"{name!r} is one of node_kit's commands; only commands added with "
            "register can be dropped."
        )
    _modules.pop(command.name, None)


def nav_with_commands(nav: list) -> list:
    """A mkdocs nav (a list of pages and `{title: page or list}`) with a "Commands" section
    for the registered commands' pages (`Command.docs`) that it does not name."""
    named = _nav_pages(nav)
    missing = [{c.name: c.docs} for c in commands() if c.docs and c.docs not in named]
    return [*nav, {"Commands": missing}] if missing else nav


def _nav_pages(nav) -> set[str]:
    pages = set()
    for entry in nav or []:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            pages |= _nav_pages(value) if isinstance(value, list) else {value}
    return pages


def _install() -> None:
    """Hand this registry to `nk.load_run`: the library looks commands up here, never
    importing them itself."""
    from .. import _runs

    _runs.use_registry(sys.modules[__name__])


def _command_of(module: str) -> Command:
    if not isinstance(module, str) or not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(
            f"a command is registered by the importable name of its module, such "
            f'as "my_package.my_command"; got {module!r}.'
        )
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or not (error.name == module or module.startswith(error.name + ".")):
            raise  # the module exists; something it imports does not
        raise ValueError(
            f"no module named {module!r} can be imported; put its folder on "
            "PYTHONPATH (or install its package), then register it."
        ) from None
    command = getattr(imported, "COMMAND", None)
    if not isinstance(command, Command):
        raise ValueError(
            f"{module} defines no COMMAND (a node_kit.experiments._protocol."
            "Command); it is not a command."
        )
    return command


_install()

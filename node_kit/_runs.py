"""Load a trained run of a command: its model and config, rebuilt from what the run wrote.

A training command (`python -m node_kit.experiments.<name>`) writes into its `--out`
folder the checkpoint `checkpoint.eqx` while it trains and the weights `model.eqx` when it
ends (`best.eqx` with `--eval-every`), each a plain `eqx.tree_serialise_leaves` file whose
JSON sidecar (`model.eqx.json`) records the command (its module) and the full config of
the run. [`node_kit.load_run`][] reads the sidecar, looks the command up in the command
registry, rebuilds its `Config` and the model's skeleton (`model_skeleton(config)`), and
reads the weights into it.

The library does not import the commands: the registry (`node_kit.experiments._registry`)
hands itself to [`use_registry`][] when it is imported. A run of one of node_kit's own
commands records its module (`node_kit.experiments.cnf`), which `load_run` imports when no
command is imported yet, as the run's data names it; that brings the registry.
"""

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax.numpy as jnp

from ._checks import type_name
from ._io import CheckpointError, deserialise_leaves, previous_path, read_or_fall_back


FILES = {"final": ("model.eqx", "checkpoint.eqx"), "best": ("best.eqx",)}
"""The files a run's weights are read from, in order of preference."""


def load_run(run: str | os.PathLike, *, command: str | None = None, best: bool = False):
    """The trained model of a command's run and its config, without training.

    **Arguments:**

    - `run`: the run's output folder (the `--out` it was trained with).
    - `command`: the command the run must come from (`"cnf"` or
        `"node_kit.experiments.cnf"`); a run of another command is an error. `None`:
        any registered command.
    - `best`: load the best model on the validation split (`best.eqx`, written by
        `--eval-every`) instead of the final one.

    **Returns:**

    `(model, config)`: the model with the trained weights, and the command's frozen
    `Config` as the run was trained (its `out` the folder given here; a flag added to
    the command since then takes its default). The final model is read from `model.eqx`,
    written when training ends, or, for a run that stopped early (killed, diverged),
    from its last `checkpoint.eqx`. Floating weights take the current default float width
    (a run trained in float32 loads as float64 with `jax_enable_x64` on).

    ```python
    model, config = nk.load_run("runs/cnf", command="cnf")  # an nk.CNF, cnf.Config
    log_p = model.log_prob_batched(points)
    ```

    **Raises:**

    `ValueError` naming `run` for a folder that does not exist or holds no run, a run
    of another command, or a command whose runs cannot be loaded;
    [`node_kit.CheckpointError`][] for a damaged file or weights that do not fit the
    command's model.

    !!! warning

        Loading imports the recorded command's module, so only registered commands
        (`node_kit.experiments._registry`) are accepted; the weights themselves are
        plain arrays (`eqx.tree_deserialise_leaves`), never pickles.
    """
    folder = _check_folder(run)
    expected = None if command is None else _registered(command, "`command`")
    if expected is not None and not expected.loadable:
        raise ValueError(
            f"`command`: the runs of {expected.module} cannot be loaded (the command declares "
            f"no model_skeleton); the runs of {_loadable_names()} can."
        )
    path = _weights_file(folder, best, expected)
    # A damaged file (say, a kill between its weights and its sidecar) falls back to the
    # file that holds the same weights (model.eqx: the run's last checkpoint) or the one
    # before (best.eqx: the best model before the latest).
    fallback = path.with_name("checkpoint.eqx") if path.name == "model.eqx" else previous_path(path)
    header, payload, path = read_or_fall_back(path, fallback, fix=_fix(path))
    record = _record(header, path)
    recorded = _recorded_command(record["command"], path, expected)
    values = dict(record["config"])
    if "out" in {field.name for field in dataclasses.fields(recorded.config)}:
        values["out"] = str(folder)  # where the run is now
    config = recorded.config_from_record(values, str(path))
    # The skeleton's shapes and dtypes only (traced, nothing compiled or initialised): the
    # weights replace every array of it.
    build = recorded.model_skeleton
    assert build is not None  # _recorded_command refuses a command without one
    skeleton = eqx.filter_eval_shape(build, config)
    model = _read_weights(payload, skeleton, path)
    return model, config


BUILTIN_COMMANDS = "node_kit.experiments"
"""The package of node_kit's own commands."""

_registry: Any = None
"""The command registry (the module `node_kit.experiments._registry`), once it is imported."""


def use_registry(registry: Any) -> None:
    """How `load_run` finds commands: `registry.get(name)` and `registry.commands()`.
    `node_kit.experiments._registry` calls it when it is imported."""
    global _registry
    _registry = registry


def _commands(name: str = "") -> Any:
    """The registry. Before any command was imported, a run of one of node_kit's own
    commands (`name` its module, or its short name) imports that module, which brings
    the registry; nothing else is imported."""
    module = name if "." in name else f"{BUILTIN_COMMANDS}.{name}"
    own = module.removeprefix(BUILTIN_COMMANDS + ".")
    if _registry is None and own != module and own.isidentifier():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise  # the command exists; something it needs does not
    if _registry is None:
        raise ValueError(
            f"{name!r} is not a registered command: no command is imported in this process. "
            "Import or register the command that wrote the run "
            "(node_kit.experiments._registry.register)."
        )
    return _registry


def _registered(name, what: str):
    """The registered command `name`; a `ValueError` naming `what` otherwise."""
    if not isinstance(name, str):
        raise ValueError(
            f'{what} must be a command\'s name such as "cnf", or None; got {type_name(name)}.'
        )
    try:
        return _commands(name).get(name)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


def _fix(path: Path) -> str:
    """What to do about an unreadable weights file."""
    if path.name == "model.eqx" and (path.parent / "checkpoint.eqx").exists():
        return (
            "Delete it and its sidecar, and nk.load_run reads the run's checkpoint.eqx "
            "instead (the same weights, for a run that finished), or train the run again."
        )
    return "Train the run again, or pass the folder of another run."


def _check_folder(run) -> Path:
    if not isinstance(run, (str, os.PathLike)):
        raise ValueError(
            f"`run` must be the output folder of a training run (a str or path, the --out it "
            f"was trained with); got {type_name(run)}."
        )
    folder = Path(run)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ValueError(
            f"`run` must be the output folder of a training run (the --out it was trained "
            f"with); got {str(folder)!r}, which {what}. Pass the folder a command wrote, e.g. "
            "runs/cnf after python -m node_kit.experiments.cnf --out runs/cnf."
        )
    return folder


def _weights_file(folder: Path, best: bool, command) -> Path:
    names = FILES["best" if best else "final"]
    for name in names:
        if (folder / name).exists():
            return folder / name
    inner = sorted(p.parent.name for name in FILES["final"] for p in folder.glob(f"*/{name}"))
    hint = (
        f" It holds runs in its subfolders {', '.join(dict.fromkeys(inner))}: pass one of those."
        if inner
        else ""
    )
    if best:
        detail = (
            "holds no best.eqx (the best model on the validation split, kept by a run "
            "trained with --eval-every K). Pass best=False for the final model, or "
            "train with --eval-every."
        )
    else:
        module = command.module if command is not None else "node_kit.experiments.<command>"
        detail = (
            f"holds no trained run (no {' or '.join(names)}). Train one there "
            f"(python -m {module} --out {folder}), or pass the folder of a finished run."
        )
    raise ValueError(
        f"`run` must be the output folder of a training run; {str(folder)!r} {detail}{hint}"
    )


def _record(header: dict, path: Path) -> dict:
    """The `{"command", "config"}` a run wrote into the file's sidecar (or old header)."""
    record = header.get("info")
    if not (
        isinstance(record, dict)
        and isinstance(record.get("command"), str)
        and isinstance(record.get("config"), dict)
    ):
        raise ValueError(
            f"`run`: {path} does not say which command wrote it (it was written by an "
            "older node_kit, or by nk.fit outside a command). Resume the run once with its "
            "command and --resume (the same --steps) to record it, or load the weights "
            "with nk.load_checkpoint and the model you built."
        )
    return record


def _recorded_command(name: str, path: Path, expected):
    """The registered command that wrote `path`: `expected` if given, and loadable."""
    try:
        command = _registered(name, "`run`")
    except ValueError:
        raise ValueError(
            f"`run`: {path} was written by the command {name!r}, which is not a registered "
            "command of this process (node_kit's own, or one added with "
            "node_kit.experiments._registry.register); it is not a run node_kit can load. "
            "Register that command first, or load the run with the node_kit version that "
            "wrote it."
        ) from None
    if expected is not None and command is not expected:
        raise ValueError(
            f"`run` must be a run of {expected.module}; {path.parent} is a run of {name!r}. "
            f"Use that command (python -m {command.module} --out {path.parent} ...), or pass "
            f"the folder of a {expected.name} run."
        )
    if not command.loadable:
        loadable = _loadable_names()
        raise ValueError(
            f"`run`: {path.parent} is a run of {command.module}, whose runs cannot be loaded "
            f"(the command declares no model_skeleton); the runs of {loadable} can. Read its "
            "weights with nk.load_checkpoint into the model the command builds."
        )
    return command


def _loadable_names() -> str:
    return ", ".join(c.module for c in _commands().commands() if c.loadable)


def _as_skeleton_float(stream, like):
    """Equinox's reading of one leaf, with a floating array cast to the skeleton's dtype."""
    value = eqx.default_deserialise_filter_spec(stream, like)
    like_dtype = getattr(like, "dtype", None)
    if (
        like_dtype is not None
        and jnp.issubdtype(like_dtype, jnp.floating)
        and jnp.issubdtype(value.dtype, jnp.floating)
        and value.dtype != like_dtype
    ):
        return jnp.asarray(value, like_dtype)
    return value


def _read_weights(payload: bytes, skeleton, path: Path):
    """The skeleton with the weights of `payload`: a model alone (`model.eqx`, `best.eqx`,
    read to the end), or a model then its optimizer state (`checkpoint.eqx`)."""
    # Checks each array's shape; floats take the skeleton's width, so a run trained in
    # float32 loads with float64 on (jax_enable_x64) and the other way round. A
    # checkpoint.eqx holds the optimizer state after the model.
    model, problem = deserialise_leaves(
        payload, skeleton, read_all=path.name != "checkpoint.eqx", filter_spec=_as_skeleton_float
    )
    if problem is not None:
        raise CheckpointError(
            f"the weights in {path} do not fit the model its command builds from the run's "
            f"config ({problem}); the command's model changed since the run was trained. "
            "Load it with the node_kit version that wrote it, or train again.",
            damaged=False,
        )
    return model

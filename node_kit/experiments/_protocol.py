"""The command protocol: the flags every command shares, and what a command declares.

A command is one module, `node_kit/experiments/<name>.py`, that defines a frozen `Config`
dataclass (extending [`TrainConfig`][] if it trains, [`CommandConfig`][] if it only
measures), a `main(config) -> dict`, and a [`Command`][] named `COMMAND` that ties them to
what the rest of the repository asks of a command: its flags (`--help`), whether its runs
can be loaded (`model_skeleton`), the metrics a re-run must give again (`headline`), where
its committed runs live (`committed`), the Markdown tables it writes (`tables`) and the
short run `experiments/check_reference.py` compares (`reference`). One line in
`_registry.COMMANDS` makes it a command; nothing else lists them.

```python
@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    width: int = option(64, "hidden width of the field")
    steps: int = 500                  # a shared flag with this command's default
    out: str = "runs/tiny"

def main(config: Config) -> dict: ...

COMMAND = Command("tiny", Config, main, model_skeleton=model_skeleton,
                  headline=lambda results: {"test_mse": results["test_mse"]})

if __name__ == "__main__":
    COMMAND.run()
```
"""

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import node_kit as nk
from node_kit._checks import check_folder_path, check_int
from node_kit._io import WriteError
from node_kit._lock import run_lock
from node_kit._parallel import DataParallel

from ._cli import config_from_record, parse_config


def option(default: Any, text: str, **metadata: Any) -> Any:
    """A config field with its `--help` text (the default is appended to it); `metadata`
    may add `aliases` and `nargs` (see `_cli.parse_config`)."""
    return dataclasses.field(default=default, metadata={"help": text, **metadata})


# ------------------------------------------------------------------------------ shared flags


@dataclasses.dataclass(frozen=True)
class CommandConfig:
    """The flags of every command: where it writes, its seed, its progress bar."""

    out: str = option(
        "runs", "folder the command writes to (results.json, history.csv, pictures, checkpoints)"
    )
    seed: int = option(0, "seed of every random draw of the run (weights, batches, noise)")
    progress: bool = option(True, "show a progress bar")


@dataclasses.dataclass(frozen=True)
class ParallelConfig:
    """The flags of every training command for devices and processes.

    `--devices N` splits each global batch over N devices (0: all of them);
    `--per-device` solves each device's shard as its own ODE; `--coordinator HOST:PORT
    --num-processes N --process-id I` join N processes (one per host) into one run, and
    `--distributed` lets JAX detect the cluster (e.g. SLURM).
    """

    devices: int = option(0, "devices to split each batch over (0: all)")
    per_device: bool = option(
        False,
        "solve each device's shard as its own ODE (shard_map) "
        "instead of one solve over the global batch",
    )
    coordinator: str = option("", "HOST:PORT of process 0, for a run over several processes")
    num_processes: int = option(1, "processes in the run (with --coordinator)")
    process_id: int = option(0, "this process's index, 0 to --num-processes - 1")
    distributed: bool = option(False, "join the processes JAX detects (SLURM, Open MPI, ...)")
    coordinator_timeout: int = option(
        120, "seconds to wait for the coordinator and every process to join before giving up"
    )


def start_parallel(config: Any) -> DataParallel | None:
    """Join the processes (if asked) and make the device mesh of a run's flags (`None` for a
    command without the device flags)."""
    if not isinstance(config, ParallelConfig):
        return None
    check_int("--devices", config.devices, minimum=0, fix="0 uses every device.")
    check_int("--num-processes", config.num_processes)
    timeout = check_int("--coordinator-timeout", config.coordinator_timeout)
    if config.coordinator or config.num_processes > 1:
        if not config.coordinator:
            raise ValueError(
                f"--num-processes {config.num_processes} needs --coordinator HOST:PORT (process "
                "0's host and a free port), or --distributed to let JAX detect the cluster."
            )
        check_int("--process-id", config.process_id, minimum=0, maximum=config.num_processes - 1)
        nk.initialize_distributed(
            config.coordinator, config.num_processes, config.process_id, timeout=timeout
        )
    elif config.distributed:
        nk.initialize_distributed(timeout=timeout)
    return DataParallel(config.devices or None, per_device=config.per_device)


@dataclasses.dataclass(frozen=True)
class TrainConfig(CommandConfig, ParallelConfig):
    """The flags of every training command. A command gives its own defaults by declaring
    the field again without help text (`steps: int = 2000`): the help stays the shared one."""

    steps: int = option(1000, "training steps (a resumed run stops at this total)")
    batch_size: int = option(
        32, "examples per training step (the global batch, split over the devices)"
    )
    lr: float = option(
        1e-3,
        "peak learning rate of AdamW (weight decay 1e-5), which decays "
        "on a cosine to 5%% of it over --steps",
    )
    clip_norm: float = option(0.0, "clip the gradient's global norm to this (0: off)")
    resume: bool = option(
        False, "continue the run in --out from its checkpoint (the same flags; --steps may grow)"
    )
    checkpoint_every: int = option(
        100, "steps between checkpoints (one is always written at the end)"
    )
    log_every: int = option(10, "steps between rows of history.csv (and of the progress bar)")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The flag of every command that reads a built dataset."""

    data_dir: str = option(
        "",
        "folder of the built datasets (empty: $NODE_KIT_DATA_DIR, else "
        "~/.cache/node_kit/tensorflow_datasets)",
    )


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """The flags of every command whose runs can be loaded (`nk.load_run`)."""

    evaluate: bool = option(
        False,
        "load the trained run in --out and compute its test metrics "
        "again into evaluation.json; no training",
    )
    eval_every: int = option(
        0,
        "every K steps (and after the last), the validation metric "
        "joins the history and the best model so far is kept as best.eqx "
        "(0: off)",
    )


SHARED_CONFIGS = (CommandConfig, TrainConfig, DataConfig, EvaluationConfig, ParallelConfig)
"""The shared flag groups; `--help` lists a command's own flags first, then these in order."""


# ---------------------------------------------------------------------------------- commands


def runs_in_folder(command: str) -> Callable[[Path], dict[str, Path]]:
    """`committed` for a command whose committed runs are `<results>/<command>/results.json`
    (one run, named `<command>`, whose subfolders are its parts) or else
    `<results>/<command>/<run>/results.json` (named `<command>/<run>`)."""

    def committed(results: Path) -> dict[str, Path]:
        folder = results / command
        if (folder / "results.json").exists():
            return {command: folder / "results.json"}
        return {
            f"{command}/{path.parent.name}": path for path in sorted(folder.glob("*/results.json"))
        }

    return committed


def metrics(*names: str) -> Callable[[dict], dict[str, float]]:
    """`headline` of a command whose results hold its headline metrics, `names`, at the top
    level (`headline=metrics("test_nll")`)."""
    return lambda results: {name: results[name] for name in names}


def first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring as one line: a command's description."""
    paragraph = (doc or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split())


@dataclasses.dataclass(frozen=True)
class Command:
    """What a command module declares as its `COMMAND`.

    **Arguments:**

    - `name`: the command's name, `python -m node_kit.experiments.<name>` (its module's
        last part).
    - `config`: its frozen `Config` dataclass; one flag per field.
    - `main`: `main(config) -> dict`, the results it also writes.
    - `choices`: `() -> {field: allowed values}` for the fields argparse checks.
    - `model_skeleton`: `model_skeleton(config)`, the model a run of `config` trains with
        untrained weights: where given, `nk.load_run` loads the command's runs.
    - `headline`: `headline(results) -> {metric: value}`, what a re-run of a committed run
        must give again (`experiments/reproduce.py`); `None`: its runs are not re-run
        (timings).
    - `committed`: `committed(results_folder) -> {run name: results file}`, its committed
        runs; default [`runs_in_folder`][]`(name)`.
    - `output`: `output(config values) -> file name` of the results a run writes in its
        `--out` (default `results.json`).
    - `tables`: `{block name: tables(results_folder) -> Markdown}`, the tables the docs
        quote from its committed runs.
    - `reference`: `(flags, metrics)` of a short run whose history and metrics
        `experiments/check_reference.py` compares with a recorded reference.
    - `renamed`: `{old field: new field}` for flags renamed since an earlier release: the
        old flag is refused naming the new one, and a run recorded with the old name loads.
    - `worker`: `worker(payload) -> dict`, run instead of `main` for `--worker PAYLOAD`
        (a command that measures in child processes).
    - `docs`: its page under docs/ (`"cnf.md"`); the docs nav lists every command's page
        (experiments/mkdocs_hooks.py adds one that mkdocs.yml does not name).
    - `description`: its one-paragraph summary (default: the first paragraph of the
        module's docstring).
    """

    name: str
    config: type
    main: Callable[[Any], dict]
    choices: Callable[[], Mapping[str, Sequence]] = dict
    model_skeleton: Callable[[Any], Any] | None = None
    headline: Callable[[dict], dict[str, float]] | None = None
    committed: Callable[[Path], dict[str, Path]] | None = None
    output: Callable[[dict], str] = lambda config: "results.json"
    tables: Mapping[str, Callable[[Path], str]] = dataclasses.field(default_factory=dict)
    reference: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    renamed: Mapping[str, str] = dataclasses.field(default_factory=dict)
    worker: Callable[[str], dict] | None = None
    docs: str | None = None
    description: str = ""

    def __post_init__(self):
        if not self.description:
            doc = sys.modules[self.main.__module__].__doc__
            object.__setattr__(self, "description", first_paragraph(doc))

    @property
    def module(self) -> str:
        """The importable module of the command (`node_kit.experiments.<name>`), also when
        it runs as `__main__`."""
        module = sys.modules.get(self.config.__module__)
        spec = getattr(module, "__spec__", None)
        return spec.name if spec is not None and spec.name else self.config.__module__

    def committed_runs(self, results: Path) -> dict[str, Path]:
        """`{run name: results file}` of its committed runs under the folder `results`."""
        find = self.committed or runs_in_folder(self.name)
        return find(results)

    @property
    def loadable(self) -> bool:
        """Whether `nk.load_run` loads this command's runs."""
        return self.model_skeleton is not None

    def parse(self, argv: Sequence[str] | None = None):
        """The `Config` of command-line flags (`sys.argv[1:]` by default)."""
        return parse_config(
            self.config,
            argv,
            description=self.description,
            choices=dict(self.choices()),
            prog=f"python -m {self.module}",
            renamed=self.renamed,
            shared=SHARED_CONFIGS,
        )

    def config_from_record(self, values: Mapping[str, Any], where: str = "the run"):
        """The `Config` a run recorded (JSON values; renamed fields under their new names)."""
        return config_from_record(self.config, values, where, renamed=self.renamed)

    def run(self, argv: Sequence[str] | None = None) -> dict:
        """`python -m node_kit.experiments.<name>`: parse, run `main`, and end in
        `error: <message>` without a traceback for what the user can fix (see
        [`exit_on_user_error`][]). A command outside the registry registers itself for the
        process, so that it can load its own runs (`--evaluate`)."""
        return exit_on_user_error(lambda: self._run(argv))

    def _run(self, argv: Sequence[str] | None) -> dict:
        from . import _registry  # which imports this module

        if self.module == "__main__":
            # Its runs would record "__main__", which no other process can look up.
            raise ValueError(
                f"the command {self.name!r} runs as a script; run it as a module, "
                f"python -m <its module> (from the folder above it, or with that folder on "
                "PYTHONPATH), so that its runs record a command other processes can load."
            )
        if not _registry.is_registered(self.module):  # a user's command knows its own runs
            _registry.register(self.module)
        argv = sys.argv[1:] if argv is None else list(argv)
        if self.worker is not None:
            worker = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
            worker.add_argument("--worker")
            known, rest = worker.parse_known_args(argv)
            if known.worker:
                return self.worker(known.worker)
            argv = rest
        config = self.parse(argv)
        if hasattr(config, "seed"):  # before any work: some commands use the seed first
            check_seed(config.seed)
        with _run_folder_lock(config):
            return self.main(config)


def _run_folder_lock(config: Any) -> contextlib.AbstractContextManager:
    """The lock on the config's existing `--out` folder for the whole command, so that a
    second process running into the same folder is refused at once (only process 0 of a
    multi-process run writes there; with --distributed the index is not known yet, and
    the training's own checkpoint lock serves)."""
    out = getattr(config, "out", None)
    if out is None:
        return contextlib.nullcontext()
    folder = check_out_folder(out)
    if getattr(config, "distributed", False) or getattr(config, "process_id", 0) != 0:
        return contextlib.nullcontext()
    if not folder.is_dir():  # a new run: made once its flags pass (the checkpoint's lock
        return contextlib.nullcontext()  # then keeps a second process from training there)
    return run_lock(folder / "run.lock", what=f"the run folder {folder}")


def check_seed(seed: Any) -> int:
    """`--seed`: an int JAX takes as a key's seed."""
    check_int("--seed", seed, minimum=0)  # "a non-negative int" first
    return check_int(
        "--seed", seed, minimum=0, maximum=2**63 - 1, expected="an int in [0, 2**63 - 1]"
    )


def check_out_folder(out: Any) -> Path:
    """`--out` as a `Path`: a folder, or a path where one can be made (not a file, not
    below a file, not empty)."""
    fix = "Choose another --out, e.g. --out runs/mine."
    return check_folder_path("--out", out, purpose="the run's files", fix=fix)


def exit_on_user_error(run: Callable[[], dict]) -> dict:
    """`run()`, ending in `error: <message>` on stderr without a traceback for what the
    user can fix.

    A divergence or an unusable checkpoint exits with status 1; a bad value (a
    `ValueError`, which node_kit's checks raise naming the flag) with status 2, as
    argparse does for a malformed flag. Anything else keeps its traceback: it is a bug.
    """
    try:
        return run()
    except (nk.TrainingDiverged, nk.CheckpointError, nk.RunLocked, WriteError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

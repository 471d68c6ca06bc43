"""The shared runner of the training commands: out dir, named keys, fit, results, pictures.

A command keeps what differs (data, model, loss, metrics, picture) and hands the rest
to one [`Run`][]:

```python
def main(config: Config) -> dict:
    run = Run(config, keys=("model", "train", "eval", "plot"))  # out dir made, seed split
    model = build_model(config, key=run.keys["model"])
    model, history = run.fit(model, loss, optimizer, batch_at)  # checkpoint, resume, timed
    results = run.results(                                      # {"config", "environment", ...}
        **evaluate(model, key=run.keys["eval"]),
        train_seconds_this_run=run.train_seconds,
    )
    run.write(results)                         # results.json, atomically
    fig = draw(model, key=run.keys["plot"])
    run.save_figure(fig, "picture.png")        # atomic PNG in the out dir
    return results
```

The config is a frozen dataclass with at least `seed`, `out`, `steps`, `resume` and
`progress`. The keys are `jr.split(jr.key(config.seed), len(keys))` in the order named.
The checkpoint `<out>/checkpoint.eqx` carries [`run_meta`][]`(config)`, and resuming
from another config is refused; a resume first removes what a killed run left half-written.

Every weights file of a run (`checkpoint.eqx`, `model.eqx` written when training ends,
`best.eqx` with `--eval-every`) records the command's module and the full config, so
that `nk.load_run(out)` rebuilds the model without training. A command whose module
defines `model_skeleton(config)` can be loaded; `_trained.load_trained` is how a command
samples or evaluates a trained run (`--sample`, `--evaluate`), and [`Validation`][] what
it evaluates every `--eval-every` steps.
"""

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.random as jr
import numpy as np

import node_kit as nk

from .._checkpoint import Checkpoint, save_checkpoint
from .._checks import check_int, check_real, make_folder
from .._history import read_history
from .._io import (
    CheckpointError,
    copy_pair,
    previous_path,
    read_checkpoint_bytes,
    read_or_fall_back,
    remove_temp_files,
    remove_weights,
)
from .._parallel import is_main_process, local_value
from ._cli import _module_name, run_meta
from ._outputs import environment, provenance, save_figure, write_json
from ._protocol import check_seed, start_parallel


USE_FLAGS = ("sample", "evaluate", "eval_every", "eval_rtol", "eval_atol", "coordinator_timeout")
"""Flags that say what to do with a run or how to evaluate it, not what it trains: not
checked when resuming (a run may be resumed with other ones)."""


@dataclasses.dataclass(frozen=True)
class Validation:
    """What `--eval-every K` computes every `K` training steps (and after the last).

    `metrics(model) -> {name: float}` on the validation split (each name a column of the
    history); `best` names the one that picks the best model so far (kept as
    `<out>/best.eqx`), lower is better unless `higher_is_better`.
    """

    metrics: Callable[[Any], dict]
    best: str
    higher_is_better: bool = False


def split_keys(seed: int, names: Sequence[str]) -> dict[str, Any]:
    """`{name: key}`: `jr.split(jr.key(seed), len(names))`, one key per name in order."""
    if len(set(names)) != len(names):
        raise ValueError(f"key names must be distinct; got {tuple(names)}.")
    check_seed(seed)
    return dict(zip(names, jr.split(jr.key(seed), len(names))))


class Run:
    """One run of a command: its config, output folder and named keys.

    **Arguments:**

    - `config`: the command's frozen config dataclass (`seed`, `out`; `steps`, `resume`
        and `progress` for [`Run.fit`][]).
    - `keys`: names for the keys split from `config.seed` (`run.keys["model"]`).
    - `training`: the command trains: its training flags (`steps`, `batch_size`, `lr`,
        `checkpoint_every`, `clip_norm`, those it has) are checked now, before any work.
    """

    def __init__(self, config: Any, *, keys: Sequence[str], training: bool = True):
        self.data_parallel = start_parallel(config)
        if training:
            check_training_flags(config)
        self.config: Any = config  # the command's Config
        self.out = Path(config.out)
        self.checkpoint_path = self.out / "checkpoint.eqx"
        """`<out>/checkpoint.eqx`, written during [`Run.fit`][]."""
        self.model_path = self.out / "model.eqx"
        """`<out>/model.eqx`: the trained weights, written when [`Run.fit`][] ends."""
        self.best_path = self.out / "best.eqx"
        """`<out>/best.eqx`: the best weights on the validation split (`--eval-every`)."""
        self.history_path = self.out / "history.csv"
        """`<out>/history.csv`, appended to during [`Run.fit`][]."""
        if getattr(config, "resume", False) and not (
            self.checkpoint_path.exists() or previous_path(self.checkpoint_path).exists()
        ):
            raise CheckpointError(
                f"--resume found no checkpoint in {self.out} (no checkpoint.eqx); drop --resume "
                "to start a fresh run there, or pass the --out of the run to continue."
            )
        make_folder(self.out, "--out")
        if getattr(config, "resume", False):  # what a killed run was writing when it died
            remove_temp_files(self.out)
        self.keys = split_keys(config.seed, keys)
        self.train_seconds = 0.0
        """The wall seconds of [`Run.fit`][] (0 before it)."""
        self.started = time.perf_counter()
        self.best: _BestModel | None = None
        recorded = {
            k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "resume")
        }
        self.record = {
            "command": _module_name(type(config)),
            "config": json.loads(json.dumps(recorded)),
        }
        """What every weights file of the run records: the command's module and config
        (without `out` and `resume`, how this process ran: a moved or resumed run's files
        are the same)."""

    def fit(
        self,
        model,
        loss: Callable,
        optimizer,
        batch_at: Callable,
        *,
        validation: Validation | None = None,
        **fit_options,
    ):
        """[`node_kit.fit`][] for `config.steps` steps with the key `keys["train"]`.

        Checkpoints go to `<out>/checkpoint.eqx` with `run_meta(config)`; `--resume`
        continues from it. The history is appended to `<out>/history.csv` as it is
        logged (on resume, the rows after the checkpoint's step are dropped and computed
        again). `fit_options` go to `nk.fit`; `config.checkpoint_every` is used if the
        config has one. When training ends, the weights alone go to `<out>/model.eqx`
        (what `nk.load_run` reads; a fresh or resumed run removes the one before).
        With `config.eval_every` K > 0, `validation` is computed every K steps: its
        metrics join the history and the best model so far is kept as `<out>/best.eqx`
        (its step and value in [`Run.results`][]; a resumed run keeps the best of the runs
        before it, a fresh one starts over).
        The wall time of the call is kept as `run.train_seconds`.

        **Returns:**

        `(model, history)`: the trained model and every row of `<out>/history.csv`, so
        after a resume also the rows logged before the checkpoint (what an uninterrupted
        run would have logged).
        """
        config = self.config
        start = time.perf_counter()
        if self.data_parallel is not None:
            fit_options = {"data_parallel": self.data_parallel, **fit_options}
        every = getattr(config, "eval_every", 0)
        if every:
            if validation is None:
                raise ValueError(
                    f"--eval-every is not supported by {self.record['command']}; "
                    "pass --eval-every 0."
                )
            self.best = _BestModel(self, validation)
            fit_options = {"evaluate": self.best, "evaluate_every": every, **fit_options}
        if is_main_process():
            remove_weights(self.model_path)  # from the run before: no longer the end
            if not config.resume:
                remove_weights(self.best_path)
                remove_weights(previous_path(self.best_path))
        meta = self.meta
        model, _ = nk.fit(
            model,
            loss,
            optimizer,
            batch_at,
            config.steps,
            key=self.keys["train"],
            checkpoint_path=self.checkpoint_path,
            resume=config.resume,
            meta=meta,
            progress=config.progress,
            history_path=self.history_path,
            info=self.record,
            **{
                "checkpoint_every": getattr(config, "checkpoint_every", 100),
                "log_every": getattr(config, "log_every", 10),
                **fit_options,
            },
        )
        self.train_seconds = time.perf_counter() - start
        if is_main_process():
            step = read_checkpoint_bytes(self.checkpoint_path)[0]["step"]
            save_checkpoint(
                self.model_path,
                Checkpoint(_on_host(model), None, step),
                meta,
                info=self.record,
                keep_previous=False,
            )
        return model, read_history(self.history_path)

    @property
    def meta(self) -> dict:
        """What must match to resume: [`run_meta`][]`(config)` without the [`USE_FLAGS`][]."""
        return {k: v for k, v in run_meta(self.config).items() if k not in USE_FLAGS}

    def earlier_train_seconds(self) -> float:
        """Training seconds of the runs this one resumes (from their `results.json`).

        Call it before [`Run.write`][] replaces that file; 0 for a fresh run.
        """
        path = self.out / "results.json"
        if not self.config.resume or not path.exists():
            return 0.0
        earlier = json.loads(path.read_text())
        return float(earlier.get("train_seconds_total", earlier.get("train_seconds_this_run", 0.0)))

    def batches(self, batch_at: Callable, train: Any) -> Callable[[int], Any]:
        """`step -> batch` for [`Run.fit`][]: `batch_at(train, step, batch_size=...,
        seed=..., rows=...)` with the config's batch size and seed, and this process's rows
        of each global batch (see [`Run.rows`][])."""
        size = self.config.batch_size
        return functools.partial(
            batch_at, train, batch_size=size, seed=self.config.seed, rows=self.rows(size)
        )

    def rows(self, batch_size: int) -> slice:
        """The rows of each global batch this process builds (all of them with one process).

        Checks that `batch_size` splits evenly over the devices (an error lists the
        nearest sizes that do).
        """
        if self.data_parallel is None:
            return slice(0, batch_size)
        return self.data_parallel.process_rows(batch_size)

    def results(self, **fields) -> dict:
        """`{"config", "provenance", "environment", "devices", "processes", **fields}`: the
        start of every results.json. `provenance` (versions, git commit, command line,
        wall seconds since the run began) is described in [`provenance`][]. With
        `--eval-every`, `validation` holds the best step and value on the validation split."""
        parallel = (
            {}
            if self.data_parallel is None
            else {
                "devices": self.data_parallel.num_devices,
                "processes": jax.process_count(),
            }
        )
        validation = {} if self.best is None else {"validation": self.best.summary()}
        return {
            "config": dataclasses.asdict(self.config),
            "provenance": provenance(wall_seconds=time.perf_counter() - self.started),
            "environment": environment(),
            **parallel,
            **validation,
            **fields,
        }

    def write(self, results: dict, *, name: str = "results.json") -> None:
        """Write `<out>/<name>` (`results.json`) atomically (on process 0 only)."""
        if is_main_process():
            write_json(self.out / name, results)

    def save_figure(self, fig, name: str, **options) -> Path:
        """Save `fig` as `<out>/<name>` (atomic PNG, on process 0 only; `options` go to
        `save_figure`)."""
        path = self.out / name
        if is_main_process():
            save_figure(fig, path, **options)
        return path


class _BestModel:
    """`evaluate(model, step)` for `nk.fit`: the validation metrics, and `<out>/best.eqx`
    rewritten whenever the model is the best so far (the best of the runs a resumed run
    continues included, read from that file's header)."""

    def __init__(self, run: Run, validation: Validation):
        self.run, self.validation = run, validation
        self.path = run.best_path
        self.so_far: dict | None = None
        if run.config.resume and self.path.exists():
            header, _, read = read_or_fall_back(
                self.path,
                previous_path(self.path),
                fix=(
                    "Delete it to forget the best model so far (the next validation writes a new "
                    "one), then resume again."
                ),
            )
            self.so_far = header.get("info", {}).get("best")
            if read != self.path and is_main_process():  # repaired from best.eqx.prev
                copy_pair(read, self.path)

    def better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.so_far is None:
            return True
        if self.validation.higher_is_better:
            return value > self.so_far["value"]
        return value < self.so_far["value"]

    def __call__(self, model, step: int) -> dict:
        metrics = {k: float(v) for k, v in self.validation.metrics(model).items()}
        value = metrics[self.validation.best]
        if self.better(value):
            self.so_far = {"metric": self.validation.best, "value": value, "step": step}
            if is_main_process():
                save_checkpoint(
                    self.path,
                    Checkpoint(_on_host(model), None, step),
                    self.run.meta,
                    info={**self.run.record, "best": self.so_far},
                )
        return metrics

    def summary(self) -> dict:
        """`{"every", "metric", "higher_is_better", "best_step", "best_value", "file"}`."""
        best = self.so_far or {}
        return {
            "every": self.run.config.eval_every,
            "metric": self.validation.best,
            "higher_is_better": self.validation.higher_is_better,
            "best_step": best.get("step"),
            "best_value": best.get("value"),
            "file": self.path.name if best else None,
        }


def part_config(config: Any, **changes: Any) -> Any:
    """`config` with `changes`, for one part of a command's run (one model, one method, in
    its own folder): the processes are joined once, by the command's own [`Run`][], so the
    part's run joins none."""
    return dataclasses.replace(
        config, coordinator="", num_processes=1, process_id=0, distributed=False, **changes
    )


def _on_host(model):
    """The model's arrays as NumPy arrays of this process (replicated over devices)."""
    return jax.tree_util.tree_map(
        lambda x: local_value(x) if isinstance(x, jax.Array) else x, model
    )


def check_training_flags(config) -> None:
    """Check the training flags a config has: positive counts, a positive learning rate."""
    for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
        if hasattr(config, name):
            check_int("--" + name.replace("_", "-"), getattr(config, name))
    if hasattr(config, "lr"):
        check_real("--lr", config.lr, positive=True, fix="E.g. --lr 1e-3.")
    if hasattr(config, "clip_norm"):
        check_real("--clip-norm", config.clip_norm, non_negative=True, fix="0 switches it off.")


def recent_mean(history: list[dict], key: str) -> float | None:
    """Mean of `key` over the last ten logged rows of a history (`None` if never logged)."""
    values = [h[key] for h in history[-10:] if key in h]
    return float(np.mean(values)) if values else None

"""Training: one jitted step, a resumable loop with verified checkpoints and a divergence guard."""

import csv
import io
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jaxtyping import PRNGKeyArray, PyTree

from ._checks import check_callable, check_int, check_key, type_name
from ._io import (
    atomic_write_bytes,
    CheckpointError,
    previous_path,
    read_checkpoint_bytes,
    write_checkpoint_bytes,
)

LossFn = Callable[[PyTree, Any, PRNGKeyArray], tuple[jax.Array, dict[str, jax.Array]]]
"""`loss_fn(model, batch, key) -> (loss, aux)`, `aux` a dict of scalars to log."""

_FIX = (
    "Lower the learning rate (a resumed run may change it), clip the gradients, tighten "
    "rtol/atol, or add regularisation, then resume."
)


class TrainingDiverged(RuntimeError):
    """Training stopped: a non-finite loss, gradient or parameter, or a failed solve.

    The last checkpoint whose parameters are known good is kept.
    """


def _check_callables(*, loss_fn, optimizer, batch_at=None) -> None:
    """The functions handed to training: a callable loss (and `batch_at`), an optax optimizer."""
    check_callable("loss_fn", loss_fn, expected="a callable loss_fn(model, batch, key) -> (loss, aux)")
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            "`optimizer` must be an optax.GradientTransformation such as optax.adam(1e-3); "
            f"got {type_name(optimizer)} {optimizer!r}."
        )
    if batch_at is not None:
        check_callable("batch_at", batch_at, expected="a callable batch_at(step) -> batch")


def _update(model, opt_state, batch, key, loss_fn: LossFn, optimizer):
    _check_callables(loss_fn=loss_fn, optimizer=optimizer)
    grad_fn = eqx.filter_value_and_grad(loss_fn, has_aux=True)
    (loss, aux), grads = grad_fn(model, batch, key)
    params = eqx.filter(model, eqx.is_inexact_array)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return eqx.apply_updates(model, updates), opt_state, loss, aux, grads


@eqx.filter_jit
def make_step(model, opt_state, batch, key, loss_fn: LossFn, optimizer):
    """One optimisation step: loss, gradient, optax update. The only jit boundary.

    **Arguments:**

    - `model`: the model; its inexact arrays are trained.
    - `opt_state`: `optimizer.init(eqx.filter(model, eqx.is_inexact_array))`.
    - `batch`: a PyTree of arrays with fixed shapes (so the step compiles once).
    - `key`: a key for this step (e.g. `jr.fold_in(key, step)`).
    - `loss_fn`: `loss_fn(model, batch, key) -> (loss, aux)`.
    - `optimizer`: an `optax.GradientTransformation`.

    **Returns:**

    `(model, opt_state, loss, aux)` after the update; `loss` and `aux` are those of
    the model before the update.
    """
    return _update(model, opt_state, batch, key, loss_fn, optimizer)[:4]


def _all_finite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


@eqx.filter_jit
def _guarded_step(model, opt_state, batch, key, loss_fn: LossFn, optimizer):
    """`make_step` plus whether the gradient and the updated parameters are finite."""
    model, opt_state, loss, aux, grads = _update(model, opt_state, batch, key, loss_fn, optimizer)
    return model, opt_state, loss, aux, (_all_finite(grads), _all_finite(model))


class Checkpoint(eqx.Module):
    """Where a run is: model, optimizer state and the number of steps taken."""

    model: PyTree
    opt_state: PyTree
    step: int = eqx.field(static=True)


def save_checkpoint(path: str | os.PathLike, state: Checkpoint, meta: dict) -> None:
    """Write the state, its config `meta` and a checksum atomically.

    The checkpoint it replaces is kept as `<path>.prev`, so a damaged latest file still
    leaves one to resume from.
    """
    if not isinstance(state, Checkpoint):
        raise ValueError(
            f"`state` must be a node_kit.Checkpoint(model, opt_state, step); got "
            f"{type_name(state)}. Wrap it: nk.Checkpoint(model, opt_state, step)."
        )
    if not isinstance(meta, dict):
        raise ValueError(f"`meta` must be a dict of JSON values; got {type_name(meta)}.")
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, (state.model, state.opt_state))
    write_checkpoint_bytes(path, {**meta, "step": state.step}, buffer.getvalue())


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The checked JSON header of a checkpoint (its config and step)."""
    return read_checkpoint_bytes(path)[0]


def load_checkpoint(path: str | os.PathLike, like: Checkpoint, meta: dict) -> Checkpoint:
    """Load a checkpoint into the structure of `like`, after checking it and its config.

    **Raises:**

    [`node_kit.CheckpointError`][] (a `ValueError`) naming the file, what is wrong and
    what to do: it is missing, not a checkpoint, truncated, damaged (the checksum does not
    match), from a run with another config (the keys of `meta` that differ), or does not
    fit `like` (another model size or another optimizer's state). A `like` whose
    `opt_state` is `None` reads the model only.
    """
    saved, payload = read_checkpoint_bytes(path)
    differ = sorted(k for k in meta if saved.get(k) != meta[k])
    if differ:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {meta[k]!r}" for k in differ)
        raise CheckpointError(
            f"checkpoint {path} is from another config ({detail}). Resume with the same "
            "settings, or use a new output dir.",
            damaged=False,
        )
    stream = io.BytesIO(payload)
    try:
        model, opt_state = eqx.tree_deserialise_leaves(stream, (like.model, like.opt_state))
        # Everything must be read, unless `like` asks for the model only (opt_state None).
        unread = len(payload) - stream.tell()
        problem = None if unread == 0 or like.opt_state is None else (
            f"{unread} bytes of it were not read"
        )
    except Exception as error:  # equinox/numpy raise many kinds for a mismatched tree
        problem = f"{type(error).__name__}: {error}"
    if problem is not None:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model and optimizer (another model size, "
            f"or another optimizer's state; {problem}). Resume with the settings it was "
            "written with, or use a new output dir."
        )
    return Checkpoint(model, opt_state, int(saved["step"]))


def resume_checkpoint(path: str | os.PathLike, like: Checkpoint, meta: dict) -> Checkpoint:
    """[`node_kit.load_checkpoint`][], falling back to `<path>.prev` if the latest is unusable.

    A fallback is announced with a warning naming both files and the reason. A
    checkpoint from another config is never skipped over: that error is raised as is.
    """
    try:
        return load_checkpoint(path, like, meta)
    except CheckpointError as error:
        previous = previous_path(path)
        if not error.damaged or not previous.exists():
            raise
        state = load_checkpoint(previous, like, meta)
        warnings.warn(
            f"resuming from the previous checkpoint {previous} (step {state.step}): {error}",
            stacklevel=2,
        )
        return state


def fit(
    model: PyTree,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    batch_at: Callable[[int], PyTree],
    num_steps: int,
    *,
    key: PRNGKeyArray,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    meta: dict | None = None,
    progress: bool = True,
    log_every: int = 10,
    history_path: str | os.PathLike | None = None,
) -> tuple[PyTree, list[dict[str, float]]]:
    """Train `model` for `num_steps` steps; resumable, checkpointed, guarded against divergence.

    Data order is a pure function of the step (`batch_at(step)`) and the step key is
    `jr.fold_in(key, step)`, so a resumed run continues exactly where it stopped.

    A checkpoint holds parameters that are known good: those of step `s` are written
    once step `s + 1` has computed a finite loss from them with every solve successful
    (the final checkpoint once its parameters are finite). The one replaced is kept as
    `<checkpoint_path>.prev`.

    **Arguments:**

    - `model`, `loss_fn`, `optimizer`: as for [`node_kit.make_step`][].
    - `batch_at`: `step -> batch` with fixed shapes.
    - `num_steps`: total number of steps (a resumed run stops at the same total).
    - `key`: base key of the run.
    - `checkpoint_path`: file for atomic checkpoints (`None`: no checkpoints).
    - `checkpoint_every`: steps between checkpoints (one is always written at the end).
    - `resume`: continue from `checkpoint_path` (it must exist; a damaged latest file
        falls back to `<checkpoint_path>.prev` with a warning).
    - `meta`: JSON-able config written into checkpoints and checked on resume.
    - `progress`: show a progress bar with the loss, solver steps and steps/s.
    - `log_every`: record the loss and `aux` every this many steps.
    - `history_path`: a CSV file the records are appended to as they are made (flushed
        to disk each time, so a crash loses none); on resume, rows after the checkpoint's
        step are dropped.

    **Returns:**

    `(model, history)`, `history` the list of `{"step", "loss", **aux, "time"}` dicts
    recorded by this call.

    **Raises:**

    [`node_kit.TrainingDiverged`][] if the loss, the gradient or an updated parameter
    becomes NaN or inf, or a solve fails inside a step; the last good checkpoint is kept.
    [`node_kit.CheckpointError`][] if `resume` finds no usable checkpoint.
    """
    check_key("key", key)
    _check_callables(loss_fn=loss_fn, optimizer=optimizer, batch_at=batch_at)
    num_steps = check_int("num_steps", num_steps)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    log_every = check_int("log_every", log_every)
    meta = dict(meta or {})
    state = Checkpoint(model, optimizer.init(eqx.filter(model, eqx.is_inexact_array)), 0)
    if resume:
        if checkpoint_path is None:
            raise ValueError(
                "`resume=True` needs the `checkpoint_path` to resume from; got None. Pass "
                "the path, or resume=False to start fresh."
            )
        state = resume_checkpoint(checkpoint_path, state, meta)
    history_file = _HistoryFile(history_path, keep_until=state.step) if history_path else None
    history: list[dict[str, float]] = []
    bar = _progress_bar(state.step, num_steps, progress)
    start = time.perf_counter()
    model, opt_state, pending = state.model, state.opt_state, None
    try:
        for step in range(state.step, num_steps):
            model, opt_state, record, problem = _checked_step(
                model, opt_state, step, batch_at, key, loss_fn, optimizer, checkpoint_path
            )
            if pending is not None:  # its parameters just gave a finite loss
                save_checkpoint(checkpoint_path, pending, meta)
                pending = None
            if problem is not None:
                raise TrainingDiverged(_diverged_message(problem, checkpoint_path))
            _update_bar(bar, record)
            if (step + 1) % log_every == 0 or step + 1 == num_steps:
                history.append({**record, "time": time.perf_counter() - start})
                if history_file is not None:
                    history_file.append(history[-1])
            if checkpoint_path is not None and (
                (step + 1) % checkpoint_every == 0 or step + 1 == num_steps
            ):
                pending = Checkpoint(model, opt_state, step + 1)
        if pending is not None:
            save_checkpoint(checkpoint_path, pending, meta)
    finally:
        bar.close()
    return model, history


def _checked_step(model, opt_state, step, batch_at, key, loss_fn, optimizer, checkpoint_path):
    """One guarded step: `(model, opt_state, record, problem)`.

    A failed solve or a non-finite loss raises `TrainingDiverged` at once: the parameters
    the step started from are not good. A non-finite gradient or updated parameter is
    returned as `problem` (a sentence), after the loss showed those parameters good.
    """
    try:
        new_model, new_opt_state, loss, aux, (grads_ok, params_ok) = _guarded_step(
            model, opt_state, batch_at(step), jr.fold_in(key, step), loss_fn, optimizer
        )
        loss = float(loss)
    except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as error:
        cause = f"a solve failed inside step {step + 1} ({_runtime_message(error)})"
        raise TrainingDiverged(_diverged_message(cause, checkpoint_path)) from error
    if not math.isfinite(loss):
        cause = f"loss became {loss} at step {step + 1}"
        raise TrainingDiverged(_diverged_message(cause, checkpoint_path))
    problem = None
    if not bool(grads_ok):
        problem = f"the gradient became NaN or inf at step {step + 1} (the loss was {loss:.6g})"
    elif not bool(params_ok):
        problem = f"the update of step {step + 1} made a parameter NaN or inf"
    record = {"step": step + 1, "loss": loss, **{k: float(v) for k, v in aux.items()}}
    return new_model, new_opt_state, record, problem


def _runtime_message(error: Exception) -> str:
    """The message an `eqx.error_if` raised, without the stack traces equinox adds."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "EquinoxRuntimeError: " in line:
            return line.split("EquinoxRuntimeError: ", 1)[1]
    return lines[0] if lines else type(error).__name__


def _diverged_message(cause: str, checkpoint_path) -> str:
    kept = (
        f"The last good checkpoint is kept at {checkpoint_path}."
        if checkpoint_path is not None and Path(checkpoint_path).exists()
        else "No checkpoint was written before it."
    )
    return f"{cause}; training stopped. {kept} {_FIX}"


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a history CSV that [`node_kit.fit`][] appended to (`history_path`).

    **Returns:**

    A list of `{"step": int, "loss": float, **aux, "time": float}`, one per logged step,
    oldest first; empty if the file does not exist. After a resume it holds the rows of
    every run so far, not only those of the last call.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`path` must be a str or os.PathLike; got {type_name(path)}.")
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [
            {k: int(v) if k == "step" else float(v) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


class _HistoryFile:
    """A history CSV appended row by row, each row flushed and synced to disk.

    On resume the rows up to `keep_until` (the checkpoint's step) are kept and later ones,
    which the resumed run computes again, are dropped.
    """

    def __init__(self, path: str | os.PathLike, *, keep_until: int):
        self.path = Path(path)
        self.fields: list[str] | None = None
        rows: list[dict] = []
        if keep_until > 0 and self.path.exists():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or []) or None
                rows = [r for r in reader if float(r["step"]) <= keep_until]
        buffer = io.StringIO()
        if self.fields:
            writer = csv.DictWriter(buffer, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_bytes(self.path, buffer.getvalue().encode())

    def append(self, record: dict) -> None:
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields or list(record))
            if self.fields is None:
                self.fields = list(record)
                writer.writeheader()
            writer.writerow(record)
            f.flush()
            os.fsync(f.fileno())


def _progress_bar(initial: int, total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True
    )


def _update_bar(bar, record: dict[str, float]) -> None:
    postfix = {"loss": f"{record['loss']:.4f}"}
    if "num_steps" in record:
        postfix["solver steps"] = f"{record['num_steps']:.0f}"
    bar.set_postfix(postfix, refresh=False)
    bar.update(1)

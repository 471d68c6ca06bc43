"""Training: one jitted step, a resumable loop with atomic checkpoints and a NaN guard."""

import io
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.random as jr
import optax
from jaxtyping import PRNGKeyArray, PyTree

from ._io import atomic_write_bytes

LossFn = Callable[[PyTree, Any, PRNGKeyArray], tuple[jax.Array, dict[str, jax.Array]]]
"""`loss_fn(model, batch, key) -> (loss, aux)`, `aux` a dict of scalars to log."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


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
    grad_fn = eqx.filter_value_and_grad(loss_fn, has_aux=True)
    (loss, aux), grads = grad_fn(model, batch, key)
    params = eqx.filter(model, eqx.is_inexact_array)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    model = eqx.apply_updates(model, updates)
    return model, opt_state, loss, aux


class Checkpoint(eqx.Module):
    """Where a run is: model, optimizer state and the number of steps taken."""

    model: PyTree
    opt_state: PyTree
    step: int = eqx.field(static=True)


def save_checkpoint(path: str | os.PathLike, state: Checkpoint, meta: dict) -> None:
    """Write the state and a JSON header atomically (temp file + rename)."""
    buffer = io.BytesIO()
    header = json.dumps({**meta, "step": state.step}).encode()
    buffer.write(len(header).to_bytes(8, "little") + header)
    eqx.tree_serialise_leaves(buffer, (state.model, state.opt_state))
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint (its config and step)."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(size))


def load_checkpoint(path: str | os.PathLike, like: Checkpoint, meta: dict) -> Checkpoint:
    """Load a checkpoint into the structure of `like`, after checking its config.

    Raises `ValueError` if the checkpoint was written by a run with another config
    (the keys of `meta` must match), naming the keys that differ.
    """
    saved = read_checkpoint_meta(path)
    differ = sorted(k for k in meta if saved.get(k) != meta[k])
    if differ:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {meta[k]!r}" for k in differ)
        raise ValueError(
            f"checkpoint {path} is from another config ({detail}). Resume with the same "
            "settings, or use a new output dir."
        )
    with open(path, "rb") as f:
        f.seek(8 + int.from_bytes(f.read(8), "little"))
        model, opt_state = eqx.tree_deserialise_leaves(f, (like.model, like.opt_state))
    return Checkpoint(model, opt_state, int(saved["step"]))


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
) -> tuple[PyTree, list[dict[str, float]]]:
    """Train `model` for `num_steps` steps; resumable, checkpointed, NaN-guarded.

    Data order is a pure function of the step (`batch_at(step)`) and the step key is
    `jr.fold_in(key, step)`, so a resumed run continues exactly where it stopped.

    **Arguments:**

    - `model`, `loss_fn`, `optimizer`: as for [`node_kit.make_step`][].
    - `batch_at`: `step -> batch` with fixed shapes.
    - `num_steps`: total number of steps (a resumed run stops at the same total).
    - `key`: base key of the run.
    - `checkpoint_path`: file for atomic checkpoints (`None`: no checkpoints).
    - `checkpoint_every`: steps between checkpoints (one is always written at the end).
    - `resume`: continue from `checkpoint_path` if it exists.
    - `meta`: JSON-able config written into checkpoints and checked on resume.
    - `progress`: show a progress bar with the loss, solver steps and steps/s.
    - `log_every`: record the loss and `aux` every this many steps.

    **Returns:**

    `(model, history)`, `history` a list of `{"step", "loss", "time", **aux}` dicts.

    **Raises:**

    [`node_kit.TrainingDiverged`][] if the loss becomes NaN or inf; the last good
    checkpoint is left in place.
    """
    meta = dict(meta or {})
    state = Checkpoint(model, optimizer.init(eqx.filter(model, eqx.is_inexact_array)), 0)
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        state = load_checkpoint(checkpoint_path, state, meta)
    history: list[dict[str, float]] = []
    bar = _progress_bar(state.step, num_steps, progress)
    start = time.perf_counter()
    model, opt_state = state.model, state.opt_state
    for step in range(state.step, num_steps):
        new = make_step(model, opt_state, batch_at(step), jr.fold_in(key, step), loss_fn, optimizer)
        loss = float(new[2])
        if not math.isfinite(loss):
            bar.close()
            raise TrainingDiverged(_diverged_message(step, loss, checkpoint_path))
        model, opt_state, aux = new[0], new[1], new[3]
        record = {"step": step + 1, "loss": loss, **{k: float(v) for k, v in aux.items()}}
        _update_bar(bar, record)
        if (step + 1) % log_every == 0 or step + 1 == num_steps:
            history.append({**record, "time": time.perf_counter() - start})
        if checkpoint_path is not None and (
            (step + 1) % checkpoint_every == 0 or step + 1 == num_steps
        ):
            save_checkpoint(checkpoint_path, Checkpoint(model, opt_state, step + 1), meta)
    bar.close()
    return model, history


def _diverged_message(step: int, loss: float, checkpoint_path) -> str:
    kept = (
        f"The last good checkpoint is kept at {checkpoint_path}."
        if checkpoint_path is not None and Path(checkpoint_path).exists()
        else "No checkpoint was written before it."
    )
    return (
        f"loss became {loss} at step {step + 1}; training stopped. {kept} Lower the "
        "learning rate (a resumed run may change it), tighten rtol/atol, or add "
        "regularisation, then resume."
    )


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

"""Training: one jitted step, a resumable loop with verified checkpoints and a divergence guard."""

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from jaxtyping import PRNGKeyArray, PyTree

from ._checkpoint import Checkpoint, resume_checkpoint
from ._checks import (
    check_bool,
    check_callable,
    check_callables,
    check_file_path,
    check_int,
    check_key,
    is_real,
    type_name,
)
from ._history import _HistoryFile
from ._host_loop import _BAD_GRAD, _BAD_LOSS, _BAD_OPT_STATE, _BAD_PARAMS, _Loop, _OK
from ._io import remove_temp_files
from ._lock import lock_path, run_lock
from ._loss_checks import check_step_inputs, checked_loss
from ._parallel import DataParallel, is_main_process
from ._progress import progress_bar


LossFn = Callable[[PyTree, Any, PRNGKeyArray], tuple[jax.Array, dict[str, jax.Array]]]
"""`loss_fn(model, batch, key) -> (loss, aux)`, `aux` a dict of scalars to log."""

Callback = Callable[[dict[str, float]], Any]
"""`callback(row)`, called with each history row `{"step", "loss", **aux, "time", ...}`."""


def _check_callables(*, loss_fn, optimizer, batch_at=None) -> None:
    """The functions handed to training: a callable loss (and `batch_at`), an optax optimizer."""
    check_callable(
        "loss_fn", loss_fn, expected="a callable loss_fn(model, batch, key) -> (loss, aux)"
    )
    if not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            "`optimizer` must be an optax.GradientTransformation such as optax.adam(1e-3); "
            f"got {type_name(optimizer)} {optimizer!r}."
        )
    if batch_at is not None:
        check_callable("batch_at", batch_at, expected="a callable batch_at(step) -> batch")


def _update(model, opt_state, batch, key, loss_fn: LossFn, optimizer):
    _check_callables(loss_fn=loss_fn, optimizer=optimizer)
    check_step_inputs(model, opt_state, batch, key)
    loss_fn = checked_loss(loss_fn, scalar_aux=False)
    # A per-device loss (nk.DataParallel) differentiates on each device itself.
    grad_fn = getattr(loss_fn, "value_and_grad", None) or eqx.filter_value_and_grad(
        loss_fn, has_aux=True
    )
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
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves] or [True]))


@eqx.filter_jit(donate="all-except-first")
def _guarded_step(batch, model, opt_state, key, loss_fn: LossFn, optimizer):
    """`make_step` plus a status code computed on the device, with no host round trip.

    The code is `_OK`, or the first of: the loss, the gradient, the updated parameters,
    the updated optimizer state (e.g. Adam's moments) is not finite. `model`, `opt_state`
    and `key` are donated (their buffers are reused for the outputs); `batch` comes first
    so that it is not.
    """
    model, opt_state, loss, aux, grads = _update(model, opt_state, batch, key, loss_fn, optimizer)
    checks = [
        (~jnp.isfinite(loss), _BAD_LOSS),
        (~_all_finite(grads), _BAD_GRAD),
        (~_all_finite(model), _BAD_PARAMS),
        (~_all_finite(opt_state), _BAD_OPT_STATE),
    ]
    code = jnp.asarray(_OK)
    for bad, value in reversed(checks):  # the first bad one wins
        code = jnp.where(bad, value, code)
    return model, opt_state, loss, aux, code


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
    data_parallel: DataParallel | None = None,
    info: dict | None = None,
    evaluate: Callable[[PyTree, int], dict[str, float]] | None = None,
    evaluate_every: int = 100,
    callbacks: Sequence[Callback] = (),
    explosion_factor: float | None = 1e4,
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
    - `progress`: show a progress bar with the loss, solver steps and steps/s (tqdm's,
        which the `experiments` extra installs; without tqdm, a plain line on stderr).
    - `log_every`: record the loss and `aux` every this many steps.
    - `history_path`: a CSV file the records are appended to as they are made (flushed
        to disk each time, so a crash loses none); on resume, rows after the checkpoint's
        step are dropped.
    - `data_parallel`: a [`node_kit.DataParallel`][] to split each batch over devices
        (and processes); `batch_at(step)` then returns this process's rows of the global
        batch (all of it with one process). Only process 0 writes checkpoints and history.
    - `info`: JSON-able facts written into every checkpoint's header (as `"info"`) and,
        unlike `meta`, not checked on resume: e.g. the command and full config of a run.
    - `evaluate`: `evaluate(model, step) -> {name: float}`, called after every
        `evaluate_every`-th step and after the last one, once the step has shown the
        model finite (on every process); its values join that step's history row (other
        rows leave those columns blank). Use it for validation metrics, or to keep the
        best model so far: the model's buffers are reused by the next step, so copy what
        you keep (e.g. write it to disk). Its time counts in the rows' `time`.
    - `evaluate_every`: steps between calls to `evaluate`.
    - `callbacks`: a list of `callback(row)`, each called with every history row as it
        is made (a fresh dict, with the keys of the `history_path` CSV's row: `"step"`,
        `"loss"`, `aux`, `"time"`, and on an evaluated step `evaluate`'s values), in
        order, after the row is written to `history_path`. Use them to stream the rows
        to a logger. With several processes only process 0 calls them. After a resume,
        the rows the run computes again (those after the checkpoint's step) are passed
        again. An exception in a callback stops training and propagates; the rows up to
        its row are in `history_path`, and the checkpoints written so far are kept, so
        `resume=True` continues from the last one.

    - `explosion_factor`: stop when `|loss|` exceeds this many times the `|loss|` of this
        call's first step (at least 1e-8): a loss exploding by orders of magnitude before it
        is inf, e.g. from a learning rate far too large. `None`: only a non-finite loss
        stops training.

    The loop does not wait for the device at every step: each step's loss and status
    stay on the device until the next log interval (or checkpoint), where they are
    fetched together, so the host synchronises about `100 / log_every` times per 100
    steps (plus twice per checkpoint). The next batch is built and sent while a step runs,
    and the parameters and optimizer state are donated to the step (updated in place).
    A divergence is found at that synchronisation and named by its step.

    **Returns:**

    `(model, history)`, `history` the list of `{"step", "loss", **aux, "time"}` dicts
    recorded by this call.

    **Raises:**

    [`node_kit.TrainingDiverged`][] if the loss, the gradient, an updated parameter or the
    optimizer state becomes NaN or inf, the loss explodes past `explosion_factor`, or a
    solve fails inside a step; the last good checkpoint is kept.
    [`node_kit.CheckpointError`][] if `resume` finds no usable checkpoint.
    [`node_kit.RunLocked`][] if another live process is training into `checkpoint_path`
    (its lock, `<checkpoint_path>.lock`, is held while `fit` runs and removed after).
    """
    check_key("key", key)
    _check_callables(loss_fn=loss_fn, optimizer=optimizer, batch_at=batch_at)
    num_steps = check_int("num_steps", num_steps)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every)
    log_every = check_int("log_every", log_every)
    if evaluate is not None:
        check_callable("evaluate", evaluate, expected="a callable evaluate(model, step) -> dict")
        evaluate_every = check_int("evaluate_every", evaluate_every)
    callbacks = check_callables("callbacks", callbacks, expected="callback(row)")
    if explosion_factor is not None and not (is_real(explosion_factor) and explosion_factor > 1):
        raise ValueError(
            "`explosion_factor` must be a number above 1 (a ratio to the first losses) or None; "
            f"got {explosion_factor!r}. E.g. 1e4, or None to stop only on a NaN or inf loss."
        )
    if data_parallel is not None and not isinstance(data_parallel, DataParallel):
        raise ValueError(
            "`data_parallel` must be a node_kit.DataParallel or None; got "
            f"{type_name(data_parallel)}. E.g. data_parallel=nk.DataParallel(4)."
        )
    if meta is not None and not isinstance(meta, dict):
        raise ValueError(
            f"`meta` must be a dict of JSON values (the config a resume must match) or None; "
            f"got {type_name(meta)}."
        )
    check_bool("progress", progress)
    loss_fn = checked_loss(loss_fn, scalar_aux=True)  # fit logs aux: scalars only
    check_file_path("checkpoint_path", checkpoint_path)
    check_file_path("history_path", history_path, example="history.csv")
    if resume and checkpoint_path is None:
        raise ValueError(
            "`resume=True` needs the `checkpoint_path` to resume from; got None. Pass "
            "the path, or resume=False to start fresh."
        )
    main = is_main_process()  # with several processes, only process 0 writes files
    lock = (
        run_lock(lock_path(checkpoint_path), what=f"the checkpoint {checkpoint_path}")
        if checkpoint_path is not None and main
        else contextlib.nullcontext()
    )
    with lock:  # no other process may train into the same checkpoint meanwhile
        for written in (checkpoint_path, history_path) if main else ():
            if written is not None:  # what a killed writer left half-written
                remove_temp_files(Path(written).parent, [Path(written).name])
        meta = dict(meta or {})
        state = Checkpoint(model, optimizer.init(eqx.filter(model, eqx.is_inexact_array)), 0)
        if resume and checkpoint_path is not None:  # (checked above; for the type checker)
            state = resume_checkpoint(checkpoint_path, state, meta)
        checkpoint_writer = checkpoint_path if main else None
        history_path = history_path if main else None
        history_file = _HistoryFile(history_path, keep_until=state.step) if history_path else None
        callbacks = callbacks if main else ()
        if data_parallel is None:
            place, step_loss = _put, loss_fn
            model, opt_state = _copy((state.model, state.opt_state))
        else:
            place, step_loss = data_parallel.put_batch, data_parallel.loss(loss_fn)
            model, opt_state = _copy(data_parallel.replicate((state.model, state.opt_state)))
        loop = _Loop(
            explosion_factor=explosion_factor,
            checkpoint_path=checkpoint_path,
            checkpoint_writer=checkpoint_writer,
            meta=meta,
            info=info,
            history_file=history_file,
            evaluate=evaluate,
            callbacks=callbacks,
            bar=progress_bar(state.step, num_steps, progress),
        )
        try:
            next_batch = place(_batch(batch_at, state.step)) if state.step < num_steps else None
            for step in range(state.step, num_steps):
                last = step + 1 == num_steps
                try:
                    model, opt_state, loss, aux, code = _guarded_step(
                        next_batch, model, opt_state, jr.fold_in(key, step), step_loss, optimizer
                    )
                except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as error:
                    loop.solve_failed(error, step + 1)
                if not last:  # the next batch is built and sent while this step runs
                    next_batch = place(_batch(batch_at, step + 1))
                evaluate_now = evaluate is not None and ((step + 1) % evaluate_every == 0 or last)
                logged = (step + 1) % log_every == 0 or last or evaluate_now
                loop.unchecked.append((step + 1, code, loss, aux if logged else None))
                loop.bar.update(1)
                checkpoint_now = checkpoint_path is not None and (
                    (step + 1) % checkpoint_every == 0 or last
                )
                if logged or checkpoint_now or loop.pending is not None:
                    loop.sync(model if evaluate_now else None)
                if checkpoint_now:  # written once the next step shows its parameters good
                    kept_model, kept_state = _copy((model, opt_state))
                    loop.pending = Checkpoint(kept_model, kept_state, step + 1)
            loop.write_pending()  # the final one: the last step found its parameters finite
        finally:
            loop.bar.close()
        return model, loop.history


def _batch(batch_at: Callable[[int], PyTree], step: int) -> PyTree:
    """`batch_at(step)`; an error in it is the user's own, with a note saying where it arose."""
    try:
        return batch_at(step)
    except Exception as error:
        error.add_note(
            f"node_kit: this was raised by batch_at({step}), which fit calls for each step's "
            "batch (check it against the dataset's size and num_steps)."
        )
        raise


def _put(batch):
    """The batch's arrays sent to the default device now (asynchronously); other leaves,
    which `jit` treats as static, as they are."""
    return jax.tree_util.tree_map(lambda x: jax.device_put(x) if eqx.is_array(x) else x, batch)


@eqx.filter_jit
def _copy(tree):
    """Fresh buffers with the same values and placement (the step donates its inputs)."""
    return jax.tree_util.tree_map(lambda x: jnp.copy(x) if eqx.is_array(x) else x, tree)

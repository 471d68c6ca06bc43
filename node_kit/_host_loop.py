"""What `nk.fit` does on the host between device steps: fetch the steps' status codes,
losses and logged values at a sync, stop on the first bad step with a message that names
it, append the history rows (and pass them to the callbacks), and write the checkpoint
that the next step has shown to be good.

The device side (the jitted step and its status code) is `_training.py`.
"""

import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from ._checkpoint import Checkpoint, save_checkpoint
from ._loss_checks import is_scalar
from ._parallel import local_value
from ._progress import update_bar


_OK, _BAD_LOSS, _BAD_GRAD, _BAD_PARAMS, _BAD_OPT_STATE = range(5)
"""A step's status code, computed on the device: fine, or the first thing that went bad."""

_SCALE_FLOOR = 1e-8
"""The smallest loss scale an explosion is measured against (a first loss of 0 would make
any loss an explosion)."""

_FIX = (
    "Lower the learning rate (a resumed run may change it), clip the gradients, tighten "
    "rtol/atol, or add regularisation, then resume."
)


class TrainingDiverged(RuntimeError):
    """Training stopped: a non-finite loss, gradient or parameter, or a failed solve.

    The last checkpoint whose parameters are known good is kept.
    """


class _Loop:
    """What `fit` keeps between host synchronisations.

    The steps run ahead of the host: each leaves its loss, its logged `aux` and its
    status code on the device (`unchecked`). `sync` fetches them all at once, at a log
    interval or around a checkpoint, raises `TrainingDiverged` for the first step that
    went wrong, appends the history rows, and writes the pending checkpoint once the
    step after it has shown its parameters good.
    """

    def __init__(
        self,
        *,
        explosion_factor,
        checkpoint_path,
        checkpoint_writer,
        meta,
        info,
        history_file,
        evaluate,
        callbacks,
        bar,
    ):
        self.explosion_factor = explosion_factor
        self.first_loss: float | None = None  # |loss| of this call's first step: the scale
        self.checkpoint_path = checkpoint_path
        self.checkpoint_writer = checkpoint_writer
        self.meta = meta
        self.info = info
        self.evaluate = evaluate
        self.history_file = history_file
        self.callbacks = callbacks
        self.bar = bar
        self.unchecked: list = []
        self.pending: Checkpoint | None = None
        self.verified = 0  # the last step whose status was fetched
        self.history: list[dict[str, float]] = []
        self.start = time.perf_counter()

    def sync(self, model=None) -> None:
        """Fetch the unchecked steps' results; stop at the first bad one.

        With a `model` (that of the last unchecked step), `evaluate` it once the step is
        checked and add its values to the step's row.
        """
        unchecked, self.unchecked = self.unchecked, []
        for index, (step, code, loss, aux) in enumerate(unchecked):
            try:
                code = int(local_value(code))
                loss_value = float(local_value(loss))
            except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as error:
                self.solve_failed(error, step)
            if code == _BAD_LOSS:
                self.diverged(f"loss became {loss_value} at step {step}")
            self.check_scale(step, loss_value)
            self.write_pending()  # the step's loss from its parameters was finite
            if code == _BAD_GRAD:
                self.diverged(
                    f"the gradient became NaN or inf at step {step} (the loss was {loss_value:.6g})"
                )
            if code == _BAD_PARAMS:
                self.diverged(f"the update of step {step} made a parameter NaN or inf")
            if code == _BAD_OPT_STATE:
                self.diverged(
                    f"the update of step {step} made the optimizer state NaN or inf (e.g. "
                    "Adam's second moment overflowed); the parameters would stop changing"
                )
            self.verified = step
            if aux is not None:
                record = {
                    "step": step,
                    "loss": loss_value,
                    **{k: float(local_value(v)) for k, v in aux.items()},
                    "time": time.perf_counter() - self.start,
                }
                if model is not None and index == len(unchecked) - 1:
                    record |= self.evaluated(model, step)
                self.history.append(record)
                if self.history_file is not None:
                    self.history_file.append(record)  # before the callbacks: one may raise
                update_bar(self.bar, record)
                for callback in self.callbacks:
                    callback(dict(record))

    def check_scale(self, step: int, loss: float) -> None:
        """Stop when `|loss|` exceeds `explosion_factor` times the `|loss|` of this call's
        first step (the parameters it started from, before any update of this call could
        spoil them): a loss that explodes without yet being inf, stopped before the
        checkpoint of the parameters that gave it is written."""
        if self.explosion_factor is None:
            return
        if self.first_loss is None:
            self.first_loss = abs(loss)
            return
        scale = max(self.first_loss, _SCALE_FLOOR)
        if abs(loss) > self.explosion_factor * scale:
            self.diverged(
                f"the loss exploded at step {step}: {loss:.6g}, {abs(loss) / scale:.3g} times the "
                f"|loss| of the run's first step here ({scale:.6g}; the limit is "
                f"explosion_factor={self.explosion_factor:g})"
            )

    def evaluated(self, model, step: int) -> dict[str, float]:
        """`evaluate(model, step)` as floats; a failed solve in it stops training."""
        try:
            values = self.evaluate(model, step)
        except (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError) as error:
            cause = f"evaluating the model after step {step} failed ({_runtime_message(error)})"
            raise TrainingDiverged(_diverged_message(cause, self.checkpoint_path)) from error
        problem = _not_scalars_by_name(values)
        if problem is not None:
            raise ValueError(
                "`evaluate(model, step)` must return a dict of scalars by name (each joins the "
                f"step's history row); got {problem} after step {step}."
            )
        return {k: float(v) for k, v in values.items()}

    def write_pending(self) -> None:
        if self.pending is not None:
            if self.checkpoint_writer is not None:
                save_checkpoint(
                    self.checkpoint_writer, _on_host(self.pending), self.meta, info=self.info
                )
            self.pending = None

    def solve_failed(self, error: Exception, step: int) -> None:
        where = (
            f"step {step}"
            if step == self.verified + 1
            else (f"one of the steps {self.verified + 1} to {step}")
        )
        cause = f"a solve failed inside {where} ({_runtime_message(error)})"
        raise TrainingDiverged(_diverged_message(cause, self.checkpoint_path)) from error

    def diverged(self, cause: str) -> None:
        raise TrainingDiverged(_diverged_message(cause, self.checkpoint_path))


def _not_scalars_by_name(values) -> str | None:
    """What in `values` is not a dict of scalars by name, or `None` if nothing."""
    if not isinstance(values, dict):
        return type(values).__name__
    if not all(isinstance(k, str) for k in values):
        return "a dict whose keys are not all strings"
    wrong = next((k for k, v in values.items() if not is_scalar(v)), None)
    if wrong is None:
        return None
    value = values[wrong]
    shape = f" of shape {jnp.shape(value)}" if eqx.is_array_like(value) else ""
    return f"{wrong!r}: {type(value).__name__}{shape}"


def _on_host(state: Checkpoint) -> Checkpoint:
    """The checkpoint's arrays as NumPy arrays of this process (replicated over processes)."""
    model, opt_state = jax.tree_util.tree_map(
        lambda x: local_value(x) if isinstance(x, jax.Array) else x, (state.model, state.opt_state)
    )
    return Checkpoint(model, opt_state, state.step)


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

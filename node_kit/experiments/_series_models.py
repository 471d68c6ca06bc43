"""The time-series models: how each is built from the config, trained and read out.

A model object builds its `node_kit` model from the config and the solve settings, gives
the training loss of a batch (with the task's part of it), the predictions of ONE series
for the test, and a dense prediction for the picture. `MODELS` maps the `--model` names
to them.
"""

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import node_kit as nk

from ._series_tasks import AbstractSeriesTask


class AbstractSeriesModel(abc.ABC):
    """Builds one kind of model and runs it on padded batches of irregular series."""

    name: str

    @abc.abstractmethod
    def build(
        self,
        config,
        data_size: int,
        num_classes: int | None,
        *,
        settings: nk.SolveSettings,
        encoder_settings: nk.SolveSettings,
        key,
    ) -> Any:
        """The model, with `num_classes` outputs if given (else a series of `data_size`)."""

    @abc.abstractmethod
    def loss(
        self, model, config, task: AbstractSeriesTask, batch: dict, inputs, key, count
    ) -> tuple[Any, dict]:
        """`(loss, aux)` of a batch whose model inputs are `inputs`; `key` the step's key.

        `jr.split(key, batch_size)` are the per-series keys that drew `inputs`.
        """

    @abc.abstractmethod
    def predict(self, model, task: AbstractSeriesTask, t, x, mask) -> tuple[Any, Any]:
        """Predictions for one series, means `(T, d)` or logits; and the solver steps."""

    @abc.abstractmethod
    def dense(self, model, config, t, x, mask, grid, *, key) -> tuple[Any, Any]:
        """Mean `(len(grid), d)` of the prediction on `grid`, and its spread (or `None`)."""


# ------------------------------------------------------------------------- latent ODE


@dataclasses.dataclass(frozen=True)
class LatentODEModel(AbstractSeriesModel):
    """The Latent ODE VAE; a classifier head on `z0` for classification.

    Loss: the negative ELBO per available entry, the KL weight rising linearly to 1 over
    `--kl-warmup` steps; classification adds `--ce-weight` times the cross-entropy of the
    classifier at the `z0` draw.
    """

    name: ClassVar[str] = "latent_ode"

    def build(self, config, data_size, num_classes, *, settings, encoder_settings, key):
        return nk.LatentODE(
            data_size,
            config.latent,
            config.hidden,
            config.width,
            config.depth,
            num_classes=num_classes,
            obs_std=config.obs_std,
            settings=settings,
            encoder_settings=encoder_settings,
            key=key,
        )

    def loss(self, model, config, task, batch, inputs, key, count):
        series = {
            "t": batch["t"],
            "x": batch["x"],
            "mask": inputs,
            "target_mask": batch["available"],
        }
        aux = nk.latent_ode_terms(model, series, key, logits=task.classifies)
        kl_weight = jnp.minimum(1.0, (batch["step"] + 1) / config.kl_warmup)
        total_ll, total_kl = jnp.sum(aux["log_likelihood"]), jnp.sum(aux["kl"])
        value = -(total_ll - kl_weight * total_kl) / count
        out = {
            "nll_per_entry": -total_ll / count,
            "kl": jnp.mean(aux["kl"]),
            "num_steps": jnp.mean(aux["num_steps"]),
        }
        if task.classifies:
            supervised, supervised_aux = task.loss(aux["logits"][:, 0], batch, count)
            value = value + config.ce_weight * supervised
            out |= supervised_aux
        return value, out

    def predict(self, model, task, t, x, mask):
        mu, _, encoder_steps = model.posterior_counted(t, x, mask)
        if task.classifies:
            return model.classifier(mu), encoder_steps
        means, decoder_steps = model.decode_counted(t, mu)
        return means, encoder_steps + decoder_steps

    def dense(self, model, config, t, x, mask, grid, *, key):
        draws = np.asarray(_latent_draws(model, t, x, mask, grid, key, config.eval_samples))
        return draws.mean(0), draws.std(0)


# Module-level, the series as arguments: the picture's series share one compiled program.
@eqx.filter_jit
def _latent_draws(model, t, x, mask, grid, key, num_samples: int):
    return model.predict(t, x, mask, grid, key=key, num_samples=num_samples)


# ------------------------------------------------------------------ recurrent models


def _rnn_outputs(model, task, t, x, mask):
    """Readout at every time point (series), or of the final state (classification)."""
    (_, after), num_steps = model.states_counted(t, x, mask)
    if task.classifies:
        return model.readout(after[-1]), num_steps
    return jax.vmap(model.readout)(after), num_steps


class AbstractReadoutModel(AbstractSeriesModel):
    """A model read out at each point (series) or at the end (classification), trained on
    the task's loss alone; `outputs` gives one series' readouts and solver steps."""

    @abc.abstractmethod
    def outputs(self, model, task: AbstractSeriesTask, t, x, mask) -> tuple[Any, Any]:
        """`(readouts, solver steps)` of one series."""

    def loss(self, model, config, task, batch, inputs, key, count):
        del config, key
        outputs, num_steps = jax.vmap(lambda t, x, m: self.outputs(model, task, t, x, m))(
            batch["t"], batch["x"], inputs
        )
        value, aux = task.loss(outputs, batch, count)
        return value, {"num_steps": jnp.mean(num_steps), **aux}

    def predict(self, model, task, t, x, mask):
        return self.outputs(model, task, t, x, mask)


@dataclasses.dataclass(frozen=True)
class RecurrentModel(AbstractReadoutModel):
    """An irregular RNN read out at each point (or at the end).

    `make(config, data_size, readout_size, encoder_settings, key)` builds it.
    """

    name: str
    make: Callable

    def build(self, config, data_size, num_classes, *, settings, encoder_settings, key):
        del settings
        readout = data_size if num_classes is None else num_classes
        return self.make(config, data_size, readout, encoder_settings, key)

    def outputs(self, model, task, t, x, mask):
        return _rnn_outputs(model, task, t, x, mask)

    def dense(self, model, config, t, x, mask, grid, *, key):
        """Put the grid among the series' times as unobserved points: its readouts."""
        del config, key
        times = np.concatenate([t, grid])
        order = np.argsort(times, kind="stable")
        values = np.concatenate([x, np.zeros((len(grid), x.shape[1]), x.dtype)])[order]
        seen = np.concatenate([mask, np.zeros((len(grid), x.shape[1]), bool)])[order]
        outputs = _readouts(model, times[order], values, seen)
        return np.asarray(outputs)[np.argsort(order)[len(t) :]], None


@eqx.filter_jit
def _readouts(model, t, x, mask):
    return jax.vmap(model.readout)(model(t, x, mask))


def _make_ode_rnn(config, data_size, readout, encoder_settings, key):
    return nk.ODERNN(
        data_size,
        config.hidden,
        config.width,
        config.depth,
        readout_size=readout,
        settings=encoder_settings,
        key=key,
    )


def _make_gru_dt(config, data_size, readout, encoder_settings, key):
    del encoder_settings
    return nk.GRUDelta(data_size, config.hidden, readout_size=readout, key=key)


# ------------------------------------------------------------------------ neural CDE


def _cde_outputs(model: nk.NeuralCDE, task, t, x, mask, at="points"):
    """Readouts at every point (series) or of the final state (classification), and steps."""
    if task.classifies:
        return model.counted(t, x, mask)
    states, num_steps = model.states_counted(t, x, mask, at=at)
    return jax.vmap(model.readout)(states), num_steps


@dataclasses.dataclass(frozen=True)
class CDEModel(AbstractReadoutModel):
    """The neural CDE: the readout of its hidden state at each point (regression: the
    path at a point depends on observations up to the next observed one) or at the end
    of the series (classification). Solved with the decoder's
    settings (`--solver`, `--rtol`, `--atol`, `--adjoint`), its path `--interpolation`."""

    name: ClassVar[str] = "ncde"

    def build(self, config, data_size, num_classes, *, settings, encoder_settings, key):
        del encoder_settings
        return nk.NeuralCDE(
            data_size,
            config.hidden,
            config.width,
            config.depth,
            readout_size=data_size if num_classes is None else num_classes,
            interpolation=config.interpolation,
            settings=settings,
            key=key,
        )

    def outputs(self, model, task, t, x, mask):
        return _cde_outputs(model, task, t, x, mask)

    def dense(self, model, config, t, x, mask, grid, *, key):
        """The readouts on the grid's times after the series' first point."""
        del config, key
        outputs = np.asarray(_cde_readouts(model, t, x, mask, grid[grid > t[0]]))
        return outputs[-len(grid) :], None


@eqx.filter_jit
def _cde_readouts(model, t, x, mask, at):
    """Readouts at the series' first time (the solve's start), then at `at`."""
    return jax.vmap(model.readout)(model.solve(t, x, mask, at=at).ys)


MODELS: dict[str, AbstractSeriesModel] = {
    model.name: model
    for model in (
        LatentODEModel(),
        RecurrentModel("ode_rnn", _make_ode_rnn),  # the ODE-RNN: the encoder's settings
        RecurrentModel("gru_dt", _make_gru_dt),  # the GRU reading the time gap (no ODE)
        CDEModel(),
    )
}
"""The `--model` names: the Latent ODE VAE, the ODE-RNN, the GRU-Δt baseline and the
neural CDE."""

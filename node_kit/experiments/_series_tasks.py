"""The time-series tasks: what a model reads, what it is scored on, and against what.

A task owns, for ONE series, the masks of what the model reads and of what is scored;
the part of the loss it adds (the mean squared error or the cross-entropy); its test
metric; and its non-learned baseline, computed on the same masks. `TASKS` maps the
`--task` names to them.
"""

import abc
import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import node_kit as nk

from ._series_plots import plot_confusion, plot_series


@dataclasses.dataclass(frozen=True)
class Summary:
    """A task's test metrics, and the per-channel squared errors behind each MSE in them.

    `squared_errors` maps a result name (`"test_mse"`, `"baseline_last_value_mse"`) to its
    squared errors summed per channel, `(channels,)`, so that a dataset with a published
    scale can rescale them; `count` is the number of scored entries.
    """

    results: dict
    squared_errors: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    count: int = 0


class AbstractSeriesTask(abc.ABC):
    """A task on padded irregular series; see the module docstring.

    `classifies`: the model predicts one label per series (else the series itself).
    `needs_labels`: the dataset must have labels. `min_window`: time points a series needs
    (two at least: the latent ODE decodes over an interval).
    `metric`: the result that scores the model (`--eval-every` keeps the best model by it
    on the validation split), better when higher if `higher_is_better`.
    """

    name: ClassVar[str]
    classifies: ClassVar[bool]
    needs_labels: ClassVar[bool] = False
    min_window: ClassVar[int] = 2
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool] = False

    @abc.abstractmethod
    def fixed_inputs(self, key, available: np.ndarray, observed: float) -> np.ndarray:
        """The entries of a split `(n, T, d)` the model may ever read, before `masks`."""

    @abc.abstractmethod
    def masks(self, key, available, readable, observed: float) -> tuple[Any, Any]:
        """`(input, metric)` masks of ONE series: what the model reads and what is scored."""

    @abc.abstractmethod
    def loss(self, outputs, batch: dict, count) -> tuple[Any, dict]:
        """`(value, aux)`: the supervised part of the loss over a batch of `outputs`."""

    @abc.abstractmethod
    def score(self, outputs, x, metric) -> Any:
        """Inside `jit`, per series: what `summarise` needs of the model's `outputs`."""

    @abc.abstractmethod
    def summarise(
        self, scored: np.ndarray, split, inputs: np.ndarray, metric: np.ndarray
    ) -> Summary:
        """The test metrics of the concatenated `score`s, with the baseline beside them."""

    @abc.abstractmethod
    def summary_line(self, results: dict) -> str:
        """One line for the terminal."""

    @abc.abstractmethod
    def picture(self, model, series_model, config, data, results: dict, *, key, mask_key) -> Any:
        """The figure of the test results (see `_series_plots`)."""

    @abc.abstractmethod
    def boundary(self, t) -> float | None:
        """Where the scored part of a series `t` starts, if it is not the whole series."""


# ------------------------------------------------------------------------- regression


class AbstractRegressionTask(AbstractSeriesTask):
    """Predict the series itself, scored by the MSE beside a non-learned `baseline`.

    A regression task says what is read and scored (`masks`), where the scored part starts
    (`boundary`), and how its baseline fills a channel from the points read (`fill`).
    """

    classifies: ClassVar[bool] = False
    baseline: ClassVar[str]
    metric: ClassVar[str] = "test_mse"

    @abc.abstractmethod
    def fill(self, t, t_seen, x_seen):
        """The baseline's prediction of one channel at times `t` from the points read."""

    def fixed_inputs(self, key, available, observed):
        del key, observed
        return available

    def loss(self, outputs, batch, count):
        """The mean squared error over the available entries (all of them are targets)."""
        mse = jnp.sum(jnp.where(batch["available"], (outputs - batch["x"]) ** 2, 0.0)) / count
        return mse, {"mse": mse}

    def score(self, outputs, x, metric):
        """Squared errors summed over the metric entries of each channel, `(channels,)`."""
        return jnp.sum(jnp.where(metric, (outputs - x) ** 2, 0.0), axis=0)

    def summarise(self, scored, split, inputs, metric):
        """`test_mse` over the metric entries, per channel, and the baseline's on the same masks."""
        count = metric.sum()
        results = {"test_mse": float(scored.sum() / count), "metric_entries": int(count)}
        results["test_mse_per_channel"] = (scored.sum(0) / metric.sum((0, 1))).tolist()
        predictions = np.zeros_like(split.x)
        for i in range(len(split.t)):
            for c in range(split.x.shape[-1]):
                seen = inputs[i, :, c]
                if seen.any():
                    t, x = split.t[i], split.x[i, :, c]
                    predictions[i, :, c] = self.fill(t, t[seen], x[seen])
        baseline_se = np.where(metric, (predictions - split.x) ** 2, 0.0).sum((0, 1))
        name = f"baseline_{self.baseline}_mse"
        results[name] = float(baseline_se.sum() / metric.sum())
        return Summary(results, {"test_mse": scored.sum(0), name: baseline_se}, int(count))

    def summary_line(self, results):
        name = f"baseline_{self.baseline}_mse"
        line = f"test MSE {results['test_mse']:.5f} ({name[9:]}: {results[name]:.5f})"
        if "paper_test_mse" in results:
            line += (
                f"; on the paper's scale {results['test_mse_paper_scale']:.5f}, paper "
                f"{results['paper_test_mse']:.5f}"
            )
        return line

    def picture(self, model, series_model, config, data, results, *, key, mask_key):
        return plot_series(
            model, series_model, self, config, data, results, key=key, mask_key=mask_key
        )


@dataclasses.dataclass(frozen=True)
class Interpolation(AbstractRegressionTask):
    """Read a random `observed` share of the points (redrawn per step); score every point.

    Baseline: linear interpolation between the read points of each channel.
    """

    name: ClassVar[str] = "interpolation"
    baseline: ClassVar[str] = "linear_interpolation"

    def masks(self, key, available, readable, observed):
        return nk.subsample_mask(key, readable, observed), available

    def boundary(self, t):
        return None

    def fill(self, t, t_seen, x_seen):
        return np.interp(t, t_seen, x_seen)


@dataclasses.dataclass(frozen=True)
class Extrapolation(AbstractRegressionTask):
    """Read a random `observed` share of the first half; score the second half.

    Baseline: the last read value of each channel, held.
    """

    name: ClassVar[str] = "extrapolation"
    baseline: ClassVar[str] = "last_value"

    def masks(self, key, available, readable, observed):
        first = (jnp.arange(available.shape[0]) < available.shape[0] // 2)[:, None]
        return nk.subsample_mask(key, readable & first, observed), available & ~first

    def boundary(self, t):
        return t[len(t) // 2]

    def fill(self, t, t_seen, x_seen):
        del t, t_seen
        return x_seen[-1]


# --------------------------------------------------------------------- classification


def cross_entropy(logits, labels):
    """The mean cross-entropy of integer `labels` under `logits` `(batch, classes)`."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def confusion(labels, predicted, num_classes: int) -> np.ndarray:
    """`matrix[true, predicted]`: how many series of each class got each prediction."""
    matrix = np.zeros((num_classes, num_classes), int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


@dataclasses.dataclass(frozen=True)
class Classification(AbstractSeriesTask):
    """Predict the label from a random `observed` share of the points, drawn once per series.

    `--observed 0.7` is "30% dropped" in the Neural CDE benchmark.
    """

    name: ClassVar[str] = "classification"
    classifies: ClassVar[bool] = True
    needs_labels: ClassVar[bool] = True
    metric: ClassVar[str] = "test_accuracy"
    higher_is_better: ClassVar[bool] = True

    def fixed_inputs(self, key, available, observed):
        """The benchmark drops points once, for good: one draw per series from `key`."""
        keys = jr.split(key, len(available))
        keep = jax.vmap(lambda k, m: nk.subsample_mask(k, m, observed))
        return np.asarray(keep(keys, available))

    def masks(self, key, available, readable, observed):
        del key, observed
        return readable, available

    def loss(self, outputs, batch, count):
        del count
        ce = cross_entropy(outputs, batch["label"])
        return ce, {"cross_entropy": ce}

    def score(self, outputs, x, metric):
        del x, metric
        return outputs

    def summarise(self, scored, split, inputs, metric):
        del inputs, metric
        predicted = scored.argmax(-1)
        return Summary(
            {
                "test_accuracy": float(np.mean(predicted == split.label)),
                "confusion": confusion(split.label, predicted, scored.shape[-1]).tolist(),
            }
        )

    def summary_line(self, results):
        return f"test accuracy {results['test_accuracy']:.4f}"

    def picture(self, model, series_model, config, data, results, *, key, mask_key):
        del model, series_model, data, key, mask_key
        return plot_confusion(config, results)

    def boundary(self, t):
        return None


TASKS: dict[str, AbstractSeriesTask] = {
    task.name: task for task in (Interpolation(), Extrapolation(), Classification())
}
"""The `--task` names and their tasks; classification needs a labelled dataset."""

"""The time-series experiment's pictures: test series with predictions, or a confusion matrix."""

import jax
import jax.random as jr
import numpy as np

from ._outputs import plt


def plot_series(model, series_model, task, config, data, results: dict, *, key, mask_key):
    """A few test series: data, observed points, the model's prediction (and its spread).

    `mask_key` is the evaluation's key, so the picture shows the points the test scores
    read; `key` draws the latent ODE's `z0` samples. Returns the figure.
    """
    pyplot = plt()
    split = data.test
    num_series = min(3, len(split.t))
    channels = list(range(min(3, data.data_size)))
    keys = jr.split(key, len(split.t))
    inputs, _ = jax.vmap(lambda k, a, r: task.masks(k, a, r, config.observed))(
        jr.split(mask_key, len(split.t)), split.available, split.readable
    )
    fig, axes = pyplot.subplots(
        num_series,
        len(channels),
        figsize=(max(7.0, 4.2 * len(channels)), 2.6 * num_series),
        squeeze=False,
    )
    for i in range(num_series):
        t, x, m = split.t[i], split.x[i], np.asarray(inputs[i])
        grid = np.linspace(t[0], t[-1], 200, dtype=np.float32)
        mean, spread = series_model.dense(model, config, t, x, m, grid, key=keys[i])
        boundary = task.boundary(t)
        for j, c in enumerate(channels):
            ax = axes[i, j]
            avail = split.available[i, :, c]
            ax.plot(t[avail], x[avail, c], color="0.6", lw=1, label="data")
            ax.scatter(t[m[:, c]], x[m[:, c], c], s=12, color="k", zorder=3, label="observed")
            ax.plot(grid, mean[:, c], color="C0", lw=1.5, label=config.model)
            if spread is not None:
                ax.fill_between(
                    grid,
                    mean[:, c] - 2 * spread[:, c],
                    mean[:, c] + 2 * spread[:, c],
                    color="C0",
                    alpha=0.25,
                    label="±2 sd over z0 draws",
                )
            if boundary is not None:
                ax.axvline(boundary, color="C3", ls="--", lw=1)
            ax.set(title=f"test series {i}, channel {c}", xlabel="t")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(
        f"{config.dataset}: {config.model}, {config.task}, {config.observed:.0%} observed, "
        f"test MSE {results['test_mse']:.4g}"
    )
    return fig


def plot_confusion(config, results: dict):
    """The test confusion matrix, titled with the accuracy and the share dropped."""
    matrix = np.asarray(results["confusion"])
    fig, ax = plt().subplots(figsize=(4.8, 4.2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7)
    ax.set(
        xlabel="predicted class",
        ylabel="true class",
        title=f"{config.model}, {1 - config.observed:.0%} dropped: "
        f"accuracy {results['test_accuracy']:.3f}",
    )
    return fig

"""The picture of the CNF command (`python -m node_kit.experiments.cnf`): data, the model's
density and samples of a 2-D toy, or a grid of samples beside the data for images."""

import equinox as eqx
import numpy as np

import node_kit as nk
from node_kit import datasets
from node_kit._parallel import local_value as nk_local

from ._cnf_data import Data, evaluate_nll, flow_samples
from ._outputs import plt


def plot(name: str, cnf: nk.CNF, data: Data, key, results: dict):
    """Data, model density and samples side by side (a sample grid for images): the figure.

    `name` titles the toy picture (the dataset's name).
    """
    if data.images:
        return _plot_images(cnf, data, key)  # the 8x8 grid of samples beside the data
    pyplot = plt()
    lim = float(np.quantile(np.abs(data.test), 0.999)) * 1.1
    grid = np.linspace(-lim, lim, 100)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], -1)
    exact = cnf.with_trace_estimator(nk.ExactTrace())
    density = np.exp(-evaluate_nll(exact, data, points, batch=2000, key=key)["per_sample"])
    samples = np.asarray(nk_local(_sample(cnf, 10_000, key)))
    fig, axes = pyplot.subplots(1, 3, figsize=(12, 4.2))
    bins = [grid, grid]
    axes[0].hist2d(data.test[:, 0], data.test[:, 1], bins=bins, cmap="viridis")
    axes[1].pcolormesh(xx, yy, density.reshape(xx.shape), cmap="viridis", shading="auto")
    axes[2].hist2d(samples[:, 0], samples[:, 1], bins=bins, cmap="viridis")
    titles = ["data (test split)", f"model density (test NLL {results['test_nll']:.3f})", "samples"]
    for ax, title in zip(axes, titles):
        ax.set(title=title, xticks=[], yticks=[], aspect="equal")
    fig.suptitle(name)
    return fig


@eqx.filter_jit
def _sample(cnf: nk.CNF, num_samples: int, key):
    return cnf.sample_batched(num_samples, key=key)


def _plot_images(model, data: Data, key):
    """64 test images beside 64 samples, in 8x8 grids (pixels in [0, 1])."""
    assert data.image is not None
    pyplot = plt()
    _, height, width = data.image.shape
    ys = np.asarray(nk_local(_samples(model, 64, key)))
    pixels = np.clip(np.asarray(datasets.inverse_logit_transform(ys, alpha=data.image.alpha)), 0, 1)
    fig, axes = pyplot.subplots(1, 2, figsize=(9, 4.6))
    for ax, images, title in (
        (axes[0], data.test[:64] / (data.image.num_levels - 1), "data (test split)"),
        (axes[1], pixels, "samples"),
    ):
        tiles = images.reshape(8, 8, height, width).transpose(0, 2, 1, 3)
        ax.imshow(tiles.reshape(8 * height, 8 * width), cmap="gray_r", vmin=0, vmax=1)
        ax.set(title=title, xticks=[], yticks=[])
    return fig


@eqx.filter_jit
def _samples(model, num_samples: int, key):
    return flow_samples(model, num_samples, key)

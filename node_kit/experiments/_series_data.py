"""The time-series experiment's data: load, window, prepare, and the published numbers.

What a dataset asks for (standardised values, times on [0, 1]) comes from its spec's
`series` preparation (`datasets.get_spec(name).series`); whether it has labels, from the
data. The only dataset-specific knowledge here is `PAPER_REFERENCES`: the published test
MSEs to compare with, and the scale they are on.
"""

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax.random as jr
import numpy as np

from node_kit import datasets

from ._series_tasks import AbstractSeriesTask


class Split(eqx.Module):
    """One split as fixed-shape NumPy arrays.

    `t` `(n, T)` strictly increasing, `x` `(n, T, d)` (0 where unavailable), `available`
    `(n, T, d)` bool, `readable` the entries the model may read before `--observed`
    subsampling (fixed drops for classification), `label` `(n,)` or `None`.
    """

    t: np.ndarray
    x: np.ndarray
    available: np.ndarray
    readable: np.ndarray
    label: np.ndarray | None


class Data(eqx.Module):
    """Train, test (and, if asked for, validation) splits, and what the model needs to know
    about them."""

    train: Split
    test: Split
    data_size: int = eqx.field(static=True)
    num_classes: int | None = eqx.field(static=True)
    normalisation: dict = eqx.field(static=True)
    validation: Split | None = None


def load_data(config, task: AbstractSeriesTask, *, validation: bool = False) -> Data:
    """Load, window, prepare (as the dataset's spec asks), fix the task's readable entries.

    The validation split (with `validation=True`) is prepared as the test split is, with
    its own seeded windows and fixed entries (train and test keep theirs).
    """
    data_dir = config.data_dir or None
    names = ("train", "test", "validation") if validation else ("train", "test")
    raw = {s: datasets.load(config.dataset, s, data_dir=data_dir) for s in names}
    if task.needs_labels and "label" not in raw["train"]:
        raise ValueError(
            f"--task {task.name} needs a labelled dataset; {config.dataset!r} has no labels. "
            "Use --dataset japanese_vowels, or --task interpolation / extrapolation."
        )
    splits = {
        split: _arrays(config, split, index, arrays)
        for index, (split, arrays) in enumerate(raw.items())
    }
    preparation = datasets.get_spec(config.dataset).series or datasets.SeriesPreparation()
    _, x, available, _ = splits["train"]
    normalisation = preparation.fit(x, available)
    result = {}
    for index, (split, (t, x, available, label)) in enumerate(splits.items()):
        x = preparation.standardise_values(x, normalisation)
        t = preparation.scale_times(t)
        key = jr.fold_in(jr.key(config.seed), 1000 + index)
        readable = task.fixed_inputs(key, available, config.observed)
        x = np.where(available, x, 0.0).astype(np.float32)
        label = None if label is None else np.asarray(label)
        result[split] = Split(t, x, available, readable, label)
    train, test = result["train"], result["test"]
    labels = [split.label for split in (train, test) if split.label is not None]
    num_classes = int(max(label.max() for label in labels) + 1) if labels else None
    return Data(
        train,
        test,
        train.x.shape[-1],
        num_classes,
        normalisation,
        validation=result.get("validation"),
    )


def _arrays(config, split: str, index: int, arrays: dict) -> list:
    """`[t, x, available, label]` of one split: checked, windowed, cut to `--train-size`."""
    t, x = np.asarray(arrays["t"], np.float32), np.asarray(arrays["x"], np.float32)
    available = np.asarray(arrays.get("mask", np.ones(x.shape, bool)), bool)
    if not np.all(np.isfinite(np.where(available, x, 0.0))):
        raise ValueError(
            f"dataset {config.dataset!r} split {split!r} has NaN or inf at observed entries; "
            "rebuild it or clean the data."
        )
    if config.window < t.shape[1]:
        t, x, available = _windows(t, x, available, config.window, seed=config.seed + index)
    label = arrays.get("label")
    if config.train_size and split == "train":
        n = config.train_size
        t, x, available = t[:n], x[:n], available[:n]
        label = None if label is None else label[:n]
    return [t, x, available, label]


def _windows(t, x, available, window, *, seed):
    """Windows of `window` consecutive steps, one per series, starting where the seed says."""
    length = t.shape[1]
    starts = np.random.default_rng(seed).integers(0, length - window + 1, len(t))
    rows = np.arange(len(t))[:, None]
    cols = starts[:, None] + np.arange(window)
    return t[rows, cols], x[rows, cols], available[rows, cols]


def batch_at(
    split: Split, step: int, *, batch_size: int, seed: int, rows: slice | None = None
) -> dict:
    """The training batch of `step`: a pure function of `(seed, step)` (see `datasets.batch_at`;
    `rows`: this process's share of it)."""
    arrays = {"t": split.t, "x": split.x, "available": split.available, "readable": split.readable}
    if split.label is not None:
        arrays["label"] = split.label
    batch = datasets.batch_at(arrays, step, batch_size=batch_size, seed=seed, rows=rows)
    return {**batch, "step": np.int32(step)}


# ------------------------------------------------------------------ published numbers


def _min_max_to_divide_by_max(info: dict) -> np.ndarray:
    """Per-channel factors from `(x - min) / (max - min)` squared errors to `(x - min) / max`.

    An error scales by `(max - min) / max`, so a squared error by its square (`max == 0`
    is taken as 1, as in the paper's `utils.normalize_data`, inverted as `x * max + min`).
    """
    low, high = np.asarray(info["min"]), np.asarray(info["max"])
    high = np.where(high == 0, 1.0, high)
    return ((high - low) / high) ** 2


@dataclasses.dataclass(frozen=True)
class PaperReference:
    """Published test MSEs of a dataset and the map from node_kit's scale to theirs.

    `test_mse`: `{"model/task": {observed share: MSE}}`. `scale`: the dataset's metadata
    -> per-channel factors for squared errors.
    """

    test_mse: dict
    scale: Callable[[dict], np.ndarray]

    def channel_scale(self, config) -> np.ndarray:
        """The per-channel factors for the config's dataset (from its stored metadata)."""
        return self.scale(datasets.metadata(config.dataset, data_dir=config.data_dir or None))

    def published(self, config) -> float | None:
        """The paper's test MSE for the config's model, task and observed share, if any."""
        return self.test_mse.get(f"{config.model}/{config.task}", {}).get(config.observed)


PAPER_REFERENCES = {
    "hopper": PaperReference(
        test_mse={
            "latent_ode/interpolation": {
                0.1: 0.360e-2,
                0.2: 0.295e-2,
                0.3: 0.300e-2,
                0.5: 0.285e-2,
            },
            "latent_ode/extrapolation": {
                0.1: 1.441e-2,
                0.2: 1.400e-2,
                0.3: 1.175e-2,
                0.5: 1.258e-2,
            },
            "ode_rnn/interpolation": {0.1: 1.647e-2, 0.2: 1.209e-2, 0.3: 0.986e-2, 0.5: 0.665e-2},
        },
        scale=_min_max_to_divide_by_max,
    ),
}
"""Test MSE on MuJoCo Hopper from Rubanova et al. (2019), Tables 2 and 3, by observed share.

node_kit stores hopper as `(x - min) / (max - min)` in [0, 1]; the paper's code uses
`(x - min) / max`, so results on hopper are also reported on the paper's scale.
"""

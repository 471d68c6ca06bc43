"""How the experiments prepare a time series dataset: standardise values, scale times."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SeriesPreparation:
    """The preparation a time series dataset asks for before a model sees it.

    Read it from the spec (`get_spec(name).series`); the datasets store the data unprepared.

    **Fields:**

    - `standardise`: map every channel to mean 0 and std 1 over the observed training
        entries (`fit` on train, `standardise_values` on every split).
    - `unit_times`: shift and scale each split's times onto [0, 1] (`scale_times`).
    """

    standardise: bool = False
    unit_times: bool = False

    def fit(self, x: np.ndarray, available: np.ndarray) -> dict[str, list[float]]:
        """Per-channel `{"mean", "std"}` over the `available` entries of the training `x`.

        **Arguments:**

        - `x`: values `(num_series, num_times, channels)`.
        - `available`: bool mask of `x`'s shape, True where a value is observed.

        **Returns:**

        `{"mean": [...], "std": [...]}` (one float per channel), or `{}` when the dataset
        does not ask for standardising.
        """
        if not self.standardise:
            return {}
        count = available.sum((0, 1))
        mean = np.where(available, x, 0).sum((0, 1)) / count
        std = np.sqrt(np.where(available, (x - mean) ** 2, 0).sum((0, 1)) / count)
        return {"mean": mean.tolist(), "std": std.tolist()}

    def standardise_values(self, x: np.ndarray, stats: dict[str, list[float]]) -> np.ndarray:
        """`(x - mean) / std` as float32 with the `stats` of `fit`; `x` itself without stats."""
        if not stats:
            return x
        mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
        return ((x - mean) / std).astype(np.float32)

    def scale_times(self, t: np.ndarray) -> np.ndarray:
        """Times `(num_series, num_times)` shifted to start at 0, scaled by the longest span.

        Returns `t` unchanged when the dataset does not ask for it.
        """
        if not self.unit_times:
            return t
        return (t - t[:, :1]) / np.float32(np.max(t[:, -1] - t[:, 0]))

"""The picture of `python -m node_kit.experiments.deq`: the DEQ's residual against the
forward iterations of each solver, beside the three models' training accuracy."""

import numpy as np

from ._outputs import plt


def plot(
    residuals: dict[str, list[float]],
    histories: dict[str, list[dict]],
    summaries: dict[str, dict],
    *,
    rtol: float,
):
    """Two panels: the relative residual `|f(z_k) - z_k| / |f(z_k)|` of the trained DEQ
    (log scale) for each solver in `residuals`, and the training-batch accuracy of each
    model in `histories` (its test accuracy in the legend). Returns the figure."""
    fig, (left, right) = plt().subplots(1, 2, figsize=(11, 4.2))
    for name, values in residuals.items():
        values = np.asarray(values, dtype=float)
        values[~(values > 0)] = np.nan  # a zero or NaN residual has no place on a log axis
        left.semilogy(np.arange(len(values)), values, lw=1.5, label=name)
    left.axhline(rtol, color="gray", ls=":", lw=1, label=f"rtol = {rtol:g}")
    left.set(
        xlabel="forward iteration k",
        ylabel="|f(z_k) - z_k| / |f(z_k)|",
        title="Trained DEQ, test set as one batch",
    )
    left.legend()
    for name, history in histories.items():
        steps = np.array([row["step"] for row in history])
        accuracy = np.array([row["accuracy"] for row in history])
        summary = summaries[name]
        label = f"{name} ({summary['parameters']} params, test {summary['test_accuracy']:.3f})"
        right.plot(steps, _smooth(accuracy), lw=1.5, label=label)
    right.set(
        xlabel="training step",
        ylabel="training-batch accuracy (smoothed)",
        title="Training",
        ylim=(0, 1.02),
    )
    right.legend(loc="lower right")
    return fig


def _smooth(values: np.ndarray, window: int = 5) -> np.ndarray:
    """A trailing moving average over up to `window` rows (the first rows average fewer)."""
    sums = np.cumsum(np.insert(values.astype(float), 0, 0.0))
    index = np.arange(len(values))
    counts = np.minimum(index + 1, window)
    return (sums[index + 1] - sums[index + 1 - counts]) / counts

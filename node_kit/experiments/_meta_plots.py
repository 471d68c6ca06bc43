"""The picture and the table of the meta-learning command
(`python -m node_kit.experiments.meta`)."""

import numpy as np

from node_kit.datasets import sinusoid

from ._outputs import plt


LABELS = {
    "maml": "MAML",
    "fomaml": "first-order MAML",
    "imaml": "iMAML",
    "pretrained": "pretrained + fine-tuning",
}
"""How the picture and the table name each method."""


def plot_fits(config, test_tasks: dict, grid: np.ndarray, curves: dict):
    """One row per K, one column per test task: the true curve, the K support points, and
    each method's prediction after adapting to them.

    **Arguments:**

    - `config`: the command's config (`shots`, `methods`, `plot_tasks`).
    - `test_tasks`: K -> the held-out `SinusoidTasks`.
    - `grid`: the inputs the curves are drawn at, shape `(points,)`.
    - `curves`: `(method, K)` -> adapted predictions on `grid`, shape `(plot_tasks, points)`.
    """
    rows, cols = len(config.shots), config.plot_tasks
    fig, axes = plt().subplots(rows, cols, figsize=(4 * cols, 3 * rows + 0.5), squeeze=False)
    for i, shots in enumerate(config.shots):
        tasks = test_tasks[shots]
        for j in range(cols):
            ax = axes[i, j]
            amplitude, phase = float(tasks.amplitude[j]), float(tasks.phase[j])
            ax.plot(grid, sinusoid(grid, amplitude, phase), "k-", lw=2, label="true")
            ax.plot(
                np.asarray(tasks.support_x[j, :, 0]),
                np.asarray(tasks.support_y[j, :, 0]),
                "k^",
                ms=7,
                label="K support points",
            )
            for n, method in enumerate(config.methods):
                ax.plot(grid, curves[(method, shots)][j], f"C{n}--", lw=1.3, label=LABELS[method])
            ax.set(title=f"K={shots}, test task {j}", xlim=(-5, 5))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    return fig


def print_table(rows: list[dict]) -> None:
    """The results as a text table on stdout."""
    print(
        f"{'method':<26}{'K':>3}{'test MSE':>10}{'95% interval':>18}{'train s':>9}"
        f"{'grad ms':>9}{'compile s':>10}{'temp KiB':>10}"
    )
    for r in rows:
        lo, hi = r["test_mse_ci95"]
        print(
            f"{LABELS[r['method']]:<26}{r['shots']:>3}{r['test_mse']:>10.3f}"
            f"{f'[{lo:.3f}, {hi:.3f}]':>18}{r['train_seconds_total']:>9.1f}"
            + (
                f"{1e3 * r['grad_median_seconds']:>9.2f}{r['grad_compile_seconds']:>10.2f}"
                f"{r['grad_temp_bytes'] / 1024:>10.1f}"
                if "grad_temp_bytes" in r
                else ""
            )
        )

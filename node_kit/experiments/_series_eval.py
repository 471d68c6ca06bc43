"""The time-series command's evaluation: test (or validation) metrics of a model over a
split, with fixed per-series masks, beside the paper's numbers where it has them."""

from typing import Any

import equinox as eqx
import jax
import jax.random as jr
import numpy as np

from node_kit._parallel import local_value

from ._series_data import PAPER_REFERENCES, Split
from ._series_models import MODELS
from ._series_tasks import TASKS


def evaluate(model, config: Any, split: Split, *, key, data_parallel=None) -> dict:
    """Test metrics with the fixed per-series masks of `key`; the posterior mean for `z0`.

    With a `data_parallel` of several devices in one process, each batch of series (padded
    to a multiple of the device count) is split over them.
    """
    task, series_model = TASKS[config.task], MODELS[config.model]
    n = len(split.t)
    size = config.eval_batch
    if not 1 <= size <= n:
        raise ValueError(f"--eval-batch must be in [1, {n}] (the test series); got {size}.")

    keys = jr.split(key, n)
    padded, place = size, (lambda arrays: arrays)
    if data_parallel is not None and data_parallel.num_devices > 1 and jax.process_count() == 1:
        padded = -(-size // data_parallel.num_devices) * data_parallel.num_devices
        place = data_parallel.put_batch
    parts = []
    for start in range(0, n, size):
        index = np.arange(start, start + padded) % n  # wrap around: fixed shapes
        arrays = place(
            (
                split.t[index],
                split.x[index],
                split.available[index],
                split.readable[index],
                keys[index],
            )
        )
        out = _scored_batch(model, task, series_model, config.observed, *arrays)
        parts.append([np.asarray(local_value(part))[: min(size, n - start)] for part in out])
    scored, steps, inputs, metric = (np.concatenate(column) for column in zip(*parts))
    result = {"eval_num_steps": float(np.mean(steps))}
    result["observed_share"] = float(inputs.any(-1).sum() / split.available.any(-1).sum())
    summary = task.summarise(scored, split, inputs, metric)
    result |= summary.results
    paper = PAPER_REFERENCES.get(config.dataset)
    if paper is not None and summary.squared_errors:
        scale = paper.channel_scale(config)
        for name, se in summary.squared_errors.items():
            result[name + "_paper_scale"] = float((se * scale).sum() / summary.count)
    return result


@eqx.filter_jit
def _scored_batch(model, task, series_model, observed: float, t, x, available, readable, keys):
    """One batch of `evaluate`: the task's scores, solver steps and masks (compiled once
    per model, task and shape: the test and validation evaluations of a run share it)."""
    inputs, metric = jax.vmap(lambda k, a, r: task.masks(k, a, r, observed))(
        keys, available, readable
    )
    outputs, steps = jax.vmap(lambda t, x, m: series_model.predict(model, task, t, x, m))(
        t, x, inputs
    )
    return jax.vmap(task.score)(outputs, x, metric), steps, inputs, metric


def compare_with_paper(config: Any, results: dict) -> dict:
    """The paper's test MSE and our ratio to it on its scale, where the paper has one."""
    paper = PAPER_REFERENCES.get(config.dataset)
    published = None if paper is None else paper.published(config)
    if published is None:
        return {}
    return {
        "paper_test_mse": published,
        "ratio_to_paper": results["test_mse_paper_scale"] / published,
    }

"""The CNF command's data and its batched evaluations: the splits, the maps between the
data's space and the flow's (dequantization and logit for the digits), the test NLL in
padded fixed-size batches, a Gaussian baseline, samples with their log-density, and the
test summary of a trained flow (`summarise`).
"""

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import node_kit as nk
from node_kit import datasets
from node_kit._parallel import local_value as nk_local


class Data(eqx.Module):
    """Train/test (and, for `--eval-every`, validation) arrays and how to map raw data to
    the flow's space."""

    train: np.ndarray
    test: np.ndarray
    images: bool = eqx.field(static=True)
    validation: np.ndarray | None = None


def load_data(config, *, validation: bool = False) -> Data:
    """Load the splits (validation only if asked); a NaN or inf in the data is an error
    naming the dataset."""
    data_dir = config.data_dir or None
    names = ("train", "test", "validation") if validation else ("train", "test")
    splits = {name: datasets.load(config.dataset, name, data_dir=data_dir)["x"] for name in names}
    for split, x in splits.items():
        if not np.all(np.isfinite(x)):
            raise ValueError(
                f"dataset {config.dataset!r} split {split!r} contains NaN or inf "
                f"({int(np.sum(~np.isfinite(x)))} entries); rebuild it or clean the data."
            )
    return Data(
        splits["train"],
        splits["test"],
        images=config.dataset == "digits",
        validation=splits.get("validation"),
    )


def to_flow_space(images: bool, x, key):
    """`(y, log_det)`: images are dequantized and logit-transformed; toys pass through."""
    if images:
        return datasets.preprocess(x, key=key)
    x = jnp.asarray(x)
    return x, jnp.zeros(x.shape[:-1], x.dtype)


def from_flow_space(images: bool, ys):
    """`(x, log_det)`: points `ys` of the flow's space in the data's space, and
    `log|det dy/dx|` per point, so that `log p(x) = log p(y) + log_det`.

    Images: the dequantized pixels `v = x + u` of [`to_flow_space`][] (in `[0, 17)` where
    `y` lies in the range of the logit map, beyond it where the flow puts mass outside);
    the density is per unit pixel volume, the units of the test NLL. Toys pass through.
    """
    ys = jnp.asarray(ys)
    if not images:
        return ys, jnp.zeros(ys.shape[:-1], ys.dtype)
    levels = datasets.DIGITS_NUM_LEVELS
    u = datasets.inverse_logit_transform(ys)
    _, log_det = datasets.logit_transform(u)
    return u * levels, log_det - ys.shape[-1] * math.log(levels)


def evaluate_nll(
    cnf: nk.CNF,
    data: Data,
    x: np.ndarray,
    *,
    batch: int,
    key,
    probe_key=None,
    data_parallel: nk.DataParallel | None = None,
) -> dict:
    """Per-sample test NLL (data space) with the CNF's estimator; padded fixed-size batches.

    `key` draws the dequantization noise (images) and `probe_key` the Hutchinson
    probes, so several probe draws can be averaged over the same dequantized data. With a
    `data_parallel` of several devices in one process, each batch (padded to a multiple of
    the device count) is split over them.
    """
    if not 1 <= batch <= len(x):
        raise ValueError(
            f"`batch` must be in [1, {len(x)}] (the number of points to evaluate); got {batch}."
        )
    probe_key = key if probe_key is None else probe_key
    size, place = batch, (lambda xs: xs)
    if data_parallel is not None and data_parallel.num_devices > 1 and jax.process_count() == 1:
        size = -(-batch // data_parallel.num_devices) * data_parallel.num_devices
        place = data_parallel.put_batch
    nll, steps = [], []
    for i, start in enumerate(range(0, len(x), batch)):
        chunk = x[start : start + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk), 0)])
        values, num_steps = _batch_nll(
            cnf, data.images, place(padded), jr.fold_in(key, i), jr.fold_in(probe_key, i)
        )
        nll.append(np.asarray(nk_local(values))[: len(chunk)])
        steps.append(int(nk_local(num_steps)))
    nll = np.concatenate(nll)
    return {
        "nll": float(nll.mean()),
        "nll_se": float(nll.std(ddof=1) / math.sqrt(len(nll))),
        "num_steps": float(np.mean(steps)),
        "per_sample": nll,
    }


@eqx.filter_jit
def _batch_nll(cnf, images: bool, xs, noise_key, probe_key):
    ys, log_det = to_flow_space(images, xs, noise_key)
    log_prob, stats = cnf.log_prob_and_stats_batched(
        ys.astype(jnp.result_type(float)), key=probe_key
    )
    return -(log_prob + log_det), stats["num_steps"]


def gaussian_baseline(data: Data, key) -> dict:
    """A full-covariance Gaussian fitted on the same preprocessing; its test NLL."""
    train, _ = to_flow_space(data.images, data.train, jr.fold_in(key, 0))
    test, log_det = to_flow_space(data.images, data.test, jr.fold_in(key, 1))
    train, test = np.asarray(train, np.float64), np.asarray(test, np.float64)
    mean = train.mean(0)
    cov = np.cov(train, rowvar=False) + 1e-6 * np.eye(train.shape[1])
    diff = test - mean
    _, logdet_cov = np.linalg.slogdet(cov)
    maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    nll = 0.5 * (maha + logdet_cov + train.shape[1] * math.log(2 * math.pi)) - np.asarray(log_det)
    return {"nll": float(nll.mean()), "nll_se": float(nll.std(ddof=1) / math.sqrt(len(nll)))}


def draw_samples(cnf: nk.CNF, images: bool, n: int, *, batch: int, key):
    """`(x, log_prob)`: `n` samples of the flow in the data's space `(n, dim)` and their
    log-density there `(n,)`, from one backward solve each with the exact trace, drawn
    `batch` at a time (one compilation)."""
    exact = cnf.with_trace_estimator(nk.ExactTrace())
    size = min(n, batch)
    xs, log_probs = [], []
    for i in range(-(-n // size)):
        x, log_prob = _sample_with_log_prob(exact, images, size, jr.fold_in(key, i))
        xs.append(np.asarray(nk_local(x)))
        log_probs.append(np.asarray(nk_local(log_prob)))
    return np.concatenate(xs)[:n], np.concatenate(log_probs)[:n]


@eqx.filter_jit
def _sample_with_log_prob(cnf: nk.CNF, images: bool, size: int, key):
    ys, log_prob = jax.vmap(lambda k: cnf.sample_and_log_prob(key=k))(jr.split(key, size))
    xs, log_det = from_flow_space(images, ys)
    return xs, log_prob + log_det


def summarise(config: Any, cnf: nk.CNF, data: Data, key, data_parallel=None) -> dict:
    """Test NLL with the exact trace (and Hutchinson for images), truth and baselines."""
    exact = cnf.with_trace_estimator(nk.ExactTrace())
    test = evaluate_nll(
        exact, data, data.test, batch=config.eval_batch, key=key, data_parallel=data_parallel
    )
    dim = data.train.shape[1]
    summary = {
        "test_nll": test["nll"],
        "test_nll_se": test["nll_se"],
        "eval_num_steps": test["num_steps"],
        "data_dim": dim,
    }
    if config.dataset in datasets.ANALYTIC_NAMES:
        entropy, entropy_se = datasets.true_entropy(config.dataset, num_samples=200_000)
        summary |= {
            "true_entropy": entropy,
            "true_entropy_se": entropy_se,
            "kl_gap": test["nll"] - entropy,
        }
    if data.images:
        summary |= _image_summary(config, cnf, data, key, test["nll"], dim)
    return summary


def _image_summary(config, cnf, data, key, exact_nll, dim) -> dict:
    hutchinson = cnf.with_trace_estimator(nk.HutchinsonTrace(config.probe))
    estimates = [
        evaluate_nll(
            hutchinson,
            data,
            data.test,
            batch=config.eval_batch,
            key=key,
            probe_key=jr.fold_in(key, 100 + i),
        )["nll"]
        for i in range(config.eval_probes)
    ]
    baseline = gaussian_baseline(data, key)
    to_bits = 1.0 / (dim * math.log(2.0))
    return {
        "test_nll_hutchinson_mean": float(np.mean(estimates)),
        "test_nll_hutchinson_probes": config.eval_probes,
        "bits_per_dim": exact_nll * to_bits,
        "gaussian_baseline_nll": baseline["nll"],
        "gaussian_baseline_bits_per_dim": baseline["nll"] * to_bits,
        "units": "nats (and bits/dim) of the dequantized pixels v = x + u in [0, 17)^64",
    }

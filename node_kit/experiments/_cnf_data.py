"""The CNF command's data and its batched evaluations: the splits, the maps between the
data's space and the flow's (dequantization and logit for the digits), the test NLL in
padded fixed-size batches, a Gaussian baseline, samples with their log-density, and the
test summary of a trained flow (`summarise`).
"""

import dataclasses
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
    the flow's space: `image` says how flat pixels are shaped (`None` for the 2-D toys)."""

    train: np.ndarray
    test: np.ndarray
    image: datasets.ImageFormat | None = eqx.field(static=True)
    validation: np.ndarray | None = None

    @property
    def images(self) -> bool:
        """Whether the data are images (dequantized and logit-transformed for the flow)."""
        return self.image is not None


def image_format(config) -> datasets.ImageFormat | None:
    """The layout of the pixels the run trains on: the dataset's, after `--downsample`, with
    `--alpha` if given; `None` for the 2-D toys."""
    image = datasets.IMAGE_FORMATS.get(config.dataset)
    if image is None:
        return None
    image = image.downsampled(config.downsample)
    alpha = getattr(config, "alpha", None)
    return image if alpha is None else dataclasses.replace(image, alpha=alpha)


def load_data(config, *, validation: bool = False) -> Data:
    """Load the splits (validation only if asked); a NaN or inf in the data, or a pixel
    outside the dataset's grey levels, is an error naming the dataset."""
    data_dir = config.data_dir or None
    names = ("train", "test", "validation") if validation else ("train", "test")
    image = image_format(config)
    splits = {name: _load_split(config, name, data_dir) for name in names}
    for split, x in splits.items():
        if not np.all(np.isfinite(x)):
            raise ValueError(
                f"dataset {config.dataset!r} split {split!r} contains NaN or inf "
                f"({int(np.sum(~np.isfinite(x)))} entries); rebuild it or clean the data."
            )
        if image is not None:
            datasets.check_pixel_values(
                f"dataset {config.dataset!r} split {split!r}", x, image.num_levels
            )
    return Data(splits["train"], splits["test"], image=image, validation=splits.get("validation"))


def _load_split(config, split: str, data_dir) -> np.ndarray:
    if config.dataset not in datasets.IMAGE_FORMATS:
        return datasets.load(config.dataset, split, data_dir=data_dir)["x"]
    pixels = datasets.load_images(config.dataset, split, data_dir=data_dir)
    shape = datasets.IMAGE_FORMATS[config.dataset].shape
    return datasets.downsample(pixels, shape, config.downsample)


def to_flow_space(image: datasets.ImageFormat | None, x, key):
    """`(y, log_det)`: images are dequantized and logit-transformed; toys pass through."""
    if image is not None:
        return datasets.preprocess(x, key=key, num_levels=image.num_levels, alpha=image.alpha)
    x = jnp.asarray(x)
    return x, jnp.zeros(x.shape[:-1], x.dtype)


def from_flow_space(image: datasets.ImageFormat | None, ys):
    """`(x, log_det)`: points `ys` of the flow's space in the data's space, and
    `log|det dy/dx|` per point, so that `log p(x) = log p(y) + log_det`.

    Images: the dequantized pixels `v = x + u` of [`to_flow_space`][] (in `[0, levels)`
    where `y` lies in the range of the logit map, beyond it where the flow puts mass
    outside); the density is per unit pixel volume, the units of the test NLL. Toys pass
    through.
    """
    ys = jnp.asarray(ys)
    if image is None:
        return ys, jnp.zeros(ys.shape[:-1], ys.dtype)
    u = datasets.inverse_logit_transform(ys, alpha=image.alpha)
    _, log_det = datasets.logit_transform(u, alpha=image.alpha)
    return u * image.num_levels, log_det - ys.shape[-1] * math.log(image.num_levels)


def flow_input(model, ys):
    """Flat points `ys` `(batch, dim)` as the flow takes them: a multiscale CNF as images
    `(batch, C, H, W)`, a CNF as they are."""
    return ys.reshape(-1, *model.shape) if isinstance(model, nk.MultiscaleCNF) else ys


def flow_log_prob_and_stats(model, ys, *, key, regularise: bool = False):
    """The flow's log-density of flat points `ys` `(batch, dim)` (see [`flow_input`][])."""
    return model.log_prob_and_stats_batched(flow_input(model, ys), key=key, regularise=regularise)


def evaluate_nll(
    cnf: nk.CNF | nk.MultiscaleCNF,
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
            cnf, data.image, place(padded), jr.fold_in(key, i), jr.fold_in(probe_key, i)
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
def _batch_nll(cnf, image, xs, noise_key, probe_key):
    ys, log_det = to_flow_space(image, xs, noise_key)
    log_prob, stats = flow_log_prob_and_stats(cnf, ys.astype(jnp.result_type(float)), key=probe_key)
    return -(log_prob + log_det), stats["num_steps"]


def gaussian_baselines(data: Data, key) -> dict:
    """Two Gaussians fitted on the same preprocessing (for images: the same dequantization
    and logit transform, in logit space) and their test NLL in the data's units:
    `"gaussian"`, full covariance (plus 1e-6 on the diagonal), and `"independent"`, one
    Gaussian per pixel (the diagonal of the same covariance). Each: `{"nll", "nll_se"}`."""
    train, _ = to_flow_space(data.image, data.train, jr.fold_in(key, 0))
    test, log_det = to_flow_space(data.image, data.test, jr.fold_in(key, 1))
    train, test = np.asarray(train, np.float64), np.asarray(test, np.float64)
    mean = train.mean(0)
    cov = np.cov(train, rowvar=False) + 1e-6 * np.eye(train.shape[1])
    diff = test - mean
    log_2pi = train.shape[1] * math.log(2 * math.pi)
    _, logdet_cov = np.linalg.slogdet(cov)
    maha = np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff)
    var = np.diag(cov)
    nlls = {
        "gaussian": 0.5 * (maha + logdet_cov + log_2pi) - np.asarray(log_det),
        "independent": 0.5 * (np.sum(diff**2 / var, axis=1) + np.sum(np.log(var)) + log_2pi)
        - np.asarray(log_det),
    }
    return {
        name: {"nll": float(nll.mean()), "nll_se": float(nll.std(ddof=1) / math.sqrt(len(nll)))}
        for name, nll in nlls.items()
    }


def draw_samples(cnf, image: datasets.ImageFormat | None, n: int, *, batch: int, key):
    """`(x, log_prob)`: `n` samples of the flow in the data's space `(n, dim)` and their
    log-density there `(n,)`, drawn `batch` at a time (one compilation).

    A CNF draws each sample and its log-density from one backward solve with the exact
    trace; a multiscale CNF draws the samples backwards, then scores them forwards with
    its own estimator (the exact trace up to 64 dimensions, else Hutchinson)."""
    size = min(n, batch)
    if isinstance(cnf, nk.MultiscaleCNF):
        model = cnf.with_trace_estimator(nk.ExactTrace()) if cnf.data_size <= 64 else cnf
        sample = _sample_multiscale
    else:
        model, sample = cnf.with_trace_estimator(nk.ExactTrace()), _sample_with_log_prob
    xs, log_probs = [], []
    for i in range(-(-n // size)):
        x, log_prob = sample(model, image, size, jr.fold_in(key, i))
        xs.append(np.asarray(nk_local(x)))
        log_probs.append(np.asarray(nk_local(log_prob)))
    return np.concatenate(xs)[:n], np.concatenate(log_probs)[:n]


@eqx.filter_jit
def _sample_with_log_prob(cnf, image, size: int, key):
    ys, log_prob = jax.vmap(lambda k: cnf.sample_and_log_prob(key=k))(jr.split(key, size))
    xs, log_det = from_flow_space(image, ys)
    return xs, log_prob + log_det


@eqx.filter_jit
def _sample_multiscale(model: nk.MultiscaleCNF, image, size: int, key):
    sample_key, probe_key = jr.split(key)
    ys = model.sample_batched(size, key=sample_key).reshape(size, -1)
    log_prob, _ = flow_log_prob_and_stats(model, ys, key=probe_key)
    xs, log_det = from_flow_space(image, ys)
    return xs, log_prob + log_det


def flow_samples(model, n: int, key):
    """`n` samples of the flow in its own (logit) space, flat: `(n, dim)`."""
    ys = model.sample_batched(n, key=key)
    return ys.reshape(n, -1)


EXACT_TRACE_MAX_DIM = 64
"""The test NLL of a multiscale CNF uses the exact trace up to this many dimensions (the
8x8 digits) and the Hutchinson estimator above it (MNIST)."""


def summarise(config: Any, cnf, data: Data, key, data_parallel=None) -> dict:
    """Test NLL (exact trace, or Hutchinson averaged over probes for large images), truth
    and baselines."""
    dim = data.train.shape[1]
    exact_test = not isinstance(cnf, nk.MultiscaleCNF) or dim <= EXACT_TRACE_MAX_DIM
    if exact_test:
        exact = cnf.with_trace_estimator(nk.ExactTrace())
        test = evaluate_nll(
            exact, data, data.test, batch=config.eval_batch, key=key, data_parallel=data_parallel
        )
    else:
        test = _hutchinson_nll(config, cnf, data, key)
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
        summary |= _image_summary(config, cnf, data, key, test, dim, exact_test)
    return summary


def _hutchinson_nll(config, cnf, data: Data, key) -> dict:
    """The test NLL per image averaged over `--eval-probes` Hutchinson probes (the same
    dequantization noise for every probe); the standard error is over the images."""
    hutchinson = cnf.with_trace_estimator(nk.HutchinsonTrace(config.probe))
    runs = [
        evaluate_nll(
            hutchinson,
            data,
            data.test,
            batch=config.eval_batch,
            key=key,
            probe_key=jr.fold_in(key, 100 + i),
        )
        for i in range(config.eval_probes)
    ]
    per_image = np.mean([run["per_sample"] for run in runs], axis=0)
    return {
        "nll": float(per_image.mean()),
        "nll_se": float(per_image.std(ddof=1) / math.sqrt(len(per_image))),
        "num_steps": float(np.mean([run["num_steps"] for run in runs])),
        "per_sample": per_image,
        "probe_means": [run["nll"] for run in runs],
    }


def _image_summary(config, cnf, data: Data, key, test: dict, dim: int, exact_test: bool) -> dict:
    assert data.image is not None
    to_bits = 1.0 / (dim * math.log(2.0))
    baselines = gaussian_baselines(data, key)
    summary = {}
    if exact_test:
        estimates = _hutchinson_nll(config, cnf, data, key)["probe_means"]
        summary["test_nll_hutchinson_mean"] = float(np.mean(estimates))
        summary["test_nll_hutchinson_probes"] = config.eval_probes
        summary["test_nll_estimator"] = "exact trace"
    else:
        summary["test_nll_estimator"] = (
            f"Hutchinson ({config.probe}), {config.eval_probes} probes per image averaged"
        )
    summary |= {
        "bits_per_dim": test["nll"] * to_bits,
        "bits_per_dim_se": test["nll_se"] * to_bits,
        "gaussian_baseline_nll": baselines["gaussian"]["nll"],
        "gaussian_baseline_bits_per_dim": baselines["gaussian"]["nll"] * to_bits,
        "units": f"nats (and bits/dim) of the dequantized pixels v = x + u in "
        f"[0, {data.image.num_levels})^{dim}",
    }
    if isinstance(cnf, nk.MultiscaleCNF):
        summary |= {
            "independent_baseline_nll": baselines["independent"]["nll"],
            "independent_baseline_bits_per_dim": baselines["independent"]["nll"] * to_bits,
            "image_shape": list(data.image.shape),
            "num_levels": data.image.num_levels,
            "logit_alpha": data.image.alpha,
        }
    return summary

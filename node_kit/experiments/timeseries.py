"""Irregularly sampled time series: Latent ODE, ODE-RNN and the GRU-Δt baseline.

`python -m node_kit.experiments.timeseries` trains a Latent ODE to interpolate the
`periodic` toy from half of its points. Flags pick the dataset (`periodic`, `hopper`,
`japanese_vowels`), the model (`latent_ode`, `ode_rnn`, `gru_dt`), the task
(`interpolation`, `extrapolation`, `classification`) and the fraction of time points the
model reads (`--observed`). Writes `results.json` (config, versions, test metrics beside
simple non-learned baselines, solver steps, wall time), `history.csv`, a picture of test
series and a resumable checkpoint to `--out`.

**Tasks.** Interpolation reads a random `observed` share of each series' points (redrawn
every training step, fixed per series for the test) and is scored on every point.
Extrapolation reads a random `observed` share of the first half and is scored on the
second half. `--window` cuts every series to that many consecutive points at a seeded
random start (hopper: 100 of its 200 steps, as the paper trains); shorter series stay whole. Classification reads a random `observed` share of the points (drawn once per
series from the seed: `--observed 0.7` is "30% dropped" in the Neural CDE benchmark) and
predicts the label. Training targets are all available points for both regression tasks.
"""

import dataclasses
import time
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import node_kit as nk
from node_kit import datasets

from ._cli import (
    SOLVER_NAMES,
    environment,
    parse_config,
    plt,
    run_meta,
    save_figure,
    solver_from_name,
    write_history,
    write_json,
)

MODEL_NAMES = ("latent_ode", "ode_rnn", "gru_dt")
"""Models: the Latent ODE VAE, the ODE-RNN and the GRU reading the time gap (no ODE)."""

TASK_NAMES = ("interpolation", "extrapolation", "classification")
"""Tasks; classification needs a labelled dataset (`japanese_vowels`)."""

ENCODER_SOLVER_NAMES = ("euler", *SOLVER_NAMES)
"""`euler` takes `--encoder-steps` fixed steps per gap (the paper's encoder); others adapt."""

PAPER_HOPPER_MSE = {
    "latent_ode/interpolation": {0.1: 0.360e-2, 0.2: 0.295e-2, 0.3: 0.300e-2, 0.5: 0.285e-2},
    "latent_ode/extrapolation": {0.1: 1.441e-2, 0.2: 1.400e-2, 0.3: 1.175e-2, 0.5: 1.258e-2},
    "ode_rnn/interpolation": {0.1: 1.647e-2, 0.2: 1.209e-2, 0.3: 0.986e-2, 0.5: 0.665e-2},
}
"""Test MSE on MuJoCo Hopper from Rubanova et al. (2019), Tables 2 and 3, by observed share."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run (written to results and checkpoints)."""

    dataset: str = "periodic"
    model: str = "latent_ode"
    task: str = "interpolation"
    observed: float = dataclasses.field(default=0.5, metadata={"help": "share of each series' time points the model reads, in (0, 1]; classification drops 1 - observed"})
    steps: int = dataclasses.field(default=1200, metadata={"help": "training steps (a resumed run stops at this total)"})
    batch_size: int = 50
    lr: float = 3e-3
    latent: int = dataclasses.field(default=16, metadata={"help": "latent ODE: size of z0"})
    hidden: int = dataclasses.field(default=32, metadata={"help": "hidden size of the ODE-RNN / GRU (the latent ODE's encoder)"})
    width: int = dataclasses.field(default=64, metadata={"help": "width of every MLP"})
    depth: int = 2
    obs_std: float = dataclasses.field(default=0.01, metadata={"help": "latent ODE: fixed observation noise of the Gaussian likelihood"})
    kl_warmup: int = dataclasses.field(default=100, metadata={"help": "latent ODE: steps over which the KL weight rises linearly to 1"})
    ce_weight: float = dataclasses.field(default=100.0, metadata={"help": "latent ODE classification: weight of the cross-entropy beside the ELBO"})
    adjoint: str = "checkpoint"
    solver: str = "tsit5"
    rtol: float = dataclasses.field(default=1e-3, metadata={"help": "relative tolerance of adaptive solves"})
    atol: float = dataclasses.field(default=1e-4, metadata={"help": "absolute tolerance of adaptive solves"})
    encoder_solver: str = dataclasses.field(default="euler", metadata={"help": "ODE-RNN and latent ODE encoder: euler takes --encoder-steps fixed steps per gap; the others adapt"})
    encoder_steps: int = dataclasses.field(default=1, metadata={"help": "fixed Euler steps per gap"})
    window: int = dataclasses.field(default=100, metadata={"help": "consecutive time points per series, at a seeded random start; shorter series stay whole"})
    train_size: int = dataclasses.field(default=0, metadata={"help": "use the first N training series (0: all)"})
    eval_batch: int = 100
    eval_samples: int = dataclasses.field(default=16, metadata={"help": "latent ODE: z0 draws for the picture's uncertainty band"})
    seed: int = 0
    data_dir: str = ""
    out: str = dataclasses.field(default="runs/timeseries", metadata={"help": "output directory: results.json, history.csv, picture, checkpoint"})
    resume: bool = dataclasses.field(default=False, metadata={"help": "continue from the checkpoint in --out"})
    progress: bool = True


def _choices() -> dict[str, tuple[str, ...]]:
    return {
        "dataset": datasets.TIME_SERIES_NAMES,
        "model": MODEL_NAMES,
        "task": TASK_NAMES,
        "adjoint": nk.ADJOINT_NAMES,
        "solver": SOLVER_NAMES,
        "encoder_solver": ENCODER_SOLVER_NAMES,
    }


def check_config(config: Config) -> None:
    """Raise a `ValueError` naming the flag for a value the command cannot run with."""
    for name, choices in _choices().items():
        value = getattr(config, name)
        if value not in choices:
            raise ValueError(
                f"unknown {name} {value!r} (--{name.replace('_', '-')}); expected one of "
                f"{', '.join(choices)}."
            )
    observed = config.observed
    if isinstance(observed, bool) or not isinstance(observed, (int, float)) or not 0 < observed <= 1:
        raise ValueError(
            "--observed (the share of time points the model reads) must be in (0, 1]; got "
            f"{observed!r}. For '30% dropped' pass --observed 0.7."
        )
    for name in ("steps", "batch_size", "latent", "hidden", "width", "eval_batch",
                 "eval_samples", "encoder_steps", "window"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"--{name.replace('_', '-')} must be a positive int; got {value!r}."
            )
    if config.train_size < 0:
        raise ValueError(f"--train-size must be >= 0 (0: all); got {config.train_size}.")
    if config.task == "extrapolation" and config.window < 2:
        raise ValueError("--task extrapolation needs at least 2 time points per series.")


# ----------------------------------------------------------------------------- data


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
    """Train and test splits, and what the model needs to know about them."""

    train: Split
    test: Split
    data_size: int = eqx.field(static=True)
    num_classes: int | None = eqx.field(static=True)
    normalisation: dict = eqx.field(static=True)


def load_data(config: Config) -> Data:
    """Load, window (hopper), scale times, standardise (japanese_vowels), fix test masks."""
    data_dir = config.data_dir or None
    raw = {split: datasets.load(config.dataset, split, data_dir=data_dir) for split in ("train", "test")}
    if config.task == "classification" and "label" not in raw["train"]:
        raise ValueError(
            f"--task classification needs a labelled dataset; {config.dataset!r} has no labels. "
            "Use --dataset japanese_vowels, or --task interpolation / extrapolation."
        )
    normalisation: dict = {}
    splits = {}
    for index, (split, arrays) in enumerate(raw.items()):
        t, x = np.asarray(arrays["t"], np.float32), np.asarray(arrays["x"], np.float32)
        available = np.asarray(arrays.get("mask", np.ones(x.shape, bool)), bool)
        if not np.all(np.isfinite(np.where(available, x, 0.0))):
            raise ValueError(
                f"dataset {config.dataset!r} split {split!r} has NaN or inf at observed entries; "
                "rebuild it or clean the data."
            )
        if config.window < t.shape[1]:
            t, x, available = _windows(t, x, available, config.window, seed=config.seed + index)
        if config.train_size and split == "train":
            t, x, available = t[: config.train_size], x[: config.train_size], available[: config.train_size]
            arrays = {k: v[: config.train_size] for k, v in arrays.items()}
        splits[split] = [t, x, available, arrays.get("label")]
    if config.dataset == "japanese_vowels":
        normalisation = _standardise(splits)
    if config.dataset in ("hopper", "japanese_vowels"):
        for parts in splits.values():  # times on [0, 1]
            parts[0] = (parts[0] - parts[0][:, :1]) / np.float32(np.max(parts[0][:, -1] - parts[0][:, 0]))
    result = {}
    for index, (split, (t, x, available, label)) in enumerate(splits.items()):
        readable = available
        if config.task == "classification":  # the benchmark drops points once, for good
            keys = jr.split(jr.fold_in(jr.key(config.seed), 1000 + index), len(t))
            keep = jax.vmap(lambda k, m: nk.subsample_mask(k, m, config.observed))
            readable = np.asarray(keep(keys, available))
        x = np.where(available, x, 0.0).astype(np.float32)
        result[split] = Split(t, x, available, readable, None if label is None else np.asarray(label))
    num_classes = int(max(result["train"].label.max(), result["test"].label.max()) + 1) if (
        result["train"].label is not None) else None
    return Data(result["train"], result["test"], x.shape[-1], num_classes, normalisation)


def _windows(t, x, available, window, *, seed):
    """Windows of `window` consecutive steps, one per series, starting where the seed says."""
    length = t.shape[1]
    starts = np.random.default_rng(seed).integers(0, length - window + 1, len(t))
    rows = np.arange(len(t))[:, None]
    cols = starts[:, None] + np.arange(window)
    return t[rows, cols], x[rows, cols], available[rows, cols]


def _standardise(splits) -> dict:
    """Per-channel mean and std over the observed training entries; applied to every split."""
    _, x, available, _ = splits["train"]
    count = available.sum((0, 1))
    mean = np.where(available, x, 0).sum((0, 1)) / count
    std = np.sqrt(np.where(available, (x - mean) ** 2, 0).sum((0, 1)) / count)
    for parts in splits.values():
        parts[1] = ((parts[1] - mean) / std).astype(np.float32)
    return {"mean": mean.tolist(), "std": std.tolist()}


def batch_at(split: Split, step: int, *, batch_size: int, seed: int) -> dict:
    """The training batch of `step`: a pure function of `(seed, step)` (see `datasets.batch_at`)."""
    arrays = {"t": split.t, "x": split.x, "available": split.available, "readable": split.readable}
    if split.label is not None:
        arrays["label"] = split.label
    batch = datasets.batch_at(arrays, step, batch_size=batch_size, seed=seed)
    return {**batch, "step": np.int32(step)}


def series_masks(task: str, observed: float, key, available, readable):
    """`(input, metric)` masks of ONE series: what the model reads and what it is scored on."""
    if task == "classification":
        return readable, available
    if task == "extrapolation":
        first = (jnp.arange(available.shape[0]) < available.shape[0] // 2)[:, None]
        return nk.subsample_mask(key, readable & first, observed), available & ~first
    return nk.subsample_mask(key, readable, observed), available


# ---------------------------------------------------------------------------- model


def build_model(config: Config, data_size: int, num_classes: int | None, key):
    """The model the config names, with its solvers."""
    classes = num_classes if config.task == "classification" else None
    decoder_controller = diffrax.PIDController(rtol=config.rtol, atol=config.atol)
    if config.encoder_solver == "euler":
        encoder = dict(
            solver=diffrax.Euler(),
            stepsize_controller=diffrax.ConstantStepSize(),
            dt0=1.0 / config.encoder_steps,
        )
    else:
        encoder = dict(
            solver=solver_from_name(config.encoder_solver),
            stepsize_controller=decoder_controller,
            dt0=None,
        )
    if config.model == "latent_ode":
        return nk.LatentODE(
            data_size, config.latent, config.hidden, config.width, config.depth,
            num_classes=classes, obs_std=config.obs_std, solver=solver_from_name(config.solver),
            stepsize_controller=decoder_controller, adjoint=config.adjoint,
            encoder_solver=encoder["solver"],
            encoder_stepsize_controller=encoder["stepsize_controller"],
            encoder_dt0=encoder["dt0"], key=key,
        )
    readout = data_size if classes is None else classes
    if config.model == "ode_rnn":
        return nk.ODERNN(
            data_size, config.hidden, config.width, config.depth, readout_size=readout,
            adjoint=config.adjoint, key=key, **encoder,
        )
    return nk.GRUDelta(data_size, config.hidden, readout_size=readout, key=key)


def _rnn_outputs(model, t, x, mask, task):
    """Readout at every time point (regression) or of the final state (classification)."""
    (_, after), num_steps = model.states_counted(t, x, mask)
    if task == "classification":
        return model.readout(after[-1]), num_steps
    return jax.vmap(model.readout)(after), num_steps


def make_loss(config: Config):
    """`loss(model, batch, key) -> (loss, aux)` for `node_kit.fit`.

    Regression: the mean squared error over the available entries (RNNs) or the negative
    ELBO per available entry with the KL weight warmed up over `--kl-warmup` steps (Latent
    ODE). Classification adds the cross-entropy (`--ce-weight` times it for the Latent ODE).
    """

    def loss(model, batch, key):
        keys = jr.split(key, batch["t"].shape[0])
        masks = jax.vmap(lambda k, a, r: series_masks(config.task, config.observed, k, a, r))
        inputs, _ = masks(keys, batch["available"], batch["readable"])
        target = batch["available"]
        count = jnp.maximum(jnp.sum(target), 1)
        if config.model == "latent_ode":
            return _latent_loss(model, batch, inputs, target, count, keys)
        outputs, num_steps = jax.vmap(lambda t, x, m: _rnn_outputs(model, t, x, m, config.task))(
            batch["t"], batch["x"], inputs
        )
        aux = {"num_steps": jnp.mean(num_steps)}
        if config.task == "classification":
            ce = _cross_entropy(outputs, batch["label"])
            return ce, {**aux, "cross_entropy": ce}
        mse = jnp.sum(jnp.where(target, (outputs - batch["x"]) ** 2, 0.0)) / count
        return mse, {**aux, "mse": mse}

    def _latent_loss(model, batch, inputs, target, count, keys):
        classify = config.task == "classification"

        def one(t, x, m, tm, k):
            if classify:
                return model.elbo_and_logits(t, x, m, key=k, target_mask=tm)
            elbo, aux = model.elbo(t, x, m, key=k, target_mask=tm)
            return elbo, aux, jnp.zeros((1, 0))

        _, aux, logits = jax.vmap(one)(batch["t"], batch["x"], inputs, target, keys)
        kl_weight = jnp.minimum(1.0, (batch["step"] + 1) / config.kl_warmup)
        total_ll, total_kl = jnp.sum(aux["log_likelihood"]), jnp.sum(aux["kl"])
        value = -(total_ll - kl_weight * total_kl) / count
        out = {"nll_per_entry": -total_ll / count, "kl": jnp.mean(aux["kl"]),
               "num_steps": jnp.mean(aux["num_steps"])}
        if classify:
            ce = _cross_entropy(logits[:, 0], batch["label"])
            value = value + config.ce_weight * ce
            out["cross_entropy"] = ce
        return value, out

    return loss


def _cross_entropy(logits, labels):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


# ------------------------------------------------------------------------- evaluate


def _predict_one(model, config: Config, t, x, mask):
    """Predictions for one series: means `(T, d)` or logits; and the solver steps."""
    if config.model == "latent_ode":
        mu, _, encoder_steps = model.posterior_counted(t, x, mask)
        if config.task == "classification":
            return model.classifier(mu), encoder_steps
        means, decoder_steps = model.decode_counted(t, mu)
        return means, encoder_steps + decoder_steps
    return _rnn_outputs(model, t, x, mask, config.task)


def evaluate(model, config: Config, split: Split, *, key) -> dict:
    """Test metrics with the fixed per-series masks of `key`; the posterior mean for `z0`."""
    n = len(split.t)
    size = min(config.eval_batch, n)

    @eqx.filter_jit
    def run(model, t, x, available, readable, keys):
        inputs, metric = jax.vmap(
            lambda k, a, r: series_masks(config.task, config.observed, k, a, r)
        )(keys, available, readable)
        outputs, steps = jax.vmap(lambda t, x, m: _predict_one(model, config, t, x, m))(t, x, inputs)
        if config.task == "classification":
            return outputs, steps, inputs, metric
        se = jnp.sum(jnp.where(metric, (outputs - x) ** 2, 0.0), axis=1)  # (batch, channels)
        return se, steps, inputs, metric

    keys = jr.split(key, n)
    sums, steps, inputs, metrics = [], [], [], []
    for start in range(0, n, size):
        index = np.arange(start, start + size) % n  # wrap around: fixed shapes
        out = run(model, split.t[index], split.x[index], split.available[index],
                  split.readable[index], keys[index])
        keep = min(size, n - start)
        sums.append(np.asarray(out[0])[:keep])
        steps.append(np.asarray(out[1])[:keep])
        inputs.append(np.asarray(out[2])[:keep])
        metrics.append(np.asarray(out[3])[:keep])
    outputs, inputs, metric = np.concatenate(sums), np.concatenate(inputs), np.concatenate(metrics)
    result = {"eval_num_steps": float(np.mean(np.concatenate(steps)))}
    observed_share = inputs.any(-1).sum() / split.available.any(-1).sum()
    result["observed_share"] = float(observed_share)
    if config.task == "classification":
        predicted = outputs.argmax(-1)
        result |= {
            "test_accuracy": float(np.mean(predicted == split.label)),
            "confusion": _confusion(split.label, predicted, outputs.shape[-1]).tolist(),
        }
        return result
    count = metric.sum()
    result |= {"test_mse": float(outputs.sum() / count), "metric_entries": int(count)}
    result["test_mse_per_channel"] = (outputs.sum(0) / metric.sum((0, 1))).tolist()
    result |= baselines(config, split, inputs, metric)
    if config.dataset == "hopper":
        scale = paper_scale(config)
        result["test_mse_paper_scale"] = float((outputs.sum(0) * scale).sum() / count)
        for key in [k for k in result if k.startswith("baseline_")]:
            result[key + "_paper_scale"] = float((result.pop("_se_" + key) * scale).sum() / count)
    for key in [k for k in result if k.startswith("_se_")]:
        del result[key]
    return result


def paper_scale(config: Config) -> np.ndarray:
    """Per-channel factors from node_kit's hopper MSE to the paper's scale.

    node_kit stores `(x - min) / (max - min)` in [0, 1]; the paper's code
    (`utils.normalize_data`, inverted as `x * max + min`) uses `(x - min) / max`. An
    error scales by `(max - min) / max`, so squared errors by its square (`max == 0` is
    taken as 1, as there).
    """
    info = datasets.metadata("hopper", data_dir=config.data_dir or None)
    low, high = np.asarray(info["min"]), np.asarray(info["max"])
    high = np.where(high == 0, 1.0, high)
    return ((high - low) / high) ** 2


def _confusion(labels, predicted, num_classes):
    matrix = np.zeros((num_classes, num_classes), int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def baselines(config: Config, split: Split, inputs: np.ndarray, metric: np.ndarray) -> dict:
    """Non-learned references on the same masks: linear interpolation, or the last value."""
    predictions = np.zeros_like(split.x)
    for i in range(len(split.t)):
        for c in range(split.x.shape[-1]):
            seen = inputs[i, :, c]
            if not seen.any():
                continue
            if config.task == "extrapolation":
                predictions[i, :, c] = split.x[i, seen, c][-1]
            else:
                predictions[i, :, c] = np.interp(split.t[i], split.t[i, seen], split.x[i, seen, c])
    se = np.where(metric, (predictions - split.x) ** 2, 0.0).sum((0, 1))
    name = "baseline_" + ("last_value" if config.task == "extrapolation" else "linear_interpolation")
    return {f"{name}_mse": float(se.sum() / metric.sum()), f"_se_{name}_mse": se}


# ----------------------------------------------------------------------------- main


def main(config: Config) -> dict:
    """Train, evaluate, plot; returns the results dict also written to `results.json`."""
    check_config(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model_key, train_key, eval_key, plot_key = jr.split(jr.key(config.seed), 4)
    data = load_data(config)
    model = build_model(config, data.data_size, data.num_classes, model_key)
    schedule = optax.cosine_decay_schedule(config.lr, config.steps, alpha=0.05)
    optimizer = optax.chain(optax.clip_by_global_norm(10.0), optax.adamw(schedule, weight_decay=1e-5))
    batch_size = min(config.batch_size, len(data.train.t))
    start = time.perf_counter()
    model, history = nk.fit(
        model, make_loss(config), optimizer,
        lambda step: batch_at(data.train, step, batch_size=batch_size, seed=config.seed),
        config.steps, key=train_key, checkpoint_path=out / "checkpoint.eqx",
        resume=config.resume, meta=run_meta(config), progress=config.progress,
    )
    train_seconds = time.perf_counter() - start
    earlier = _earlier_train_seconds(out, config.resume)
    start = time.perf_counter()
    metrics = evaluate(model, config, data.test, key=eval_key)
    results = {
        "config": dataclasses.asdict(config),
        "environment": environment(),
        **metrics,
        "train_series": len(data.train.t),
        "test_series": len(data.test.t),
        "time_points": int(data.train.t.shape[1]),
        "train_num_steps_last_100": _recent_mean(history, "num_steps"),
        "train_seconds_this_run": train_seconds,
        "train_seconds_total": earlier + train_seconds,
        "eval_seconds": time.perf_counter() - start,
        "normalisation": data.normalisation,
    }
    paper = PAPER_HOPPER_MSE.get(f"{config.model}/{config.task}", {})
    if config.dataset == "hopper" and config.observed in paper:
        results["paper_test_mse"] = paper[config.observed]
        # The paper normalised by (x - min) / max: compare on that scale.
        results["ratio_to_paper"] = results["test_mse_paper_scale"] / paper[config.observed]
    write_json(out / "results.json", results)
    write_history(out / "history.csv", history, resumed=config.resume)
    plot(out / f"{config.dataset}_{config.task}.png", model, config, data, results,
         key=plot_key, mask_key=eval_key)
    _print_summary(results, out)
    return results


def _earlier_train_seconds(out: Path, resume: bool) -> float:
    """Training seconds of the runs this one resumes (from their results.json)."""
    path = out / "results.json"
    if not resume or not path.exists():
        return 0.0
    import json

    earlier = json.loads(path.read_text())
    return float(earlier.get("train_seconds_total", earlier.get("train_seconds_this_run", 0.0)))


def _recent_mean(history: list[dict], key: str) -> float | None:
    values = [h[key] for h in history[-10:] if key in h]
    return float(np.mean(values)) if values else None


def _print_summary(results: dict, out: Path) -> None:
    if "test_accuracy" in results:
        line = f"test accuracy {results['test_accuracy']:.4f}"
    else:
        base = next(k for k in results if k.startswith("baseline_"))
        line = f"test MSE {results['test_mse']:.5f} ({base[9:]}: {results[base]:.5f})"
        if "paper_test_mse" in results:
            line += (f"; on the paper's scale {results['test_mse_paper_scale']:.5f}, paper "
                     f"{results['paper_test_mse']:.5f}")
    print(f"{line}\nwrote {out}/results.json")


# ----------------------------------------------------------------------------- plot


def plot(path: Path, model, config: Config, data: Data, results: dict, *, key, mask_key) -> None:
    """A few test series: data, observed points, the model's prediction (and its spread).

    `mask_key` is `evaluate`'s key, so the picture shows the points the test scores read.
    """
    pyplot = plt()
    if config.task == "classification":
        return _plot_confusion(pyplot, path, config, results)
    split = data.test
    num_series = min(3, len(split.t))
    channels = list(range(min(3, data.data_size)))
    keys = jr.split(key, len(split.t))
    inputs, _ = jax.vmap(lambda k, a, r: series_masks(config.task, config.observed, k, a, r))(
        jr.split(mask_key, len(split.t)), split.available, split.readable
    )
    fig, axes = pyplot.subplots(
        num_series, len(channels), figsize=(max(7.0, 4.2 * len(channels)), 2.6 * num_series),
        squeeze=False,
    )
    for i in range(num_series):
        t, x, m = split.t[i], split.x[i], np.asarray(inputs[i])
        grid = np.linspace(t[0], t[-1], 200, dtype=np.float32)
        mean, spread = _dense_prediction(model, config, t, x, m, grid, keys[i])
        for j, c in enumerate(channels):
            ax = axes[i, j]
            avail = split.available[i, :, c]
            ax.plot(t[avail], x[avail, c], color="0.6", lw=1, label="data")
            ax.scatter(t[m[:, c]], x[m[:, c], c], s=12, color="k", zorder=3, label="observed")
            ax.plot(grid, mean[:, c], color="C0", lw=1.5, label=config.model)
            if spread is not None:
                ax.fill_between(grid, mean[:, c] - 2 * spread[:, c], mean[:, c] + 2 * spread[:, c],
                                color="C0", alpha=0.25, label="±2 sd over z0 draws")
            if config.task == "extrapolation":
                ax.axvline(t[len(t) // 2], color="C3", ls="--", lw=1)
            ax.set(title=f"test series {i}, channel {c}", xlabel="t")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{config.dataset}: {config.model}, {config.task}, {config.observed:.0%} observed, "
                 f"test MSE {results['test_mse']:.4g}")
    save_figure(fig, path, dpi=100)


def _dense_prediction(model, config, t, x, m, grid, key):
    """Mean (and spread over z0 draws, Latent ODE) of the prediction on `grid`."""
    if config.model == "latent_ode":
        draws = eqx.filter_jit(
            lambda model, k: model.predict(t, x, m, grid, key=k, num_samples=config.eval_samples)
        )(model, key)
        draws = np.asarray(draws)
        return draws.mean(0), draws.std(0)
    # ODE-RNN / GRU-Δt: put the grid among the series' times as unobserved points.
    times = np.concatenate([t, grid])
    order = np.argsort(times, kind="stable")
    values = np.concatenate([x, np.zeros((len(grid), x.shape[1]), x.dtype)])[order]
    mask = np.concatenate([m, np.zeros((len(grid), x.shape[1]), bool)])[order]
    outputs = eqx.filter_jit(lambda model: jax.vmap(model.readout)(model(times[order], values, mask)))(model)
    return np.asarray(outputs)[np.argsort(order)[len(t):]], None


def _plot_confusion(pyplot, path, config, results):
    matrix = np.asarray(results["confusion"])
    fig, ax = pyplot.subplots(figsize=(4.8, 4.2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"{config.model}, {1 - config.observed:.0%} dropped: "
                 f"accuracy {results['test_accuracy']:.3f}")
    save_figure(fig, path, dpi=100)


def parse_args(argv=None) -> Config:
    """Command-line flags, one per `Config` field."""
    return parse_config(
        Config, argv, description=__doc__.splitlines()[0],
        choices=_choices(),
    )


if __name__ == "__main__":
    main(parse_args())

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
import functools
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from node_kit import datasets
from node_kit._parallel import local_value

from .._checks import is_real

from ._choices import ADAPTIVE_SOLVER_NAMES, ADJOINT_NAMES, SOLVER_NAMES, solve_settings
from ._cli import check_at_most, check_choices, check_flags, check_tolerances, parse_config
from ._run import (
    check_training_flags,
    ParallelConfig,
    recent_mean,
    Run,
    run_command,
    training_optimizer,
)
from ._series_data import PAPER_REFERENCES, Split, batch_at, load_data
from ._series_models import MODELS
from ._series_tasks import TASKS

MODEL_NAMES = tuple(MODELS)
"""Models: the Latent ODE VAE, the ODE-RNN and the GRU reading the time gap (no ODE)."""

TASK_NAMES = tuple(TASKS)
"""Tasks; classification needs a labelled dataset (`japanese_vowels`)."""

ENCODER_SOLVER_NAMES = SOLVER_NAMES
"""`euler` takes `--encoder-steps` fixed steps per gap (the paper's encoder); others adapt."""


@dataclasses.dataclass(frozen=True)
class Config(ParallelConfig):
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
    clip_norm: float = dataclasses.field(default=10.0, metadata={"help": "clip the gradient's global norm to this (0: off)"})
    checkpoint_every: int = dataclasses.field(default=100, metadata={"help": "steps between checkpoints (one is always written at the end)"})
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
        "adjoint": ADJOINT_NAMES,
        "solver": ADAPTIVE_SOLVER_NAMES,
        "encoder_solver": ENCODER_SOLVER_NAMES,
    }


def check_config(config: Config) -> None:
    """Raise a `ValueError` naming the flag for a value the command cannot run with.

    Everything is checked before any data is loaded: the batch sizes and `--train-size`
    against the sizes of the dataset's splits (from its spec), so that a batch larger than
    the data is an error, not a silent clamp.
    """
    check_choices(config, _choices())
    if not (is_real(config.observed) and 0 < config.observed <= 1):
        raise ValueError(
            "--observed (the share of time points the model reads) must be in (0, 1]; got "
            f"{config.observed!r}. For '30% dropped' pass --observed 0.7."
        )
    check_training_flags(config)
    check_flags(
        config, ints=("latent", "hidden", "width", "eval_batch", "eval_samples",
                      "encoder_steps", "window"),
        counts=("depth", "kl_warmup", "train_size", "seed"),
        positive=("obs_std",), non_negative=("ce_weight",),
    )
    check_tolerances(config)
    task = TASKS[config.task]
    if config.window < task.min_window:
        raise ValueError(
            f"--window must be at least {task.min_window} for --task {task.name} (it needs "
            f"that many time points per series); got {config.window}."
        )
    spec = datasets.get_spec(config.dataset)
    if task.needs_labels and "label" not in spec.features:
        raise ValueError(
            f"--task {task.name} needs a labelled dataset; {config.dataset!r} has no labels. "
            "Use --dataset japanese_vowels, or --task interpolation / extrapolation."
        )
    train, _, test = spec.split_sizes(None)
    check_at_most("train_size", config.train_size, train, f"{config.dataset} training series")
    train = config.train_size or train
    kept = " kept by --train-size" if config.train_size else ""
    check_at_most("batch_size", config.batch_size, train, f"{config.dataset} training series{kept}")
    check_at_most("eval_batch", config.eval_batch, test, f"{config.dataset} test series")


def series_masks(task: str, observed: float, key, available, readable):
    """`(input, metric)` masks of ONE series: what the model reads and what it is scored on."""
    return TASKS[task].masks(key, available, readable, observed)


def build_model(config: Config, data_size: int, num_classes: int | None, key):
    """The model the config names, with its solvers (the encoder's per gap)."""
    classes = num_classes if TASKS[config.task].classifies else None
    settings = solve_settings(config.solver, config.adjoint, rtol=config.rtol, atol=config.atol)
    encoder_settings = solve_settings(
        config.encoder_solver, config.adjoint, rtol=config.rtol, atol=config.atol,
        fixed_dt=1.0 / config.encoder_steps,
    )
    return MODELS[config.model].build(
        config, data_size, classes, settings=settings, encoder_settings=encoder_settings, key=key
    )


def make_loss(config: Config):
    """`loss(model, batch, key) -> (loss, aux)` for `node_kit.fit`: the model's, with its task.

    The per-series keys draw the task's input masks and (latent ODE) the `z0` samples.
    """
    task, series_model = TASKS[config.task], MODELS[config.model]

    def loss(model, batch, key):
        keys = jr.split(key, batch["t"].shape[0])
        masks = jax.vmap(lambda k, a, r: task.masks(k, a, r, config.observed))
        inputs, _ = masks(keys, batch["available"], batch["readable"])
        count = jnp.maximum(jnp.sum(batch["available"]), 1)
        return series_model.loss(model, config, task, batch, inputs, key, count)

    return loss


def evaluate(model, config: Config, split: Split, *, key, data_parallel=None) -> dict:
    """Test metrics with the fixed per-series masks of `key`; the posterior mean for `z0`.

    With a `data_parallel` of several devices in one process, each batch of series (padded
    to a multiple of the device count) is split over them.
    """
    task, series_model = TASKS[config.task], MODELS[config.model]
    n = len(split.t)
    size = config.eval_batch
    if not 1 <= size <= n:
        raise ValueError(f"--eval-batch must be in [1, {n}] (the test series); got {size}.")

    @eqx.filter_jit
    def run(model, t, x, available, readable, keys):
        inputs, metric = jax.vmap(lambda k, a, r: task.masks(k, a, r, config.observed))(
            keys, available, readable
        )
        outputs, steps = jax.vmap(lambda t, x, m: series_model.predict(model, task, t, x, m))(
            t, x, inputs
        )
        return jax.vmap(task.score)(outputs, x, metric), steps, inputs, metric

    keys = jr.split(key, n)
    padded, place = size, (lambda arrays: arrays)
    if data_parallel is not None and data_parallel.num_devices > 1 and jax.process_count() == 1:
        padded = -(-size // data_parallel.num_devices) * data_parallel.num_devices
        place = data_parallel.put_batch
    parts = []
    for start in range(0, n, size):
        index = np.arange(start, start + padded) % n  # wrap around: fixed shapes
        arrays = place((split.t[index], split.x[index], split.available[index],
                        split.readable[index], keys[index]))
        out = run(model, *arrays)
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


def _compare_with_paper(config: Config, results: dict) -> dict:
    """The paper's test MSE and our ratio to it on its scale, where the paper has one."""
    paper = PAPER_REFERENCES.get(config.dataset)
    published = None if paper is None else paper.published(config)
    if published is None:
        return {}
    return {"paper_test_mse": published,
            "ratio_to_paper": results["test_mse_paper_scale"] / published}


def main(config: Config) -> dict:
    """Train, evaluate, plot; returns the results dict also written to `results.json`."""
    check_config(config)
    task = TASKS[config.task]
    run = Run(config, keys=("model", "train", "eval", "plot"))
    data = load_data(config, task)
    model = build_model(config, data.data_size, data.num_classes, run.keys["model"])
    model, history = run.fit(
        model, make_loss(config), training_optimizer(config.lr, config.steps, config.clip_norm),
        functools.partial(batch_at, data.train, batch_size=config.batch_size, seed=config.seed,
                          rows=run.rows(config.batch_size)),
    )
    earlier = run.earlier_train_seconds()
    start = time.perf_counter()
    metrics = evaluate(model, config, data.test, key=run.keys["eval"],
                       data_parallel=run.data_parallel)
    results = run.results(
        **metrics,
        train_series=len(data.train.t),
        test_series=len(data.test.t),
        time_points=int(data.train.t.shape[1]),
        train_num_steps_last_100=recent_mean(history, "num_steps"),
        train_seconds_this_run=run.train_seconds,
        train_seconds_total=earlier + run.train_seconds,
        eval_seconds=time.perf_counter() - start,
        normalisation=data.normalisation,
    )
    results |= _compare_with_paper(config, results)
    run.write(results)
    fig = task.picture(model, MODELS[config.model], config, data, results,
                       key=run.keys["plot"], mask_key=run.keys["eval"])
    run.save_figure(fig, f"{config.dataset}_{config.task}.png", dpi=100)
    print(f"{task.summary_line(results)}\nwrote {run.out}/results.json")
    return results


def parse_args(argv=None) -> Config:
    """Command-line flags, one per `Config` field."""
    return parse_config(
        Config, argv, description=__doc__.splitlines()[0],
        choices=_choices(),
    )


if __name__ == "__main__":
    run_command(main, parse_args)

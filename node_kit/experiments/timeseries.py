"""Irregularly sampled time series: Latent ODE, ODE-RNN, GRU-Δt baseline, neural CDE.

`python -m node_kit.experiments.timeseries` trains a Latent ODE to interpolate the
`periodic` toy from half of its points. Flags pick the dataset (`periodic`, `hopper`,
`japanese_vowels`), the model (`latent_ode`, `ode_rnn`, `gru_dt`, `ncde`), the task
(`interpolation`, `extrapolation`, `classification`) and the fraction of time points the
model reads (`--observed`). Writes `results.json` (config, versions, test metrics beside
simple non-learned baselines, solver steps, wall time), `history.csv`, a picture of test
series, a resumable checkpoint and the trained weights (`model.eqx`) to `--out`.
`--evaluate` computes the test metrics of the trained run in `--out` again, without
training (`evaluation.json`); `--eval-every K` adds the validation metric to the history
every K steps and keeps the best model as `best.eqx`; `nk.load_run(out)` loads the model.

**Tasks.** Interpolation reads a random `observed` share of each series' points (redrawn
every training step, fixed per series for the test) and is scored on every point.
Extrapolation reads a random `observed` share of the first half and is scored on the
second half. `--window` cuts every series to that many consecutive points at a seeded
random start (hopper: 100 of its 200 steps, as the paper trains); shorter series stay
whole. Classification reads a random `observed` share of the points (drawn once per
series from the seed: `--observed 0.7` is "30% dropped" in the Neural CDE benchmark) and
predicts the label. Training targets are all available points for both regression tasks.
"""

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr

import node_kit as nk
from node_kit import datasets

from .._checks import is_real
from ._choices import ADAPTIVE_SOLVER_NAMES, ADJOINT_NAMES, solve_settings, SOLVER_NAMES
from ._cli import check_at_most, check_batch_sizes, check_choices, check_flags, check_tolerances
from ._optimizer import training_optimizer
from ._protocol import Command, DataConfig, EvaluationConfig, option, TrainConfig
from ._run import check_training_flags, recent_mean, Run, Validation
from ._series_data import batch_at, load_data
from ._series_eval import compare_with_paper, evaluate
from ._series_models import MODELS
from ._series_tables import TABLES
from ._series_tasks import TASKS
from ._trained import (
    check_eval_tolerances,
    evaluation_tolerances,
    EvaluationTolerances,
    load_trained,
    solve_tolerance,
    with_weights,
)


MODEL_NAMES = tuple(MODELS)
"""Models: the Latent ODE VAE, the ODE-RNN, the GRU reading the time gap (no ODE) and the
neural CDE."""

TASK_NAMES = tuple(TASKS)
"""Tasks; classification needs a labelled dataset (`japanese_vowels`)."""

ENCODER_SOLVER_NAMES = SOLVER_NAMES
"""`euler` (the paper's encoder) and `rk4` take `--encoder-steps` fixed steps per gap; others
adapt."""


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig, DataConfig, EvaluationConfig, EvaluationTolerances):
    """Everything that defines a run (written to results and checkpoints)."""

    dataset: str = option(
        "periodic", "the series: the periodic toy, MuJoCo hopper, or japanese_vowels (labelled)"
    )
    model: str = option(
        "latent_ode",
        "latent_ode (VAE), ode_rnn, gru_dt (a GRU reading the time gap, no ODE) or ncde (a "
        "neural CDE)",
    )
    task: str = option(
        "interpolation",
        "interpolation (score every point), extrapolation (read the first half, score the "
        "second) or classification",
    )
    observed: float = option(
        0.5,
        "share of each series' time points the model reads, in (0, 1]; classification drops 1 "
        "- observed",
    )
    latent: int = option(16, "latent ODE: size of z0")
    hidden: int = option(
        32, "hidden size of the ODE-RNN / GRU (the latent ODE's encoder) / neural CDE"
    )
    interpolation: str = option(
        "cubic", "neural CDE: the control path, cubic (Hermite), linear or rectilinear"
    )
    width: int = option(64, "width of every MLP")
    depth: int = option(2, "hidden layers of every MLP")
    obs_std: float = option(0.01, "latent ODE: fixed observation noise of the Gaussian likelihood")
    kl_warmup: int = option(100, "latent ODE: steps over which the KL weight rises linearly to 1")
    ce_weight: float = option(
        100.0, "latent ODE classification: weight of the cross-entropy beside the ELBO"
    )
    adjoint: str = option("checkpoint", "how gradients go through the solves")
    solver: str = option("tsit5", "adaptive solver of the latent ODE's decoder")
    rtol: float = solve_tolerance("rtol", 1e-3, "adaptive solves")
    atol: float = solve_tolerance("atol", 1e-4, "adaptive solves")
    encoder_solver: str = option(
        "euler",
        "ODE-RNN and latent ODE encoder: euler and rk4 take --encoder-steps fixed steps per "
        "gap; the others adapt",
    )
    encoder_steps: int = option(1, "fixed Euler steps per gap")
    window: int = option(
        100,
        "consecutive time points per series, at a seeded random start; shorter series stay whole",
    )
    train_size: int = option(0, "use the first N training series (0: all)")
    eval_batch: int = option(100, "series per batch when evaluating (test, validation)")
    eval_samples: int = option(16, "latent ODE: z0 draws for the picture's uncertainty band")
    steps: int = 1200
    batch_size: int = 50
    lr: float = 3e-3
    clip_norm: float = 10.0
    out: str = "runs/timeseries"


LOADED_RUN_OPTIONS = ("eval_rtol", "eval_atol", "eval_batch", "data_dir")
"""The flags that may change how a trained run is evaluated; the others are the run's own."""

KEYS = ("model", "train", "eval", "plot")
"""The named keys of a run, split from `--seed` in this order."""


def _choices() -> dict[str, tuple[str, ...]]:
    return {
        "dataset": datasets.TIME_SERIES_NAMES,
        "model": MODEL_NAMES,
        "task": TASK_NAMES,
        "adjoint": ADJOINT_NAMES,
        "solver": ADAPTIVE_SOLVER_NAMES,
        "encoder_solver": ENCODER_SOLVER_NAMES,
        "interpolation": nk.INTERPOLATIONS,
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
        config,
        ints=("latent", "hidden", "width", "eval_batch", "eval_samples", "encoder_steps", "window"),
        counts=("depth", "kl_warmup", "train_size", "seed", "eval_every"),
        positive=("obs_std",),
        non_negative=("ce_weight",),
    )
    check_tolerances(config)
    check_eval_tolerances(config)
    if config.resume and config.evaluate:
        raise ValueError(
            "--resume trains on, while --evaluate uses the trained run in --out as it is; "
            "pass one or the other (e.g. resume first, then --evaluate)."
        )
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
    train, validation, test = spec.split_sizes(None)
    check_at_most("train_size", config.train_size, train, f"{config.dataset} training series")
    kept = " kept by --train-size" if config.train_size else ""
    check_batch_sizes(config, (config.train_size or train, validation, test), "series", kept)


def series_masks(task: str, observed: float, key, available, readable):
    """`(input, metric)` masks of ONE series: what the model reads and what it is scored on."""
    return TASKS[task].masks(key, available, readable, observed)


def build_model(config: Config, data_size: int, num_classes: int | None, key):
    """The model the config names, with its solvers (the encoder's per gap)."""
    classes = num_classes if TASKS[config.task].classifies else None
    settings = solve_settings(config.solver, config.adjoint, rtol=config.rtol, atol=config.atol)
    encoder_settings = solve_settings(
        config.encoder_solver,
        config.adjoint,
        rtol=config.rtol,
        atol=config.atol,
        fixed_dt=1.0 / config.encoder_steps,
    )
    return MODELS[config.model].build(
        config, data_size, classes, settings=settings, encoder_settings=encoder_settings, key=key
    )


def model_skeleton(config: Config):
    """The model `config` trains, with untrained weights: what `nk.load_run` fills. Its
    sizes come from the dataset's spec (channels, classes)."""
    features = datasets.get_spec(config.dataset).features
    label = features.get("label")
    return build_model(
        config, features["x"].shape[-1], None if label is None else label.num_classes, jr.key(0)
    )


def evaluation_model(config: Config, model):
    """`model` with the evaluation tolerances (`--eval-rtol`, `--eval-atol`) in its solves;
    itself if they are the training ones."""
    rtol, atol = evaluation_tolerances(config)
    if (rtol, atol) == (config.rtol, config.atol):
        return model
    return with_weights(model_skeleton(dataclasses.replace(config, rtol=rtol, atol=atol)), model)


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


def validation(config: Config, data, key, data_parallel=None) -> Validation:
    """`--eval-every`: the task's metric on the validation split (`val_mse`, or
    `val_accuracy`), with the evaluation tolerances and the fixed masks of `key`."""
    task = TASKS[config.task]
    name = task.metric.replace("test_", "val_", 1)

    def metrics(model) -> dict:
        result = evaluate(
            evaluation_model(config, model),
            config,
            data.validation,
            key=key,
            data_parallel=data_parallel,
        )
        return {name: result[task.metric], "val_num_steps": result["eval_num_steps"]}

    return Validation(metrics, best=name, higher_is_better=task.higher_is_better)


def main(config: Config) -> dict:
    """Train, evaluate, plot; returns the results dict also written to `results.json`.

    With `--evaluate`, evaluate the trained run in `--out` instead (no training): see
    [`evaluate_trained`][].
    """
    check_config(config)
    if config.evaluate:
        run, model = load_trained(config, keys=KEYS, options=LOADED_RUN_OPTIONS)
        check_config(run.config)
        return evaluate_trained(run.config, model, run)
    task = TASKS[config.task]
    run = Run(config, keys=KEYS)
    data = load_data(config, task, validation=config.eval_every > 0)
    model = build_model(config, data.data_size, data.num_classes, run.keys["model"])
    model, history = run.fit(
        model,
        make_loss(config),
        training_optimizer(config.lr, config.steps, config.clip_norm),
        run.batches(batch_at, data.train),
        validation=validation(config, data, jr.fold_in(run.keys["eval"], 1), run.data_parallel)
        if config.eval_every
        else None,
    )
    earlier = run.earlier_train_seconds()
    results = test_results(
        config,
        model,
        run,
        data,
        train_series=len(data.train.t),
        time_points=int(data.train.t.shape[1]),
        train_num_steps_last_100=recent_mean(history, "num_steps"),
        train_seconds_this_run=run.train_seconds,
        train_seconds_total=earlier + run.train_seconds,
    )
    run.write(results)
    fig = task.picture(
        model,
        MODELS[config.model],
        config,
        data,
        results,
        key=run.keys["plot"],
        mask_key=run.keys["eval"],
    )
    run.save_figure(fig, f"{config.dataset}_{config.task}.png", dpi=100)
    _print_summary(task, results, run.out)
    return results


def test_results(config: Config, model, run: Run, data, **fields) -> dict:
    """The results of `model` on the test split (the same masks whenever it is evaluated)
    beside the paper's numbers, with `fields`."""
    start = time.perf_counter()
    metrics = evaluate(
        evaluation_model(config, model),
        config,
        data.test,
        key=run.keys["eval"],
        data_parallel=run.data_parallel,
    )
    results = run.results(
        **metrics,
        **fields,
        test_series=len(data.test.t),
        eval_seconds=time.perf_counter() - start,
        normalisation=data.normalisation,
    )
    return results | compare_with_paper(config, results)


def evaluate_trained(config: Config, model, run: Run) -> dict:
    """`--evaluate`: the test metrics of the trained `model` again (the same masks as
    after training), written with provenance to `evaluation.json`."""
    results = test_results(config, model, run, load_data(config, TASKS[config.task]))
    run.write(results, name="evaluation.json")
    _print_summary(TASKS[config.task], results, run.out, "evaluation.json")
    return results


def _print_summary(task, results: dict, out: Path, name: str = "results.json") -> None:
    print(f"{task.summary_line(results)}\nwrote {out}/{name}")


def headline(results: dict) -> dict[str, float]:
    """The metric a re-run must give again: test accuracy (classification) or MSE."""
    key = "test_accuracy" if "test_accuracy" in results else "test_mse"
    return {key: results[key]}


COMMAND = Command(
    "timeseries",
    Config,
    main,
    docs="timeseries.md",
    choices=_choices,
    model_skeleton=model_skeleton,
    headline=headline,
    reference=(
        ("--steps", "20"),
        ("test_mse", "baseline_linear_interpolation_mse", "eval_num_steps"),
    ),
    tables=TABLES,
)
parse_args = COMMAND.parse


if __name__ == "__main__":
    COMMAND.run()

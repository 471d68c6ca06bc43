"""A deep equilibrium classifier of the 8x8 digits beside a neural ODE and an MLP of its size.

`python -m node_kit.experiments.deq` trains three classifiers with the same parameter
count (the NeuralODE's field width and the MLP's width are matched to the DEQ's unless
given) on the same batches, one [`Run`][] each under `<out>/<model>/` (checkpoint,
history, results), and writes `<out>/results.json` comparing them: test accuracy,
forward iterations, compiled memory of one training gradient, training time. For the
DEQ it also compiles the gradient under each backward pass and plots the relative
residual of its trained fixed point against the iterations of each forward solver
(`<out>/deq.png`, beside the training-batch accuracy of the three models).
"""

import dataclasses
import functools
import itertools
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import node_kit as nk
from node_kit import datasets
from node_kit._io import previous_path

from ._choices import (
    ADJOINT_NAMES,
    fixed_point_solver,
    FIXED_POINT_SOLVER_NAMES,
    solve_settings,
)
from ._cli import check_at_most, check_choices, check_flags, check_tolerances
from ._deq_models import (
    AbstractClassifier,
    DEQClassifier,
    matched_width,
    MLPClassifier,
    ODEClassifier,
    parameter_count,
)
from ._deq_plots import plot
from ._deq_tables import TABLES
from ._optimizer import training_optimizer
from ._protocol import Command, DataConfig, option, TrainConfig
from ._run import check_training_flags, part_config, Run


MODEL_NAMES = ("deq", "neural_ode", "mlp")

ITERATION_UNITS = {
    "deq": "fixed-point iterations (one evaluation of f each)",
    "neural_ode": "Tsit5 steps (about 6 field evaluations each)",
    "mlp": "layers",
}


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig, DataConfig):
    """Everything that defines a run (written to results and checkpoints)."""

    width: int = option(64, "state size of the DEQ and of the neural ODE")
    radius: float = option(
        0.9, "bound on the spectral norm of the DEQ's W, in (0, 1): f stays a contraction"
    )
    solver: str = option("anderson", "the DEQ's forward fixed-point solver")
    backward: str = option("implicit", "the DEQ's backward pass")
    max_iterations: int = option(
        100, "most forward iterations of the DEQ (a solve that needs more stops training)"
    )
    rtol: float = option(1e-4, "relative tolerance of the DEQ's and the ODE's forward solves")
    atol: float = option(1e-5, "absolute tolerance of the DEQ's and the ODE's forward solves")
    ode_width: int = option(
        0, "hidden width of the ODE's field (0: match the DEQ's parameter count)"
    )
    ode_adjoint: str = option("checkpoint", "the neural ODE's adjoint")
    mlp_width: int = option(0, "hidden width of the MLP (0: match the DEQ's parameter count)")
    mlp_depth: int = option(2, "hidden layers of the MLP")
    residual_steps: int = option(50, "iterations shown in the residual picture")
    batch_size: int = 64
    lr: float = 3e-3
    out: str = "runs/deq"


def _choices() -> dict[str, tuple[str, ...]]:
    return {
        "solver": FIXED_POINT_SOLVER_NAMES,
        "backward": nk.BACKWARD_MODES,
        "ode_adjoint": ADJOINT_NAMES,
    }


def check_config(config: Config) -> None:
    """Raise a `ValueError` naming the flag for a value the command cannot run with."""
    check_choices(config, _choices())
    check_training_flags(config)
    check_flags(
        config,
        ints=("width", "max_iterations", "mlp_depth", "residual_steps"),
        counts=("ode_width", "mlp_width", "seed"),
    )
    check_tolerances(config)
    if not (isinstance(config.radius, (int, float)) and 0 < config.radius < 1):
        raise ValueError(
            f"--radius must be in (0, 1) so that the DEQ's f is a contraction (its fixed "
            f"point exists and the solvers converge); got {config.radius!r}. E.g. --radius 0.9."
        )
    train, _, _ = datasets.get_spec("digits").split_sizes(None)
    check_at_most("batch_size", config.batch_size, train, "digits training images")


def load_data(config: Config) -> dict[str, dict[str, np.ndarray]]:
    """`{"train": ..., "test": ...}`, each `{"x": pixels / 16 (float32), "label": int32}`."""
    data_dir = config.data_dir or None

    def split(name):
        raw = datasets.load("digits", name, data_dir=data_dir)
        return {"x": raw["x"].astype(np.float32) / 16.0, "label": raw["label"].astype(np.int32)}

    return {"train": split("train"), "test": split("test")}


def build_models(config: Config, keys: dict) -> dict[str, AbstractClassifier]:
    """The three classifiers; the ODE's and the MLP's widths matched to the DEQ's size."""
    deq = DEQClassifier(
        config.width,
        radius=config.radius,
        backward=config.backward,
        solver=fixed_point_solver(config.solver, rtol=config.rtol, atol=config.atol),
        max_steps=config.max_iterations,
        key=keys["deq"],
    )
    target = parameter_count(deq)
    settings = solve_settings("tsit5", config.ode_adjoint, rtol=config.rtol, atol=config.atol)
    ode = functools.partial(ODEClassifier, config.width, settings=settings, key=keys["neural_ode"])
    mlp = functools.partial(MLPClassifier, depth=config.mlp_depth, key=keys["mlp"])
    ode_width = config.ode_width or matched_width(ode, target)
    mlp_width = config.mlp_width or matched_width(mlp, target)
    return {"deq": deq, "neural_ode": ode(ode_width), "mlp": mlp(mlp_width)}


def classification_loss(model: AbstractClassifier, batch: dict, key):
    """Mean cross-entropy; aux: the batch's accuracy and the model's solver statistics."""
    del key
    logits, stats = model.logits(batch["x"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, {"accuracy": accuracy, **stats}


def gradient_cost(model: AbstractClassifier, batch: dict, *, repeats: int = 5) -> dict:
    """Compiled memory, compile time and run time (median of `repeats`) of one training
    gradient: the gradient of the loss on `batch`, the parameters as arguments."""
    batch = jax.tree_util.tree_map(jnp.asarray, batch)
    start = time.perf_counter()
    compiled = eqx.filter_jit(_gradient).lower(model, batch).compile()
    compile_seconds = time.perf_counter() - start
    memory = nk.CompiledMemory.of(compiled.compiled)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(model, batch))
        times.append(time.perf_counter() - start)
    return {
        "temp_bytes": memory.temp_bytes,
        "total_bytes": memory.total_bytes,
        "compile_seconds": compile_seconds,
        "seconds_median": float(np.median(times)),
    }


def _gradient(model: AbstractClassifier, batch: dict):
    def loss(model):
        return classification_loss(model, batch, None)[0]

    return eqx.filter_grad(loss)(model)


@eqx.filter_jit
def _test_batch(model: AbstractClassifier, xs, labels):
    logits, stats = model.logits(xs)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.argmax(logits, -1) == labels, losses, model.iterations(stats)


def evaluate(name: str, model: AbstractClassifier, test: dict, batch_size: int) -> dict:
    """Test accuracy and loss, and the forward iterations of the test set solved in
    batches of `batch_size` as in training (the last batch is filled up by wrapping
    around to the start; only its new images count towards accuracy and loss)."""
    size = len(test["label"])
    correct, losses, iterations = [], [], []
    for start in range(0, size, batch_size):
        index = np.arange(start, start + batch_size) % size
        batch_correct, batch_losses, steps = _test_batch(
            model, jnp.asarray(test["x"][index]), jnp.asarray(test["label"][index])
        )
        keep = min(batch_size, size - start)
        correct.append(np.asarray(batch_correct)[:keep])
        losses.append(np.asarray(batch_losses)[:keep])
        iterations.append(int(steps))
    return {
        "test_accuracy": float(np.mean(np.concatenate(correct))),
        "test_loss": float(np.mean(np.concatenate(losses))),
        "forward_iterations": {
            "unit": ITERATION_UNITS[name],
            "per_batch_mean": float(np.mean(iterations)),
            "per_batch_max": int(np.max(iterations)),
            "batches": len(iterations),
            "batch_size": batch_size,
        },
    }


def step_seconds_median(history: list[dict]) -> float | None:
    """Median seconds per training step between consecutive history rows of one run.

    A run's first row comes after the compilation, so it only opens an interval; a
    resumed run restarts the clock (its time goes down), which closes none.
    """
    per_step = [
        (b["time"] - a["time"]) / (b["step"] - a["step"])
        for a, b in itertools.pairwise(history)
        if b["time"] > a["time"] and b["step"] > a["step"]
    ]
    return float(np.median(per_step)) if per_step else None


def model_runs(config: Config) -> dict[str, Run]:
    """One [`Run`][] per model, under `<out>/<model>/`.

    With `--resume`, a model that has no checkpoint yet (the command stopped before it)
    starts afresh; no checkpoint at all is the runner's error. The processes are joined
    once, by the command's own run, so the models' runs do not join them again.
    """
    configs = {name: part_config(config, out=str(Path(config.out) / name)) for name in MODEL_NAMES}
    started = [name for name, c in configs.items() if _has_checkpoint(Path(c.out))]
    if config.resume and started:
        configs = {
            name: dataclasses.replace(c, resume=name in started) for name, c in configs.items()
        }
    return {name: Run(c, keys=("train",)) for name, c in configs.items()}


def _has_checkpoint(out: Path) -> bool:
    path = out / "checkpoint.eqx"
    return path.exists() or previous_path(path).exists()


def train_and_evaluate(config: Config, run: Run, name: str, model, data: dict):
    """Train one model in its `run` (under `<out>/<name>/`), evaluate, write its results;
    returns `(model, summary, history)`."""
    batch_at = run.batches(datasets.batch_at, data["train"])
    earlier = run.earlier_train_seconds()
    optimizer = training_optimizer(config.lr, config.steps, config.clip_norm)
    model, history = run.fit(model, classification_loss, optimizer, batch_at)
    summary = {
        "architecture": model.describe(),
        "parameters": parameter_count(model),
        **evaluate(name, model, data["test"], config.batch_size),
        "gradient": gradient_cost(model, batch_at(0)),
        "train_seconds_this_run": run.train_seconds,
        "train_seconds_total": earlier + run.train_seconds,
        "step_seconds_median": step_seconds_median(history),
        "final_train_loss": history[-1]["loss"] if history else None,
    }
    if name == "deq":
        summary |= {"backward": config.backward, "solver": config.solver}
    run.write(run.results(model=name, **summary))
    return model, summary, history


def backward_costs(model: DEQClassifier, batch: dict, trained: dict) -> dict[str, dict]:
    """[`gradient_cost`][] of the DEQ under each backward pass (`trained`: that of the
    backward pass it was trained with, already measured)."""
    return {
        mode: trained
        if mode == model.deq.backward
        else gradient_cost(model.with_deq(backward=mode), batch)
        for mode in nk.BACKWARD_MODES
    }


def residual_histories(model: DEQClassifier, xs, config: Config) -> dict[str, list[float]]:
    """The trained DEQ's relative residual at each of `--residual-steps` iterations of
    each forward solver, on `xs` solved as one batch."""
    inputs = model.inputs(jnp.asarray(xs))
    histories = {}
    for name in FIXED_POINT_SOLVER_NAMES:
        solver = fixed_point_solver(name, rtol=config.rtol, atol=config.atol)
        layer = model.with_deq(solver=solver).layer()
        histories[name] = np.asarray(
            _residual_history(layer, inputs, config.residual_steps)
        ).tolist()
    return histories


@eqx.filter_jit
def _residual_history(layer: nk.DEQ, inputs, steps: int):
    return layer.residual_history(inputs, batched=True, steps=steps)


def main(config: Config) -> dict:
    """Train and compare the three models, plot; returns the results also in `results.json`."""
    check_config(config)
    run = Run(dataclasses.replace(config, resume=False), keys=MODEL_NAMES)
    runs = model_runs(config)
    data = load_data(config)
    models, summaries, histories = build_models(config, run.keys), {}, {}
    for name in MODEL_NAMES:
        models[name], summaries[name], histories[name] = train_and_evaluate(
            config, runs[name], name, models[name], data
        )
    deq = models["deq"]
    assert isinstance(deq, DEQClassifier)
    batch = datasets.batch_at(data["train"], 0, batch_size=config.batch_size, seed=config.seed)
    residuals = residual_histories(deq, data["test"]["x"], config)
    results = run.results(
        config=dataclasses.asdict(config),
        models=summaries,
        parameter_counts={name: s["parameters"] for name, s in summaries.items()},
        deq_gradient_by_backward=backward_costs(deq, batch, summaries["deq"]["gradient"]),
        residual_history={"solvers": residuals, "data": "test set, solved as one batch"},
    )
    run.write(results)
    run.save_figure(plot(residuals, histories, summaries, rtol=config.rtol), "deq.png")
    _print_summary(summaries, run.out)
    return results


def _print_summary(summaries: dict, out: Path) -> None:
    for name, s in summaries.items():
        iterations = s["forward_iterations"]
        print(
            f"{name:>10}: {s['parameters']} parameters, test accuracy {s['test_accuracy']:.4f}, "
            f"{iterations['per_batch_mean']:.1f} {iterations['unit'].split(' (')[0]} per batch, "
            f"gradient temp {s['gradient']['temp_bytes'] / 2**20:.2f} MiB"
        )
    print(f"wrote {out}/results.json, deq.png")


COMMAND = Command(
    "deq",
    Config,
    main,
    docs="implicit-layers.md",
    choices=_choices,
    headline=lambda results: {
        f"{name} test_accuracy": m["test_accuracy"] for name, m in results["models"].items()
    },
    tables=TABLES,
)
parse_args = COMMAND.parse


if __name__ == "__main__":
    COMMAND.run()

"""Learn the dynamics of a 2-D spiral from one observed trajectory.

`python -m node_kit.experiments.spiral` fits a neural ODE to the cubic spiral of Chen et
al. (2018)'s demo, `dy/dt = (y**3) A`, training on short random windows of the trajectory
(each with its own time grid, solved with `jax.vmap`), then integrates the learned field
over the whole time span from the initial point alone. Writes `results.json`,
`history.csv`, `spiral.png` and a resumable checkpoint to `--out`.
"""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import node_kit as nk

from .._checks import check_int
from .._resources import check_fits
from ._choices import ADJOINT_NAMES, solve_settings
from ._cli import check_choices, check_flags, check_tolerances
from ._optimizer import with_clipping
from ._outputs import plt
from ._protocol import Command, EvaluationConfig, metrics, option, TrainConfig
from ._run import check_training_flags, Run, Validation
from ._trained import load_trained


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig, EvaluationConfig):
    """Everything that defines a run (written to results and checkpoints)."""

    window: int = option(20, "points per training window of the trajectory")
    width: int = option(64, "hidden width of the MLP field")
    depth: int = option(2, "hidden layers of the MLP field")
    adjoint: str = option("checkpoint", "how gradients go through the solve")
    rtol: float = option(1e-4, "relative tolerance of the Tsit5 solves")
    atol: float = option(1e-6, "absolute tolerance of the Tsit5 solves")
    num_points: int = option(1000, "points of the observed trajectory")
    t_end: float = option(25.0, "end time of the observed trajectory")
    steps: int = 2000
    lr: float = option(1e-2, "peak learning rate of Adam (cosine decay to 2%% of it over --steps)")
    out: str = "runs/spiral"


KEYS = ("model", "train")
"""The named keys of a run, split from `--seed` in this order."""

TRUE_A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
Y0 = np.array([2.0, 0.0])


def _choices() -> dict[str, tuple[str, ...]]:
    return {"adjoint": ADJOINT_NAMES}


def check_config(config: Config) -> None:
    """Raise a `ValueError` naming the flag for a value the command cannot run with."""
    check_choices(config, _choices())
    check_training_flags(config)
    check_flags(
        config, ints=("width",), counts=("depth", "seed", "eval_every"), positive=("t_end",)
    )
    check_tolerances(config)
    check_int(
        "--num-points",
        config.num_points,
        minimum=3,
        fix="The trajectory is cut into training windows of --window points.",
    )
    check_fits(
        _BYTES_PER_POINT * config.num_points,
        what=f"the observed trajectory of --num-points {config.num_points} (its times and "
        "states, float64 and float32 copies)",
        lower="Lower --num-points.",
    )
    check_int(
        "--window",
        config.window,
        minimum=2,
        maximum=config.num_points - 1,
        fix=f"A training window is shorter than the trajectory (--num-points {config.num_points}).",
    )


_BYTES_PER_POINT = 32
"""What `true_trajectory` holds per point, at least: the times in float64 and float32, the
solver's float32 states and their NumPy copy (2 each)."""


def true_trajectory(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The spiral sampled at `num_points` uniform times in `[0, t_end]`."""
    ts = np.linspace(0.0, config.t_end, config.num_points)
    field = lambda t, y, args: (y**3) @ jnp.asarray(TRUE_A)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        0.0,
        config.t_end,
        0.01,
        jnp.asarray(Y0),
        saveat=diffrax.SaveAt(ts=jnp.asarray(ts)),
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8),
        max_steps=100_000,
    )
    return ts.astype(np.float32), np.asarray(sol.ys, dtype=np.float32)


def build_model(config: Config, key) -> nk.NeuralODE:
    """MLP field (tanh) solved with Tsit5 at the configured tolerances and adjoint."""
    field = nk.MLPField(2, config.width, config.depth, activation=jnp.tanh, key=key)
    return nk.NeuralODE(
        field, solve_settings("tsit5", config.adjoint, rtol=config.rtol, atol=config.atol)
    )


def model_skeleton(config: Config) -> nk.NeuralODE:
    """The model of `config` with placeholder weights, for [`node_kit.load_run`][]."""
    return build_model(config, jr.key(0))


def window_sampler(ts, ys, config: Config, rows: slice | None = None):
    """`step -> (window_ts, y0s, targets)`: a pure function of the step (resumable); `rows`:
    this process's share of each batch."""
    last_start = len(ts) - config.window

    def batch_at(step: int):
        rng = np.random.default_rng([config.seed, step])
        starts = rng.integers(0, last_start, size=config.batch_size)[rows or slice(None)]
        window_ts = np.stack([ts[s : s + config.window] for s in starts])
        windows = np.stack([ys[s : s + config.window] for s in starts])
        return jnp.asarray(window_ts), jnp.asarray(windows[:, 0]), jnp.asarray(windows)

    return batch_at


def loss_fn(model: nk.NeuralODE, batch, key):
    """Mean absolute error over the windows.

    Each window keeps its own absolute times (the field sees `t`), so the batch is
    solved per sample with `jax.vmap`, the layout for one time grid per sample.
    """
    del key
    window_ts, y0s, targets = batch
    sol = jax.vmap(model.solve)(window_ts, y0s)
    num_steps = jnp.max(sol.stats["num_steps"])
    return jnp.mean(jnp.abs(sol.ys - targets)), {"num_steps": num_steps}


def trajectory_metrics(model: nk.NeuralODE, ts: np.ndarray, ys: np.ndarray) -> dict:
    """The whole trajectory integrated from `y(0)` alone: its mean absolute error, also over
    the first tenth, and the prediction."""
    predicted = np.asarray(eqx.filter_jit(model)(jnp.asarray(ts), jnp.asarray(ys[0])))
    error = np.abs(predicted - ys)
    return {
        "trajectory_mae": float(np.mean(error)),
        "trajectory_mae_first_tenth": float(np.mean(error[: len(ts) // 10])),
        "predicted": predicted,
    }


def validation(ts: np.ndarray, ys: np.ndarray) -> Validation:
    """`--eval-every`: the whole-trajectory MAE. The spiral is one trajectory, so this is
    the metric of the results, not a held-out split: `best.eqx` is the best fit of it."""
    return Validation(
        lambda model: {"val_trajectory_mae": trajectory_metrics(model, ts, ys)["trajectory_mae"]},
        best="val_trajectory_mae",
    )


def main(config: Config) -> dict:
    """Train, evaluate on the whole trajectory, write results; returns the results dict.

    With `--evaluate`, score the trained run in `--out` again instead (no training), into
    `evaluation.json`.
    """
    check_config(config)
    ts, ys = true_trajectory(config)
    if config.evaluate:
        run, model = load_trained(config, keys=KEYS)
        metrics = trajectory_metrics(model, ts, ys)
        del metrics["predicted"]
        run.write(run.results(**metrics), name="evaluation.json")
        print(
            f"whole-trajectory MAE {metrics['trajectory_mae']:.4f}; wrote {run.out}/evaluation.json"
        )
        return metrics
    run = Run(config, keys=KEYS)
    model = build_model(config, run.keys["model"])
    schedule = optax.cosine_decay_schedule(config.lr, config.steps, alpha=0.02)
    optimizer = with_clipping(optax.adam(schedule), config.clip_norm)
    model, history = run.fit(
        model,
        loss_fn,
        optimizer,
        window_sampler(ts, ys, config, run.rows(config.batch_size)),
        validation=validation(ts, ys) if config.eval_every else None,
    )
    metrics = trajectory_metrics(model, ts, ys)
    predicted = metrics.pop("predicted")
    results = run.results(
        **metrics,
        final_train_loss=history[-1]["loss"] if history else None,
        train_seconds_this_run=run.train_seconds,
    )
    run.write(results)
    run.save_figure(plot(ys, predicted), "spiral.png", dpi=120)
    print(
        f"whole-trajectory MAE {results['trajectory_mae']:.4f}; "
        f"wrote {run.out}/results.json, spiral.png"
    )
    return results


def plot(true: np.ndarray, predicted: np.ndarray):
    """The true trajectory and the one integrated from `y(0)`: the figure."""
    fig, ax = plt().subplots(figsize=(5, 5))
    ax.plot(true[:, 0], true[:, 1], "k-", lw=1.5, label="true trajectory")
    ax.plot(predicted[:, 0], predicted[:, 1], "C1--", lw=1.5, label="neural ODE from y(0)")
    ax.set(xlabel="y1", ylabel="y2", title="Spiral: learned dynamics")
    ax.legend(loc="upper right")
    return fig


COMMAND = Command(
    "spiral",
    Config,
    main,
    docs="index.md",
    choices=_choices,
    model_skeleton=model_skeleton,
    headline=metrics("trajectory_mae"),
)
parse_args = COMMAND.parse


if __name__ == "__main__":
    COMMAND.run()

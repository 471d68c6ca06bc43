"""Learn the dynamics of a 2-D spiral from one observed trajectory.

`python -m node_kit.experiments.spiral` fits a neural ODE to the cubic spiral of
Chen et al. (2018)'s demo, `dy/dt = (y**3) A`, training on short random windows of
the trajectory (each with its own time grid, solved with `jax.vmap`), then integrates the learned field over the
whole time span from the initial point alone. Writes `results.json`, `history.csv`,
`spiral.png` and a resumable checkpoint to `--out`.
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
from ._choices import ADJOINT_NAMES, solve_settings
from ._cli import check_choices, check_flags, check_tolerances, parse_config
from ._outputs import plt
from ._run import ParallelConfig, Run, check_training_flags, run_command


@dataclasses.dataclass(frozen=True)
class Config(ParallelConfig):
    """Everything that defines a run (written to results and checkpoints)."""

    steps: int = 2000
    batch_size: int = 32
    window: int = dataclasses.field(default=20, metadata={"help": 'points per training window of the trajectory'})
    width: int = 64
    depth: int = 2
    lr: float = 1e-2
    adjoint: str = "checkpoint"
    rtol: float = 1e-4
    atol: float = 1e-6
    num_points: int = dataclasses.field(default=1000, metadata={"help": 'points of the observed trajectory'})
    t_end: float = dataclasses.field(default=25.0, metadata={"help": 'end time of the observed trajectory'})
    seed: int = 0
    out: str = "runs/spiral"
    resume: bool = False
    progress: bool = True


TRUE_A = np.array([[-0.1, 2.0], [-2.0, -0.1]])
Y0 = np.array([2.0, 0.0])


def check_config(config: Config) -> None:
    """Raise a `ValueError` naming the flag for a value the command cannot run with."""
    check_choices(config, {"adjoint": ADJOINT_NAMES})
    check_training_flags(config)
    check_flags(config, ints=("width",), counts=("depth", "seed"), positive=("t_end",))
    check_tolerances(config)
    check_int("--num-points", config.num_points, minimum=3,
              fix="The trajectory is cut into training windows of --window points.")
    check_int("--window", config.window, minimum=2, maximum=config.num_points - 1,
              fix=f"A training window is shorter than the trajectory (--num-points "
                  f"{config.num_points}).")


def true_trajectory(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The spiral sampled at `num_points` uniform times in `[0, t_end]`."""
    ts = np.linspace(0.0, config.t_end, config.num_points)
    field = lambda t, y, args: (y**3) @ jnp.asarray(TRUE_A)  # noqa: E731
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Tsit5(), 0.0, config.t_end, 0.01, jnp.asarray(Y0),
        saveat=diffrax.SaveAt(ts=jnp.asarray(ts)),
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8), max_steps=100_000,
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


def main(config: Config) -> dict:
    """Train, evaluate on the whole trajectory, write results; returns the results dict."""
    check_config(config)
    run = Run(config, keys=("model", "train"))
    ts, ys = true_trajectory(config)
    model = build_model(config, run.keys["model"])
    schedule = optax.cosine_decay_schedule(config.lr, config.steps, alpha=0.02)
    model, history = run.fit(model, loss_fn, optax.adam(schedule), window_sampler(ts, ys, config, run.rows(config.batch_size)))
    predicted = np.asarray(eqx.filter_jit(model)(jnp.asarray(ts), jnp.asarray(ys[0])))
    results = run.results(
        trajectory_mae=float(np.mean(np.abs(predicted - ys))),
        trajectory_mae_first_tenth=float(np.mean(np.abs(predicted - ys)[: len(ts) // 10])),
        final_train_loss=history[-1]["loss"] if history else None,
        train_seconds_this_run=run.train_seconds,
    )
    run.write(results)
    run.save_figure(plot(ys, predicted), "spiral.png", dpi=120)
    print(f"whole-trajectory MAE {results['trajectory_mae']:.4f}; "
          f"wrote {run.out}/results.json, spiral.png")
    return results


def plot(true: np.ndarray, predicted: np.ndarray):
    """The true trajectory and the one integrated from `y(0)`: the figure."""
    fig, ax = plt().subplots(figsize=(5, 5))
    ax.plot(true[:, 0], true[:, 1], "k-", lw=1.5, label="true trajectory")
    ax.plot(predicted[:, 0], predicted[:, 1], "C1--", lw=1.5, label="neural ODE from y(0)")
    ax.set(xlabel="y1", ylabel="y2", title="Spiral: learned dynamics")
    ax.legend(loc="upper right")
    return fig


def parse_args(argv=None) -> Config:
    """Command-line flags, one per `Config` field."""
    return parse_config(
        Config, argv, description=__doc__.splitlines()[0], choices={"adjoint": ADJOINT_NAMES}
    )


if __name__ == "__main__":
    run_command(main, parse_args)

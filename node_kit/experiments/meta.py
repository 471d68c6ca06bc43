"""Few-shot sinusoid regression (Finn et al. 2017): MAML, first-order MAML, iMAML, pretraining.

`python -m node_kit.experiments.meta` meta-trains one MLP (Finn's 1-40-40-1) per method and
per number of shots K on a fresh meta-batch of sinusoid tasks at every step, then adapts each
to the K shots of a fixed set of held-out tasks and scores it on their query points. The
baseline ("pretrained") is one model trained by plain regression on all tasks, fine-tuned
with the same inner steps as MAML. Each method also gets one meta-gradient compiled on its
own: compile time, median time after a warm-up, and XLA's temporary memory.

Writes `<out>/<method>-k<K>/` (checkpoint, history, results of one training),
`<out>/results.json` (every method and K) and `<out>/meta_fits.png`.

The default network uses `tanh`, not Finn's ReLU: iMAML differentiates the minimiser of
the proximal problem, and with ReLU that minimiser sits on kinks of the loss (the gradient
stalls far from zero and the Hessian is not positive definite there), so `--activation
relu` is refused with `imaml` among the methods.
"""

import dataclasses
import functools
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import optax
import optimistix as optx

import node_kit as nk
from node_kit.datasets import sinusoid_tasks

from .._checks import check_choice, check_int
from ._cli import check_at_most, check_choices, check_flags
from ._meta_plots import plot_fits, print_table
from ._meta_tables import TABLES
from ._optimizer import with_clipping
from ._protocol import Command, option, TrainConfig
from ._run import check_training_flags, part_config, recent_mean, Run


ACTIVATIONS = {"tanh": jnp.tanh, "softplus": jax.nn.softplus, "relu": jax.nn.relu}
"""`--activation` names -> the MLP's activation."""

METHOD_NAMES = ("maml", "fomaml", "imaml", "pretrained")


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    """Everything that defines a run (written to results and checkpoints)."""

    # First the shared training flags as meta-training reads them (--help lists them with
    # the shared flags): a step is a meta-step, a batch a meta-batch of tasks.
    steps: int = option(1000, "meta-steps per method and K (a resumed run stops at this total)")
    batch_size: int = option(
        25, "tasks per meta-step (the global meta-batch, split over the devices)"
    )
    lr: float = option(1e-3, "meta learning rate (Adam, constant)")
    methods: tuple[str, ...] = option(METHOD_NAMES, "methods to train")
    shots: tuple[int, ...] = option(
        (5, 10), "support points K per task; one training per method and K"
    )
    queries: int = option(10, "query points per training task")
    inner_steps: int = option(
        5, "MAML/FOMAML inner gradient steps, also the baseline's fine-tuning steps"
    )
    inner_lr: float = option(0.01, "their learning rate")
    reg: float = option(5.0, "iMAML's proximal weight lambda")
    tol: float = option(
        1e-4,
        "iMAML: L-BFGS and CG relative tolerance (absolute: tol/10, RMS norm); looser makes "
        "the meta-gradient inexact",
    )
    lbfgs_history: int = option(
        5, "iMAML: L-BFGS history length (10 is about twice as slow per step here)"
    )
    inner_max_steps: int = option(200, "iMAML: most L-BFGS steps per task (more raises)")
    cg_steps: int = option(100, "iMAML: most CG steps of the implicit gradient (more raises)")
    width: int = option(40, "hidden units per layer")
    depth: int = option(2, "hidden layers")
    activation: str = option("tanh", "hidden activation")
    eval_tasks: int = option(500, "held-out test tasks")
    eval_points: int = option(100, "query points per test task")
    timing_repeats: int = option(
        20, "timed meta-gradients per method, after one warm-up (0: no timing and memory)"
    )
    plot_tasks: int = option(3, "test tasks drawn per K in the picture")
    out: str = "runs/meta"


RENAMED = {"meta_batch": "batch_size", "history": "lbfgs_history"}
"""Flags renamed in node_kit 0.2 (old name -> new name): see CHANGELOG.md."""


@dataclasses.dataclass(frozen=True)
class Method:
    """A method: how it adapts while meta-training, and how it adapts at test time."""

    name: str
    train: nk.AbstractMetaLearner
    test: nk.AbstractMetaLearner


def build_methods(config: Config) -> dict[str, Method]:
    """Every method name -> its learners: the one place the method strings become objects."""
    maml = nk.MAML(config.inner_steps, config.inner_lr)
    fomaml = nk.MAML(config.inner_steps, config.inner_lr, first_order=True)
    imaml = nk.IMAML(
        config.reg,
        solver=optx.LBFGS(
            rtol=config.tol,
            atol=config.tol / 10,
            norm=optx.rms_norm,
            history_length=config.lbfgs_history,
        ),
        linear_solver=lx.CG(rtol=config.tol, atol=config.tol / 10, max_steps=config.cg_steps),
        max_steps=config.inner_max_steps,
    )
    return {
        "maml": Method("maml", maml, maml),
        "fomaml": Method("fomaml", fomaml, fomaml),
        "imaml": Method("imaml", imaml, imaml),
        "pretrained": Method("pretrained", nk.MAML(0, config.inner_lr), maml),
    }


def check_config(config: Config) -> None:
    """Raise a `ValueError` naming the flag for a value the command cannot run with."""
    check_choices(config, {"activation": tuple(ACTIVATIONS)})
    for name in config.methods:
        check_choice("--methods", name, METHOD_NAMES, what="method")
    if not config.methods or len(set(config.methods)) != len(config.methods):
        raise ValueError(f"--methods must name distinct methods; got {config.methods}.")
    if not config.shots:
        raise ValueError("--shots needs at least one K, e.g. --shots 5 10.")
    for shots in config.shots:
        check_int("--shots", shots)
    check_training_flags(config)
    check_flags(
        config,
        ints=(
            "queries",
            "width",
            "lbfgs_history",
            "inner_max_steps",
            "cg_steps",
            "eval_tasks",
            "eval_points",
            "plot_tasks",
        ),
        counts=("depth", "inner_steps", "timing_repeats", "seed"),
        positive=("inner_lr", "reg", "tol"),
    )
    check_at_most("plot_tasks", config.plot_tasks, config.eval_tasks, "test tasks (--eval-tasks)")
    if config.activation == "relu" and "imaml" in config.methods:
        raise ValueError(
            "--activation relu cannot train imaml: its proximal minimiser sits on the kinks of "
            "a ReLU network, where the gradient does not vanish and the Hessian is not "
            "positive definite, so the implicit gradient is undefined. Use --activation tanh "
            "or softplus, or drop imaml from --methods."
        )


def mse(model, data) -> jax.Array:
    """Mean squared error of a model on one task's `(x, y)`, shapes `(points, 1)`."""
    x, y = data
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def build_model(config: Config, key) -> eqx.nn.MLP:
    """Finn's regressor: an MLP from 1 input to 1 output."""
    return eqx.nn.MLP(
        1, 1, config.width, config.depth, activation=ACTIVATIONS[config.activation], key=key
    )


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def draw_tasks(key, num_tasks: int, shots: int, queries: int):
    """`num_tasks` sinusoid tasks drawn from `key` (`nk.datasets.sinusoid_tasks`, jitted)."""
    return sinusoid_tasks(key, num_tasks, shots, queries)


def objective(learner: nk.AbstractMetaLearner):
    """`loss_fn(model, batch, key) -> (meta-loss, {})` for `nk.fit`."""

    def loss_fn(model, batch, key):
        del key
        support, query = batch
        return nk.meta_loss(learner, model, mse, support, query), {}

    return loss_fn


def train(config: Config, method: Method, shots: int):
    """Meta-train one method for one K in `<out>/<method>-k<K>/` (resumable).

    Returns `(run, model, history, batch, earlier)`: `batch` the first meta-batch (for
    timing), `earlier` the training seconds of the runs this one resumes.
    """
    out = Path(config.out) / f"{method.name}-k{shots}"
    resume = config.resume and any(
        (out / n).exists() for n in ("checkpoint.eqx", "checkpoint.eqx.prev")
    )
    # One method and one K: scalars, which a checkpoint's JSON meta keeps as they are (a
    # tuple would come back as a list and refuse the resume).
    run = Run(
        part_config(config, out=str(out), shots=shots, methods=method.name, resume=resume),
        keys=("model", "train", "tasks", "eval"),
    )
    model = build_model(config, run.keys["model"])
    rows = run.rows(config.batch_size)

    def batch_at(step: int):
        tasks = draw_tasks(
            jr.fold_in(run.keys["tasks"], step), config.batch_size, shots, config.queries
        )
        return jax.tree.map(lambda a: a[rows], (tasks.support, tasks.query))

    earlier = run.earlier_train_seconds()
    optimizer = with_clipping(optax.adam(config.lr), config.clip_norm)
    model, history = run.fit(model, objective(method.train), optimizer, batch_at)
    return run, model, history, batch_at(0), earlier


def evaluate(config: Config, method: Method, model, tasks, grid) -> dict:
    """Adapt to every test task: each task's query MSE (before and after), the adapted
    curves on `grid`, and for iMAML the L-BFGS steps each task took."""
    learner = method.test

    @eqx.filter_jit
    def run(model, support, query):
        def one(s, q):
            adapted = learner.adapt(model, mse, s)
            steps = inner_steps_taken(learner, model, s) if isinstance(learner, nk.IMAML) else 0
            return mse(model, q), mse(adapted, q), jax.vmap(adapted)(grid)[:, 0], steps

        return jax.vmap(one)(support, query)

    before, after, curves, steps = run(model, tasks.support, tasks.query)
    after = np.asarray(after, dtype=np.float64)
    half = 1.96 * after.std(ddof=1) / np.sqrt(len(after)) if len(after) > 1 else float("nan")
    row = {
        "test_mse": float(after.mean()),
        "test_mse_ci95": [float(after.mean() - half), float(after.mean() + half)],
        "test_mse_median": float(np.median(after)),
        "test_mse_before_adaptation": float(np.mean(before)),
        "curves": np.asarray(curves[: config.plot_tasks]),
    }
    if isinstance(learner, nk.IMAML):
        row.update(inner_steps_mean=float(np.mean(steps)), inner_steps_max=int(np.max(steps)))
    return row


def inner_steps_taken(learner: nk.IMAML, model, support) -> jax.Array:
    """iMAML: the L-BFGS steps of one task's proximal solve (the solve `adapt` runs)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    prox = nk.proximal_loss(lambda w: mse(eqx.combine(w, static), support), learner.reg)
    solver = learner.solver
    assert isinstance(solver, optx.AbstractMinimiser)  # build_methods gives iMAML L-BFGS
    sol = optx.minimise(prox, solver, params, params, max_steps=learner.max_steps, throw=False)
    return sol.stats["num_steps"]


def time_meta_gradient(learner: nk.AbstractMetaLearner, model, batch, repeats: int) -> dict:
    """One meta-gradient compiled alone: compile seconds, XLA temp bytes, median seconds."""
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def gradient(params, support, query):
        loss = lambda p: nk.meta_loss(learner, eqx.combine(p, static), mse, support, query)
        return jax.grad(loss)(params)

    start = time.perf_counter()
    compiled = jax.jit(gradient).lower(params, *batch).compile()
    compile_seconds = time.perf_counter() - start
    memory = nk.CompiledMemory.of(compiled)
    jax.block_until_ready(compiled(params, *batch))  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, *batch))
        seconds.append(time.perf_counter() - start)
    return {
        "grad_compile_seconds": compile_seconds,
        "grad_median_seconds": float(np.median(seconds)),
        "grad_temp_bytes": memory.temp_bytes,
        "grad_argument_bytes": memory.argument_bytes,
    }


def run_one(config: Config, method: Method, shots: int, tasks, grid) -> dict:
    """Train, evaluate, time and measure one method at one K; its row of the results."""
    run, model, history, batch, earlier = train(config, method, shots)
    row = {
        "method": method.name,
        "shots": shots,
        "inner_steps": None if isinstance(method.test, nk.IMAML) else config.inner_steps,
        **evaluate(config, method, model, tasks, grid),
    }
    if config.timing_repeats:
        row.update(time_meta_gradient(method.train, model, batch, config.timing_repeats))
    row.update(
        train_seconds_this_run=run.train_seconds,
        train_seconds_total=earlier + run.train_seconds,
        steps=config.steps,
        final_train_loss=recent_mean(history, "loss"),
    )
    run.write(run.results(**{k: v for k, v in row.items() if k != "curves"}))
    return row


def main(config: Config) -> dict:
    """Every method at every K; writes the summary and the picture, returns the results."""
    check_config(config)
    start = time.perf_counter()
    top = Run(
        dataclasses.replace(config, resume=False),
        keys=("model", "train", "tasks", "eval"),
        training=True,
    )
    methods = build_methods(config)
    grid = jnp.linspace(-5.0, 5.0, 200)[:, None]
    rows, test_tasks = [], {}
    for shots in config.shots:
        tasks = draw_tasks(top.keys["eval"], config.eval_tasks, shots, config.eval_points)
        test_tasks[shots] = tasks
        for name in config.methods:
            rows.append(run_one(config, methods[name], shots, tasks, grid))
    curves = {(r["method"], r["shots"]): r.pop("curves") for r in rows}
    results = top.results(
        resumed=config.resume, wall_seconds=time.perf_counter() - start, rows=rows
    )
    top.write(results)
    top.save_figure(
        plot_fits(config, test_tasks, np.asarray(grid[:, 0]), curves),
        "meta_fits.png",
        dpi=110,
        rect=(0, 0.05, 1, 1),
    )
    print_table(rows)
    print(f"wrote {top.out}/results.json, meta_fits.png")
    return results


COMMAND = Command(
    "meta",
    Config,
    main,
    docs="implicit-layers.md",
    choices=lambda: {"methods": METHOD_NAMES, "activation": tuple(ACTIVATIONS)},
    headline=lambda results: {
        f"{row['method']} K={row['shots']} test_mse": row["test_mse"] for row in results["rows"]
    },
    renamed=RENAMED,
    tables=TABLES,
)
parse_args = COMMAND.parse


if __name__ == "__main__":
    COMMAND.run()

"""Compile and step times of node_kit against the same programs hand-written with diffrax.

`python -m node_kit.experiments.cnf_overhead` runs each workload two ways on the same
parameters, batch and Hutchinson probes: through node_kit's public API (`node_kit`) and by
hand with `diffrax.diffeqsolve` (`raw_diffrax`). The workloads:

- `cnf_*`: FFJORD on 2-D data (ConcatSquash field, Tsit5, PID controller): a training step
  (loss, gradient, Adam update in [`node_kit.make_step`][]) with the exact trace and
  recursive checkpointing, with the Hutchinson trace and backsolve, and with the Hutchinson
  trace and checkpointing; and `cnf_exact_eval`, the exact log-density of the batch (no
  gradient).
- `node_*`: a neural ODE (MLP field, fixed steps of `--dt`, MSE over `--save-times` output
  times) training step with Euler and with RK4, each under backsolve and checkpointing;
  and `node_*_direct_two_times`, the same step with 100 fixed steps, `ts = [0, 1]` and the
  MSE of the end state, under `direct` (the raw program saves with `SaveAt(t1=True)`).

Per path: the first call's compile time split into tracing, lowering and XLA compilation
(JAX's own monitoring events), the median of `--compile-repeats` compiles from cleared
caches (the two paths alternate which goes first; one compile of a small program varies by
a fifth from run to run), the size of the lowered program, the loss and solver steps
of the first call (the two paths compute the same function, so these agree), and the median
step time over `--rounds` rounds that alternate between the paths so that machine noise hits
both. Per workload, the floor: NFE (field evaluations of the forward solve, counted) times
the time of one batched field evaluation with its VJP (for an evaluation, without the VJP),
the work no solver loop can avoid; `step / floor` is what the loop costs on top of it.
Writes `cnf_overhead.json` and `cnf_overhead.png` to `--out`.
"""

import collections
import dataclasses
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import node_kit as nk

from .._checks import check_choice
from ._outputs import plt
from ._overhead_tables import TABLES
from ._overhead_workloads import build, Case, PATHS, WORKLOAD_NAMES, WORKLOADS
from ._protocol import Command, CommandConfig, option
from ._run import Run


@dataclasses.dataclass(frozen=True)
class Config(CommandConfig):
    """What is timed."""

    workloads: tuple[str, ...] = option(WORKLOAD_NAMES, "the workloads to run (all by default)")
    data_size: int = option(2, "dimension of the data (CNF) and of the state (neural ODE)")
    width: int = option(64, "hidden width of the field")
    depth: int = option(3, "hidden layers of the field")
    batch_size: int = option(256, "points per timed step")
    rtol: float = option(1e-5, "relative tolerance of the CNF PID step-size controller")
    atol: float = option(1e-5, "absolute tolerance of the CNF PID step-size controller")
    dt: float = option(0.05, "fixed step of the neural ODE workloads (over [0, 1])")
    save_times: int = option(10, "output times of the neural ODE trajectory in [0, 1]")
    rounds: int = option(
        15, "alternating rounds of node_kit and raw diffrax (machine noise hits both)"
    )
    steps_per_round: int = option(10, "timed steps per path in each round")
    compile_repeats: int = option(
        5, "compiles of each path from cleared caches; the median is reported"
    )
    floor_repeats: int = option(
        200, "field evaluations (with their VJP) in the compiled loop that times the floor"
    )
    out: str = "runs/cnf_overhead"


# --- Measuring -------------------------------------------------------------------------

_PHASES = {
    "trace_seconds": "/jax/core/compile/jaxpr_trace_duration",
    "lower_seconds": "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "xla_compile_seconds": "/jax/core/compile/backend_compile_duration",
}
_events: collections.defaultdict[str, float] = collections.defaultdict(float)


def _record_event(event: str, duration_secs: float, **kwargs: str | int) -> None:
    _events[event] += duration_secs


def _step_fn(case: Case, path: str, optimizer):
    """`fn(key) -> (value, num_steps)`: one step of `path` (a fresh optimiser state each
    call for training, so every call does the same work), and the jitted function for
    lowering."""
    model, loss = case.paths[path]
    if case.work.train:
        opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

        def train_step(key):
            _, _, value, aux = nk.make_step(model, opt_state, case.batch, key, loss, optimizer)
            return value, aux["num_steps"]

        def lower_train_step(key):
            return nk.make_step.lower(model, opt_state, case.batch, key, loss, optimizer)

        return train_step, lower_train_step
    jitted = eqx.filter_jit(loss)

    def evaluation(key):
        value, aux = jitted(model, case.batch, key)
        return value, aux["num_steps"]

    def lower_evaluation(key):
        return jitted.lower(model, case.batch, key)

    return evaluation, lower_evaluation


def first_call(fn, lower, key) -> dict:
    """Compile (the first call), split into JAX's phases, and the lowered program's size.

    JAX's caches are cleared first, so that the path compiles as in a fresh process (after
    the warm-up's one-time costs) and reuses nothing another workload traced.
    """
    jax.clear_caches()
    _events.clear()
    start = time.perf_counter()
    value, num_steps = jax.block_until_ready(fn(key))
    seconds = time.perf_counter() - start
    phases = {name: _events[event] for name, event in _PHASES.items()}
    text = lower(key).as_text()
    return {
        "first_call_seconds": seconds,
        **phases,
        "compile_seconds": sum(phases.values()),
        "hlo_chars": len(text),
        "hlo_lines": text.count("\n"),
        "value": float(value),
        "num_steps": int(num_steps),
    }


def count_evaluations(case: Case) -> int:
    """Field evaluations of one forward solve (the raw program, with a counting callback)."""
    count = [0]

    def bump():
        count[0] += 1

    class Counted(eqx.Module):
        dynamics: Callable

        def __call__(self, t, y, args):
            jax.debug.callback(bump)
            return self.dynamics(t, y, args)

    jax.block_until_ready(eqx.filter_jit(case.forward_solve)(Counted(case.dynamics)).ys)
    return count[0]


def field_seconds(case: Case, repeats: int) -> float:
    """Time of one batched field evaluation, with its VJP (parameters and state) for a
    training workload, at the initial state.

    The evaluations run inside one compiled loop (`repeats` of them, each feeding a
    negligible change of the state into the next so that none can be skipped), so that
    the time is the arithmetic and not Python's dispatch of a call; the median of 5 such
    loops, divided by `repeats`.
    """
    params, static = eqx.partition(case.dynamics, eqx.is_inexact_array)

    def evaluate(params, y):
        return eqx.combine(params, static)(0.5, y, case.args)

    def once(params, y):
        if not case.work.train:
            return evaluate(params, y), 0.0
        f, vjp_fn = jax.vjp(evaluate, params, y)
        g_params, g_y = vjp_fn(f)
        total = sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves((g_params, g_y)))
        return f, total

    @jax.jit
    def loop(params, y):
        def body(i, carry):
            y, acc = carry
            f, total = once(params, y)
            return y + 1e-12 * f, acc + total

        return jax.lax.fori_loop(0, repeats, body, (y, jnp.zeros((), y.dtype)))

    jax.block_until_ready(loop(params, case.state))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        jax.block_until_ready(loop(params, case.state))
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / repeats


def median_call(calls: list[dict]) -> dict:
    """The compile of median total time among `calls` (its phases with it), with every
    total in `compile_seconds_each`."""
    chosen = sorted(calls, key=lambda c: c["compile_seconds"])[(len(calls) - 1) // 2]
    return {**chosen, "compile_seconds_each": [c["compile_seconds"] for c in calls]}


def warm_up(works, config: Config, keys: dict, optimizer) -> None:
    """Compile one step of each kind of model (CNF, neural ODE) both ways on a smaller
    batch, untimed, so that what JAX and diffrax do once per process (imports, caches of
    lowering rules) is not charged to the first workload measured."""
    small = dataclasses.replace(config, batch_size=max(1, config.batch_size // 2))
    for kind in ("cnf", "node"):
        work = next((w for w in works if w.model == kind), None)
        if work is not None:
            case = build(work, small, keys)
            for path in PATHS:
                jax.block_until_ready(_step_fn(case, path, optimizer)[0](jr.key(0)))


def main(config: Config) -> dict:
    """Compile every path, count and time the floors, then alternate timed rounds."""
    from tqdm.auto import tqdm

    for name in config.workloads:
        check_choice("workloads", name, WORKLOAD_NAMES)
    if config.compile_repeats < 1:
        raise ValueError(
            f"`compile_repeats` must be at least 1 (the median of that many compiles "
            f"is reported); got {config.compile_repeats}."
        )
    # Measure compilation, not a cache hit: no persistent compilation cache here.
    jax.config.update("jax_enable_compilation_cache", False)
    jax.monitoring.register_event_duration_secs_listener(_record_event)
    run = Run(config, keys=("model", "data", "probe"))
    optimizer = optax.adam(1e-3)
    works = [w for w in WORKLOADS if w.name in config.workloads]
    warm_up(works, config, run.keys, optimizer)
    cases, steps, report = {}, {}, {}
    for index, work in enumerate(tqdm(works, disable=not config.progress, desc="compile")):
        case = cases[work.name] = build(work, config, run.keys)
        entry = report[work.name] = {
            "description": work.description,
            "train": work.train,
            "paths": {},
        }
        calls = {path: [] for path in PATHS}
        for repeat in range(config.compile_repeats):  # neither path always goes first
            for path in PATHS[::-1] if (index + repeat) % 2 else PATHS:
                fn, lower = steps[work.name, path] = _step_fn(case, path, optimizer)
                calls[path].append(first_call(fn, lower, jr.key(0)))
        for path in PATHS:
            entry["paths"][path] = median_call(calls[path])
        entry["nfe"] = count_evaluations(case)
        entry["field_seconds"] = field_seconds(case, config.floor_repeats)
        entry["floor_seconds"] = entry["nfe"] * entry["field_seconds"]
    for fn, _ in steps.values():  # compiled again after the caches were cleared; untimed
        jax.block_until_ready(fn(jr.key(0)))
    samples = {key: [] for key in steps}
    for _ in tqdm(range(config.rounds), disable=not config.progress, desc="rounds"):
        for key, (fn, _) in steps.items():
            for i in range(config.steps_per_round):
                start = time.perf_counter()
                jax.block_until_ready(fn(jr.key(i)))
                samples[key].append(time.perf_counter() - start)
    for (name, path), times in samples.items():
        report[name]["paths"][path]["median_step_seconds"] = float(np.median(times))
    for entry in report.values():
        nk_, raw = entry["paths"]["node_kit"], entry["paths"]["raw_diffrax"]
        entry["step_ratio"] = nk_["median_step_seconds"] / raw["median_step_seconds"]
        entry["compile_ratio"] = nk_["compile_seconds"] / raw["compile_seconds"]
        entry["hlo_ratio"] = nk_["hlo_chars"] / raw["hlo_chars"]
        entry["step_over_floor"] = nk_["median_step_seconds"] / entry["floor_seconds"]
    return _report(run, report, samples)


def _report(run: Run, report: dict, samples: dict) -> dict:
    result = run.results(
        workloads=report,
        max_compile_ratio=max(e["compile_ratio"] for e in report.values()),
        max_step_ratio=max(e["step_ratio"] for e in report.values()),
        timed_steps_each=len(next(iter(samples.values()))),
    )
    run.write(result, name="cnf_overhead.json")
    run.save_figure(plot(report), "cnf_overhead.png")
    for name, e in report.items():
        nk_, raw = e["paths"]["node_kit"], e["paths"]["raw_diffrax"]
        print(
            f"{name}: step {nk_['median_step_seconds'] * 1e3:.2f} vs "
            f"{raw['median_step_seconds'] * 1e3:.2f} ms ({e['step_ratio']:.3f}x), compile "
            f"{nk_['compile_seconds']:.2f} vs {raw['compile_seconds']:.2f} s "
            f"({e['compile_ratio']:.2f}x), floor {e['floor_seconds'] * 1e3:.2f} ms "
            f"(NFE {e['nfe']}; step {e['step_over_floor']:.2f}x the floor)"
        )
    return result


def plot(report: dict):
    """Step time (both paths and the floor) and compile time (both paths) per workload."""
    names = list(report)
    x = np.arange(len(names))
    fig, (ax1, ax2) = plt().subplots(1, 2, figsize=(11, 4))
    for i, path in enumerate(PATHS):
        ax1.bar(
            x + (i - 1) * 0.27,
            [report[n]["paths"][path]["median_step_seconds"] * 1e3 for n in names],
            0.27,
            label=path,
        )
        ax2.bar(
            x + (i - 0.5) * 0.4,
            [report[n]["paths"][path]["compile_seconds"] for n in names],
            0.4,
            label=path,
        )
    ax1.bar(
        x + 0.27,
        [report[n]["floor_seconds"] * 1e3 for n in names],
        0.27,
        label="floor: NFE x field+VJP",
        color="0.6",
    )
    ax1.set(yscale="log", ylabel="median step (ms)", title="step time and its floor")
    ax2.set(ylabel="compile (s): trace + lower + XLA", title="compile time")
    for ax in (ax1, ax2):
        ax.set_xticks(x, [n.replace("_", "\n", 1) for n in names], fontsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


COMMAND = Command(
    "cnf_overhead",
    Config,
    main,
    docs="cnf.md",
    choices=lambda: {"workloads": WORKLOAD_NAMES},
    committed=lambda results: (
        {"cnf_overhead": results / "cnf_overhead.json"}
        if (results / "cnf_overhead.json").exists()
        else {}
    ),
    output=lambda config: "cnf_overhead.json",
    tables=TABLES,
)
parse_args = COMMAND.parse


if __name__ == "__main__":
    COMMAND.run()

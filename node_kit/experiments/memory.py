"""Memory and time of a neural ODE's gradient against the number of steps, per adjoint.

```
python -m node_kit.experiments.memory    # default sweep: about 4 minutes on 2 CPU cores
python -m node_kit.experiments.memory --dim 64 --batch 256 --width 64 --steps 10 100 1000 \
    --modes backsolve checkpoint checkpoint:16 direct --layouts batched --out runs/memory
```

An MLP field is solved with a fixed step size for N steps (`max_steps = N`,
`dt0 = 1/N`, `diffrax.ConstantStepSize()`), and the gradient of a loss with respect to
the parameters is compiled and run for each adjoint mode and batch layout. For every
(mode, layout, N) it records XLA's compiled memory (temp, argument and output bytes:
exact, the primary figure), on a GPU also the device's peak bytes in use (each
configuration in a fresh process), the median time per gradient after a warm-up
(compile time apart), and the gradient's error against a float64 store-everything
reference on the same steps. It fits the growth exponent of memory in N, checks
[`node_kit.checkpoint_adjoint_for_budget`][]'s prediction against compiled memory,
prints a table, and writes `<out>/<name>.csv`, `.json` (with versions, backend, device
and machine) and `.png`.
"""

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._adjoint import adjoint_from_name
from .._memory import CheckpointMemoryModel, checkpoint_memory_model, compile_gradient
from .._neural_ode import NeuralODE
from .._vector_field import MLPField
from ._cli import atomic_write_bytes, environment, write_json

SOLVERS = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "bosh3": diffrax.Bosh3,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
}
LAYOUTS = ("batched", "vmap")
MODES_HELP = (
    "backsolve, checkpoint (diffrax's default count), checkpoint:K (K checkpoints), "
    "direct (store every step)"
)
T0, T1 = 0.0, 1.0
MIB = 2**20
WORKER_TAG = "MEMORY_ROW "


@dataclasses.dataclass(frozen=True)
class MemoryConfig:
    """One sweep of the memory benchmark.

    - `dim`, `batch`, `width`, `depth`: state size, batch size and the MLP field's
        hidden width and depth.
    - `solver`: a name in `SOLVERS` (`tsit5`, `dopri5`, `euler`, ...).
    - `steps`: the numbers of fixed solver steps N, each >= 1.
    - `modes`: adjoint modes, from: backsolve, checkpoint (diffrax's default count),
        checkpoint:K (K checkpoints), direct (store every step).
    - `layouts`: `batched` (the batch is one ODE state, `model.batched`) and/or
        `vmap` (`jax.vmap(model)`, one solve per sample).
    - `repeats`, `time_limit_s`: up to `repeats` timed gradients after one warm-up,
        stopping early once they total `time_limit_s` (at least one is timed); the
        median is reported.
    - `budgets`, `budget_layouts`: the number of memory budgets checked against
        [`node_kit.checkpoint_adjoint_for_budget`][]'s prediction, at the largest N,
        for each of `budget_layouts` (0 or `()` skips the check; each layout costs
        three calibration compiles plus one per budget).
    - `reference`: compute the float64 store-everything reference gradient and each
        row's error against it.
    - `fresh_process`: measure each configuration in its own process, so that device
        peaks do not carry over; `None` does so on a GPU only.
    - `seed`, `out`, `name`: seed, output folder, and the stem of the output files.
    """

    dim: int = 32
    batch: int = 32
    width: int = 32
    depth: int = 2
    solver: str = "tsit5"
    steps: tuple[int, ...] = (10, 100, 1000)
    modes: tuple[str, ...] = ("backsolve", "checkpoint", "direct")
    layouts: tuple[str, ...] = LAYOUTS
    repeats: int = 3
    time_limit_s: float = 2.0
    budgets: int = 3
    budget_layouts: tuple[str, ...] = ("batched",)
    reference: bool = True
    fresh_process: bool | None = None
    seed: int = 0
    out: str = "experiments/results"
    name: str = "memory"

    def __post_init__(self):
        for field in ("steps", "modes", "layouts", "budget_layouts"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        _check_config(self)


def _check_config(config: MemoryConfig) -> None:
    for name, minimum in (("dim", 1), ("batch", 1), ("width", 1), ("depth", 0),
                          ("repeats", 1), ("budgets", 0)):
        _check_int(name, getattr(config, name), minimum)
    limit = config.time_limit_s
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
        raise ValueError(
            f"`time_limit_s` must be a positive number of seconds; got {config.time_limit_s!r}."
        )
    if config.solver not in SOLVERS:
        raise ValueError(
            f"`solver` must be one of {', '.join(SOLVERS)}; got {config.solver!r}."
        )
    examples = {"steps": "--steps 10 100 1000", "modes": "--modes backsolve direct",
                "layouts": "--layouts batched vmap"}
    for name, example in examples.items():
        if not getattr(config, name):
            raise ValueError(
                f"`{name}` is empty, so the sweep has nothing to run; pass at least "
                f"one, e.g. {example}."
            )
    for n in config.steps:
        _check_int("steps", n, 1, fix="the number of fixed solver steps N, e.g. --steps 10 100")
    for mode in config.modes:
        parse_mode(mode)
    for name in ("layouts", "budget_layouts"):
        for layout in getattr(config, name):
            _check_layout(name, layout)


def _check_layout(name: str, layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(
            f"`{name}` entry {layout!r} is not a layout; expected one of "
            f"{', '.join(LAYOUTS)} (batched: the batch as one ODE state; vmap: one "
            "solve per sample)."
        )


def _check_int(name: str, value, minimum: int, fix: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        hint = f" Pass {fix}." if fix else ""
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.{hint}")


def parse_mode(mode: str) -> tuple[str, int | None]:
    """Split a mode name into the node_kit adjoint name and a fixed checkpoint count.

    `"checkpoint:16"` gives `("checkpoint", 16)`; the other modes give `(mode, None)`.
    """
    name, _, count = str(mode).partition(":")
    if name in ("backsolve", "checkpoint", "direct") and not count:
        return name, None
    if name == "checkpoint" and count.isdigit() and int(count) >= 1:
        return name, int(count)
    raise ValueError(
        f"`modes` entry {mode!r} is not a mode; expected one of: {MODES_HELP}, with K "
        "a positive int (e.g. checkpoint:16)."
    )


def checkpoints_used(mode: str, n: int) -> int | None:
    """The number of checkpoints a mode stores for N steps (`None` for backsolve).

    diffrax's default is equinox's `floor(-1.5 + sqrt(2 N + 0.25)) + 1` (see
    `equinox.internal.checkpointed_while_loop`); every count is capped at N.
    """
    name, count = parse_mode(mode)
    if name == "backsolve":
        return None
    if name == "direct":
        return n
    if count is None:
        count = 1 if n == 1 else math.floor(-1.5 + math.sqrt(2 * n + 0.25)) + 1
    return min(count, n)


def build_problem(config: MemoryConfig, mode: str, n: int, dtype):
    """The model (fixed steps, `max_steps = N`), times and initial states in `dtype`."""
    model_key, data_key = jr.split(jr.key(config.seed))
    name, count = parse_mode(mode)
    model = NeuralODE(
        MLPField(config.dim, config.width, config.depth, key=model_key),
        solver=SOLVERS[config.solver](),
        stepsize_controller=diffrax.ConstantStepSize(),
        adjoint=adjoint_from_name(name, max_steps=n, checkpoints=count),
        dt0=(T1 - T0) / n,
        max_steps=n,
    )
    model = jax.tree_util.tree_map(lambda x: _cast(x, dtype), model)
    y0s = jr.normal(data_key, (config.batch, config.dim), dtype=jnp.float32).astype(dtype)
    return model, jnp.array([T0, T1], dtype=dtype), y0s


def _cast(x, dtype):
    return x.astype(dtype) if eqx.is_inexact_array(x) else x


def reference_gradient(config: MemoryConfig, n: int) -> list[np.ndarray]:
    """float64 gradient storing every step, batch as one state: the exact reference.

    With fixed steps both layouts compute the same numbers, so one reference serves
    both. Runs under `jax.enable_x64(True)`.
    """
    model, ts, y0s = build_problem(config, "direct", n, jnp.float32)
    with jax.enable_x64(True):
        model, ts, y0s = jax.tree_util.tree_map(lambda x: _cast(x, jnp.float64), (model, ts, y0s))
        gradient = compile_gradient(model, ts, y0s, batched=True)
        return [np.asarray(x) for x in jax.tree_util.tree_leaves(gradient())]


def relative_error(grads, reference: list[np.ndarray]) -> float:
    """Relative L2 error of a whole gradient PyTree against the reference leaves."""
    leaves = [np.asarray(x, dtype=np.float64) for x in jax.tree_util.tree_leaves(grads)]
    diff = math.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(leaves, reference)))
    norm = math.sqrt(sum(float(np.sum(b**2)) for b in reference))
    return diff / norm


def time_gradient(gradient, repeats: int, time_limit_s: float = math.inf):
    """Median seconds per gradient after one warm-up call, the number of timed
    calls, and the last gradient.

    Times up to `repeats` calls, stopping once they total `time_limit_s`.
    """
    grads = jax.block_until_ready(gradient())
    seconds = []
    while len(seconds) < repeats and sum(seconds) < time_limit_s:
        start = time.perf_counter()
        grads = jax.block_until_ready(gradient())
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), len(seconds), grads


def device_peak_bytes() -> int | None:
    """`peak_bytes_in_use` of the first device, or `None` where it has no stats (CPU)."""
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def measure(config: MemoryConfig, mode: str, layout: str, n: int, reference=None) -> dict:
    """Compile, time and check one (mode, layout, N); returns one results row.

    `reference` is the float64 gradient, a callable giving it (called after the
    device peak is read, so it does not count), or `None` to skip the error.
    """
    model, ts, y0s = build_problem(config, mode, n, jnp.float32)
    gradient = compile_gradient(model, ts, y0s, batched=layout == "batched")
    seconds, runs, grads = time_gradient(gradient, config.repeats, config.time_limit_s)
    peak = device_peak_bytes()
    if callable(reference):
        reference = reference()
    memory = gradient.memory
    return {
        "mode": mode,
        "layout": layout,
        "steps": n,
        "checkpoints": checkpoints_used(mode, n),
        "temp_bytes": memory.temp_bytes,
        "argument_bytes": memory.argument_bytes,
        "output_bytes": memory.output_bytes,
        "total_bytes": memory.total_bytes,
        "peak_bytes": peak,
        "compile_s": gradient.compile_seconds,
        "time_s": seconds,
        "timed_runs": runs,
        "grad_rel_error": None if reference is None else relative_error(grads, reference),
    }


def measure_in_fresh_process(config: MemoryConfig, mode: str, layout: str, n: int) -> dict:
    """Run `measure` in a new Python process (its device peak starts at zero)."""
    payload = json.dumps({
        "config": dataclasses.asdict(config), "mode": mode, "layout": layout, "steps": n,
        "x64": bool(jax.config.read("jax_enable_x64")),
    })
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "node_kit.experiments.memory", "--worker", payload]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(WORKER_TAG)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"the worker for mode={mode} layout={layout} N={n} failed (exit "
            f"{done.returncode}):\n{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len(WORKER_TAG):])


def run_worker(payload: str) -> dict:
    """The `--worker` entry point: measure one configuration, print its row.

    The worker takes the parent's `jax_enable_x64` setting, so both measure the same
    program.
    """
    job = json.loads(payload)
    jax.config.update("jax_enable_x64", job["x64"])
    config = MemoryConfig(**{**job["config"], "fresh_process": False})
    n = job["steps"]
    reference = (lambda: reference_gradient(config, n)) if config.reference else None
    row = measure(config, job["mode"], job["layout"], n, reference)
    print(WORKER_TAG + json.dumps(row), flush=True)
    return row


def run_sweep(config: MemoryConfig, fresh_process: bool) -> list[dict]:
    """Every (N, layout, mode), with a progress bar; references computed once per N."""
    from tqdm.auto import tqdm

    jobs = [(n, layout, mode) for n in config.steps for layout in config.layouts
            for mode in config.modes]
    rows, references = [], {}
    with tqdm(jobs, desc="memory sweep", unit="config", file=sys.stderr) as bar:
        for n, layout, mode in bar:
            bar.set_postfix_str(f"N={n} {layout} {mode}")
            if fresh_process:
                rows.append(measure_in_fresh_process(config, mode, layout, n))
                continue
            if config.reference and n not in references:
                references[n] = reference_gradient(config, n)
            rows.append(measure(config, mode, layout, n, references.get(n)))
    return rows


def fit_exponents(rows: list[dict]) -> list[dict]:
    """Least-squares slope of log(temp bytes) against log(N), per mode and layout.

    `exponent` is over the whole sweep; `local_exponent` over its two largest N (the
    floor weighs less there, so it is nearer the asymptotic growth).
    """
    fits = []
    for key in dict.fromkeys((r["mode"], r["layout"]) for r in rows):
        points = sorted((r["steps"], r["temp_bytes"]) for r in rows
                        if (r["mode"], r["layout"]) == key)
        if len(points) < 2:
            continue
        logn, logm = np.log([p[0] for p in points]), np.log([p[1] for p in points])
        fits.append({
            "mode": key[0],
            "layout": key[1],
            "exponent": float(np.polyfit(logn, logm, 1)[0]),
            "local_exponent": float((logm[-1] - logm[-2]) / (logn[-1] - logn[-2])),
        })
    return fits


def check_budgets(config: MemoryConfig, rows: list[dict]) -> list[dict]:
    """Budgets between the floor and the store-all ceiling, at the largest N.

    For each of `budget_layouts`: a [`node_kit.CheckpointMemoryModel`][] is measured
    (three compiles), and the budgets are spaced geometrically between the smaller
    of the backsolve and one-checkpoint floors and the store-all total (measured if
    `direct` was swept). Each chosen count is compiled and compared with its budget
    and its prediction. One budget a byte below the floor records the error message.
    """
    n = max(config.steps)
    checks = []
    for layout in config.budget_layouts:
        model, ts, y0s = build_problem(config, "checkpoint", n, jnp.float32)
        memory = checkpoint_memory_model(model, ts, y0s, batched=layout == "batched")
        low = min([memory.floor_bytes] + _totals(rows, "backsolve", layout, n))
        high = max([memory.ceiling_bytes] + _totals(rows, "direct", layout, n))
        budgets = np.geomspace(low, high, config.budgets + 2)[1:-1].astype(int).tolist()
        for budget in budgets:
            checks.append(_check_one_budget(memory, model, ts, y0s, layout, n, budget))
        try:
            memory.checkpoints_for(memory.floor_bytes - 1)
        except ValueError as error:
            checks.append({"layout": layout, "steps": n, "budget_bytes": memory.floor_bytes - 1,
                           "error": str(error)})
    return checks


def _totals(rows, mode, layout, n) -> list[int]:
    return [r["total_bytes"] for r in rows
            if (r["mode"], r["layout"], r["steps"]) == (mode, layout, n)]


def _check_one_budget(memory: CheckpointMemoryModel, model, ts, y0s, layout, n, budget):
    checkpoints = memory.checkpoints_for(budget)
    measured = memory.measured(checkpoints)  # known if it was a calibration compile
    if measured is None:
        adjoint = adjoint_from_name("checkpoint", max_steps=n, checkpoints=checkpoints)
        chosen = eqx.tree_at(lambda m: m.adjoint, model, adjoint)
        measured = compile_gradient(chosen, ts, y0s, batched=layout == "batched").memory.total_bytes
    predicted = memory.predict(checkpoints)
    return {
        "layout": layout,
        "steps": n,
        "budget_bytes": budget,
        "checkpoints": checkpoints,
        "floor_bytes": memory.floor_bytes,
        "bytes_per_checkpoint": memory.bytes_per_checkpoint,
        "predicted_bytes": predicted,
        "measured_bytes": measured,
        "within_budget": measured <= budget,
        "prediction_error": (measured - predicted) / predicted,
    }


def main(config: MemoryConfig) -> dict:
    """Run the sweep and the budget check; print the table; write CSV, JSON and PNG.

    **Returns:**

    The results written to `<out>/<name>.json`.
    """
    start, cpu_start, load_start = time.perf_counter(), _cpu_seconds(), os.getloadavg()[0]
    fresh = config.fresh_process
    if fresh is None:
        fresh = jax.default_backend() in ("gpu", "cuda", "rocm")
    rows = run_sweep(config, fresh)
    exponents = fit_exponents(rows)
    budget_checks = check_budgets(config, rows) if config.budgets else []
    results = {
        "command": command_line(config),
        "config": dataclasses.asdict(config),
        "environment": environment(),
        "fresh_process": fresh,
        "wall_s": time.perf_counter() - start,
        "cpu_s": _cpu_seconds() - cpu_start,
        "load_average_1min": [load_start, os.getloadavg()[0]],
        "rows": rows,
        "exponents": exponents,
        "budget_checks": budget_checks,
    }
    print(format_report(results))
    write_outputs(config, results)
    return results


def _cpu_seconds() -> float:
    """User and system CPU seconds of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def command_line(config: MemoryConfig) -> str:
    """The command that reproduces `config` (flags only where it differs from the default)."""
    parts = ["python -m node_kit.experiments.memory"]
    for field in dataclasses.fields(MemoryConfig):
        value = getattr(config, field.name)
        if value == field.default or field.name == "fresh_process" and value is None:
            continue
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + field.name.replace("_", "-"))
        elif isinstance(value, tuple):
            parts.append(" ".join([flag, *map(str, value)]))
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def format_report(results: dict) -> str:
    """The terminal table, exponents and budget check, as text."""
    head = (f"{'mode':<14}{'layout':<9}{'N':>6}{'ckpts':>7}{'temp MiB':>11}{'total MiB':>11}"
            f"{'peak MiB':>10}{'compile s':>11}{'time ms':>10}{'grad err':>10}")
    lines = [head, "-" * len(head)]
    for r in results["rows"]:
        lines.append(
            f"{r['mode']:<14}{r['layout']:<9}{r['steps']:>6}{_fmt(r['checkpoints'], 'd'):>7}"
            f"{r['temp_bytes'] / MIB:>11.3f}{r['total_bytes'] / MIB:>11.3f}"
            f"{_fmt(r['peak_bytes'] and r['peak_bytes'] / MIB, '.2f'):>10}"
            f"{r['compile_s']:>11.2f}{r['time_s'] * 1e3:>10.2f}"
            f"{_fmt(r['grad_rel_error'], '.1e'):>10}"
        )
    lines += ["", "growth exponent of temp memory in N (memory ~ N^p):"]
    if not results["exponents"]:
        lines.append("  (needs two or more values of N)")
    for e in results["exponents"]:
        lines.append(f"  {e['mode']:<14}{e['layout']:<9}p = {e['exponent']:.3f} over the "
                     f"sweep, {e['local_exponent']:.3f} between the two largest N")
    if results["budget_checks"]:
        lines += ["", "checkpoint_adjoint_for_budget (total bytes, at the largest N):"]
        lines += [_format_budget(c) for c in results["budget_checks"]]
    load = "/".join(f"{x:.1f}" for x in results["load_average_1min"])
    lines += ["", f"wall time {results['wall_s']:.1f} s, CPU time {results['cpu_s']:.1f} s on "
              f"{results['environment']['device']} ({results['environment']['cpu_count']} "
              f"cores, 1-min load average {load} at start/end)"]
    return "\n".join(lines)


def _format_budget(check: dict) -> str:
    if "error" in check:
        return f"  {check['layout']:<9}budget {check['budget_bytes'] / MIB:9.3f} MiB -> ValueError"
    return (f"  {check['layout']:<9}budget {check['budget_bytes'] / MIB:9.3f} MiB -> "
            f"{check['checkpoints']:5d} ckpts, predicted {check['predicted_bytes'] / MIB:9.3f}, "
            f"measured {check['measured_bytes'] / MIB:9.3f} MiB "
            f"({check['prediction_error']:+.2%}, "
            f"{'within' if check['within_budget'] else 'OVER'} budget)")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def write_outputs(config: MemoryConfig, results: dict) -> None:
    """Write `<name>.csv` (one row per configuration), `<name>.json` and `<name>.png`."""
    out = Path(config.out)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(results["rows"][0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(results["rows"])
    atomic_write_bytes(out / f"{config.name}.csv", buffer.getvalue().encode())
    write_json(out / f"{config.name}.json", results)
    atomic_write_bytes(out / f"{config.name}.png", plot(results))


def plot(results: dict) -> bytes:
    """A 2x2 PNG: memory, time and gradient error against N; the budget check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9.5))
    rows = results["rows"]
    _plot_against_steps(axes[0, 0], rows, "temp_bytes", 1 / MIB, "XLA temp memory (MiB)",
                        "compiled memory (exact, from memory_analysis)")
    _plot_against_steps(axes[0, 1], rows, "time_s", 1e3, "median time per gradient (ms)",
                        "wall time after warm-up (compile excluded)")
    _plot_against_steps(axes[1, 0], rows, "grad_rel_error", 1.0, "relative L2 error",
                        "gradient error vs float64 store-everything reference")
    _plot_budgets(axes[1, 1], results["budget_checks"])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=9,
               title="mode (layout): batched = the batch as one ODE state, vmap = jax.vmap")
    env, cfg = results["environment"], results["config"]
    fig.suptitle(
        f"Neural ODE gradient, {cfg['solver']} fixed steps, dim {cfg['dim']}, batch "
        f"{cfg['batch']}, width {cfg['width']}x{cfg['depth']}, float32; jax {env['jax']}, "
        f"diffrax {env['diffrax']}, {env['device']}"
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _plot_against_steps(ax, rows, key, scale, label, title) -> None:
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    styles = {"batched": ("-", "o"), "vmap": ("--", "s")}
    for i, mode in enumerate(modes):
        for layout, (line, marker) in styles.items():
            points = sorted((r["steps"], r[key]) for r in rows
                            if (r["mode"], r["layout"]) == (mode, layout) and r[key])
            if points:
                # Later modes are drawn thinner, so coinciding curves stay visible.
                ax.plot([p[0] for p in points], [p[1] * scale for p in points], line,
                        marker=marker, color=f"C{i}", label=f"{mode} ({layout})",
                        markersize=max(9 - 2 * i, 3), linewidth=max(3 - 0.7 * i, 1))
    steps = sorted({r["steps"] for r in rows})
    ax.set(xscale="log", yscale="log", xlabel="solver steps N", ylabel=label, title=title)
    ax.set_xticks(steps, [str(n) for n in steps])
    ax.set_xticks([], minor=True)
    ax.grid(True, which="both", alpha=0.3)


def _plot_budgets(ax, checks) -> None:
    checks = [c for c in checks if "error" not in c]
    for i, layout in enumerate(LAYOUTS):
        mine = [c for c in checks if c["layout"] == layout]
        if mine:
            budgets = [c["budget_bytes"] / MIB for c in mine]
            ax.plot(budgets, [c["measured_bytes"] / MIB for c in mine], "o", color=f"C{i}",
                    label=f"measured ({layout})")
            ax.plot(budgets, [c["predicted_bytes"] / MIB for c in mine], "x", color="k",
                    markersize=10, label=f"predicted ({layout})")
            for k, (c, b) in enumerate(zip(mine, budgets)):
                text = f"{c['checkpoints']} checkpoints, {c['prediction_error']:+.2%}"
                left = k < len(mine) / 2  # label towards the middle of the panel
                ax.annotate(text, (b, c["measured_bytes"] / MIB), textcoords="offset points",
                            xytext=(10 if left else -10, -4), ha="left" if left else "right",
                            va="top" if left else "bottom", fontsize=8)
    if checks:
        budgets = [c["budget_bytes"] / MIB for c in checks]
        ax.plot([min(budgets), max(budgets)], [min(budgets), max(budgets)], "k:",
                label="budget (y = x)")
    ax.set(xscale="log", yscale="log", xlabel="budget (MiB)", ylabel="compiled total (MiB)",
           title=f"checkpoint_adjoint_for_budget at N = {checks[0]['steps']}" if checks
           else "no budget check")
    if checks:
        ticks = [c["budget_bytes"] / MIB for c in checks]
        ax.set_xticks(ticks, [f"{t:.2f}" for t in ticks])
        ax.set_yticks(ticks, [f"{t:.2f}" for t in ticks])
        ax.set_xticks([], minor=True)
        ax.set_yticks([], minor=True)
        ax.margins(0.1)
    ax.grid(True, which="both", alpha=0.3)
    if checks:
        ax.legend(fontsize=8, loc="upper left")


def parse_args(argv: list[str] | None = None) -> tuple[MemoryConfig | None, str | None]:
    """Map command-line flags to a `MemoryConfig` (or a `--worker` payload)."""
    default = MemoryConfig()
    parser = argparse.ArgumentParser(
        prog="python -m node_kit.experiments.memory",
        description="Memory and time of a neural ODE's gradient against the number of steps.",
    )
    parser.add_argument("--dim", "--dims", type=int, default=default.dim, help="state size")
    parser.add_argument("--batch", type=int, default=default.batch)
    parser.add_argument("--width", type=int, default=default.width, help="MLP hidden width")
    parser.add_argument("--depth", type=int, default=default.depth, help="MLP hidden layers")
    parser.add_argument("--solver", choices=sorted(SOLVERS), default=default.solver)
    parser.add_argument("--steps", type=int, nargs="+", default=default.steps,
                        help="numbers of fixed steps N")
    parser.add_argument("--modes", nargs="+", default=default.modes, help=MODES_HELP)
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=default.layouts)
    parser.add_argument("--repeats", type=int, default=default.repeats,
                        help="timed gradients after one warm-up")
    parser.add_argument("--time-limit-s", type=float, default=default.time_limit_s,
                        help="stop timing a configuration after this many seconds")
    parser.add_argument("--budgets", type=int, default=default.budgets,
                        help="memory budgets to check per budget layout (0 skips)")
    parser.add_argument("--budget-layouts", nargs="*", choices=LAYOUTS,
                        default=default.budget_layouts, help="layouts to check budgets for")
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction,
                        default=default.reference, help="float64 reference gradient")
    parser.add_argument("--fresh-process", action=argparse.BooleanOptionalAction,
                        default=None, help="one process per configuration (default: on GPU)")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--out", default=default.out, help="output folder")
    parser.add_argument("--name", default=default.name, help="stem of the output files")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = vars(parser.parse_args(argv))
    worker = args.pop("worker")
    return (None, worker) if worker else (MemoryConfig(**args), None)


if __name__ == "__main__":
    config, worker = parse_args()
    if worker:
        run_worker(worker)
    else:
        main(config)

"""The memory sweep: build each problem, measure it (here or in a fresh process), fit.

For every (adjoint mode, batch layout, N fixed steps) the gradient of a neural ODE is
compiled, its XLA memory read, its time measured and its error against a float64
reference taken ([`measure`][]); [`fit_exponents`][] fits the growth of memory in N and
[`check_budgets`][] compares [`node_kit.checkpoint_adjoint_for_budget`][]'s choices with
compiled memory. The command around it is `node_kit.experiments.memory`.
"""

import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import node_kit as nk

from ._choices import parse_mode
from ._memory_problems import build_problem, FAMILIES, reference_gradient, reference_method


Config = Any
"""The memory command's `Config` (in `memory.py`, which imports this module)."""

Reference = list[np.ndarray] | Callable[[], list[np.ndarray]]
"""A float64 reference gradient's leaves, or a callable computing them when first needed."""

WORKER_TAG = "MEMORY_ROW "
"""The prefix of the line in which a fresh-process worker prints its row."""


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


def measure(
    config: Config, mode: str, layout: str, n: int, reference: Reference | None = None
) -> dict:
    """Compile, time and check one (mode, layout, N); returns one results row.

    `reference` is the float64 gradient, a callable giving it (called after the
    device peak is read, so it does not count), or `None` to skip the error.
    """
    model, ts, y0s = build_problem(config, mode, n, jnp.float32)
    gradient = nk.compile_gradient(model, ts, y0s, batched=layout == "batched")
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


def measure_family(config: Config, mode: str, k: int, reference: Reference | None = None) -> dict:
    """Compile, time and check one (mode, K) of an implicit-layer family: one row."""
    family = FAMILIES[config.family]
    assert family.problem is not None  # every family but ode (measured by `measure`) has one
    gradient, inputs = family.problem(config, mode, k, jnp.float32)
    compiled = nk.CompiledGradient.of(gradient, *inputs)
    seconds, runs, grads = time_gradient(compiled, config.repeats, config.time_limit_s)
    if callable(reference):
        reference = reference()
    memory = compiled.memory
    return {
        "mode": mode,
        "layout": family.layout,
        "steps": k,
        "checkpoints": k if mode in ("unrolled", "maml") else None,
        "temp_bytes": memory.temp_bytes,
        "argument_bytes": memory.argument_bytes,
        "output_bytes": memory.output_bytes,
        "total_bytes": memory.total_bytes,
        "peak_bytes": None,
        "compile_s": compiled.compile_seconds,
        "time_s": seconds,
        "timed_runs": runs,
        "grad_rel_error": None if reference is None else relative_error(grads, reference),
    }


def measure_in_fresh_process(config: Config, mode: str, layout: str, n: int) -> dict:
    """Run `measure` in a new Python process (its device peak starts at zero)."""
    payload = json.dumps(
        {
            "config": {**dataclasses.asdict(config), "progress": False},
            "mode": mode,
            "layout": layout,
            "steps": n,
            "x64": bool(jax.config.read("jax_enable_x64")),
        }
    )
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
    return json.loads(lines[-1][len(WORKER_TAG) :])


def run_sweep(config: Config, fresh_process: bool) -> list[dict]:
    """Every (N, layout, mode), with a progress bar; references computed once per N."""
    from tqdm.auto import tqdm

    if config.family != "ode":
        return _run_family_sweep(config, fresh_process)
    jobs = [
        (n, layout, mode)
        for n in config.solver_steps
        for layout in config.layouts
        for mode in config.modes
    ]
    rows, references = [], {}
    with tqdm(
        jobs, desc="memory sweep", unit="config", file=sys.stderr, disable=not config.progress
    ) as bar:
        for n, layout, mode in bar:
            bar.set_postfix_str(f"N={n} {layout} {mode}")
            if fresh_process:
                rows.append(measure_in_fresh_process(config, mode, layout, n))
                continue
            method = reference_method(mode)
            if config.reference and (n, method) not in references:
                references[n, method] = reference_gradient(config, n, method)
            rows.append(measure(config, mode, layout, n, references.get((n, method))))
    return rows


def _run_family_sweep(config: Config, fresh_process: bool) -> list[dict]:
    """Every (K, mode) of an implicit-layer family; its reference computed once per K
    (per K and mode where it depends on the mode)."""
    from tqdm.auto import tqdm

    family = FAMILIES[config.family]
    jobs = [(n, mode) for n in config.solver_steps for mode in config.modes]
    rows, references = [], {}
    with tqdm(
        jobs,
        desc=f"memory sweep ({family.name})",
        unit="config",
        file=sys.stderr,
        disable=not config.progress,
    ) as bar:
        for n, mode in bar:
            bar.set_postfix_str(f"K={n} {mode}")
            if fresh_process:
                rows.append(measure_in_fresh_process(config, mode, family.layout, n))
                continue
            key = (n, mode if family.reference_per_mode else None)
            if config.reference and key not in references:
                assert family.reference is not None  # every family but ode has one
                references[key] = family.reference(config, n, mode)
            rows.append(measure_family(config, mode, n, references.get(key)))
    return rows


def fit_exponents(rows: list[dict]) -> list[dict]:
    """Least-squares slope of log(temp bytes) against log(N), per mode and layout.

    `exponent` is over the whole sweep; `local_exponent` over its two largest N (the
    floor weighs less there, so it is nearer the asymptotic growth).
    """
    fits = []
    for key in dict.fromkeys((r["mode"], r["layout"]) for r in rows):
        points = sorted(
            (r["steps"], r["temp_bytes"]) for r in rows if (r["mode"], r["layout"]) == key
        )
        if len(points) < 2:
            continue
        logn, logm = np.log([p[0] for p in points]), np.log([p[1] for p in points])
        fits.append(
            {
                "mode": key[0],
                "layout": key[1],
                "exponent": float(np.polyfit(logn, logm, 1)[0]),
                "local_exponent": float((logm[-1] - logm[-2]) / (logn[-1] - logn[-2])),
            }
        )
    return fits


def check_budgets(config: Config, rows: list[dict]) -> list[dict]:
    """Budgets between the floor and the store-all ceiling, at the largest N.

    For each of `budget_layouts`: a [`node_kit.CheckpointMemoryModel`][] is measured
    (three compiles), and the budgets are spaced geometrically between the smaller
    of the backsolve and one-checkpoint floors and the store-all total (measured if
    `direct` was swept). Each chosen count is compiled and compared with its budget
    and its prediction. A budget below the floor (one byte below it is always tried)
    records the chooser's error message instead.
    """
    n = max(config.solver_steps)
    checks = []
    for layout in config.budget_layouts:
        model, ts, y0s = build_problem(config, "checkpoint", n, jnp.float32)
        memory = nk.checkpoint_memory_model(model, ts, y0s, batched=layout == "batched")
        low = min([memory.floor_bytes] + _totals(rows, "backsolve", layout, n))
        high = max([memory.ceiling_bytes] + _totals(rows, "direct", layout, n))
        budgets = np.geomspace(low, high, config.budgets + 2)[1:-1].astype(int).tolist()
        for budget in [*budgets, memory.floor_bytes - 1]:
            try:
                checks.append(_check_one_budget(memory, model, ts, y0s, layout, n, budget))
            except ValueError as error:  # below the floor: the chooser's message is the result
                checks.append(
                    {"layout": layout, "steps": n, "budget_bytes": budget, "error": str(error)}
                )
    return checks


def _totals(rows, mode, layout, n) -> list[int]:
    return [
        r["total_bytes"] for r in rows if (r["mode"], r["layout"], r["steps"]) == (mode, layout, n)
    ]


def _check_one_budget(memory: nk.CheckpointMemoryModel, model, ts, y0s, layout, n, budget):
    checkpoints = memory.checkpoints_for(budget)
    measured = memory.measured(checkpoints)  # known if it was a calibration compile
    if measured is None:
        settings = model.settings.with_adjoint(nk.checkpoint_adjoint(checkpoints))
        gradient = nk.compile_gradient(
            model.with_settings(settings), ts, y0s, batched=layout == "batched"
        )
        measured = gradient.memory.total_bytes
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

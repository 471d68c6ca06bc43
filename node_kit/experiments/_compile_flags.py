"""The XLA flags that make code compile fast and run slower, and the report of their
measurement.

tests/conftest.py gives the test suite `FAST_COMPILE_FLAGS` (through [`with_xla_flags`][],
before any JAX backend starts); `experiments/compile_flags.py` measures compile and step
times with and without them, and [`summarise`][] and [`table`][] turn its rounds into the
`compile-flags` table of the docs. Plain Python: nothing here imports JAX.
"""

import os
import statistics
from collections.abc import Iterable


FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
"""LLVM at -O0 and XLA:CPU's elemental fusion emitter instead of its MLIR fusion emitters."""
SETTINGS = {"defaults": (), "fast": FAST_COMPILE_FLAGS}
"""The settings `experiments/compile_flags.py` compares: XLA_FLAGS as inherited, and with
the fast flags added."""


def with_xla_flags(flags: Iterable[str]) -> str:
    """This process's XLA_FLAGS with `flags` added after them (for a child process)."""
    return " ".join([os.environ.get("XLA_FLAGS", ""), *flags]).strip()


def summarise(rounds: list[dict]) -> dict:
    """Medians over the rounds per workload and setting, their ratios and the break-even."""
    names = list(rounds[0]["defaults"]["rows"])
    out = {}
    for name in names:
        entry = {}
        for setting in SETTINGS:
            rows = [r[setting]["rows"][name] for r in rounds]
            entry[setting] = {
                "compile_seconds": statistics.median(r["compile_seconds"] for r in rows),
                "compile_seconds_each": [r["compile_seconds"] for r in rows],
                "xla_compile_seconds": statistics.median(r["xla_compile_seconds"] for r in rows),
                "median_step_seconds": statistics.median(r["median_step_seconds"] for r in rows),
                "value": rows[0]["value"],
                "num_steps": rows[0]["num_steps"],
            }
        d, f = entry["defaults"], entry["fast"]
        entry["compile_speedup"] = d["compile_seconds"] / f["compile_seconds"]
        entry["xla_compile_speedup"] = d["xla_compile_seconds"] / f["xla_compile_seconds"]
        entry["step_slowdown"] = f["median_step_seconds"] / d["median_step_seconds"]
        lost = f["median_step_seconds"] - d["median_step_seconds"]
        saved = d["compile_seconds"] - f["compile_seconds"]
        entry["break_even_steps"] = saved / lost if lost > 0 else None  # None: fast never loses
        entry["value_relative_difference"] = abs(f["value"] - d["value"]) / max(
            abs(d["value"]), 1e-30
        )
        out[name] = entry
    return out


def table(result: dict) -> str:
    """The Markdown table of a result of `experiments/compile_flags.py`."""
    lines = [
        "| workload | compile (s): defaults / fast | speed-up | XLA's part alone | step (ms): "
        "defaults / fast | slow-down | fast flags finish first below (steps) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in result["workloads"].items():
        d, f = e["defaults"], e["fast"]
        even = "always" if e["break_even_steps"] is None else f"{e['break_even_steps']:.0f}"
        lines.append(
            f"| `{name}` | {d['compile_seconds']:.2f} / {f['compile_seconds']:.2f} | "
            f"{e['compile_speedup']:.1f}x | {e['xla_compile_speedup']:.1f}x | "
            f"{1e3 * d['median_step_seconds']:.2f} / "
            f"{1e3 * f['median_step_seconds']:.2f} | {e['step_slowdown']:.1f}x | {even} |"
        )
    worst = max(e["value_relative_difference"] for e in result["workloads"].values())
    lines += [
        "",
        f"Compile: tracing + lowering + XLA of node_kit's program, the first call; "
        f"step: the median of {result['steps']} steps; each the median of "
        f"{result['rounds']} rounds with the settings alternating, one process per setting "
        f"and round, on {result['cpu_cores']} CPU core(s) ({result['backend']}, "
        f"{'float64' if result['x64'] else 'float32'}). Fast flags: "
        f"`{' '.join(FAST_COMPILE_FLAGS)}`. The first losses of the two settings differ "
        f"by at most {worst:.1e} (relative).",
    ]
    return "\n".join(lines)

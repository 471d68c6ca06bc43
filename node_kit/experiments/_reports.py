"""The tables of the measuring scripts in `experiments/` that are no command: how their
committed results read as Markdown (`scaling`, `loop`, `errors`, `test-time`; see
`_tables.py`, which lists them with `compile-flags` and `reproduce`).

Each script measures and writes its results; the table of them is here, so that the
script and the table writer import the same function. Plain Python: nothing here
imports JAX.
"""

import collections
from pathlib import Path

from ._table_parts import load


# --- experiments/scaling.py --------------------------------------------------------------


def scaling_table(rows: list[dict]) -> str:
    """Steps/s over 1, 2 and 4 devices, both modes, against one device."""
    base = {r["mode"]: r["steps_per_s_median"] for r in rows if r["devices"] == 1}
    lines = [
        "| devices | mode | global batch | steps/s (median) | vs 1 device | compile s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        speedup = r["steps_per_s_median"] / base[r["mode"]] if r["mode"] in base else float("nan")
        lines.append(
            f"| {r['devices']} | {r['mode']} | {r['global_batch']} | "
            f"{r['steps_per_s_median']:.2f} | {speedup:.2f}x | {r['compile_s']:.1f} |"
        )
    return "\n".join(lines)


def scaling_report(results: Path) -> str:
    """`python experiments/scaling.py --show`."""
    return scaling_table(load(results / "scaling.json")["rows"])


# --- experiments/loop_benchmark.py -------------------------------------------------------


def loop_table(folder: Path) -> str:
    """`before.json` against `after.json` of `folder`: `loop_benchmark.py --compare`."""
    before, after = (load(folder / f"{k}.json") for k in ("before", "after"))
    rows = [
        ("steps/s (median)", "steps_per_s_median", ".2f"),
        ("ms/step (median)", "ms_per_step_median", ".2f"),
        ("compile s (first 2-step fit)", "compile_s", ".1f"),
        ("host syncs / 100 steps", "syncs_per_100_steps", "d"),
        ("mean solver steps per solve", "mean_solver_steps", ".1f"),
        ("final loss", "final_loss", ".4f"),
    ]
    lines = ["| | before | after | after / before |", "|---|---|---|---|"]
    for name, key, fmt in rows:
        b, a = before[key], after[key]
        ratio = f"{a / b:.3f}" if b else "-"
        lines.append(f"| {name} | {b:{fmt}} | {a:{fmt}} | {ratio} |")
    lines.append(
        f"| timed fits (steps each) | {len(before['steps_per_s'])} ({before['steps']}) "
        f"| {len(after['steps_per_s'])} ({after['steps']}) | |"
    )
    lines.append(
        f"| commit | {before['environment']['commit']} | {after['environment']['commit']} | |"
    )
    return "\n".join(lines)


def loop_report(results: Path) -> str:
    """The comparison of the committed loop benchmark, and the range of single fits."""
    folder = results / "loop"
    fits = [
        x for label in ("before", "after") for x in load(folder / f"{label}.json")["steps_per_s"]
    ]
    return (
        f"{loop_table(folder)}\n\nSingle timed fits ranged from {min(fits):.1f} to "
        f"{max(fits):.1f} steps/s."
    )


# --- experiments/bad_inputs.py -----------------------------------------------------------


def errors_table(summary: dict) -> str:
    """The bad-input matrix per area: cases, clear, where tested."""
    rows = ["| area | cases | clear | where tested |", "|---|---:|---:|---|"]
    for area, c in summary["areas"].items():
        rows.append(f"| {area} | {sum(c.values())} | {c['clear']} | `{summary['cases']}` |")
    o = summary["outcomes"]
    rows.append(f"| **total** | **{summary['total']}** | **{o['clear']}** | |")
    share = 100 * o["clear"] / summary["total"]
    rows.append("")
    rows.append(
        f"Clear: {o['clear']} of {summary['total']} ({share:.1f}%); unclear: "
        f"{o['unclear']}; internal tracebacks: {o['internal']}; silent acceptances: "
        f"{o['silent']}."
    )
    return "\n".join(rows)


# --- experiments/test_time.py ------------------------------------------------------------

SUITE_RUNS = {"cold": "cold", "warm": "warm", "defaults": "cold, XLA's default compile options"}
"""The runs of the test suite, in order, and their column labels: `cold` (an empty cache),
`warm` (the cache the cold run filled), `defaults` (an empty cache and
NODE_KIT_TEST_FAST_COMPILE=off)."""
PHASES = {
    "jaxpr_trace_duration": "trace_s",
    "jaxpr_to_mlir_module_duration": "lower_s",
    "backend_compile_duration": "compile_s",
}


def summarise_profile(records: list, top: int = 12) -> dict:
    """Totals, per test file and per compiled function, of a test run's compile profile
    (`[test, event, function, seconds]` records of experiments/_compile_profile.py)."""
    totals = collections.Counter()
    files = collections.defaultdict(collections.Counter)
    functions = collections.defaultdict(collections.Counter)
    for test, event, function, seconds in records:
        file = (test or "(outside a test)").split("::")[0]
        if event in PHASES:
            totals[PHASES[event]] += seconds
            files[file][PHASES[event]] += seconds
        if event == "backend_compile_duration":
            totals["compiles"] += 1
            files[file]["compiles"] += 1
            functions[function]["compiles"] += 1
            functions[function]["compile_s"] += seconds
        elif event in ("cache_hits", "cache_misses"):
            totals[event] += 1
        elif event in ("test_wall", "test_cpu"):
            files[file][event.replace("test_", "") + "_s"] += seconds
            totals["tests"] += event == "test_wall"

    def rounded(counter):
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in counter.items()}

    by_wall = sorted(files.items(), key=lambda kv: -kv[1]["wall_s"])
    by_compile = sorted(functions.items(), key=lambda kv: -kv[1]["compile_s"])
    return {
        "totals": rounded(totals),
        "files": [{"file": f, **rounded(c)} for f, c in by_wall],
        "functions": [{"function": f, **rounded(c)} for f, c in by_compile[:top]],
        "distinct_functions": len(functions),
    }


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)  # round first: 59.6 s is 1:00, never 0:60
    return f"{minutes}:{rest:02d}"


SUITE_ROWS = [
    ("wall time (min:s)", lambda r: _minutes(r["wall_s"])),
    ("CPU time, all processes (min:s)", lambda r: _minutes(r["cpu_s"])),
    ("tests passed", lambda r: str(r.get("passed", 0))),
    (
        "programs built (XLA compile or persistent-cache read)",
        lambda r: str(r["totals"].get("compiles", 0)),
    ),
    ("... read from the persistent cache", lambda r: str(r["totals"].get("cache_hits", 0))),
    ("... compiled and written to it", lambda r: str(r["totals"].get("cache_misses", 0))),
    ("building them (s, summed over workers)", lambda r: f"{r['totals'].get('compile_s', 0):.0f}"),
    ("Python tracing (s)", lambda r: f"{r['totals'].get('trace_s', 0):.0f}"),
    ("lowering to MLIR (s)", lambda r: f"{r['totals'].get('lower_s', 0):.0f}"),
]


def suite_time_table(result: dict) -> str:
    """Markdown: the runs side by side, then where the first run's compiling goes."""
    runs = result["runs"]
    names = [n for n in SUITE_RUNS if n in runs]
    lines = [
        "| " + " | ".join(["", *(SUITE_RUNS[n] for n in names)]) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    lines += [
        "| " + " | ".join([label, *(get(runs[n]) for n in names)]) + " |"
        for label, get in SUITE_ROWS
    ]
    cold = runs[names[0]]
    lines += [
        "",
        f"Where the {names[0]} run's XLA compiling goes (the largest compiled functions):",
        "",
        "| function | compiles | XLA compile (s) |",
        "|---|---|---|",
    ]
    shown = cold["functions"][:8]
    lines += [f"| `{f['function']}` | {f['compiles']} | {f['compile_s']:.0f} |" for f in shown]
    rest = cold["distinct_functions"] - len(shown)
    lines.append(
        f"| the other {rest} functions (eager operations, initialisers, checks, ...) | "
        f"{cold['totals'].get('compiles', 0) - sum(f['compiles'] for f in shown)} | "
        f"{cold['totals'].get('compile_s', 0) - sum(f['compile_s'] for f in shown):.0f} |"
    )
    source = result["provenance"]
    lines += [
        "",
        f"Measured {source['date']} at code {source['git_commit'][:7]}"
        f"{' with uncommitted changes' if source['git_dirty'] else ''} on {source['cpus']} "
        f"CPU cores: `{result['command']}`.",
    ]
    return "\n".join(lines)

"""The table of the cnf_overhead command's committed run
(`experiments/results/cnf_overhead.json`): `overhead` (see `_tables.py`)."""

from pathlib import Path

from ._table_parts import load


def _compile_repeats(r: dict) -> str:
    """`", the median of K compiles from cleared caches"` when the run repeated them."""
    repeats = r.get("config", {}).get("compile_repeats", 1)
    return f", the median of {repeats} compiles from cleared caches" if repeats > 1 else ""


def overhead_table(results: Path) -> str:
    """Per workload: step and compile time of node_kit against raw diffrax, and the floor."""
    r = load(results / "cnf_overhead.json")
    out = [
        "| workload | median step (ms): node_kit / raw | ratio | compile (s): node_kit / raw "
        "| ratio | program size ratio | NFE | floor (ms) | step / floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in r["workloads"].items():
        n, w = e["paths"]["node_kit"], e["paths"]["raw_diffrax"]
        out.append(
            f"| `{name}` | {n['median_step_seconds'] * 1e3:.2f} / "
            f"{w['median_step_seconds'] * 1e3:.2f} | {e['step_ratio']:.3f} | "
            f"{n['compile_seconds']:.2f} / {w['compile_seconds']:.2f} | "
            f"{e['compile_ratio']:.2f} | {e['hlo_ratio']:.3f} | {e['nfe']} | "
            f"{e['floor_seconds'] * 1e3:.2f} | {e['step_over_floor']:.2f} |"
        )
    same = all(
        e["paths"]["node_kit"]["num_steps"] == e["paths"]["raw_diffrax"]["num_steps"]
        for e in r["workloads"].values()
    )
    out += [
        "",
        f"{r['timed_steps_each']} timed steps per path, alternating rounds, "
        f"{r['environment']['device']}. Compile: tracing + lowering + XLA compilation of the "
        f"first call{_compile_repeats(r)}; program size: characters of the lowered StableHLO. "
        f"Largest ratios node_kit / raw: step {r['max_step_ratio']:.3f}, compile "
        f"{r['max_compile_ratio']:.2f}. Solver steps of the two paths "
        f"{'agree on every workload' if same else 'DIFFER on some workload'}. Floor: NFE (field "
        "evaluations of the forward solve, counted) x one batched field evaluation with its "
        "VJP (evaluation alone for `cnf_exact_eval`).",
    ]
    return "\n".join(out)


TABLES = {"overhead": overhead_table}
"""The cnf_overhead command's `Command.tables`."""

"""The adjoint decision table and the reversible adjoint's measurements, as the Markdown that
docs/choosing-an-adjoint.md quotes (`python experiments/tables.py NAME`):

- `adjoint-decision`: one row per adjoint from the memory command's sweep
  (`memory.json`) and the reconstruction sweep: memory, time and float32 gradient error
  of one gradient, what each needs, and when to choose it;
- `reversible-reconstruction`: `reversible/reconstruction.json`
  (`python experiments/reversible_reconstruction.py`);
- `reversible-training`: `reversible/training.json` (`bash experiments/reversible_runs.sh`,
  then `python experiments/reversible_summary.py`);
- `reversible-overhead`: `reversible/adjoint_overhead.json`
  (`taskset -c 0 python experiments/adjoint_overhead.py`).

Each script prints the table of the file it writes with the function here.
"""

from pathlib import Path

from ._table_parts import load, MIB


NEEDS = {
    "backsolve": "any solver; `max_steps` may be `None`",
    "checkpoint": "an integer `max_steps`",
    "direct": "an integer `max_steps` close to the steps taken",
    "reversible": "an explicit single-step solver; constant, PID or `StepTo` steps; an "
    "integer `max_steps`",
}
"""What each adjoint asks of the solve (checked by `SolveSettings`)."""

WHEN = {
    "backsolve": "memory binds and an approximate gradient will do (not for stiff or "
    "dissipative fields)",
    "checkpoint": "the default: exact, memory growing as the square root of `max_steps`",
    "direct": "memory is plentiful and the step count small and known",
    "reversible": "memory binds and the gradient must be exact",
}
"""The rule of thumb per adjoint; `node_kit.adjoint_for_budget` measures it for a model."""

EXACT = {"backsolve": "approximate (solves the adjoint ODE backwards)"}


def decision_table(results: Path) -> str:
    """Per adjoint, from the committed memory sweep (the batch as one state): exactness,
    memory at the two largest N, time per gradient against `direct`'s, the float32 gradient
    error against the float64 one, what it needs and when to choose it; and the float32
    drift of the reversible adjoint's rebuilt states at the largest N."""
    r = load(results / "memory.json")
    cfg = r["config"]
    steps = sorted(cfg["solver_steps"])
    mid, last = steps[-2], steps[-1]
    rows = {(row["mode"], row["steps"]): row for row in r["rows"] if row["layout"] == "batched"}
    direct = rows["direct", last]["time_s"]
    out = [
        f"One gradient through N fixed {cfg['solver']} steps (the memory sweep above: MLP "
        f"field, dim {cfg['dim']}, batch {cfg['batch_size']} as one state, float32); "
        f"memory is XLA's compiled temp bytes, time the median of {cfg['repeats']} runs, "
        f"the error that of the float32 gradient against the exact float64 gradient of the "
        f"same forward solve (the plain one; for `reversible`, its own):",
        "",
        f"| adjoint | gradient | memory (MiB) at N = {mid} / {last} | time per gradient "
        f"at N = {last} | float32 error at N = {last} | needs | choose when |",
        "|---|---|---|---|---|---|---|",
    ]
    modes = sorted({m for m, _ in rows})
    for mode in modes:
        a, b = rows[mode, mid], rows[mode, last]
        out.append(
            f"| `{mode}` | {EXACT.get(mode, 'exact for its discretised solve')} | "
            f"{a['temp_bytes'] / MIB:.2f} / {b['temp_bytes'] / MIB:.2f} | "
            f"{b['time_s']:.2f} s ({b['time_s'] / direct:.2f}x direct) | "
            f"{b['grad_rel_error']:.1e} | {NEEDS.get(mode, '')} | {WHEN.get(mode, '')} |"
        )
    if "backsolve" in modes:
        out += [
            "",
            f"`backsolve`'s error is that of its adjoint ODE solved backwards on the same "
            f"{last} small steps of a smooth field; it grows with the step size, and for "
            f"stiff or dissipative fields (see `backsolve` above).",
        ]
    path = results / "reversible" / "reconstruction.json"
    if path.exists():
        rec = load(path)["rows"]
        longest = max(row["steps"] for row in rec)
        worst = {
            row["coupling"]: row["relative_error"]
            for row in rec
            if (row["dtype"], row["steps"], row["solver"]) == ("float32", longest, cfg["solver"])
        }
        if worst:
            shown = ", ".join(
                f"{'overflowed' if e is None else f'{e:.1e}'} at coupling {c}"
                for c, e in sorted(worst.items(), reverse=True)
            )
            out += [
                "",
                f"`reversible` rebuilds its states backwards, dividing by the coupling each "
                f"step; in float32 after {longest} "
                f"{cfg['solver']} steps the rebuilt initial state is off by {shown} "
                f"(relative; the reconstruction table above).",
            ]
    return "\n".join(out)


def reconstruction_table(r: dict) -> str:
    """The relative error of the initial state rebuilt from the end, per solver, coupling
    and precision, against N."""
    steps = sorted({row["steps"] for row in r["rows"]})
    cells: dict[tuple, dict[int, float | None]] = {}
    for row in r["rows"]:
        key = (row["solver"], row["coupling"], row["dtype"])
        cells.setdefault(key, {})[row["steps"]] = row["relative_error"]
    out = [
        f"{r['problem']}. Relative error of the rebuilt y_0 at N = "
        f"{' / '.join(map(str, steps))} (`overflow`: it left the floating-point range):",
        "",
        "| solver | coupling | precision | relative error |",
        "|---|---|---|---|",
    ]
    for (solver, coupling, dtype), by_n in cells.items():
        errors = " / ".join("overflow" if by_n.get(n) is None else f"{by_n[n]:.1e}" for n in steps)
        out.append(f"| {solver} | {coupling} | {dtype} | {errors} |")
    return "\n".join(out)


def training_table(r: dict) -> str:
    """Per command and adjoint: seeds, the test metric's mean and sample standard
    deviation, the median training time per step, and the comparison."""
    out = [
        "| command | adjoint | seeds | test metric: mean ± std | per seed | s per step (median) |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for short, entry in r["commands"].items():
        for adjoint, s in entry["adjoints"].items():
            if s["mean"] is None:
                continue
            std = f" ± {s['std']:.4f}" if s["std"] is not None else ""
            seeds = ", ".join(f"{run[entry['metric']]:.4f}" for run in s["runs"])
            out.append(
                f"| {short} | `{adjoint}` | {len(s['runs'])} | {entry['metric']} "
                f"{s['mean']:.4f}{std} | {seeds} | {s['seconds_per_step_median']:.3f} |"
            )
        if "mean_difference" in entry:
            inside = "within" if entry["within_seed_spread"] else "outside"
            notes.append(
                f"{short}: reversible minus checkpoint {entry['mean_difference']:+.1e}, "
                f"{inside} twice the larger standard deviation; "
                f"{entry['time_ratio']:.2f}x the time per step"
            )
    return "\n".join(out + ["", "; ".join(notes) + "."] if notes else out)


def overhead_table(r: dict) -> str:
    """Per workload and adjoint: the training step and its compile, against checkpoint."""
    out = [
        "| workload | adjoint | solver steps | step (ms, median) | compile (s, median) |",
        "|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        out.append(
            f"| {row['description'].rsplit(', ', 1)[0]} | `{row['adjoint']}` | "
            f"{row['solver_steps']} | {1e3 * row['step_s']:.1f} "
            f"({row['step_ratio_to_checkpoint']:.2f}x) | {row['compile_s']:.1f} "
            f"({row['compile_ratio_to_checkpoint']:.2f}x) |"
        )
    cfg = r["config"]
    out += [
        "",
        f"Ratios against `checkpoint`; batch {cfg['batch_size']}, MLP width "
        f"{cfg['width']}x{cfg['depth']}, {cfg['save_times']} output times, the median of "
        f"{cfg['rounds']} rounds of {cfg['steps_per_round']} steps and of "
        f"{cfg['compile_repeats']} compiles.",
    ]
    return "\n".join(out)

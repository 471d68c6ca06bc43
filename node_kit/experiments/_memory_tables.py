"""The tables of the memory command's committed sweeps (`experiments/results/memory.json`,
`memory_deq.json`, `memory_inner.json`): `memory`, `implicit` and `implicit-notes` (see
`_tables.py`)."""

import math
from pathlib import Path

from ._memory_problems import FAMILIES
from ._table_parts import load, MIB, times


FILES = {"ode": "memory.json", "deq": "memory_deq.json", "inner": "memory_inner.json"}
"""The committed sweep of each family, in the results folder."""


def _exponent(p: float) -> str:
    return f"{0.0 if abs(p) < 5e-3 else p:.2f}"


def memory_table(results: Path) -> str:
    """The ODE sweep of memory.json: both batch layouts per adjoint, and what it shows."""
    r = load(results / FILES["ode"])
    cfg, env = r["config"], r["environment"]
    versions = r.get("provenance", env)
    steps = sorted(cfg.get("solver_steps", cfg.get("steps")))  # "steps" before node_kit 0.2
    rows = {(row["mode"], row["layout"], row["steps"]): row for row in r["rows"]}
    local = {(e["mode"], e["layout"]): e["local_exponent"] for e in r["exponents"]}
    batch = cfg.get("batch_size", cfg.get("batch"))  # "batch" before node_kit 0.2
    out = [
        f"XLA compiled memory (`memory_analysis()`, exact) of one gradient through N fixed "
        f"{cfg['solver']} steps; MLP field, dim {cfg['dim']}, batch {batch}, width "
        f"{cfg['width']}x{cfg['depth']}, float32, {env['device']}, jax {versions['jax']}, "
        f"diffrax {versions['diffrax']}. Temp MiB at N = {' / '.join(map(str, steps))}, and "
        f"the growth exponent p (memory ~ N^p) between the two largest N:",
        "",
        "| mode | batch as one ODE state (`model.batched`) | per sample (`jax.vmap(model)`) |",
        "|---|---|---|",
    ]
    for mode in cfg["modes"]:
        label = f"`{mode}`"
        if mode == "checkpoint":
            counts = " / ".join(str(rows[mode, "batched", n]["checkpoints"]) for n in steps)
            label += f" (diffrax default: {counts} checkpoints)"
        elif mode == "direct":
            label += " (store every step)"
        elif mode == "reversible":
            label += " (rebuild each step from the end)"
        cells = []
        for layout in ("batched", "vmap"):
            temps = " / ".join(f"{rows[mode, layout, n]['temp_bytes'] / MIB:.2f}" for n in steps)
            cells.append(f"{temps} (p = {_exponent(local[mode, layout])})")
        out.append(f"| {label} | {cells[0]} | {cells[1]} |")
    last = steps[-1]
    one, each = rows["backsolve", "batched", last], rows["backsolve", "vmap", last]
    out += [
        "",
        f"Solve the batch as one state where you can: at N = {last}, backsolve per "
        f"sample needs {times(each['temp_bytes'], one['temp_bytes'])} the memory of "
        f"backsolve on the batch as one state, and "
        f"{times(each['time_s'], one['time_s'])} the time.",
    ]
    checks = [c for c in r["budget_checks"] if "error" not in c]
    if checks:
        worst = max(abs(c["prediction_error"]) for c in checks)
        out += [
            "",
            f"`node_kit.checkpoint_adjoint_for_budget` met each of its {len(checks)} "
            f"budgets at N = {last}, its compiled memory within {worst:.2%} of the "
            f"prediction.",
        ]
    return "\n".join(out)


def _family_rows(results: Path, family: str) -> list[dict]:
    """The rows of a family's sweep in the layout its table shows."""
    layout = FAMILIES[family].layout
    return [row for row in load(results / FILES[family])["rows"] if row["layout"] == layout]


def implicit_table(results: Path) -> str:
    """Temp memory of one gradient per family and method, and its growth exponent."""
    out = [
        "| family | method | steps | temp MiB at each | p (two largest) | p (sweep) | "
        "error vs float64 reference at the largest |",
        "|---|---|---|---|---|---|---|",
    ]
    for family, name in FILES.items():
        if not (results / name).exists():
            continue
        rows, layout = _family_rows(results, family), FAMILIES[family].layout
        for e in load(results / name)["exponents"]:
            if e["layout"] != layout:
                continue
            mine = sorted(
                (row for row in rows if row["mode"] == e["mode"]), key=lambda row: row["steps"]
            )
            steps = " / ".join(str(row["steps"]) for row in mine)
            temps = " / ".join(f"{row['temp_bytes'] / MIB:.3f}" for row in mine)
            error = mine[-1]["grad_rel_error"]
            error = "–" if error is None else f"{error:.1e}"
            out.append(
                f"| {family} | {e['mode']} | {FAMILIES[family].axis} = {steps} | "
                f"{temps} | {_exponent(e['local_exponent'])} | "
                f"{_exponent(e['exponent'])} | {error} |"
            )
    return "\n".join(out)


def implicit_notes(results: Path) -> str:
    """What the implicit-layer table shows, with its numbers."""
    deq = {(row["mode"], row["steps"]): row for row in _family_rows(results, "deq")}
    inner = {(row["mode"], row["steps"]): row for row in _family_rows(results, "inner")}
    largest = max(k for _, k in inner)
    smallest = min(k for _, k in inner)
    phantom = deq["phantom", max(k for _, k in deq)]["grad_rel_error"]
    out = [
        f"Implicit gradients are flat in K in every family; unrolled ones grow linearly. "
        f"The phantom DEQ gradient is the cheapest and {phantom:.0%} off the true one. The "
        f"inner family's errors at K = {largest} (MAML "
        f"{inner['maml', largest]['grad_rel_error']:.0f}x, FOMAML "
        f"{inner['fomaml', largest]['grad_rel_error']:.1f}) are float32 against float64 "
        f"after {largest} SGD steps: the two runs end at different adapted weights, and "
        f"{largest} second-order steps amplify that."
    ]
    error = inner["imaml", smallest]["grad_rel_error"]
    if error is None or math.isnan(error):
        out.append(
            f"iMAML's error at K = {smallest} is NaN: conjugate gradients break down in "
            f"float32 where the proximal problem is far from solved."
        )
    return " ".join(out)


IMAGE_FILE = "memory_image.json"
"""The committed sweep of the image family (`--family image`)."""


def image_memory_table(results: Path) -> str:
    """One gradient of the multiscale CNF at MNIST's shape per adjoint against the solver
    steps per block: compiled temp memory, its growth, time and error."""
    r = load(results / IMAGE_FILE)
    cfg = r["config"]
    rows = {(row["mode"], row["steps"]): row for row in r["rows"]}
    steps = sorted({n for _, n in rows})
    out = [
        f"One gradient of the mean NLL of {cfg['batch_size']} images through FFJORD's "
        f"multiscale CNF at `1x28x28` (three scales, one block per stage, fields of width "
        f"{cfg['width']} and depth {cfg['depth']}, {cfg['solver']} with N fixed steps per "
        f"block, Hutchinson), per adjoint; `python -m node_kit.experiments.memory --family "
        f"image --out experiments/results`, {r['environment']['device']}.",
        "",
        "| adjoint | temp MiB at N = " + " / ".join(map(str, steps)) + " | p (sweep) | "
        f"time per gradient at N = {steps[-1]} (ms) | error vs float64 at N = {steps[-1]} |",
        "|---|---|---|---|---|",
    ]
    exponents = {e["mode"]: e["exponent"] for e in r["exponents"]}
    for mode in dict.fromkeys(m for m, _ in rows):
        temps = " / ".join(f"{rows[mode, n]['temp_bytes'] / MIB:.2f}" for n in steps)
        last = rows[mode, steps[-1]]
        error = last["grad_rel_error"]
        out.append(
            f"| {mode} | {temps} | {_exponent(exponents[mode])} | {last['time_s'] * 1e3:.0f} | "
            f"{'–' if error is None else f'{error:.1e}'} |"
        )
    return "\n".join(out)


TABLES = {
    "memory": memory_table,
    "implicit": implicit_table,
    "implicit-notes": implicit_notes,
    "memory-image": image_memory_table,
}
"""The memory command's `Command.tables`."""

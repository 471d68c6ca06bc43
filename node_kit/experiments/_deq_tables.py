"""The table of the deq command's committed run (`experiments/results/deq/results.json`):
`deq` (see `_tables.py`)."""

from pathlib import Path

from ._table_parts import load, MIB


def deq_table(results: Path) -> str:
    """The DEQ digits classifier beside the NeuralODE and the MLP, and its backward passes."""
    r = load(results / "deq" / "results.json")
    out = [
        "| model | parameters | test accuracy | forward iterations per batch (mean) | "
        "gradient temp MiB | gradient ms (median) | training s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in r["models"].items():
        it = m["forward_iterations"]
        out.append(
            f"| {name} | {m['parameters']} | {m['test_accuracy']:.4f} | "
            f"{it['per_batch_mean']:.1f} {it['unit'].split(' (')[0]} | "
            f"{m['gradient']['temp_bytes'] / MIB:.2f} | "
            f"{m['gradient']['seconds_median'] * 1e3:.1f} | {m['train_seconds_total']:.1f} |"
        )
    out += ["", "| DEQ backward | gradient temp MiB | gradient ms (median) |", "|---|---|---|"]
    for name, g in r["deq_gradient_by_backward"].items():
        out.append(f"| {name} | {g['temp_bytes'] / MIB:.2f} | {g['seconds_median'] * 1e3:.1f} |")
    out += [
        "",
        "| forward solver | iterations to a relative residual below 1e-4 | "
        "residual after the last shown |",
        "|---|---|---|",
    ]
    for name, history in r["residual_history"]["solvers"].items():
        below = next((k for k, value in enumerate(history) if value < 1e-4), None)
        out.append(
            f"| {name} | {'–' if below is None else below} | {history[-1]:.1e} "
            f"(k = {len(history) - 1}) |"
        )
    cfg = r["config"]
    out.append(
        f"\n{cfg['steps']} training steps, batch {cfg['batch_size']}, solver "
        f"{cfg['solver']}, backward {cfg['backward']}; {r['environment']['device']}."
    )
    return "\n".join(out)


TABLES = {"deq": deq_table}
"""The deq command's `Command.tables`."""

"""The tables of the meta command's committed run (`experiments/results/meta/results.json`):
`meta` and `meta-notes` (see `_tables.py`)."""

from pathlib import Path

from ._table_parts import load, MIB


NAMES = {
    "maml": "MAML",
    "fomaml": "first-order MAML",
    "imaml": "iMAML",
    "pretrained": "the pretrained baseline",
}
"""The methods as the notes name them."""


def _name(method: str) -> str:
    return NAMES.get(method, method)


def meta_table(results: Path) -> str:
    """Post-adaptation test MSE of each meta-learning method, with its costs."""
    r = load(results / "meta" / "results.json")
    cfg = r["config"]
    out = [
        "| method | K shots | test MSE [95% interval] | MSE before adapting | inner steps | "
        "meta-gradient ms (median) | compile s | meta-gradient temp MiB | training s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lo, hi = row["test_mse_ci95"]
        steps = (
            f"{row['inner_steps_mean']:.1f} mean, {row['inner_steps_max']} max (L-BFGS)"
            if row.get("inner_steps") is None
            else str(row["inner_steps"])
        )
        out.append(
            f"| {row['method']} | {row['shots']} | {row['test_mse']:.3f} [{lo:.3f}, {hi:.3f}] | "
            f"{row['test_mse_before_adaptation']:.3f} | {steps} | "
            f"{row['grad_median_seconds'] * 1e3:.2f} | {row['grad_compile_seconds']:.2f} | "
            f"{row['grad_temp_bytes'] / MIB:.2f} | {row['train_seconds_total']:.1f} |"
        )
    out.append(
        f"\n{cfg['steps']} meta-steps; {cfg['eval_tasks']} held-out tasks of "
        f"{cfg['eval_points']} query points; {r['environment']['device']}."
    )
    return "\n".join(out)


def meta_notes(results: Path) -> str:
    """The ranking of the methods per K, and what fine-tuning did to the pretrained model."""
    r = load(results / "meta" / "results.json")
    out = []
    for shots in sorted({row["shots"] for row in r["rows"]}):
        rows = sorted(
            (row for row in r["rows"] if row["shots"] == shots), key=lambda row: row["test_mse"]
        )
        order = ", ".join(_name(row["method"]) for row in rows)
        out.append(f"- K = {shots}: from the lowest test MSE, {order}.")
        pre = next((row for row in rows if row["method"] == "pretrained"), None)
        if pre is not None:
            change = "worse" if pre["test_mse"] > pre["test_mse_before_adaptation"] else "better"
            out[-1] += (
                f" Fine-tuning the pretrained model on the K points made its test MSE "
                f"{change} ({pre['test_mse_before_adaptation']:.3f} before, "
                f"{pre['test_mse']:.3f} after)."
            )
    slowest = max(r["rows"], key=lambda row: row["grad_median_seconds"])
    out.append(
        f"- The slowest meta-gradient is {_name(slowest['method'])}'s at K = {slowest['shots']}."
    )
    return "\n".join(out)


TABLES = {"meta": meta_table, "meta-notes": meta_notes}
"""The meta command's `Command.tables`."""

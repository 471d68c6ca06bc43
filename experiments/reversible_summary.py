"""Summarise the runs of experiments/reversible_runs.sh: per command and adjoint, the test
metric of each seed, its mean and sample standard deviation, and the training time per
step; and whether the reversible mean lies within the seed-to-seed spread of
checkpointing's (|mean difference| <= 2 x the larger standard deviation).

    python experiments/reversible_summary.py

writes experiments/results/reversible/training.json and prints a table.
"""

import json
import statistics
from pathlib import Path

OUT = Path(__file__).parent / "results" / "reversible"
COMMANDS = {"cnf": "test_nll", "latent_ode": "test_mse"}


def main() -> None:
    summary = {"command": "bash experiments/reversible_runs.sh", "commands": {}}
    for short, metric in COMMANDS.items():
        entry = {"metric": metric, "adjoints": {}}
        for adjoint in ("checkpoint", "reversible"):
            runs = []
            for seed in (0, 1, 2):
                path = OUT / f"{short}_{adjoint}_seed{seed}" / "results.json"
                if not path.exists():
                    continue
                r = json.loads(path.read_text())
                steps = r["config"]["steps"]
                runs.append({"seed": seed, metric: r[metric], "steps": steps,
                             "train_seconds": r["train_seconds_this_run"],
                             "seconds_per_step": r["train_seconds_this_run"] / steps,
                             "git_commit": r["provenance"]["git_commit"],
                             "git_dirty": r["provenance"]["git_dirty"]})
            values = [run[metric] for run in runs]
            entry["adjoints"][adjoint] = {
                "runs": runs,
                "mean": statistics.mean(values) if values else None,
                "std": statistics.stdev(values) if len(values) > 1 else None,
                "seconds_per_step_median": statistics.median(
                    [run["seconds_per_step"] for run in runs]) if runs else None,
            }
        a, b = entry["adjoints"]["checkpoint"], entry["adjoints"]["reversible"]
        if a["std"] is not None and b["std"] is not None:
            spread = 2 * max(a["std"], b["std"])
            entry["mean_difference"] = b["mean"] - a["mean"]
            entry["within_seed_spread"] = abs(b["mean"] - a["mean"]) <= spread
            entry["time_ratio"] = b["seconds_per_step_median"] / a["seconds_per_step_median"]
        summary["commands"][short] = entry
    (OUT / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("| command | adjoint | seeds | test metric mean ± std | s/step (median) |")
    print("|---|---|---|---|---|")
    for short, entry in summary["commands"].items():
        for adjoint, s in entry["adjoints"].items():
            if s["mean"] is None:
                continue
            std = f" ± {s['std']:.4f}" if s["std"] is not None else ""
            print(f"| {short} | {adjoint} | {len(s['runs'])} | {entry['metric']} "
                  f"{s['mean']:.4f}{std} | {s['seconds_per_step_median']:.3f} |")
    print(f"wrote {OUT / 'training.json'}")


if __name__ == "__main__":
    main()

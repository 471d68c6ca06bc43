"""Summarise the runs of experiments/reversible_runs.sh: per command and adjoint, the test
metric of each seed, its mean and sample standard deviation, and the training time per
step; and whether the reversible mean lies within the seed-to-seed spread of
checkpointing's (|mean difference| <= 2 x the larger standard deviation).

    python experiments/reversible_summary.py

writes experiments/results/reversible/training.json and prints its table (the one
`python experiments/tables.py reversible-training` prints for the docs).
"""

import json
import statistics
from pathlib import Path

from node_kit.experiments._adjoint_tables import training_table


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
    print(training_table(summary))
    print(f"wrote {OUT / 'training.json'}")


if __name__ == "__main__":
    main()

"""Print the Markdown tables that README.md and docs/ quote, from committed results.

    python experiments/tables.py cnf        # experiments/results/cnf/*/results.json
    python experiments/tables.py overhead   # experiments/results/cnf_overhead.json
"""

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def cnf_table() -> str:
    rows = [
        "| run | dataset | steps | test NLL (nats) | true entropy | KL gap | bits/dim | Gaussian baseline bits/dim | NFE steps (train) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted((RESULTS / "cnf").glob("*/results.json")):
        r = json.loads(path.read_text())
        cfg = r["config"]
        entropy = f"{r['true_entropy']:.4f} ± {r['true_entropy_se']:.4f}" if "true_entropy" in r else "–"
        gap = f"{r['kl_gap']:+.4f}" if "kl_gap" in r else "–"
        bpd = f"{r['bits_per_dim']:.3f}" if "bits_per_dim" in r else "–"
        base = f"{r['gaussian_baseline_bits_per_dim']:.3f}" if "gaussian_baseline_bits_per_dim" in r else "–"
        reg = " (RNODE)" if cfg["kinetic_energy"] or cfg["jacobian_norm"] else ""
        rows.append(
            f"| {path.parent.name}{reg} | {cfg['dataset']} | {cfg['steps']} | "
            f"{r['test_nll']:.4f} ± {r['test_nll_se']:.4f} | {entropy} | {gap} | {bpd} | {base} | "
            f"{r['train_num_steps_last_100']:.1f} |"
        )
    return "\n".join(rows)


def overhead_table() -> str:
    r = json.loads((RESULTS / "cnf_overhead.json").read_text())
    m, c = r["median_step_seconds"], r["compile_seconds"]
    return "\n".join([
        "| path | median step (ms) | compile (s) | solver steps |",
        "|---|---|---|---|",
        *(f"| {k} | {m[k] * 1e3:.2f} | {c[k]:.1f} | {r['first_step'][k]['num_steps']} |" for k in m),
        f"\nnode_kit / raw diffrax = {r['overhead_ratio']:.3f} ({r['overhead_percent']:+.1f}%), "
        f"{r['timed_steps_each']} timed steps each, {r['environment']['device']} "
        f"({r['environment']['backend']}).",
    ])


if __name__ == "__main__":
    print({"cnf": cnf_table, "overhead": overhead_table}[sys.argv[1]]())

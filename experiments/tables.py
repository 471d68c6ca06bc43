"""Print the Markdown tables that README.md and docs/ quote, from committed results.

    python experiments/tables.py cnf        # experiments/results/cnf/*/results.json
    python experiments/tables.py overhead   # experiments/results/cnf_overhead.json
    python experiments/tables.py timeseries # experiments/results/timeseries/*/results.json
    python experiments/tables.py implicit   # experiments/results/memory{,_deq,_inner}.json
    python experiments/tables.py deq        # experiments/results/deq/results.json
    python experiments/tables.py meta       # experiments/results/meta/results.json
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


def _timeseries_runs() -> list[dict]:
    runs = []
    for path in sorted((RESULTS / "timeseries").glob("*/results.json")):
        r = json.loads(path.read_text())
        runs.append({**r, "name": path.parent.name})
    return runs


def _minutes(r: dict) -> str:
    return f"{r.get('train_seconds_total', r['train_seconds_this_run']) / 60:.1f}"


def timeseries_table() -> str:
    runs = _timeseries_runs()
    out = []
    hopper = [r for r in runs if r["config"]["dataset"] == "hopper"]
    if hopper:
        out += [
            "**hopper** (test MSE x 1e-2. node_kit scale: min-max normalised to [0, 1]; paper scale: "
            "the same errors on the paper's (x - min) / max normalisation, which its table uses)",
            "",
            "| run | model | task | observed | steps | test MSE | test MSE, paper scale | paper "
            "| ratio (paper scale) | baseline (no learning), paper scale | train min |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(hopper, key=lambda r: (r["config"]["task"], r["config"]["model"], r["name"])):
            c = r["config"]
            base_key = next(k for k in r if k.startswith("baseline_"))
            base = r.get(base_key + "_paper_scale", float("nan"))
            base_name = base_key[9:-4].replace("_", " ")
            scaled = r.get("test_mse_paper_scale", float("nan"))
            paper = f"{r['paper_test_mse'] * 100:.3f}" if "paper_test_mse" in r else "–"
            ratio = f"{r['ratio_to_paper']:.1f}x" if "ratio_to_paper" in r else "–"
            out.append(
                f"| {r['name']} | {c['model']} | {c['task']} | {c['observed']:.0%} | {c['steps']} | "
                f"{r['test_mse'] * 100:.3f} | {scaled * 100:.3f} | {paper} | {ratio} | "
                f"{base * 100:.3f} ({base_name}) | {_minutes(r)} |"
            )
        out.append("")
    vowels = [r for r in runs if r["config"]["dataset"] == "japanese_vowels"]
    if vowels:
        drops = sorted({round(1 - r["config"]["observed"], 2) for r in vowels})
        out += [
            "**japanese_vowels** (test accuracy, 370 test series, points dropped at random once per series)",
            "",
            "| model | " + " | ".join(f"{d:.0%} dropped" for d in drops) + " |",
            "|---|" + "---|" * len(drops),
        ]
        for model in ("gru_dt", "ode_rnn", "latent_ode"):
            cells = []
            for d in drops:
                match = [r for r in vowels if r["config"]["model"] == model
                         and round(1 - r["config"]["observed"], 2) == d]
                cells.append(f"{match[0]['test_accuracy']:.3f}" if match else "–")
            if any(cell != "–" for cell in cells):
                out.append(f"| {model} | " + " | ".join(cells) + " |")
        out.append("")
    periodic = [r for r in runs if r["config"]["dataset"] == "periodic"]
    if periodic:
        out += [
            "**periodic** (test MSE; 100 test series of 100 points)",
            "",
            "| run | model | task | observed | steps | test MSE | baseline (no learning) | train min |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in periodic:
            c = r["config"]
            base_name = next(k for k in r if k.startswith("baseline_"))
            out.append(
                f"| {r['name']} | {c['model']} | {c['task']} | {c['observed']:.0%} | {c['steps']} | "
                f"{r['test_mse']:.4f} | {r[base_name]:.4f} ({base_name[9:-4].replace('_', ' ')}) | {_minutes(r)} |"
            )
    return "\n".join(out)


FAMILY_FILES = {
    "ode": ("memory.json", "solver steps N", "batched"),
    "deq": ("memory_deq.json", "forward iterations K", "batched"),
    "inner": ("memory_inner.json", "inner steps K", None),
}


def _exponent(p: float) -> str:
    return f"{0.0 if abs(p) < 5e-3 else p:.2f}"


def implicit_table() -> str:
    """Temp memory of one gradient per family and method, and its growth exponent."""
    out = [
        "| family | method | steps | temp MiB at each | p (two largest) | p (sweep) | "
        "error vs float64 reference at the largest |",
        "|---|---|---|---|---|---|---|",
    ]
    for family, (name, axis, layout) in FAMILY_FILES.items():
        path = RESULTS / name
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        rows = [row for row in r["rows"] if layout is None or row["layout"] == layout]
        for e in r["exponents"]:
            if layout is not None and e["layout"] != layout:
                continue
            mine = sorted((row for row in rows if row["mode"] == e["mode"]),
                          key=lambda row: row["steps"])
            steps = " / ".join(str(row["steps"]) for row in mine)
            temps = " / ".join(f"{row['temp_bytes'] / 2**20:.3f}" for row in mine)
            error = mine[-1]["grad_rel_error"]
            error = "–" if error is None else f"{error:.1e}"
            out.append(f"| {family} | {e['mode']} | {axis} = {steps} | {temps} | "
                       f"{_exponent(e['local_exponent'])} | {_exponent(e['exponent'])} | {error} |")
    return "\n".join(out)


def deq_table() -> str:
    """The DEQ digits classifier beside the NeuralODE and the MLP, and its backward passes."""
    r = json.loads((RESULTS / "deq" / "results.json").read_text())
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
            f"{m['gradient']['temp_bytes'] / 2**20:.2f} | "
            f"{m['gradient']['seconds_median'] * 1e3:.1f} | {m['train_seconds_total']:.1f} |"
        )
    out += ["", "| DEQ backward | gradient temp MiB | gradient ms (median) |", "|---|---|---|"]
    for name, g in r["deq_gradient_by_backward"].items():
        out.append(f"| {name} | {g['temp_bytes'] / 2**20:.2f} | {g['seconds_median'] * 1e3:.1f} |")
    out += ["", "| forward solver | iterations to a relative residual below 1e-4 | "
            "residual after the last shown |", "|---|---|---|"]
    for name, history in r["residual_history"]["solvers"].items():
        below = next((k for k, value in enumerate(history) if value < 1e-4), None)
        out.append(f"| {name} | {'–' if below is None else below} | {history[-1]:.1e} "
                   f"(k = {len(history) - 1}) |")
    cfg = r["config"]
    out.append(f"\n{cfg['steps']} training steps, batch {cfg['batch_size']}, solver "
               f"{cfg['solver']}, backward {cfg['backward']}; {r['environment']['device']}.")
    return "\n".join(out)


def meta_table() -> str:
    """Post-adaptation test MSE of each meta-learning method, with its costs."""
    r = json.loads((RESULTS / "meta" / "results.json").read_text())
    cfg = r["config"]
    out = [
        "| method | K shots | test MSE [95% interval] | MSE before adapting | inner steps | "
        "meta-gradient ms (median) | compile s | meta-gradient temp MiB | training s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lo, hi = row["test_mse_ci95"]
        steps = (f"{row['inner_steps_mean']:.1f} mean, {row['inner_steps_max']} max (L-BFGS)"
                 if row.get("inner_steps") is None else str(row["inner_steps"]))
        out.append(
            f"| {row['method']} | {row['shots']} | {row['test_mse']:.3f} [{lo:.3f}, {hi:.3f}] | "
            f"{row['test_mse_before_adaptation']:.3f} | {steps} | "
            f"{row['grad_median_seconds'] * 1e3:.2f} | {row['grad_compile_seconds']:.2f} | "
            f"{row['grad_temp_bytes'] / 2**20:.2f} | {row['train_seconds_total']:.1f} |"
        )
    out.append(f"\n{cfg['steps']} meta-steps; {cfg['eval_tasks']} held-out tasks of "
               f"{cfg['eval_points']} query points; {r['environment']['device']}.")
    return "\n".join(out)


if __name__ == "__main__":
    tables = {"cnf": cnf_table, "overhead": overhead_table, "timeseries": timeseries_table,
              "implicit": implicit_table, "deq": deq_table, "meta": meta_table}
    print(tables[sys.argv[1]]())

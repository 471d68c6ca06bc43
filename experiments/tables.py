"""Print the Markdown that README.md and docs/ quote from committed results, and keep it current.

    python experiments/tables.py NAME      # print one block (the names are below)
    python experiments/tables.py --write   # rewrite every marked block of README.md and docs/
    python experiments/tables.py --check   # exit 1, naming each file and block that differs

A page quotes a block between two marker comments; `--write` puts what `NAME` prints
between them, and `--check` (and tests/test_docs.py) fails when the two differ:

    <!-- tables.py NAME -->

    ...what `python experiments/tables.py NAME` prints...

    <!-- /tables.py -->

Every block is computed from committed files under experiments/results/ (and the run
scripts beside this file), with json and csv only: nothing here imports JAX, except
`errors`, which reuses experiments/bad_inputs.py's table. After new results are
committed, run `python experiments/tables.py --write`.
"""

import contextlib
import io
import json
import math
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
MIB = 2**20


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _runs(family: str) -> list[dict]:
    """Every `results/<family>/<run>/results.json`, sorted by run name, with `name` added."""
    return [{**_load(path), "name": path.parent.name}
            for path in sorted((RESULTS / family).glob("*/results.json"))]


def _by_name(runs: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in runs}


def _default_run(script: str) -> str:
    """The run that the run script marks `# the default command`."""
    for line in (HERE / script).read_text().splitlines():
        match = re.match(r"\s*run (\S+).*# the default command", line)
        if match:
            return match.group(1)
    raise ValueError(f"experiments/{script} marks no run `# the default command`")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _wall_time(r: dict) -> str:
    """`" It took ... (provenance.wall_seconds)."` when the run recorded it, else `""`."""
    provenance, env = r.get("provenance") or {}, r.get("environment") or {}
    wall = provenance.get("wall_seconds")
    if wall is None:
        return ""
    device = provenance.get("device") or env.get("device", "an unrecorded device")
    cores = ""
    if env.get("cpu_cores") and env["cpu_cores"] != env.get("cpu_count"):
        pin = ",".join(map(str, range(env["cpu_cores"])))
        cores = (f", {env['cpu_cores']} of its {env['cpu_count']} CPU cores: prefix the "
                 f"command with `taskset -c {pin}` for the same bits")
    elif env.get("cpu_count"):
        cores = f", {env['cpu_count']} CPU cores"
    return (f" It took {_duration(wall)} from start to finish ({device}{cores}; "
            f"`provenance.wall_seconds` in its results.json).")


def _times(a: float, b: float) -> str:
    return f"{a / b:.0f}x"


# --- Continuous normalizing flows --------------------------------------------------------


def cnf_default() -> str:
    """The default CNF command's run, by name, with its measured time when recorded."""
    name = _default_run("cnf_runs.sh")
    r = _by_name(_runs("cnf"))[name]
    return (f"Its committed run is `{name}` in the CNF table below: test NLL "
            f"{r['test_nll']:.4f} ± {r['test_nll_se']:.4f} nats against the true entropy "
            f"{r['true_entropy']:.4f} ± {r['true_entropy_se']:.4f}.{_wall_time(r)}")


def cnf_table() -> str:
    rows = [
        "| run | dataset | steps | test NLL (nats) | true entropy | KL gap | bits/dim | "
        "Gaussian baseline bits/dim | solver steps per training solve |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in _runs("cnf"):
        cfg = r["config"]
        entropy = f"{r['true_entropy']:.4f} ± {r['true_entropy_se']:.4f}" if "true_entropy" in r else "–"
        gap = f"{r['kl_gap']:+.4f}" if "kl_gap" in r else "–"
        bpd = f"{r['bits_per_dim']:.3f}" if "bits_per_dim" in r else "–"
        base = f"{r['gaussian_baseline_bits_per_dim']:.3f}" if "gaussian_baseline_bits_per_dim" in r else "–"
        reg = " (RNODE)" if cfg["kinetic_energy"] or cfg["jacobian_norm"] else ""
        rows.append(
            f"| {r['name']}{reg} | {cfg['dataset']} | {cfg['steps']} | "
            f"{r['test_nll']:.4f} ± {r['test_nll_se']:.4f} | {entropy} | {gap} | {bpd} | {base} | "
            f"{r['train_num_steps_last_100']:.1f} |"
        )
    return "\n".join(rows)


def cnf_notes() -> str:
    """The bullets under the CNF table, every number read from the runs it names."""
    runs = _by_name(_runs("cnf"))
    notes = [_note_8gaussians(runs), _note_checkerboard(runs), _note_rings(runs),
             _note_digits(runs), _note_rnode(runs)]
    return "What this shows, honestly:\n\n" + "\n".join(n for n in notes if n)


def _note_8gaussians(runs: dict) -> str:
    r = runs.get("8gaussians")
    if r is None:
        return ""
    within = ("within the test NLL's standard error" if abs(r["kl_gap"]) <= r["test_nll_se"]
              else f"{abs(r['kl_gap']) / r['test_nll_se']:.1f} standard errors from zero")
    return (f"- `8gaussians`: the KL gap is {r['kl_gap']:+.4f} nats, {within} "
            f"({r['test_nll_se']:.4f}; aim: a gap below 0.03 nats).")


def _note_checkerboard(runs: dict) -> str:
    short, long = runs.get("checkerboard"), runs.get("checkerboard_10k")
    if short is None or long is None:
        return ""
    return (f"- `checkerboard`: KL gap {short['kl_gap']:+.4f} nats after "
            f"{short['config']['steps']} steps; after {long['config']['steps']} steps "
            f"(`checkerboard_10k`, trained from scratch), {long['kl_gap']:+.4f} "
            f"(aim: below 0.10).")


def _note_rings(runs: dict) -> str:
    rings, longer = runs.get("rings"), runs.get("rings_5k")
    if rings is None or longer is None:
        return ""
    return (f"- `rings` and `circles` are not fitted after {rings['config']['steps']} steps "
            f"(`rings` stays near a single Gaussian); their pictures show it. `rings_5k`, "
            f"{longer['config']['steps']} steps at lr {longer['config']['lr']:g}, moves from "
            f"{rings['test_nll']:.4f} to {longer['test_nll']:.4f} nats, and its density shows "
            f"the outer ring beginning to form, but it is still far from fitted: these radially "
            f"symmetric toys need much longer training than we spent.")


def _note_digits(runs: dict) -> str:
    small, wide = runs.get("digits"), runs.get("digits_wide")
    if small is None or wide is None:
        return ""

    def versus(r):
        better = r["bits_per_dim"] < r["gaussian_baseline_bits_per_dim"]
        return "better than" if better else "worse than"

    return (f"- `digits`: {small['bits_per_dim']:.3f} bits/dim after "
            f"{small['config']['steps']} steps (width {small['config']['width']}), "
            f"{versus(small)} the full-covariance Gaussian "
            f"({small['gaussian_baseline_bits_per_dim']:.3f}); `digits_wide` "
            f"({wide['config']['steps']} steps, width {wide['config']['width']}) reaches "
            f"{wide['bits_per_dim']:.3f} bits/dim, {versus(wide)} the Gaussian.")


def _note_rnode(runs: dict) -> str:
    plain, reg = runs.get("8gaussians"), runs.get("8gaussians_rnode")
    if plain is None or reg is None:
        return ""
    cfg = reg["config"]
    return (f"- RNODE on `8gaussians` (kinetic energy {cfg['kinetic_energy']:g}, Jacobian "
            f"norm {cfg['jacobian_norm']:g}): {reg['eval_num_steps']:.1f} solver steps per "
            f"evaluation solve against {plain['eval_num_steps']:.1f} unregularised, "
            f"{reg['train_num_steps_last_100']:.1f} against "
            f"{plain['train_num_steps_last_100']:.1f} per training solve; test NLL "
            f"{reg['test_nll']:.4f} against {plain['test_nll']:.4f}.")


def _compile_repeats(r: dict) -> str:
    """`", the median of K compiles from cleared caches"` when the run repeated them."""
    repeats = r.get("config", {}).get("compile_repeats", 1)
    return f", the median of {repeats} compiles from cleared caches" if repeats > 1 else ""


def overhead_table() -> str:
    """Per workload: step and compile time of node_kit against raw diffrax, and the floor."""
    r = _load(RESULTS / "cnf_overhead.json")
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
            f"{n['compile_seconds']:.2f} / {w['compile_seconds']:.2f} | {e['compile_ratio']:.2f} | "
            f"{e['hlo_ratio']:.3f} | {e['nfe']} | {e['floor_seconds'] * 1e3:.2f} | {e['step_over_floor']:.2f} |"
        )
    same = all(e["paths"]["node_kit"]["num_steps"] == e["paths"]["raw_diffrax"]["num_steps"]
               for e in r["workloads"].values())
    out += [
        "",
        f"{r['timed_steps_each']} timed steps per path, alternating rounds, "
        f"{r['environment']['device']}. Compile: tracing + lowering + XLA compilation of the "
        f"first call{_compile_repeats(r)}; program size: characters of the lowered StableHLO. Largest ratios node_kit / raw: step {r['max_step_ratio']:.3f}, compile "
        f"{r['max_compile_ratio']:.2f}. Solver steps of the two paths "
        f"{'agree on every workload' if same else 'DIFFER on some workload'}. Floor: NFE (field "
        "evaluations of the forward solve, counted) x one batched field evaluation with its "
        "VJP (evaluation alone for `cnf_exact_eval`).",
    ]
    return "\n".join(out)


# --- Memory of a gradient ----------------------------------------------------------------


def memory_table() -> str:
    """The ODE sweep of memory.json: both batch layouts per adjoint, and what it shows."""
    r = _load(RESULTS / "memory.json")
    cfg, env = r["config"], r["environment"]
    versions = r.get("provenance", env)
    steps = sorted(cfg.get("solver_steps", cfg.get("steps")))  # "steps" before node_kit 0.2
    rows = {(row["mode"], row["layout"], row["steps"]): row for row in r["rows"]}
    local = {(e["mode"], e["layout"]): e["local_exponent"] for e in r["exponents"]}
    out = [
        f"XLA compiled memory (`memory_analysis()`, exact) of one gradient through N fixed "
        f"{cfg['solver']} steps; MLP field, dim {cfg['dim']}, batch {cfg.get('batch_size', cfg.get('batch'))}, width "
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
        cells = []
        for layout in ("batched", "vmap"):
            temps = " / ".join(f"{rows[mode, layout, n]['temp_bytes'] / MIB:.2f}" for n in steps)
            cells.append(f"{temps} (p = {_exponent(local[mode, layout])})")
        out.append(f"| {label} | {cells[0]} | {cells[1]} |")
    last = steps[-1]
    one, each = rows["backsolve", "batched", last], rows["backsolve", "vmap", last]
    out += ["", f"Solve the batch as one state where you can: at N = {last}, backsolve per "
                f"sample needs {_times(each['temp_bytes'], one['temp_bytes'])} the memory of "
                f"backsolve on the batch as one state, and "
                f"{_times(each['time_s'], one['time_s'])} the time."]
    checks = [c for c in r["budget_checks"] if "error" not in c]
    if checks:
        worst = max(abs(c["prediction_error"]) for c in checks)
        out += ["", f"`node_kit.checkpoint_adjoint_for_budget` met each of its {len(checks)} "
                    f"budgets at N = {last}, its compiled memory within {worst:.2%} of the "
                    f"prediction."]
    return "\n".join(out)


FAMILY_FILES = {
    "ode": ("memory.json", "solver steps N", "batched"),
    "deq": ("memory_deq.json", "forward iterations K", "batched"),
    "inner": ("memory_inner.json", "inner steps K", None),
}


def _exponent(p: float) -> str:
    return f"{0.0 if abs(p) < 5e-3 else p:.2f}"


def _family_rows(name: str, layout: str | None) -> list[dict]:
    r = _load(RESULTS / name)
    return [row for row in r["rows"] if layout is None or row["layout"] == layout]


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
        r = _load(path)
        rows = _family_rows(name, layout)
        for e in r["exponents"]:
            if layout is not None and e["layout"] != layout:
                continue
            mine = sorted((row for row in rows if row["mode"] == e["mode"]),
                          key=lambda row: row["steps"])
            steps = " / ".join(str(row["steps"]) for row in mine)
            temps = " / ".join(f"{row['temp_bytes'] / MIB:.3f}" for row in mine)
            error = mine[-1]["grad_rel_error"]
            error = "–" if error is None else f"{error:.1e}"
            out.append(f"| {family} | {e['mode']} | {axis} = {steps} | {temps} | "
                       f"{_exponent(e['local_exponent'])} | {_exponent(e['exponent'])} | {error} |")
    return "\n".join(out)


def implicit_notes() -> str:
    """What the implicit-layer table shows, with its numbers."""
    deq = {(row["mode"], row["steps"]): row for row in _family_rows("memory_deq.json", "batched")}
    inner = {(row["mode"], row["steps"]): row for row in _family_rows("memory_inner.json", None)}
    largest = max(k for _, k in inner)
    smallest = min(k for _, k in inner)
    phantom = deq["phantom", max(k for _, k in deq)]["grad_rel_error"]
    out = [f"Implicit gradients are flat in K in every family; unrolled ones grow linearly. "
           f"The phantom DEQ gradient is the cheapest and {phantom:.0%} off the true one. The "
           f"inner family's errors at K = {largest} (MAML "
           f"{inner['maml', largest]['grad_rel_error']:.0f}x, FOMAML "
           f"{inner['fomaml', largest]['grad_rel_error']:.1f}) are float32 against float64 "
           f"after {largest} SGD steps: the two runs end at different adapted weights, and "
           f"{largest} second-order steps amplify that."]
    error = inner["imaml", smallest]["grad_rel_error"]
    if error is None or math.isnan(error):
        out.append(f"iMAML's error at K = {smallest} is NaN: conjugate gradients break down in "
                   f"float32 where the proximal problem is far from solved.")
    return " ".join(out)


# --- Deep equilibrium models and meta-learning -------------------------------------------


def deq_table() -> str:
    """The DEQ digits classifier beside the NeuralODE and the MLP, and its backward passes."""
    r = _load(RESULTS / "deq" / "results.json")
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
    r = _load(RESULTS / "meta" / "results.json")
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
            f"{row['grad_temp_bytes'] / MIB:.2f} | {row['train_seconds_total']:.1f} |"
        )
    out.append(f"\n{cfg['steps']} meta-steps; {cfg['eval_tasks']} held-out tasks of "
               f"{cfg['eval_points']} query points; {r['environment']['device']}.")
    return "\n".join(out)


META_NAMES = {"maml": "MAML", "fomaml": "first-order MAML", "imaml": "iMAML",
              "pretrained": "the pretrained baseline"}


def meta_notes() -> str:
    """The ranking of the methods per K, and what fine-tuning did to the pretrained model."""
    r = _load(RESULTS / "meta" / "results.json")
    out = []
    for shots in sorted({row["shots"] for row in r["rows"]}):
        rows = sorted((row for row in r["rows"] if row["shots"] == shots),
                      key=lambda row: row["test_mse"])
        order = ", ".join(META_NAMES.get(row["method"], row["method"]) for row in rows)
        out.append(f"- K = {shots}: from the lowest test MSE, {order}.")
        pre = next((row for row in rows if row["method"] == "pretrained"), None)
        if pre is not None:
            change = "worse" if pre["test_mse"] > pre["test_mse_before_adaptation"] else "better"
            out[-1] += (f" Fine-tuning the pretrained model on the K points made its test MSE "
                        f"{change} ({pre['test_mse_before_adaptation']:.3f} before, "
                        f"{pre['test_mse']:.3f} after).")
    slowest = max(r["rows"], key=lambda row: row["grad_median_seconds"])
    out.append(f"- The slowest meta-gradient is {META_NAMES.get(slowest['method'], slowest['method'])}'s "
               f"at K = {slowest['shots']}.")
    return "\n".join(out)


# --- Irregular time series ---------------------------------------------------------------


def _minutes(r: dict) -> str:
    return f"{r.get('train_seconds_total', r['train_seconds_this_run']) / 60:.1f}"


def _baseline(r: dict) -> tuple[str, str]:
    """`(key, readable name)` of the run's no-learning baseline."""
    key = next(k for k in r if k.startswith("baseline_") and k.endswith("_mse"))
    return key, key[len("baseline_"):-len("_mse")].replace("_", " ")


def _ratio(r: dict) -> str:
    return f"{r['ratio_to_paper']:.1f}x" if "ratio_to_paper" in r else "–"


def _series_runs(dataset: str) -> list[dict]:
    return [r for r in _runs("timeseries") if r["config"]["dataset"] == dataset]


def timeseries_default() -> str:
    """The default time-series command's run, by name, with its measured time when recorded."""
    name = _default_run("timeseries_runs.sh")
    r = _by_name(_runs("timeseries"))[name]
    key, base = _baseline(r)
    return (f"Its committed run is `{name}` in the periodic table below: test MSE "
            f"{r['test_mse']:.4f}, against {r[key]:.4f} for {base} through the same "
            f"points.{_wall_time(r)}")


def _series_row(r: dict, *cells: str) -> str:
    """A table row of one time-series run: its name, model, task, share observed and steps,
    then `cells`, then its training minutes."""
    c = r["config"]
    return "| " + " | ".join([r["name"], c["model"], c["task"], f"{c['observed']:.0%}",
                              str(c["steps"]), *cells, _minutes(r)]) + " |"


def timeseries_table() -> str:
    out = []
    hopper = _series_runs("hopper")
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
            key, base_name = _baseline(r)
            base = r.get(key + "_paper_scale", float("nan"))
            scaled = r.get("test_mse_paper_scale", float("nan"))
            paper = f"{r['paper_test_mse'] * 100:.3f}" if "paper_test_mse" in r else "–"
            out.append(_series_row(r, f"{r['test_mse'] * 100:.3f}", f"{scaled * 100:.3f}", paper,
                                   _ratio(r), f"{base * 100:.3f} ({base_name})"))
        out.append("")
    vowels = _series_runs("japanese_vowels")
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
    periodic = _series_runs("periodic")
    if periodic:
        out += [
            "**periodic** (test MSE; 100 test series of 100 points)",
            "",
            "| run | model | task | observed | steps | test MSE | baseline (no learning) | train min |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in periodic:
            key, base_name = _baseline(r)
            out.append(_series_row(r, f"{r['test_mse']:.4f}", f"{r[key]:.4f} ({base_name})"))
    return "\n".join(out).rstrip("\n")


PAPER_EPOCHS = 300  # Rubanova et al. (2019) trained every hopper model for 300 epochs


def timeseries_notes() -> str:
    """The bullets under the time-series tables, every number read from the runs."""
    hopper, vowels = _series_runs("hopper"), _series_runs("japanese_vowels")
    periodic = _series_runs("periodic")
    notes = []
    if hopper:
        notes += [_note_hopper_budget(hopper), _note_hopper_paper(hopper),
                  _note_hopper_baseline(hopper)]
    if vowels:
        notes.append(_note_vowels(vowels))
    if periodic:
        notes.append(_note_periodic(periodic))
    return "What this shows, honestly:\n\n" + "\n".join(n for n in notes if n)


def _note_hopper_budget(hopper: list[dict]) -> str:
    def epochs(r):
        return r["config"]["steps"] * r["config"]["batch_size"] / r["train_series"]

    by_steps = {r["config"]["steps"]: r for r in hopper}
    budgets = ", ".join(f"{s} steps (about {epochs(r):.0f} epochs)"
                        for s, r in sorted(by_steps.items()))
    factors = [r["test_mse_paper_scale"] / r["test_mse"] for r in hopper
               if "test_mse_paper_scale" in r]
    batch = hopper[0]["config"]["batch_size"]
    return (f"- **hopper budget.** The paper trained {PAPER_EPOCHS} epochs on a GPU; these "
            f"runs had no GPU and trained batches of {batch} series for {budgets}, as each "
            f"run's name says. The paper's table uses its code's normalisation "
            f"`(x - min) / max` (`utils.normalize_data`), node_kit stores "
            f"`(x - min) / (max - min)` in [0, 1]; the \"paper scale\" column maps our errors "
            f"to theirs ({min(factors):.1f} to {max(factors):.1f} times larger), and the ratio "
            f"uses it.")


def _group(hopper: list[dict], model: str, task: str) -> dict[int, dict[float, dict]]:
    """`{steps: {observed: run}}` of one model and task."""
    out: dict[int, dict[float, dict]] = {}
    for r in hopper:
        c = r["config"]
        if (c["model"], c["task"]) == (model, task):
            out.setdefault(c["steps"], {})[c["observed"]] = r
    return out


def _ratios(runs: dict[float, dict]) -> str:
    shares = sorted(runs)
    return (" / ".join(_ratio(runs[p]) for p in shares) + " at "
            + " / ".join(f"{p:.0%}" for p in shares) + " observed")


def _note_hopper_paper(hopper: list[dict]) -> str:
    parts = []
    for steps, runs in sorted(_group(hopper, "latent_ode", "interpolation").items()):
        parts.append(f"after {steps} steps {_ratios(runs)}")
    text = ("- **hopper against the paper** (test MSE on the paper's scale over the paper's; "
            "aim: within 1.5x at 10% and 50%). Latent ODE interpolation: " + "; ".join(parts) + ".")
    for model, task, label in (("latent_ode", "extrapolation", "Latent ODE extrapolation"),
                               ("ode_rnn", "interpolation", "ODE-RNN interpolation")):
        for steps, runs in sorted(_group(hopper, model, task).items()):
            text += f" {label} after {steps} steps: {_ratios(runs)}."
    gru = _group(hopper, "gru_dt", "interpolation")
    latent = _group(hopper, "latent_ode", "interpolation")
    for steps, runs in sorted(gru.items()):
        rivals = latent.get(steps, {})
        shares = [p for p in runs if p in rivals]
        if shares:
            beats = all(runs[p]["test_mse"] < rivals[p]["test_mse"] for p in shares)
            text += (f" GRU-Δt, the non-ODE baseline, {'beats' if beats else 'does not beat'} the "
                     f"{steps}-step latent ODE at interpolation, and has no paper figure.")
    return text


def _note_hopper_baseline(hopper: list[dict]) -> str:
    interp = [r for r in hopper if r["config"]["task"] == "interpolation"]
    if not interp:
        return ""
    low = min(r["config"]["observed"] for r in interp)
    at_low = [r for r in interp if r["config"]["observed"] == low]
    key, _ = _baseline(at_low[0])
    base = at_low[0][key + "_paper_scale"]
    beaten = all(base < r["test_mse_paper_scale"] for r in at_low)
    papers = {r["paper_test_mse"] for r in at_low if "paper_test_mse" in r
              and r["config"]["model"] == "latent_ode"}
    text = ("- **A baseline the paper does not show.** Our hopper is recorded every MuJoCo "
            "physics step, as in the paper's code, so a window of consecutive steps is smooth: "
            f"linear interpolation through {low:.0%} of the points (paper scale "
            f"{base * 100:.3f}e-2) ")
    text += "beats every learned model here" if beaten else "does not beat every learned model"
    if papers:
        paper = papers.pop()
        text += (f" and {'also' if base < paper else 'not'} the paper's latent ODE "
                 f"({paper * 100:.3f}e-2)")
    extrap = [r for r in hopper if r["config"]["task"] == "extrapolation"]
    if extrap:
        key, _ = _baseline(extrap[0])
        wins = all(r["test_mse"] < r[key] for r in extrap)
        text += (". Extrapolation is where the learned dynamics pay: the latent ODE "
                 + ("beats" if wins else "does not always beat")
                 + " carrying the last value forward")
    return text + "."


def _note_vowels(vowels: list[dict]) -> str:
    half = [r for r in vowels if round(1 - r["config"]["observed"], 2) == 0.5]
    if not half:
        return ""
    aim = 0.95
    names = {"gru_dt": "GRU-Δt", "ode_rnn": "ODE-RNN", "latent_ode": "the latent ODE"}
    parts = [f"{names.get(r['config']['model'], r['config']['model'])} "
             f"{r['test_accuracy']:.3f} ({'reaches' if r['test_accuracy'] >= aim else 'short of'} it)"
             for r in sorted(half, key=lambda r: -r["test_accuracy"])]
    cfg = half[0]["config"]
    return (f"- **japanese_vowels** at 50% dropped (aim: {aim}): " + ", ".join(parts)
            + f"; {cfg['steps']} steps of {cfg['batch_size']} series each.")


def _note_periodic(periodic: list[dict]) -> str:
    text = "- **periodic.**"
    for r in sorted(periodic, key=lambda r: r["config"]["task"] != "interpolation"):
        key, base = _baseline(r)
        task = r["config"]["task"]
        if task == "interpolation":
            if r[key] < r["test_mse"]:
                text += (f" The latent ODE's fits are smooth sinusoids (see the picture), but "
                         f"{base} is {_times(r['test_mse'], r[key])} better in MSE "
                         f"({r[key]:.4f} against {r['test_mse']:.4f}): the toy is densely "
                         f"sampled.")
            else:
                text += (f" Interpolation: {r['test_mse']:.4f} against {r[key]:.4f} for {base}.")
        else:
            text += (f" {task.capitalize()} ({r['test_mse']:.4f} against {r[key]:.4f} for the "
                     f"{base}) is the case for the latent ODE.")
    return text


# --- Devices, and the bad-input matrix ---------------------------------------------------


def _experiments_module(name: str):
    sys.path.insert(0, str(HERE))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(HERE))


def scaling_table() -> str:
    """`python experiments/scaling.py --show`: steps/s over 1, 2 and 4 devices."""
    return _experiments_module("scaling").table(_load(RESULTS / "scaling.json")["rows"])


def loop_table() -> str:
    """`python experiments/loop_benchmark.py --compare`, and the range of single fits."""
    with contextlib.redirect_stdout(io.StringIO()):
        table = _experiments_module("loop_benchmark").compare(RESULTS / "loop")
    fits = [x for label in ("before", "after")
            for x in _load(RESULTS / "loop" / f"{label}.json")["steps_per_s"]]
    return f"{table}\n\nSingle timed fits ranged from {min(fits):.1f} to {max(fits):.1f} steps/s."


def errors_table() -> str:
    """`python experiments/bad_inputs.py`'s table, from its committed summary."""
    summary = _load(RESULTS / "bad_inputs" / "summary.json")
    return _experiments_module("bad_inputs").table(summary)


def compile_flags_table() -> str:
    """`python experiments/compile_flags.py --show`: XLA's defaults vs the fast-compile flags."""
    return _experiments_module("compile_flags").table(_load(RESULTS / "compile_flags.json"))


def test_time_table() -> str:
    """`python experiments/test_time.py --show`: the test run with a cold and a warm cache."""
    return _experiments_module("test_time").table(_load(RESULTS / "test_time.json"))


# --- The marked blocks of README.md and docs/ --------------------------------------------

def reproduce_table() -> str:
    """`python experiments/reproduce.py`'s table: each committed run's last re-run from
    scratch (experiments/results/reproduce.json), or why it was not re-run."""
    from node_kit.experiments import _reproduce as reproduce

    record = _load(RESULTS / "reproduce.json")
    runs = reproduce.committed_runs()
    counts = {status: sum(1 for run in runs if record.get(run.name, {}).get("status") == status)
              for status in ("reproduced", "replaced", "differs", "failed")}
    counts["not re-run"] = sum(1 for run in runs if run.name not in record)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    return f"{len(runs)} committed runs: {summary}.\n\n" + reproduce.table(runs, record)


TABLES: dict[str, Callable[[], str]] = {
    "cnf-default": cnf_default,
    "cnf": cnf_table,
    "cnf-notes": cnf_notes,
    "overhead": overhead_table,
    "memory": memory_table,
    "implicit": implicit_table,
    "implicit-notes": implicit_notes,
    "deq": deq_table,
    "meta": meta_table,
    "meta-notes": meta_notes,
    "timeseries-default": timeseries_default,
    "timeseries": timeseries_table,
    "timeseries-notes": timeseries_notes,
    "scaling": scaling_table,
    "loop": loop_table,
    "errors": errors_table,
    "reproduce": reproduce_table,
    "test-time": test_time_table,
    "compile-flags": compile_flags_table,
}

BLOCK = re.compile(r"(<!-- tables\.py (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /tables\.py -->)", re.S)


def pages() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def printed(name: str) -> str:
    """What `python experiments/tables.py NAME` prints: prose wrapped at 90 columns, tables whole."""
    lines = []
    for line in TABLES[name]().splitlines():
        if line.startswith("|") or len(line) <= 90:
            lines.append(line)
        else:
            # Never break inside `code` (a continuation line could then read as a list item).
            whole = re.sub(r"`[^`]*`|\w+ = \w+", lambda m: m[0].replace(" ", "\0"), line)
            indent = "  " if line.startswith("- ") else ""
            lines += [part.replace("\0", " ") for part in textwrap.wrap(
                whole, 90, subsequent_indent=indent, break_long_words=False,
                break_on_hyphens=False)]
    return "\n".join(lines)


def blocks(text: str) -> list[tuple[str, str]]:
    """`(name, body)` of every marked block, the body without its framing blank lines."""
    return [(m["name"], m["body"].strip("\n")) for m in BLOCK.finditer(text)]


def render(text: str, cache: dict[str, str]) -> str:
    """`text` with every marked block holding what its generator prints (`cache`: by name)."""
    def fill(m: re.Match) -> str:
        name = m["name"]
        if name not in TABLES:
            raise KeyError(f"unknown block `{name}`; known: {', '.join(TABLES)}")
        if name not in cache:
            cache[name] = printed(name)
        return f"{m[1]}\n{cache[name]}\n\n{m[4]}"

    return BLOCK.sub(fill, text)


def stale() -> list[str]:
    """`file: block` for every marked block that differs from what tables.py prints now."""
    cache: dict[str, str] = {}
    out = []
    for page in pages():
        text = page.read_text()
        for (name, body), (_, new) in zip(blocks(text), blocks(render(text, cache))):
            if body != new:
                out.append(f"{page.relative_to(ROOT)}: {name}")
    return out


def write() -> list[Path]:
    """Rewrite the stale blocks in place; return the files changed."""
    cache: dict[str, str] = {}
    changed = []
    for page in pages():
        text = page.read_text()
        new = render(text, cache)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        for page in write():
            print(f"rewrote {page.relative_to(ROOT)}")
        return 0
    if argv == ["--check"]:
        differ = stale()
        for where in differ:
            print(f"{where}: differs from `python experiments/tables.py "
                  f"{where.rsplit(': ', 1)[1]}`; run `python experiments/tables.py --write`",
                  file=sys.stderr)
        return 1 if differ else 0
    if len(argv) == 1 and argv[0] in TABLES:
        print(printed(argv[0]))
        return 0
    print(f"usage: python experiments/tables.py NAME | --write | --check\nNAME: {', '.join(TABLES)}",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

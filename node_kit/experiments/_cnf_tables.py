"""The tables of the CNF command's committed runs (`experiments/results/cnf/<run>/`):
`cnf-default`, `cnf` and `cnf-notes` (see `_tables.py`).

The notes pair runs by their configs: the shorter and the longer unregularised run of a
dataset, and a regularised (RNODE) run with the unregularised one of its dataset and steps.
"""

import math
from pathlib import Path

from ._cnf_models import resolve_model
from ._table_parts import by_name, default_run, runs, wall_time


RUN_SCRIPT = "cnf_runs.sh"
"""The script beside the results folder that makes the committed runs."""


def cnf_default(results: Path) -> str:
    """The default CNF command's run, by name, with its measured time when recorded."""
    name = default_run(results, RUN_SCRIPT)
    r = by_name(runs(results, "cnf"))[name]
    return (
        f"Its committed run is `{name}` in the CNF results table (docs/cnf.md): test NLL "
        f"{r['test_nll']:.4f} ± {r['test_nll_se']:.4f} nats against the true entropy "
        f"{r['true_entropy']:.4f} ± {r['true_entropy_se']:.4f}.{wall_time(r)}"
    )


def _cell(r: dict, key: str, fmt: str) -> str:
    return format(r[key], fmt) if key in r else "–"


def cnf_table(results: Path) -> str:
    rows = [
        "| run | dataset | steps | test NLL (nats) | true entropy | KL gap | bits/dim | "
        "Gaussian baseline bits/dim | solver steps per training solve |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs(results, "cnf"):
        cfg = r["config"]
        if _image_model(r):
            continue  # in the images table
        entropy = (
            f"{r['true_entropy']:.4f} ± {r['true_entropy_se']:.4f}" if "true_entropy" in r else "–"
        )
        reg = " (RNODE)" if _regularised(r) else ""
        rows.append(
            f"| {r['name']}{reg} | {cfg['dataset']} | {cfg['steps']} | "
            f"{r['test_nll']:.4f} ± {r['test_nll_se']:.4f} | {entropy} | "
            f"{_cell(r, 'kl_gap', '+.4f')} | {_cell(r, 'bits_per_dim', '.3f')} | "
            f"{_cell(r, 'gaussian_baseline_bits_per_dim', '.3f')} | "
            f"{r['train_num_steps_last_100']:.1f} |"
        )
    return "\n".join(rows)


def _image_model(r: dict) -> bool:
    """Whether a run trained the multiscale model (older runs' configs have no `model`)."""
    cfg = r["config"]
    return resolve_model(cfg.get("model", "auto"), cfg["dataset"]) == "multiscale"


def images_table(results: Path) -> str:
    """The image runs: the multiscale CNF beside the MLP-field runs of the same data, with
    both Gaussian baselines (in logit space, the same dequantization) and the cost."""
    rows = [
        "| run | dataset | pixels | model | steps | training (min) | test bits/dim | "
        "test estimator | independent Gaussian | full-covariance Gaussian | solver steps "
        "per training pass (all blocks) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs(results, "cnf"):
        if "bits_per_dim" not in r:
            continue
        cfg = r["config"]
        _, height, width = r.get("image_shape", (1, 8, 8))  # older digits runs: 8x8
        if _image_model(r):
            model = (
                f"multiscale, width {cfg['width']}, depth {cfg['depth']}, "
                f"{cfg['blocks']} block(s) per stage"
            )
        else:
            model = f"MLP field, width {cfg['width']}, depth {cfg['depth']}"
        minutes = r.get("train_seconds_this_run")
        se = r.get("bits_per_dim_se", r["test_nll_se"] / (r["data_dim"] * math.log(2)))
        rows.append(
            f"| {r['name']} | {cfg['dataset']} | {height}x{width} | {model} | {cfg['steps']} | "
            f"{'–' if minutes is None else f'{minutes / 60:.0f}'} | "
            f"{r['bits_per_dim']:.3f} ± {se:.3f} | "
            f"{r.get('test_nll_estimator', 'exact trace')} | "
            f"{_cell(r, 'independent_baseline_bits_per_dim', '.3f')} | "
            f"{r['gaussian_baseline_bits_per_dim']:.3f} | {r['train_num_steps_last_100']:.1f} |"
        )
    notes = [_note_image(r) for r in runs(results, "cnf") if _image_model(r)]
    return "\n".join(rows) + ("\n\n" + "\n".join(notes) if notes else "")


def _note_image(r: dict) -> str:
    """One image run against its two baselines, in words."""
    cfg = r["config"]
    _, height, width = r["image_shape"]
    minutes = r.get("train_seconds_this_run", 0.0) / 60
    baselines = [
        ("full-covariance", r["gaussian_baseline_bits_per_dim"]),
        ("independent", r["independent_baseline_bits_per_dim"]),
    ]
    versus = ", ".join(
        f"{'better' if r['bits_per_dim'] < value else 'worse'} than the {name} Gaussian "
        f"({value:.3f})"
        for name, value in baselines
    )
    return (
        f"- `{r['name']}`: {r['bits_per_dim']:.3f} ± {r['bits_per_dim_se']:.3f} bits/dim on "
        f"{cfg['dataset']} at {height}x{width} after {cfg['steps']} steps of batch "
        f"{cfg['batch_size']} ({minutes:.0f} min of training on one CPU core), {versus}."
    )


def _regularised(r: dict) -> bool:
    return bool(r["config"]["kinetic_energy"] or r["config"]["jacobian_norm"])


def _plain(runs: list[dict], dataset: str) -> list[dict]:
    """The unregularised runs of `dataset`, fewest steps first."""
    return sorted(
        (r for r in runs if r["config"]["dataset"] == dataset and not _regularised(r)),
        key=lambda r: r["config"]["steps"],
    )


def cnf_notes(results: Path) -> str:
    """The bullets under the CNF table, every number read from the runs it pairs."""
    found = runs(results, "cnf")
    notes = []
    for dataset, (least, note) in NOTES.items():
        plain = _plain(found, dataset)
        if len(plain) >= least:
            notes.append(note(plain[0], plain[-1]))
    notes += [_note_rnode(r, found) for r in found if _regularised(r)]
    return "What this shows, honestly:\n\n" + "\n".join(n for n in notes if n)


def _note_8gaussians(r: dict, _: dict) -> str:
    within = (
        "within the test NLL's standard error"
        if abs(r["kl_gap"]) <= r["test_nll_se"]
        else f"{abs(r['kl_gap']) / r['test_nll_se']:.1f} standard errors from zero"
    )
    return (
        f"- `{r['name']}`: the KL gap is {r['kl_gap']:+.4f} nats, {within} "
        f"({r['test_nll_se']:.4f}; aim: a gap below 0.03 nats)."
    )


def _steps(r: dict) -> str:
    """How long a run trained: `"<steps> steps"`."""
    return f"{r['config']['steps']} steps"


def _note_checkerboard(short: dict, long: dict) -> str:
    return (
        f"- `{short['name']}`: KL gap {short['kl_gap']:+.4f} nats after {_steps(short)}; after "
        f"{_steps(long)} (`{long['name']}`, trained from scratch), {long['kl_gap']:+.4f} "
        "(aim: below 0.10)."
    )


def _note_rings(rings: dict, longer: dict) -> str:
    name = rings["name"]
    unfitted = (
        f"- `{name}` and `circles` are not fitted after {_steps(rings)} (`{name}` stays "
        "near a single Gaussian); their pictures show it."
    )
    return unfitted + (
        f" `{longer['name']}`, {_steps(longer)} at lr "
        f"{longer['config']['lr']:g}, moves from {rings['test_nll']:.4f} to "
        f"{longer['test_nll']:.4f} nats, and its density shows the outer ring beginning to form, "
        "but it is still far from fitted: these radially symmetric toys need much longer "
        "training than we spent."
    )


def _versus(r: dict) -> str:
    better = r["bits_per_dim"] < r["gaussian_baseline_bits_per_dim"]
    return "better than" if better else "worse than"


def _note_digits(small: dict, wide: dict) -> str:
    return (
        f"- `{small['name']}`: {small['bits_per_dim']:.3f} bits/dim after {_steps(small)} "
        f"(width {small['config']['width']}), {_versus(small)} the full-covariance Gaussian "
        f"({small['gaussian_baseline_bits_per_dim']:.3f}); `{wide['name']}` ({_steps(wide)}, "
        f"width {wide['config']['width']}) reaches {wide['bits_per_dim']:.3f} bits/dim, "
        f"{_versus(wide)} the Gaussian."
    )


def _note_rnode(reg: dict, runs: list[dict]) -> str:
    """A regularised run against the unregularised one of its dataset and steps."""
    cfg = reg["config"]
    plain = next(
        (r for r in _plain(runs, cfg["dataset"]) if r["config"]["steps"] == cfg["steps"]), None
    )
    if plain is None:
        return ""
    return (
        f"- RNODE on `{cfg['dataset']}` (kinetic energy {cfg['kinetic_energy']:g}, Jacobian "
        f"norm {cfg['jacobian_norm']:g}): {reg['eval_num_steps']:.1f} solver steps per "
        f"evaluation solve against {plain['eval_num_steps']:.1f} unregularised, "
        f"{reg['train_num_steps_last_100']:.1f} against "
        f"{plain['train_num_steps_last_100']:.1f} per training solve; test NLL "
        f"{reg['test_nll']:.4f} against {plain['test_nll']:.4f}."
    )


NOTES = {
    "8gaussians": (1, _note_8gaussians),
    "checkerboard": (2, _note_checkerboard),
    "rings": (2, _note_rings),
    "digits": (2, _note_digits),
}
"""Per dataset, a note of its unregularised runs with the fewest and the most steps, and
how many runs it needs (the 8gaussians note reads the first only)."""

TABLES = {
    "cnf-default": cnf_default,
    "cnf": cnf_table,
    "cnf-notes": cnf_notes,
    "cnf-images": images_table,
}
"""The CNF command's `Command.tables`."""

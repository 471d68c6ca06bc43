"""The tables of the timeseries command's committed runs
(`experiments/results/timeseries/<run>/`): `timeseries-default`, `timeseries` and
`timeseries-notes` (see `_tables.py`). Runs are grouped by their config's dataset."""

from pathlib import Path

from .._history import read_history
from ._table_parts import by_name, default_run, runs, times, wall_time


RUN_SCRIPT = "timeseries_runs.sh"
"""The script beside the results folder that makes the committed runs."""
PAPER_EPOCHS = 300  # Rubanova et al. (2019) trained every hopper model for 300 epochs


def _minutes(r: dict) -> str:
    return f"{r.get('train_seconds_total', r['train_seconds_this_run']) / 60:.1f}"


def _baseline(r: dict) -> tuple[str, str]:
    """`(key, readable name)` of the run's no-learning baseline."""
    key = next(k for k in r if k.startswith("baseline_") and k.endswith("_mse"))
    return key, key[len("baseline_") : -len("_mse")].replace("_", " ")


def _ratio(r: dict) -> str:
    return f"{r['ratio_to_paper']:.1f}x" if "ratio_to_paper" in r else "–"


def timeseries_default(results: Path) -> str:
    """The default time-series command's run, by name, with its measured time when recorded."""
    name = default_run(results, RUN_SCRIPT)
    r = by_name(runs(results, "timeseries"))[name]
    key, base = _baseline(r)
    return (
        f"Its committed run is `{name}` in the periodic table below: test MSE "
        f"{r['test_mse']:.4f}, against {r[key]:.4f} for {base} through the same "
        f"points.{wall_time(r)}"
    )


def _series_row(r: dict, *cells: str) -> str:
    """A table row of one time-series run: its name, model, task, share observed and steps,
    then `cells`, then its training minutes."""
    c = r["config"]
    return (
        "| "
        + " | ".join(
            [
                r["name"],
                c["model"],
                c["task"],
                f"{c['observed']:.0%}",
                str(c["steps"]),
                *cells,
                _minutes(r),
            ]
        )
        + " |"
    )


def _by_dataset(results: Path) -> dict[str, list[dict]]:
    """The committed runs by dataset, each with its `folder`."""
    out: dict[str, list[dict]] = {}
    for r in runs(results, "timeseries"):
        r["folder"] = results / "timeseries" / r["name"]
        out.setdefault(r["config"]["dataset"], []).append(r)
    return out


def timeseries_table(results: Path) -> str:
    """A table per dataset: hopper, japanese_vowels, periodic (those with runs)."""
    found = _by_dataset(results)
    sections = [
        section(found[dataset])
        for dataset, section in (
            ("hopper", _hopper_table),
            ("japanese_vowels", _vowels_table),
            ("periodic", _periodic_table),
        )
        if found.get(dataset)
    ]
    return "\n\n".join("\n".join(lines) for lines in sections)


def _hopper_table(hopper: list[dict]) -> list[str]:
    out = [
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
        out.append(
            _series_row(
                r,
                f"{r['test_mse'] * 100:.3f}",
                f"{scaled * 100:.3f}",
                paper,
                _ratio(r),
                f"{base * 100:.3f} ({base_name})",
            )
        )
    return out


_VOWEL_MODELS = {
    "gru_dt": "GRU-Δt",
    "ode_rnn": "ODE-RNN",
    "latent_ode": "the latent ODE",
    "ncde": "the neural CDE",
}


def _dropped(r: dict) -> float:
    return round(1 - r["config"]["observed"], 2)


def _protocol_runs(vowels: list[dict]) -> list[dict]:
    """The runs of the shared protocol: every seed, not the neural CDE's settings sweep."""
    return [r for r in vowels if "sweep" not in r["name"]]


def _accuracies(vowels: list[dict], model: str, dropped: float) -> list[float]:
    """Test accuracies of `model` at `dropped`, seed 0 first."""
    match = [r for r in vowels if r["config"]["model"] == model and _dropped(r) == dropped]
    return [r["test_accuracy"] for r in sorted(match, key=lambda r: r["config"]["seed"])]


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
    return mean, var**0.5


def _accuracy_cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    mean, std = _mean_std(values)
    return f"{mean:.3f} ± {std:.3f} ({', '.join(f'{v:.3f}' for v in values)})"


def _vowels_table(vowels: list[dict]) -> list[str]:
    protocol = _protocol_runs(vowels)
    drops = sorted({_dropped(r) for r in protocol})
    out = [
        "**japanese_vowels** (test accuracy, 370 test series, points dropped at random once "
        "per series; over several seeds: mean ± standard deviation (seed 0, 1, ...))",
        "",
        "| model | " + " | ".join(f"{d:.0%} dropped" for d in drops) + " |",
        "|---|" + "---|" * len(drops),
    ]
    for model in _VOWEL_MODELS:
        cells = [_accuracy_cell(_accuracies(protocol, model, d)) for d in drops]
        if any(cell != "–" for cell in cells):
            out.append(f"| {model} | " + " | ".join(cells) + " |")
    sweep = sorted((r for r in vowels if "sweep" in r["name"]), key=lambda r: r["name"])
    if sweep:
        out += [
            "",
            "**japanese_vowels, neural CDE settings** (50% dropped, seed 0; accuracy on the 30 "
            "validation series every `--eval-every` steps, and on the test series at the end)",
            "",
            "| run | hidden | width | interpolation | best validation (step) | last validation "
            "| test | train min |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in sweep:
            c, (best, step, last) = r["config"], _validation(r)
            out.append(
                f"| {r['name']} | {c['hidden']} | {c['width']} | {c['interpolation']} | "
                f"{best:.3f} ({step}) | {last:.3f} | {r['test_accuracy']:.3f} | {_minutes(r)} |"
            )
    return out


def _validation(r: dict) -> tuple[float, int, float]:
    """`(best, its step, last)` validation accuracy of a run with `--eval-every`, from its
    `history.csv` (the earliest step of the best)."""
    rows = read_history(r["folder"] / "history.csv")
    points = [(p["val_accuracy"], int(p["step"])) for p in rows if "val_accuracy" in p]
    if not points:
        return float("nan"), 0, float("nan")
    best, step = max(points, key=lambda p: (p[0], -p[1]))
    return best, step, points[-1][0]


def _periodic_table(periodic: list[dict]) -> list[str]:
    out = [
        "**periodic** (test MSE; 100 test series of 100 points)",
        "",
        "| run | model | task | observed | steps | test MSE | baseline (no learning) | train min |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in periodic:
        key, base_name = _baseline(r)
        out.append(_series_row(r, f"{r['test_mse']:.4f}", f"{r[key]:.4f} ({base_name})"))
    return out


def timeseries_notes(results: Path) -> str:
    """The bullets under the time-series tables, every number read from the runs."""
    found = _by_dataset(results)
    hopper, vowels, periodic = (
        found.get(name, []) for name in ("hopper", "japanese_vowels", "periodic")
    )
    notes = []
    if hopper:
        notes += [
            _note_hopper_budget(hopper),
            _note_hopper_paper(hopper),
            _note_hopper_baseline(hopper),
        ]
    if vowels:
        notes.append(_note_vowels(vowels))
    if periodic:
        notes.append(_note_periodic(periodic))
    return "What this shows, honestly:\n\n" + "\n".join(n for n in notes if n)


def _note_hopper_budget(hopper: list[dict]) -> str:
    def epochs(r):
        return r["config"]["steps"] * r["config"]["batch_size"] / r["train_series"]

    by_steps = {r["config"]["steps"]: r for r in hopper}
    budgets = ", ".join(
        f"{s} steps (about {epochs(r):.0f} epochs)" for s, r in sorted(by_steps.items())
    )
    factors = [
        r["test_mse_paper_scale"] / r["test_mse"] for r in hopper if "test_mse_paper_scale" in r
    ]
    batch = hopper[0]["config"]["batch_size"]
    return (
        f"- **hopper budget.** The paper trained {PAPER_EPOCHS} epochs on a GPU; these "
        f"runs had no GPU and trained batches of {batch} series for {budgets}, as each "
        f"run's name says. The paper's table uses its code's normalisation "
        f"`(x - min) / max` (`utils.normalize_data`), node_kit stores "
        f'`(x - min) / (max - min)` in [0, 1]; the "paper scale" column maps our errors '
        f"to theirs ({min(factors):.1f} to {max(factors):.1f} times larger), and the ratio "
        f"uses it."
    )


def _group(hopper: list[dict], model: str, task: str) -> dict[int, dict[float, dict]]:
    """`{steps: {observed: run}}` of one model and task."""
    out: dict[int, dict[float, dict]] = {}
    for r in hopper:
        c = r["config"]
        if (c["model"], c["task"]) == (model, task):
            out.setdefault(c["steps"], {})[c["observed"]] = r
    return out


def _ratios(by_share: dict[float, dict]) -> str:
    shares = sorted(by_share)
    return (
        " / ".join(_ratio(by_share[p]) for p in shares)
        + " at "
        + " / ".join(f"{p:.0%}" for p in shares)
        + " observed"
    )


def _note_hopper_paper(hopper: list[dict]) -> str:
    parts = []
    for steps, by_share in sorted(_group(hopper, "latent_ode", "interpolation").items()):
        parts.append(f"after {steps} steps {_ratios(by_share)}")
    text = (
        "- **hopper against the paper** (test MSE on the paper's scale over the paper's; "
        "aim: within 1.5x at 10% and 50%). Latent ODE interpolation: " + "; ".join(parts) + "."
    )
    for model, task, label in (
        ("latent_ode", "extrapolation", "Latent ODE extrapolation"),
        ("ode_rnn", "interpolation", "ODE-RNN interpolation"),
    ):
        for steps, by_share in sorted(_group(hopper, model, task).items()):
            text += f" {label} after {steps} steps: {_ratios(by_share)}."
    gru = _group(hopper, "gru_dt", "interpolation")
    latent = _group(hopper, "latent_ode", "interpolation")
    for steps, by_share in sorted(gru.items()):
        rivals = latent.get(steps, {})
        shares = [p for p in by_share if p in rivals]
        if shares:
            beats = all(by_share[p]["test_mse"] < rivals[p]["test_mse"] for p in shares)
            text += (
                f" GRU-Δt, the non-ODE baseline, {'beats' if beats else 'does not beat'} the "
                f"{steps}-step latent ODE at interpolation, and has no paper figure."
            )
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
    papers = {
        r["paper_test_mse"]
        for r in at_low
        if "paper_test_mse" in r and r["config"]["model"] == "latent_ode"
    }
    text = (
        "- **A baseline the paper does not show.** Our hopper is recorded every MuJoCo "
        "physics step, as in the paper's code, so a window of consecutive steps is smooth: "
        f"linear interpolation through {low:.0%} of the points (paper scale "
        f"{base * 100:.3f}e-2) "
    )
    text += "beats every learned model here" if beaten else "does not beat every learned model"
    if papers:
        paper = papers.pop()
        text += (
            f" and {'also' if base < paper else 'not'} the paper's latent ODE "
            f"({paper * 100:.3f}e-2)"
        )
    extrap = [r for r in hopper if r["config"]["task"] == "extrapolation"]
    if extrap:
        key, _ = _baseline(extrap[0])
        wins = all(r["test_mse"] < r[key] for r in extrap)
        text += (
            ". Extrapolation is where the learned dynamics pay: the latent ODE "
            + ("beats" if wins else "does not always beat")
            + " carrying the last value forward"
        )
    return text + "."


def _note_vowels(vowels: list[dict]) -> str:
    protocol = _protocol_runs(vowels)
    if not any(_dropped(r) == 0.5 for r in protocol):
        return ""
    aim = 0.97
    means = {
        model: _mean_std(values)[0]
        for model in _VOWEL_MODELS
        if (values := _accuracies(protocol, model, 0.5))
    }
    parts = [
        f"{_VOWEL_MODELS[model]} {mean:.3f}"
        for model, mean in sorted(means.items(), key=lambda m: -m[1])
    ]
    reached = [_VOWEL_MODELS[m] for m, mean in means.items() if mean >= aim]
    verdict = f"reached by {', '.join(reached)}" if reached else "no model reaches it"
    cfg = protocol[0]["config"]
    return (
        f"- **japanese_vowels** at 50% dropped, mean over seeds (the aim for the neural CDE: "
        f"{aim}): {', '.join(parts)}; {verdict}; {cfg['steps']} steps of "
        f"{cfg['batch_size']} series each, the same flags for every model."
    )


def _note_periodic(periodic: list[dict]) -> str:
    text = "- **periodic.**"
    for r in sorted(periodic, key=lambda r: r["config"]["task"] != "interpolation"):
        key, base = _baseline(r)
        task = r["config"]["task"]
        if task == "interpolation":
            if r[key] < r["test_mse"]:
                text += (
                    f" The latent ODE's fits are smooth sinusoids (see the picture), but "
                    f"{base} is {times(r['test_mse'], r[key])} better in MSE "
                    f"({r[key]:.4f} against {r['test_mse']:.4f}): the toy is densely "
                    f"sampled."
                )
            else:
                text += f" Interpolation: {r['test_mse']:.4f} against {r[key]:.4f} for {base}."
        else:
            text += (
                f" {task.capitalize()} ({r['test_mse']:.4f} against {r[key]:.4f} for the "
                f"{base}) is the case for the latent ODE."
            )
    return text


TABLES = {
    "timeseries-default": timeseries_default,
    "timeseries": timeseries_table,
    "timeseries-notes": timeseries_notes,
}
"""The timeseries command's `Command.tables`."""

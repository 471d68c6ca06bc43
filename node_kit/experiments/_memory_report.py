"""The memory sweep's report: the terminal table, and the CSV, JSON and PNG it writes."""

from ._memory_problems import FAMILIES, LAYOUTS
from ._outputs import plt, write_csv
from ._run import Run


MIB = 2**20


def format_report(results: dict) -> str:
    """The terminal table, exponents and budget check, as text."""
    head = (
        f"{'mode':<14}{'layout':<9}{'N':>6}{'ckpts':>7}{'temp MiB':>11}{'total MiB':>11}"
        f"{'peak MiB':>10}{'compile s':>11}{'time ms':>10}{'grad err':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in results["rows"]:
        lines.append(
            f"{r['mode']:<14}{r['layout']:<9}{r['steps']:>6}{_fmt(r['checkpoints'], 'd'):>7}"
            f"{r['temp_bytes'] / MIB:>11.3f}{r['total_bytes'] / MIB:>11.3f}"
            f"{_fmt(r['peak_bytes'] and r['peak_bytes'] / MIB, '.2f'):>10}"
            f"{r['compile_s']:>11.2f}{r['time_s'] * 1e3:>10.2f}"
            f"{_fmt(r['grad_rel_error'], '.1e'):>10}"
        )
    lines += ["", "growth exponent of temp memory in N (memory ~ N^p):"]
    if not results["exponents"]:
        lines.append("  (needs two or more values of N)")
    for e in results["exponents"]:
        lines.append(
            f"  {e['mode']:<14}{e['layout']:<9}p = {e['exponent']:.3f} over the "
            f"sweep, {e['local_exponent']:.3f} between the two largest N"
        )
    if results["budget_checks"]:
        lines += ["", "checkpoint_adjoint_for_budget (total bytes, at the largest N):"]
        lines += [_format_budget(c) for c in results["budget_checks"]]
    load = "/".join(f"{x:.1f}" for x in results["load_average_1min"])
    lines += [
        "",
        f"wall time {results['wall_s']:.1f} s, CPU time {results['cpu_s']:.1f} s on "
        f"{results['environment']['device']} ({results['environment']['cpu_count']} "
        f"cores, 1-min load average {load} at start/end)",
    ]
    return "\n".join(lines)


def _format_budget(check: dict) -> str:
    if "error" in check:
        return f"  {check['layout']:<9}budget {check['budget_bytes'] / MIB:9.3f} MiB -> ValueError"
    return (
        f"  {check['layout']:<9}budget {check['budget_bytes'] / MIB:9.3f} MiB -> "
        f"{check['checkpoints']:5d} ckpts, predicted {check['predicted_bytes'] / MIB:9.3f}, "
        f"measured {check['measured_bytes'] / MIB:9.3f} MiB "
        f"({check['prediction_error']:+.2%}, "
        f"{'within' if check['within_budget'] else 'OVER'} budget)"
    )


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def write_outputs(run: Run, name: str, results: dict) -> None:
    """Write `<name>.csv` (one row per configuration), `<name>.json` and `<name>.png`."""
    write_csv(run.out / f"{name}.csv", results["rows"], lineterminator="\n")
    run.write(results, name=f"{name}.json")
    run.save_figure(plot(results), f"{name}.png", rect=(0, 0.08, 1, 1))


def plot(results: dict):
    """A 2x2 figure: memory, time and gradient error against N; the budget check.

    For the implicit-layer families, the first three panels only, against K."""
    if results["config"].get("family", "ode") != "ode":
        return _plot_family(results)
    fig, axes = plt().subplots(2, 2, figsize=(12, 9.5))
    rows = results["rows"]
    _plot_against_steps(
        axes[0, 0],
        rows,
        "temp_bytes",
        1 / MIB,
        "XLA temp memory (MiB)",
        "compiled memory (exact, from memory_analysis)",
    )
    _plot_against_steps(
        axes[0, 1],
        rows,
        "time_s",
        1e3,
        "median time per gradient (ms)",
        "wall time after warm-up (compile excluded)",
    )
    _plot_against_steps(
        axes[1, 0],
        rows,
        "grad_rel_error",
        1.0,
        "relative L2 error",
        "gradient error vs float64 store-everything reference",
    )
    _plot_budgets(axes[1, 1], results["budget_checks"])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(len(labels), 6),
        fontsize=9,
        title="mode (layout): batched = the batch as one ODE state, vmap = jax.vmap",
    )
    env, cfg = results["environment"], results["config"]
    versions = _versions(results)
    fig.suptitle(
        f"Neural ODE gradient, {cfg['solver']} fixed steps, dim {cfg['dim']}, batch "
        f"{cfg['batch_size']}, width {cfg['width']}x{cfg['depth']}, float32; "
        f"jax {versions['jax']}, "
        f"diffrax {versions['diffrax']}, {env['device']}"
    )
    return fig


def _versions(results: dict) -> dict:
    """The library versions of a results file (in `environment` before provenance existed)."""
    return results.get("provenance", results["environment"])


def _plot_family(results: dict):
    cfg, env = results["config"], results["environment"]
    versions = _versions(results)
    family = FAMILIES[cfg["family"]]
    fig, axes = plt().subplots(1, 3, figsize=(16, 5))
    rows = results["rows"]
    panels = [
        ("temp_bytes", 1 / MIB, "XLA temp memory (MiB)", "compiled memory"),
        ("time_s", 1e3, "median time per gradient (ms)", "time after warm-up"),
        ("grad_rel_error", 1.0, "relative L2 error", "error vs float64 reference"),
    ]
    for ax, (key, scale, label, title) in zip(axes, panels):
        _plot_against_steps(ax, rows, key, scale, label, title, xlabel=family.axis)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    sizes = (
        f"width {cfg['width']}, depth {cfg['depth']}"
        if cfg["family"] == "image"
        else f"dim {cfg['dim']}"
    )
    fig.suptitle(
        f"{family.title} against {family.axis}: {sizes}, batch "
        f"{cfg['batch_size']}, float32; jax {versions['jax']}, {env['device']}"
    )
    return fig


def _plot_against_steps(
    ax, rows, key, scale, label, title, *, xlabel: str = "solver steps N"
) -> None:
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    styles = {"batched": ("-", "o"), "vmap": ("--", "s")}
    layouts = dict.fromkeys(r["layout"] for r in rows)
    for i, mode in enumerate(modes):
        for layout in layouts:
            line, marker = styles.get(layout, ("-", "o"))
            points = sorted(
                (r["steps"], r[key])
                for r in rows
                if (r["mode"], r["layout"]) == (mode, layout) and r[key]
            )
            if points:
                # Later modes are drawn thinner, so coinciding curves stay visible.
                ax.plot(
                    [p[0] for p in points],
                    [p[1] * scale for p in points],
                    line,
                    marker=marker,
                    color=f"C{i}",
                    label=f"{mode} ({layout})",
                    markersize=max(9 - 2 * i, 3),
                    linewidth=max(3 - 0.7 * i, 1),
                )
    steps = sorted({r["steps"] for r in rows})
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=label, title=title)
    ax.set_xticks(steps, [str(n) for n in steps])
    ax.set_xticks([], minor=True)
    ax.grid(True, which="both", alpha=0.3)


def _plot_budgets(ax, checks) -> None:
    checks = [c for c in checks if "error" not in c]
    for i, layout in enumerate(LAYOUTS):
        mine = [c for c in checks if c["layout"] == layout]
        if mine:
            budgets = [c["budget_bytes"] / MIB for c in mine]
            ax.plot(
                budgets,
                [c["measured_bytes"] / MIB for c in mine],
                "o",
                color=f"C{i}",
                label=f"measured ({layout})",
            )
            ax.plot(
                budgets,
                [c["predicted_bytes"] / MIB for c in mine],
                "x",
                color="k",
                markersize=10,
                label=f"predicted ({layout})",
            )
            for k, (c, b) in enumerate(zip(mine, budgets)):
                text = f"{c['checkpoints']} checkpoints, {c['prediction_error']:+.2%}"
                left = k < len(mine) / 2  # label towards the middle of the panel
                ax.annotate(
                    text,
                    (b, c["measured_bytes"] / MIB),
                    textcoords="offset points",
                    xytext=(10 if left else -10, -4),
                    ha="left" if left else "right",
                    va="top" if left else "bottom",
                    fontsize=8,
                )
    if checks:
        budgets = [c["budget_bytes"] / MIB for c in checks]
        ax.plot(
            [min(budgets), max(budgets)], [min(budgets), max(budgets)], "k:", label="budget (y = x)"
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="budget (MiB)",
        ylabel="compiled total (MiB)",
        title=f"checkpoint_adjoint_for_budget at N = {checks[0]['steps']}"
        if checks
        else "no budget check",
    )
    if checks:
        ticks = [c["budget_bytes"] / MIB for c in checks]
        ax.set_xticks(ticks, [f"{t:.2f}" for t in ticks])
        ax.set_yticks(ticks, [f"{t:.2f}" for t in ticks])
        ax.set_xticks([], minor=True)
        ax.set_yticks([], minor=True)
        ax.margins(0.1)
    ax.grid(True, which="both", alpha=0.3)
    if checks:
        ax.legend(fontsize=8, loc="upper left")

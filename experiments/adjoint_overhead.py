"""Step and compile time of a training step per adjoint: checkpoint, direct, reversible.

The workloads are cnf_overhead's (node_kit/experiments/_overhead_workloads.py), through
node_kit only: a CNF training step (Hutchinson trace, Tsit5 with a PID controller, batch
256, 2-D) and a neural ODE training step (RK4, fixed steps of 0.05 over [0, 1], ten saved
times, batch 256). Each (workload, adjoint) is compiled `COMPILE_REPEATS` times from
scratch (the median is its compile time), warmed up, then timed in `ROUNDS` rounds of
`STEPS` steps, the adjoints interleaved round by round so that load on the machine falls
on all of them alike; the step time is the median over rounds, each step waited for with
`block_until_ready`. Pinned to one core, as the committed runs are.

    taskset -c 0 .venv/bin/python experiments/adjoint_overhead.py

writes experiments/results/reversible/adjoint_overhead.json and .png.
"""

import dataclasses
import json
import statistics
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.random as jr
import optax

from node_kit.experiments._adjoint_tables import overhead_table
from node_kit.experiments._outputs import plt, provenance
from node_kit.experiments._overhead_workloads import build, Workload
from node_kit.experiments.cnf_overhead import Config


OUT = Path(__file__).parent / "results" / "reversible"
ADJOINTS = ("checkpoint", "direct", "reversible")
BASES = {"cnf": Workload("cnf", "cnf", "tsit5", "checkpoint", "hutchinson"),
         "node": Workload("node", "node", "rk4", "checkpoint")}
COMPILE_REPEATS, ROUNDS, STEPS = 3, 7, 10


def train_step(loss):
    optimizer = optax.adam(1e-3)

    @eqx.filter_jit
    def step(model, opt_state, xs, key):
        (value, aux), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model, xs, key)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, value, aux["num_steps"]

    return step, optimizer


def main() -> None:
    config = Config()
    keys = dict(zip(("model", "data", "probe"), jr.split(jr.key(0), 3)))
    started = time.perf_counter()
    programs, rows = {}, []
    for family, base in BASES.items():
        for adjoint in ADJOINTS:
            work = dataclasses.replace(base, name=f"{family}_{adjoint}", adjoint=adjoint)
            case = build(work, config, keys)
            model, loss = case.paths["node_kit"]
            step, optimizer = train_step(loss)
            opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
            args = (model, opt_state, case.batch, keys["probe"])
            compiles = []
            for _ in range(COMPILE_REPEATS):
                jax.clear_caches()
                start = time.perf_counter()
                step.lower(*args).compile()
                compiles.append(time.perf_counter() - start)
            out = step(*args)  # warm-up (compiles the dispatch path once)
            jax.block_until_ready(out)
            programs[work.name] = (step, args)
            rows.append({"workload": family, "adjoint": adjoint, "description": work.description,
                         "compile_s": statistics.median(compiles), "compile_s_all": compiles,
                         "solver_steps": int(out[3])})
    per_round = {name: [] for name in programs}
    for _ in range(ROUNDS):
        for name, (step, args) in programs.items():
            start = time.perf_counter()
            for _ in range(STEPS):
                jax.block_until_ready(step(*args))
            per_round[name].append((time.perf_counter() - start) / STEPS)
    for row in rows:
        times = per_round[f"{row['workload']}_{row['adjoint']}"]
        row["step_s"], row["step_s_rounds"] = statistics.median(times), times
    for row in rows:
        ref = next(r for r in rows if r["workload"] == row["workload"] and r["adjoint"] == "checkpoint")
        row["step_ratio_to_checkpoint"] = row["step_s"] / ref["step_s"]
        row["compile_ratio_to_checkpoint"] = row["compile_s"] / ref["compile_s"]
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"command": "taskset -c 0 .venv/bin/python experiments/adjoint_overhead.py",
              "config": {**dataclasses.asdict(config), "compile_repeats": COMPILE_REPEATS,
                         "rounds": ROUNDS, "steps_per_round": STEPS},
              "rows": rows, "provenance": provenance(), "wall_s": time.perf_counter() - started}
    result["config"] = {k: v for k, v in result["config"].items() if k in (
        "data_size", "width", "depth", "batch_size", "rtol", "atol", "dt", "save_times",
        "compile_repeats", "rounds", "steps_per_round")}
    (OUT / "adjoint_overhead.json").write_text(json.dumps(result, indent=1) + "\n")
    fig, axes = plt().subplots(1, 2, figsize=(9, 3.4))
    for ax, key, title in ((axes[0], "step_s", "training step (ms, median)"),
                           (axes[1], "compile_s", "compile (s, median)")):
        for i, family in enumerate(BASES):
            values = [next(r for r in rows if r["workload"] == family and r["adjoint"] == a)[key]
                      for a in ADJOINTS]
            scale = 1e3 if key == "step_s" else 1.0
            ax.bar([i * 4 + j for j in range(len(ADJOINTS))], [v * scale for v in values],
                   color=["C0", "C1", "C2"])
        ax.set_xticks([i * 4 + 1 for i in range(len(BASES))],
                      ["CNF (Hutchinson, Tsit5 + PID)", "neural ODE (RK4, 20 steps)"], fontsize=8)
        ax.set_title(title)
    axes[0].legend(handles=[plt().Rectangle((0, 0), 1, 1, color=f"C{j}") for j in range(3)],
                   labels=list(ADJOINTS), fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "adjoint_overhead.png", dpi=120)
    print(overhead_table(result))
    print(f"wrote {OUT / 'adjoint_overhead.json'}")


if __name__ == "__main__":
    main()

"""Training steps/s of `nk.fit` on a small CNF, to compare two versions of the loop.

The same script runs against any node_kit on `PYTHONPATH` (the old loop has no
`data_parallel` argument), so one session can time both:

    git worktree add /tmp/nk_before 41203a9
    PYTHONPATH=/tmp/nk_before .venv/bin/python experiments/loop_benchmark.py --label before
    .venv/bin/python experiments/loop_benchmark.py --label after
    .venv/bin/python experiments/loop_benchmark.py --compare

or, alternating the two in fresh processes (the medians then pool every round):

    .venv/bin/python experiments/loop_benchmark.py --alternate /tmp/nk_before --rounds 3

Each label writes `experiments/results/loop/<label>.json`. Compile time (the first fit)
is reported apart from the timed fits; each timed fit starts from the same initial
parameters, so every repeat (and both versions) does the same solver work.
"""

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from node_kit.experiments._reports import loop_table

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "loop"


@dataclass(frozen=True)
class Workload:
    """A default-like CNF step: 8 gaussians, ConcatSquashField(2, 64, 3), batch 256."""

    batch: int = 256
    width: int = 64
    depth: int = 3
    rtol: float = 1e-3
    atol: float = 1e-3
    adjoint: str = "checkpoint"
    lr: float = 3e-3
    seed: int = 0
    pool_batches: int = 16  # distinct batches, cycled by step


def eight_gaussians(n: int, seed: int) -> np.ndarray:
    """FFJORD's 8 gaussians (scaled as in its toy data), float32, from NumPy only."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * rng.integers(0, 8, n) / 8
    centres = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 4.0
    return ((centres + 0.5 * rng.standard_normal((n, 2))) / 1.414).astype(np.float32)


def make_problem(work: Workload):
    """`(cnf, loss_fn, optimizer, batch_at, key)`: the same objects for every fit (one compile)."""
    import diffrax
    import jax.random as jr
    import optax

    import node_kit as nk

    model_key, run_key = jr.split(jr.PRNGKey(work.seed))
    field = nk.ConcatSquashField(2, work.width, work.depth, key=model_key)
    controller = diffrax.PIDController(rtol=work.rtol, atol=work.atol)
    cnf = nk.CNF(field, stepsize_controller=controller, adjoint=work.adjoint, max_steps=4096)
    pool = eight_gaussians(work.batch * work.pool_batches, work.seed).reshape(
        work.pool_batches, work.batch, 2
    )

    def loss_fn(model, xs, key):
        return nk.cnf_loss(model, xs, key=key)

    def batch_at(step: int) -> np.ndarray:
        return pool[step % work.pool_batches]

    return cnf, loss_fn, optax.adam(work.lr), batch_at, run_key


def timed_fit(problem, num_steps: int, **fit_kwargs) -> tuple[float, list[dict]]:
    """Wall seconds of one `nk.fit` of `num_steps` steps, waiting for its last result."""
    import equinox as eqx
    import jax

    import node_kit as nk

    cnf, loss_fn, optimizer, batch_at, key = problem
    start = time.perf_counter()
    model, history = nk.fit(cnf, loss_fn, optimizer, batch_at, num_steps, key=key,
                            progress=False, **fit_kwargs)
    jax.block_until_ready(eqx.filter(model, eqx.is_array))
    return time.perf_counter() - start, history


def syncs_per_100(problem, fit_kwargs: dict) -> dict:
    """Host synchronisations in a 100-step fit, counted on the loop if it has `_Loop.sync`."""
    from node_kit import _training

    loop = getattr(_training, "_Loop", None)
    if loop is None or not hasattr(loop, "sync"):
        return {"syncs_per_100_steps": 100, "counted": False,
                "how": "old loop: one float(loss) per step (no _Loop.sync to count)"}
    original, calls = loop.sync, []

    def counting_sync(self, *args, **kwargs):  # sync(model=None) since the validation hook
        calls.append(1)
        return original(self, *args, **kwargs)

    loop.sync = counting_sync
    try:
        timed_fit(problem, 100, **fit_kwargs)
    finally:
        loop.sync = original
    return {"syncs_per_100_steps": len(calls), "counted": True,
            "how": "calls of node_kit._training._Loop.sync in a 100-step fit"}


def environment() -> dict:
    import jax

    import node_kit as nk

    source = Path(nk.__file__).resolve().parent
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
                            check=False, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "node_kit"],
                           check=False, capture_output=True, text=True).stdout.strip()
    return {
        "node_kit": str(source), "commit": commit, "node_kit_modified": bool(dirty),
        "fit_has_data_parallel": "data_parallel" in inspect.signature(nk.fit).parameters,
        "jax": jax.__version__, "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()], "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "machine": platform.machine(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def measure(work: Workload, *, steps: int, repeats: int, log_every: int,
            checkpoint_every: int) -> dict:
    """Compile once (timed apart), then `repeats` timed fits of `steps` steps."""
    problem = make_problem(work)
    with tempfile.TemporaryDirectory() as tmp:
        fit_kwargs = {"log_every": log_every}
        if checkpoint_every > 0:
            fit_kwargs.update(checkpoint_path=Path(tmp) / "ckpt.eqx",
                              checkpoint_every=checkpoint_every)
        compile_s, _ = timed_fit(problem, 2, **fit_kwargs)
        timed_fit(problem, log_every, **fit_kwargs)  # warm caches beyond the compile
        seconds, solver_steps, final_loss = [], [], None
        for _ in range(repeats):
            wall, history = timed_fit(problem, steps, **fit_kwargs)
            seconds.append(wall)
            solver_steps.append(float(np.mean([r["num_steps"] for r in history])))
            final_loss = history[-1]["loss"]
        syncs = syncs_per_100(problem, fit_kwargs)
    rates = [steps / s for s in seconds]
    return {
        "steps_per_s_median": statistics.median(rates), "steps_per_s": rates,
        "seconds": seconds, "ms_per_step_median": 1e3 * statistics.median(seconds) / steps,
        "compile_s": compile_s, "compile_note": "wall time of the first 2-step fit",
        "steps": steps, "repeats": repeats, "log_every": log_every,
        "checkpoint_every": checkpoint_every, **syncs,
        "mean_solver_steps": statistics.mean(solver_steps), "final_loss": final_loss,
        "workload": asdict(work), "environment": environment(),
    }


def merge(runs: list[dict]) -> dict:
    """Pool the repeats of several processes (rounds) into one result."""
    merged = dict(runs[-1])
    merged["steps_per_s"] = [r for run in runs for r in run["steps_per_s"]]
    merged["seconds"] = [s for run in runs for s in run["seconds"]]
    merged["steps_per_s_median"] = statistics.median(merged["steps_per_s"])
    merged["ms_per_step_median"] = 1e3 * statistics.median(merged["seconds"]) / merged["steps"]
    merged["compile_s"] = statistics.median(run["compile_s"] for run in runs)
    merged["rounds"] = [{"steps_per_s_median": run["steps_per_s_median"],
                         "compile_s": run["compile_s"], "commit": run["environment"]["commit"]}
                        for run in runs]
    return merged


def alternate(args, flags: list[str]) -> None:
    """Run before (PYTHONPATH=old worktree) and after in turn, `rounds` times each."""
    results: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for label in ("before", "after"):
                env = dict(os.environ)
                env.pop("PYTHONPATH", None)
                if label == "before":
                    env["PYTHONPATH"] = str(Path(args.alternate).resolve())
                out = Path(tmp) / f"{label}{round_}.json"
                subprocess.run([sys.executable, __file__, "--label", label, "--json", str(out),
                                *flags], env=env, check=True)
                results[label].append(json.loads(out.read_text()))
    for label, runs in results.items():
        write(args.out / f"{label}.json", merge(runs))
    compare(args.out)


def write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{path}: {result['steps_per_s_median']:.2f} steps/s "
          f"({result['ms_per_step_median']:.1f} ms/step), compile {result['compile_s']:.1f} s, "
          f"{result['syncs_per_100_steps']} syncs/100 steps")


def compare(out: Path) -> str:
    """Print and return the table of `out`'s before.json against its after.json."""
    table = loop_table(out)
    print(table)
    return table


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", help="name of the result file (before, after, ...)")
    parser.add_argument("--compare", action="store_true", help="print before vs after")
    parser.add_argument("--alternate", metavar="OLD_WORKTREE",
                        help="run before (old code) and after in turn, --rounds times")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200, help="steps per timed fit")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per process")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--checkpoint-every", type=int, default=0, help="0: no checkpoints")
    parser.add_argument("--rtol", type=float, default=Workload.rtol)
    parser.add_argument("--atol", type=float, default=Workload.atol)
    parser.add_argument("--batch", type=int, default=Workload.batch)
    parser.add_argument("--out", type=Path, default=OUT, help="folder of <label>.json")
    parser.add_argument("--json", type=Path, help="write here instead of <out>/<label>.json")
    return parser.parse_known_args(argv)


def main(argv=None) -> None:
    args, rest = parse(argv)
    if args.compare:
        compare(args.out)
        return
    if args.alternate:
        alternate(args, _measure_flags(args))
        return
    if not args.label or rest:
        raise SystemExit(f"give --label NAME, --compare or --alternate (unknown: {rest})")
    work = Workload(batch=args.batch, rtol=args.rtol, atol=args.atol)
    result = measure(work, steps=args.steps, repeats=args.repeats, log_every=args.log_every,
                     checkpoint_every=args.checkpoint_every)
    result["label"] = args.label
    write(args.json or args.out / f"{args.label}.json", result)


def _measure_flags(args) -> list[str]:
    """The flags that set what is measured, for the processes `--alternate` starts."""
    return [f"--{name.replace('_', '-')}={getattr(args, name)}"
            for name in ("steps", "repeats", "log_every", "checkpoint_every", "rtol", "atol",
                         "batch")]


if __name__ == "__main__":
    main()

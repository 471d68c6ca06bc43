"""Training steps/s of `nk.fit` with `nk.DataParallel` over 1, 2, 4 devices, both modes.

The workload is `loop_benchmark.py`'s CNF (global batch fixed, so more devices means
smaller shards) with `adjoint="backsolve"` in both modes: the per-device mode
(`jax.shard_map`) cannot use the checkpointed adjoint, and the two modes should solve
the same way. Each device count runs in its own process: on a CPU the devices are forced
host devices (`XLA_FLAGS=--xla_force_host_platform_device_count=N`, read when JAX is
imported), which share the same cores and so are not expected to be faster; on a GPU
machine the real devices are used and counts above `jax.device_count()` are skipped.

    .venv/bin/python experiments/scaling.py              # writes experiments/results/scaling.json
    .venv/bin/python experiments/scaling.py --steps 20 --repeats 1 --out /tmp/scaling.json
    .venv/bin/python experiments/scaling.py --show       # the table of the committed file
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from node_kit.experiments._reports import scaling_table as table

HERE = Path(__file__).resolve().parent
MODES = {"global": False, "per_device": True}


def probe() -> dict:
    """The backend and device count, from a fresh process (this one never starts a JAX
    backend, so it holds no GPU memory and sets no device count)."""
    code = "import jax, json; print(json.dumps([jax.default_backend(), jax.device_count()]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    backend, count = json.loads(out.stdout.strip().splitlines()[-1])
    return {"backend": backend, "device_count": count}


def device_counts(backend: str, available: int, wanted: list[int]) -> tuple[list[int], list[int]]:
    """`(run, skipped)`: on a CPU every count is forced; elsewhere only those that exist."""
    if backend == "cpu":
        return wanted, []
    return [n for n in wanted if n <= available], [n for n in wanted if n > available]


def child_env(backend: str, devices: int) -> dict:
    env = dict(os.environ)
    if backend == "cpu":
        flag = f"--xla_force_host_platform_device_count={devices}"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flag}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    return env


def run_count(devices: int, args) -> list[dict]:
    """Time both modes on `devices` devices (called inside the child process)."""
    import jax  # the parent set XLA_FLAGS before this process started
    import loop_benchmark as lb

    import node_kit as nk

    work = lb.Workload(batch=args.batch, rtol=args.rtol, atol=args.atol, adjoint="backsolve")
    problem = lb.make_problem(work)
    rows = []
    for mode in args.modes:
        parallel = nk.DataParallel(devices, per_device=MODES[mode])
        kwargs = {"data_parallel": parallel, "log_every": args.log_every}
        compile_s, _ = lb.timed_fit(problem, 2, **kwargs)
        seconds, solver_steps = [], []
        for _ in range(args.repeats):
            wall, history = lb.timed_fit(problem, args.steps, **kwargs)
            seconds.append(wall)
            solver_steps.append(statistics.mean(r["num_steps"] for r in history))
        rates = [args.steps / s for s in seconds]
        rows.append({
            "devices": devices, "mode": mode, "steps_per_s_median": statistics.median(rates),
            "steps_per_s": rates, "compile_s": compile_s, "global_batch": work.batch,
            "per_device_batch": work.batch // devices, "steps": args.steps,
            "mean_solver_steps": statistics.mean(solver_steps),
            "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
        })
        print(f"  {devices} device(s), {mode}: {rows[-1]['steps_per_s_median']:.2f} steps/s, "
              f"compile {compile_s:.1f} s", flush=True)
    return rows


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--steps", type=int, default=50, help="steps per timed fit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256, help="global batch")
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--atol", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scaling.json")
    parser.add_argument("--show", action="store_true", help="print the table of --out and exit")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # internal: one count
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    if args.show:
        print(table(json.loads(args.out.read_text())["rows"]))
        return
    if args.child is not None:
        args.child_out.write_text(json.dumps(run_count(args.child, args)))
        return
    machine = probe()
    counts, skipped = device_counts(machine["backend"], machine["device_count"], args.devices)
    forwarded = _without_out(argv if argv is not None else sys.argv[1:])
    rows = []
    for n in counts:
        child_out = args.out.with_suffix(f".{n}.tmp")
        child_out.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, __file__, *forwarded, "--child", str(n),
                   "--child-out", str(child_out)]
        subprocess.run(command, env=child_env(machine["backend"], n), check=True)
        rows += json.loads(child_out.read_text())
        child_out.unlink()
    result = {"rows": rows, "skipped_device_counts": skipped, **machine,
              "forced_host_devices": machine["backend"] == "cpu", "cpu_count": os.cpu_count(),
              "adjoint": "backsolve", "steps": args.steps, "repeats": args.repeats}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    if skipped:
        print(f"skipped device counts (only {machine['device_count']} devices): {skipped}")
    print(f"wrote {args.out}")


def _without_out(argv: list[str]) -> list[str]:
    """The parent's flags minus `--out VALUE` (the children write to `--child-out`)."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out="):
            kept.append(a)
    return kept


if __name__ == "__main__":
    main()

"""Compile and step times at XLA's default options and with the test suite's faster-compiling
flags, on the workloads of `python -m node_kit.experiments.cnf_overhead`.

    taskset -c 0 python experiments/compile_flags.py   # writes results/compile_flags.json
    python experiments/compile_flags.py --show          # the table of the committed file
    python experiments/compile_flags.py --workloads cnf_exact_eval --rounds 1 --out /tmp/f.json

XLA reads XLA_FLAGS once, when a process starts its backend, so each setting runs in its
own process: `defaults` (XLA_FLAGS as inherited) and `fast` (`FAST_COMPILE_FLAGS` of
`node_kit/experiments/_compile_flags.py` added: LLVM at -O0 and XLA:CPU's elemental fusion
emitter instead of its MLIR fusion emitters, what tests/conftest.py gives the test suite;
the summary and table are there too). The settings alternate over `--rounds`
rounds. Each process first compiles one small step untimed (what a process does once is
not charged to the first workload), then per workload compiles node_kit's program (the
first call, split into JAX's phases as `cnf_overhead` does) and times `--steps` steps
(the median). The result holds, per workload and setting, the median over the rounds of
the compile (tracing + lowering + XLA) and of the step, and the first loss (the two
settings compute the same function, so these agree to rounding); per workload, the
ratios and the break-even run length: the steps below which the fast flags finish first,
(compile time saved) / (time lost per step).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from node_kit.experiments._compile_flags import SETTINGS, summarise, table, with_xla_flags

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "compile_flags.json"


def measure(workloads: list[str], steps: int) -> dict:
    """In this process (its XLA_FLAGS already set): per workload, the first call's compile
    phases, the first loss and the median of `steps` timed steps."""
    import time

    import jax
    import jax.random as jr
    import optax

    from node_kit.experiments import cnf_overhead as overhead
    from node_kit.experiments._overhead_workloads import WORKLOADS, build
    from node_kit.experiments._run import split_keys

    jax.config.update("jax_enable_compilation_cache", False)  # compile, never read a cache
    jax.monitoring.register_event_duration_secs_listener(overhead._record_event)
    config = overhead.Config(workloads=tuple(workloads), progress=False)
    keys = split_keys(config.seed, ("model", "data", "probe"))
    optimizer = optax.adam(1e-3)
    works = [w for w in WORKLOADS if w.name in workloads]
    overhead.warm_up(works, config, keys, optimizer)
    rows = {}
    for work in works:
        fn, lower = overhead._step_fn(build(work, config, keys), "node_kit", optimizer)
        first = overhead.first_call(fn, lower, jr.key(0))
        times = []
        for i in range(steps):
            start = time.perf_counter()
            jax.block_until_ready(fn(jr.key(i)))
            times.append(time.perf_counter() - start)
        rows[work.name] = {
            "compile_seconds": first["compile_seconds"],
            "xla_compile_seconds": first["xla_compile_seconds"],
            "median_step_seconds": statistics.median(times),
            "value": first["value"], "num_steps": first["num_steps"],
        }
    return {"backend": jax.default_backend(), "x64": bool(jax.config.read("jax_enable_x64")),
            "rows": rows}


def parse(argv=None):
    from node_kit.experiments._overhead_workloads import WORKLOAD_NAMES

    parser = argparse.ArgumentParser(prog="python experiments/compile_flags.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=WORKLOAD_NAMES, default=list(WORKLOAD_NAMES))
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of both settings, alternating (default: 3)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per workload (default: 20)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON file (default: {OUT.relative_to(HERE.parent)})")
    parser.add_argument("--show", action="store_true", help="print the table of --out and exit")
    parser.add_argument("--child", choices=list(SETTINGS), help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    for name in ("rounds", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1; got {getattr(args, name)}")
    return args


def run_setting(setting: str, args) -> dict:
    """One process at `setting`; what it measured."""
    env = dict(os.environ, XLA_FLAGS=with_xla_flags(SETTINGS[setting]))
    command = [sys.executable, __file__, "--child", setting, "--workloads", *args.workloads,
               "--steps", str(args.steps)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the {setting} process failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = parse(argv)
    if args.show:
        if not args.out.exists():
            sys.exit(f"--out {args.out} does not exist; run without --show first")
        print(table(json.loads(args.out.read_text())))
        return 0
    if args.child:
        print(json.dumps(measure(args.workloads, args.steps)))
        return 0
    from tqdm.auto import tqdm

    from node_kit.experiments._outputs import own_cores, provenance, write_json

    rounds = []
    with tqdm(total=args.rounds * len(SETTINGS), desc="processes") as bar:
        for i in range(args.rounds):
            order = list(SETTINGS) if i % 2 == 0 else list(SETTINGS)[::-1]
            measured = {}
            for setting in order:
                measured[setting] = run_setting(setting, args)
                bar.update(1)
            rounds.append(measured)
    result = {"workloads": summarise(rounds), "rounds": args.rounds, "steps": args.steps,
              "backend": rounds[0]["defaults"]["backend"], "x64": rounds[0]["defaults"]["x64"],
              "cpu_cores": len(own_cores()),
              "flags": {name: list(flags) for name, flags in SETTINGS.items()},
              "provenance": provenance()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    print(table(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time the default test run with an empty and with a filled compilation cache, and at XLA's
default compile options, and say where its time goes.

    python experiments/test_time.py              # all three runs; writes results/test_time.json
    python experiments/test_time.py --runs cold  # one of them
    python experiments/test_time.py --show       # the table from the committed file
    python experiments/test_time.py -- tests/test_trace.py   # pytest arguments after --

Runs the README's test command (`python -m pytest -n 2 --dist loadfile`) three times:
`cold`, against a new, empty JAX persistent compilation cache folder (NODE_KIT_TEST_CACHE,
see tests/conftest.py) as on a fresh machine or in CI; `warm`, against the folder as the
cold run left it, as on a developer's second run; `defaults`, cold again (its own empty
folder) with NODE_KIT_TEST_FAST_COMPILE=off, so XLA compiles with its default options as
users' programs do instead of the test run's faster-compiling ones (tests/conftest.py).
For each run it records the wall time, the CPU time of pytest and every process under
it, and, from experiments/_compile_profile.py loaded into each worker, every compile:
Python tracing, lowering to MLIR and XLA's compile, per test file and per compiled
function, and the persistent cache's hits. Compiles inside the tests' subprocesses
(several devices, several processes, kill and resume) are in the CPU time but not in the
compile counts. Run it on an otherwise idle machine: the wall time is what a user waits,
so other load inflates it.
"""

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from node_kit.experiments._reports import (
    SUITE_RUNS as RUNS,
    suite_time_table as table,
    summarise_profile as summarise,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "results" / "test_time.json"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def run_suite(cache: Path, pytest_args: list[str], workers: int, fast_compile: bool = True) -> dict:
    """One run of the test command against `cache`; wall and CPU time and the compile profile.

    `fast_compile=False` runs it at XLA's default compile options
    (NODE_KIT_TEST_FAST_COMPILE=off, see tests/conftest.py)."""
    with tempfile.TemporaryDirectory() as profile:
        env = dict(os.environ, NODE_KIT_TEST_CACHE=str(cache), NODE_KIT_COMPILE_PROFILE=profile,
                   NODE_KIT_TEST_FAST_COMPILE="on" if fast_compile else "off")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "pytest", "-n", str(workers), "--dist", "loadfile",
                   "-q", "-p", "_compile_profile", *pytest_args]
        print("+", " ".join(command[1:]), flush=True)
        cpu, start = _children_cpu(), time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
        records = [json.loads(line) for path in sorted(Path(profile).glob("*.jsonl"))
                   for line in path.read_text().splitlines()]
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", last)}
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
    return {"exit_code": done.returncode, "summary_line": last, **counts,
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), **summarise(records)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python experiments/test_time.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print the table of --out and exit")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON file (default: {OUT.relative_to(ROOT)})")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (default: 2)")
    parser.add_argument("--runs", nargs="+", choices=tuple(RUNS), default=list(RUNS),
                        help="which runs (default: all three; " + "; ".join(
                            f"{name}: {label}" for name, label in RUNS.items()) + ")")
    args = parser.parse_args(own)
    if args.show:
        if not args.out.exists():
            parser.error(f"--out {args.out} does not exist; run without --show first")
        print(table(json.loads(args.out.read_text())))
        return 0
    if "warm" in args.runs and "cold" not in args.runs:
        parser.error("--runs warm needs cold first (a warm run reads the cache the cold run filled)")
    (Path.home() / ".cache").mkdir(parents=True, exist_ok=True)
    caches = {"cold": "fast", "warm": "fast", "defaults": "defaults"}  # warm reads cold's
    folders = {kind: Path(tempfile.mkdtemp(prefix=f"node_kit-test-time-{kind}-",
                                           dir=Path.home() / ".cache"))
               for kind in set(caches[name] for name in args.runs)}
    try:
        runs = {name: run_suite(folders[caches[name]], pytest_args, args.workers,
                                fast_compile=name != "defaults")
                for name in RUNS if name in args.runs}
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
    result = {
        "command": "python " + " ".join(["experiments/test_time.py", *argv]),
        "provenance": {"git_commit": _git("rev-parse", "HEAD"),
                       "git_dirty": bool(_git("status", "--porcelain", "--", "node_kit", "tests")),
                       "date": datetime.date.today().isoformat(), "cpus": os.cpu_count()},
        "pytest": ["-n", str(args.workers), "--dist", "loadfile", *pytest_args],
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return max(run["exit_code"] for run in runs.values())


if __name__ == "__main__":
    sys.exit(main())

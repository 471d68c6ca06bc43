"""Re-run committed results with the current code and say which ones it reproduces.

    python experiments/reproduce.py                          # the table from reproduce.json
    python experiments/reproduce.py --run cnf/8gaussians     # re-run one, compare, record
    python experiments/reproduce.py --all --max-minutes 5    # every run expected under 5 min

Every committed run (experiments/results/{cnf,timeseries}/*, deq, meta, spiral and the
memory sweeps) is re-run from scratch with its recorded configuration (the flags that
differ from the command's defaults; `--out` a temporary folder) and its headline metrics
are compared with the committed file: test NLL, test MSE or accuracy, trajectory error,
compiled bytes. The comparison is relative, `--rtol` (default 1e-4: the same code on the
same machine gives the same bits; other CPUs may differ in the last digits). A run whose
committed training took longer than `--max-minutes` is not re-run, and says so.

Each re-run's outcome is recorded in experiments/results/reproduce.json with the commit
of the code that produced it (from the re-run's provenance; run it from a clean checkout,
e.g. `git worktree add /tmp/repro HEAD` and `PYTHONPATH=/tmp/repro python
/tmp/repro/experiments/reproduce.py ...`, while the working tree has changes); the table prints every committed run as `reproduced`,
`differs` (with the values) or `not re-run` (with the reason). A run trained in pieces
(`--resume` across sessions) is marked: only a run from scratch on unchanged code counts.

Cores: XLA's CPU compiler splits loops over the cores the process may use, so float32
training gives other last bits, and after many steps other metrics, on another count (the
time-series default does; the CNF default does not). Each re-run is pinned to as many cores
as its committed run had (`environment.cpu_cores` in its results.json; one where the file
does not record it: the committed runs are made on one core) unless `--cores` says
otherwise; the first cores of this process's own set are used, so `taskset -c 1 python
experiments/reproduce.py ...` puts a one-core re-run on core 1. A run that needs more cores
than this process has is not re-run. The count is recorded with the outcome.

With `--replace`, a re-run that differs from the committed file, or whose committed file
records no provenance, replaces the committed run's folder with its own output (only when
the re-run's code was a clean commit); the table then says `replaced` with the old values.
"""

import argparse
import dataclasses
import datetime
import importlib
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

from node_kit.experiments._outputs import own_cores, run_on_cores

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
RECORD = RESULTS / "reproduce.json"
# The cores of a committed run whose results.json does not record them: the committed runs
# are made on one core (README, "Do they reproduce?").
DEFAULT_CORES = 1
# Flags that do not define the result: where it is written, resuming, the bar, devices.
NOT_DEFINING = {"out", "resume", "progress", "devices", "per_device", "coordinator",
                "num_processes", "process_id", "distributed"}


@dataclasses.dataclass(frozen=True)
class Committed:
    """One committed run: its name, command, results file and headline metrics."""

    name: str
    command: str
    path: Path
    results: dict

    @property
    def config_class(self):
        module = importlib.import_module(f"node_kit.experiments.{self.command}")
        return getattr(module, "Config", None) or module.MemoryConfig

    def flags(self) -> list[str]:
        """The flags that rebuild the recorded config (those that differ from the defaults)."""
        recorded = self.results["config"]
        defaults = self.config_class()
        out = []
        for field in dataclasses.fields(self.config_class):
            if field.name in NOT_DEFINING or field.name not in recorded:
                continue
            value, default = recorded[field.name], getattr(defaults, field.name)
            if isinstance(default, tuple):
                default = list(default)
            if value == default or value is None:
                continue
            flag = "--" + field.name.replace("_", "-")
            if isinstance(value, bool):
                out.append(flag if value else "--no-" + field.name.replace("_", "-"))
            elif isinstance(value, list):
                out += [flag, *map(str, value)]
            else:
                out += [flag, str(value)]
        return out

    def argv(self, out: Path) -> list[str]:
        extra = ["--out", str(out)]
        if "progress" in self.results["config"]:
            extra.append("--no-progress")
        return [sys.executable, "-m", f"node_kit.experiments.{self.command}",
                *self.flags(), *extra]

    def minutes(self) -> float | None:
        """The committed run's wall or training time in minutes, if it recorded one."""
        r = self.results
        seconds = (r.get("provenance") or {}).get("wall_seconds") or r.get("wall_seconds") \
            or r.get("wall_s") or r.get("train_seconds_total") or r.get("train_seconds_this_run")
        if seconds is None and "models" in r:
            seconds = sum(m.get("train_seconds_total", 0) for m in r["models"].values())
        return None if seconds is None else seconds / 60

    def pieces(self) -> str:
        """How the committed run was resumed: "trained in pieces" when its training time
        adds up several runs, "ran with --resume" when only the flag says so (a run script
        that passes --resume to re-evaluate a finished run), "" otherwise."""
        r = self.results
        total = r.get("train_seconds_total")
        if r.get("resumed") or (total is not None and total != r.get("train_seconds_this_run")):
            return "trained in pieces"
        return "ran with --resume" if r["config"].get("resume") else ""


def headline(command: str, results: dict) -> dict[str, float]:
    """The metrics a re-run must give again, by name."""
    if command == "cnf":
        return {"test_nll": results["test_nll"]}
    if command == "timeseries":
        key = "test_accuracy" if "test_accuracy" in results else "test_mse"
        return {key: results[key]}
    if command == "spiral":
        return {"trajectory_mae": results["trajectory_mae"]}
    if command == "deq":
        return {f"{name} test_accuracy": m["test_accuracy"] for name, m in results["models"].items()}
    if command == "meta":
        return {f"{row['method']} K={row['shots']} test_mse": row["test_mse"] for row in results["rows"]}
    if command == "memory":
        return {f"{row['mode']} {row.get('layout', '')} N={row['steps']} temp_bytes": row["temp_bytes"]
                for row in results["rows"]}
    raise ValueError(f"no headline metrics for command {command!r}")


def committed_runs() -> list[Committed]:
    runs = []
    for command in ("cnf", "timeseries"):
        for path in sorted((RESULTS / command).glob("*/results.json")):
            runs.append(Committed(f"{command}/{path.parent.name}", command, path,
                                  json.loads(path.read_text())))
    for name in ("deq", "meta", "spiral"):
        path = RESULTS / name / "results.json"
        if path.exists():
            runs.append(Committed(name, name, path, json.loads(path.read_text())))
    for stem in ("memory", "memory_deq", "memory_inner"):
        path = RESULTS / f"{stem}.json"
        if path.exists():
            runs.append(Committed(stem, "memory", path, json.loads(path.read_text())))
    return runs


def cores_of(run: Committed) -> int:
    """The cores `run` was made on: its recorded `environment.cpu_cores`, else one."""
    return int((run.results.get("environment") or {}).get("cpu_cores") or DEFAULT_CORES)


def output_file(run: Committed, out: Path) -> Path:
    if run.command == "memory":
        return out / f"{run.results['config'].get('name', run.name)}.json"
    return out / "results.json"


def compare(expected: dict, got: dict, rtol: float) -> list[str]:
    """The metrics that differ by more than `rtol` (relative), as readable lines."""
    bad = []
    for key, value in expected.items():
        new = got.get(key)
        if new is None or not math.isclose(new, value, rel_tol=rtol, abs_tol=0.0):
            bad.append(f"{key}: committed {value!r}, now {new!r}")
    return bad


def replaceable(run: Committed, entry: dict) -> str:
    """Why `run`'s committed folder should be replaced by its re-run, or "" if it should not."""
    if run.command == "memory" or entry["status"] == "failed" or entry.get("code_dirty") \
            or not entry.get("code_commit"):
        return ""
    if entry["status"] == "differs":
        return "differs"
    return "" if run.results.get("provenance", {}).get("git_commit") else "no provenance"


def rerun(run: Committed, rtol: float, replace: bool = False, cores: int | None = None) -> dict:
    """Re-run `run` from scratch in a temporary folder, pinned to `cores` cores (default:
    `cores_of(run)`), and compare its headline metrics; with `replace`, install the
    re-run's folder over the committed one (see `replaceable`)."""
    cores = cores or cores_of(run)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv = run.argv(out)
        start = time.perf_counter()
        done = run_on_cores(argv, cores, run.name, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        record = {"command": " ".join([f"python -m node_kit.experiments.{run.command}",
                                        *run.flags()]),
                  "date": datetime.date.today().isoformat(),
                  "seconds": round(seconds, 1), "rtol": rtol, "cores": cores,
                  "committed_in_pieces": run.pieces()}
        if done.returncode != 0:
            return {**record, "status": "failed", "error": done.stderr.strip().splitlines()[-3:]}
        new = json.loads(output_file(run, out).read_text())
        record["cores"] = (new.get("environment") or {}).get("cpu_cores", cores)
        got = headline(run.command, new)
        source = new.get("provenance", {})
        record |= {"code_commit": source.get("git_commit"), "code_dirty": source.get("git_dirty")}
        expected = headline(run.command, run.results)
        bad = compare(expected, got, rtol)
        record |= {"status": "differs" if bad else "reproduced", "differences": bad,
                   "committed": expected, "now": got}
        why = replace and replaceable(run, record)
        if why:
            folder = run.path.parent
            shutil.rmtree(folder)
            shutil.copytree(out, folder)
            record |= {"status": "replaced", "replaced_because": why}
    return record


def _short(entry: dict) -> str:
    commit = (entry.get("code_commit") or "unknown")[:7]
    return commit + (" with uncommitted changes" if entry.get("code_dirty") else "")


def table(runs: list[Committed], record: dict) -> str:
    lines = ["| run | status | cores | committed run took (min) | detail |",
             "|---|---|---|---|---|"]
    for run in runs:
        minutes = run.minutes()
        took = "–" if minutes is None else f"{minutes:.1f}"
        entry = record.get(run.name)
        if entry is None:
            status, detail = "not re-run", "not yet re-run with reproduce.py"
        elif entry["status"] == "replaced":
            status = "replaced"
            detail = (f"re-run from scratch at code {_short(entry)} ({entry['date']}) and "
                      f"committed in place of the old file ({entry['replaced_because']}")
            detail += "; old: " + "; ".join(entry["differences"]) + ")" if entry["differences"] \
                else ", same values within rtol)"
        else:
            status = entry["status"]
            detail = "; ".join(entry.get("differences") or entry.get("error") or []) or \
                f"identical within rtol {entry['rtol']:g} (code {_short(entry)}, {entry['date']})"
        if run.pieces():
            detail += f"; the committed run {run.pieces()}"
        cores = "–" if entry is None else entry.get("cores", "–")
        lines.append(f"| {run.name} | {status} | {cores} | {took} | {detail} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python experiments/reproduce.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs="+", default=[], help="names of runs to re-run (as in the table)")
    parser.add_argument("--all", action="store_true", help="re-run every run under --max-minutes")
    parser.add_argument("--max-minutes", type=float, default=10.0,
                        help="skip runs whose committed run took longer (default: 10)")
    parser.add_argument("--rtol", type=float, default=1e-4,
                        help="relative tolerance of the comparison (default: 1e-4)")
    parser.add_argument("--cores", type=int, default=None,
                        help="pin each re-run to this many cores (default: as many as its "
                             f"committed run had; {DEFAULT_CORES} where it does not say)")
    parser.add_argument("--no-record", action="store_true", help="do not update reproduce.json")
    parser.add_argument("--replace", action="store_true",
                        help="install a re-run over its committed folder when it differs or the "
                             "committed file has no provenance (clean code only)")
    args = parser.parse_args(argv)
    runs = committed_runs()
    names = {run.name for run in runs}
    if args.cores is not None and not 1 <= args.cores <= len(own_cores()):
        parser.error(f"--cores must be between 1 and the {len(own_cores())} cores this process "
                     f"may use; got {args.cores}")
    unknown = [name for name in args.run if name not in names]
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; the committed runs are: "
                     f"{', '.join(sorted(names))}")
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    chosen = [run for run in runs if run.name in args.run or (
        args.all and (run.minutes() or 0) <= args.max_minutes)]
    failed = False
    for run in chosen:
        cores = args.cores or cores_of(run)
        print(f"re-running {run.name} on {cores} core{'s' * (cores > 1)}: python -m "
              f"node_kit.experiments.{run.command} {' '.join(run.flags())}", flush=True)
        try:
            entry = rerun(run, args.rtol, args.replace, cores)
        except ValueError as error:
            print(f"  not re-run: {error} (--cores N re-runs it on N cores.)", flush=True)
            failed = True
            continue
        print(f"  {entry['status']} in {entry['seconds']:.0f} s", *entry.get("differences", []),
              sep="\n  ", flush=True)
        failed |= entry["status"] not in ("reproduced", "replaced")
        record[run.name] = entry
        if not args.no_record:
            RECORD.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(table(runs, record))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

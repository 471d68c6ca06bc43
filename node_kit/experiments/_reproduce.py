"""Re-run committed results with the current code and say which ones it reproduces
(`experiments/reproduce.py` runs [`main`][]).

    python experiments/reproduce.py                          # the table from reproduce.json
    python experiments/reproduce.py --run cnf/8gaussians     # re-run one, compare, record
    python experiments/reproduce.py --all --max-minutes 5    # every run expected under 5 min

Every committed run of every registered command with a `headline` (its `committed`
runs under experiments/results: cnf/*, timeseries/*, deq, meta, spiral and the memory
sweeps) is re-run from scratch with its recorded configuration (the flags that differ
from the command's defaults; `--out` a temporary folder) and its `headline` metrics are
compared with the committed file: test NLL, test MSE or accuracy, trajectory error,
compiled bytes. The comparison is relative, `--rtol` (default 1e-4: the same code on the
same machine gives the same bits; other CPUs may differ in the last digits). A run whose
committed training took longer than `--max-minutes` is not re-run, and says so.

Each re-run's outcome is recorded in experiments/results/reproduce.json with the commit of
the code that produced it (from the re-run's provenance; run it from a clean checkout,
e.g. `git worktree add /tmp/repro HEAD` and `PYTHONPATH=/tmp/repro python
/tmp/repro/experiments/reproduce.py ...`, while the working tree has changes); the table
prints every committed run as `reproduced`, `differs` (with the values) or `not re-run`
(with the reason). A run trained in pieces (`--resume` across sessions) is marked: only a
run from scratch on unchanged code counts.

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
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import _registry
from ._cli import config_flags, ordered_fields, with_new_names
from ._outputs import own_cores, run_on_cores
from ._protocol import Command, ParallelConfig, SHARED_CONFIGS


ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments" / "results"
"""The committed results of a checkout (`--results` reads another folder)."""
# The cores of a committed run whose results.json does not record them: the committed runs
# are made on one core (docs/reproduce.md).
DEFAULT_CORES = 1
# Flags that do not define the result: where it is written, resuming, the bar, using a
# trained run instead of training, devices (--per-device does: it solves differently).
NOT_DEFINING = (
    "out",
    "resume",
    "progress",
    "evaluate",
    "sample",
    *(f.name for f in dataclasses.fields(ParallelConfig) if f.name != "per_device"),
)


@dataclasses.dataclass(frozen=True)
class Committed:
    """One committed run: its name, command, results file and recorded results."""

    name: str
    command: Command
    path: Path
    results: dict

    def recorded_config(self) -> dict:
        """The recorded config, renamed flags under their new names."""
        return with_new_names(self.results["config"], self.command.renamed)

    def flags(self) -> list[str]:
        """The flags that rebuild the recorded config (those that differ from the defaults)."""
        defaults = dataclasses.asdict(self.command.config())
        recorded = self.recorded_config()
        unknown = sorted(set(recorded) - set(defaults))
        if unknown:
            raise ValueError(
                f"{self.name} was run with settings {self.command.module} no longer has "
                f"({', '.join(unknown)}); it cannot be re-run with this code."
            )
        order = [f.name for f in ordered_fields(self.command.config, SHARED_CONFIGS)]
        values = {name: recorded[name] for name in order if name in recorded}
        return config_flags(values, defaults, skip=NOT_DEFINING)

    def command_line(self) -> str:
        return " ".join([f"python -m {self.command.module}", *self.flags()])

    def argv(self, out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            self.command.module,
            *self.flags(),
            "--out",
            str(out),
            "--no-progress",
        ]

    def headline(self, results: dict | None = None) -> dict[str, float]:
        """The headline metrics of the committed results, or of `results` (a re-run's)."""
        assert self.command.headline is not None  # committed_runs keeps only such commands
        return self.command.headline(self.results if results is None else results)

    def minutes(self) -> float | None:
        """The committed run's wall or training time in minutes, if it recorded one."""
        r = self.results
        seconds = (
            (r.get("provenance") or {}).get("wall_seconds")
            or r.get("wall_seconds")
            or r.get("wall_s")
            or r.get("train_seconds_total")
            or r.get("train_seconds_this_run")
        )
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


def committed_runs(results: Path = RESULTS) -> list[Committed]:
    """Every committed run under `results` of every registered command that has a
    `headline` (the others, timings, are not re-run)."""
    return [
        Committed(name, command, path, json.loads(path.read_text()))
        for command in _registry.commands()
        if command.headline is not None
        for name, path in command.committed_runs(results).items()
    ]


def cores_of(run: Committed) -> int:
    """The cores `run` was made on: its recorded `environment.cpu_cores`, else one."""
    return int((run.results.get("environment") or {}).get("cpu_cores") or DEFAULT_CORES)


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
    # A run that is one file beside others (the memory sweeps) is not a folder to replace.
    if (
        run.path.name != "results.json"
        or entry["status"] == "failed"
        or entry.get("code_dirty")
        or not entry.get("code_commit")
    ):
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
        record = {
            "command": run.command_line(),
            "date": datetime.date.today().isoformat(),
            "seconds": round(seconds, 1),
            "rtol": rtol,
            "cores": cores,
            "committed_in_pieces": run.pieces(),
        }
        if done.returncode != 0:
            return {**record, "status": "failed", "error": done.stderr.strip().splitlines()[-3:]}
        new = json.loads((out / run.command.output(run.results["config"])).read_text())
        record["cores"] = (new.get("environment") or {}).get("cpu_cores", cores)
        got = run.headline(new)
        source = new.get("provenance", {})
        record |= {"code_commit": source.get("git_commit"), "code_dirty": source.get("git_dirty")}
        expected = run.headline()
        bad = compare(expected, got, rtol)
        record |= {
            "status": "differs" if bad else "reproduced",
            "differences": bad,
            "committed": expected,
            "now": got,
        }
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
    lines = [
        "| run | status | cores | committed run took (min) | detail |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        minutes = run.minutes()
        took = "–" if minutes is None else f"{minutes:.1f}"
        entry = record.get(run.name)
        if entry is None:
            status, detail = "not re-run", "not yet re-run with reproduce.py"
        elif entry["status"] == "replaced":
            status = "replaced"
            detail = (
                f"re-run from scratch at code {_short(entry)} ({entry['date']}) and "
                f"committed in place of the old file ({entry['replaced_because']}"
            )
            detail += (
                "; old: " + "; ".join(entry["differences"]) + ")"
                if entry["differences"]
                else ", same values within rtol)"
            )
        else:
            status = entry["status"]
            detail = (
                "; ".join(entry.get("differences") or entry.get("error") or [])
                or f"identical within rtol {entry['rtol']:g} "
                f"(code {_short(entry)}, {entry['date']})"
            )
        if run.pieces():
            detail += f"; the committed run {run.pieces()}"
        cores = "–" if entry is None else entry.get("cores", "–")
        lines.append(f"| {run.name} | {status} | {cores} | {took} | {detail} |")
    return "\n".join(lines)


def report(results: Path = RESULTS) -> str:
    """The `reproduce` table of the docs: each committed run's last re-run from scratch
    (`<results>/reproduce.json`), or why it was not re-run, under a count by status."""
    path = results / "reproduce.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    runs = committed_runs(results)
    counts = {
        status: sum(1 for run in runs if record.get(run.name, {}).get("status") == status)
        for status in ("reproduced", "replaced", "differs", "failed")
    }
    counts["not re-run"] = sum(1 for run in runs if run.name not in record)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    return f"{len(runs)} committed runs: {summary}.\n\n" + table(runs, record)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python experiments/reproduce.py",
        description=" ".join((__doc__ or "").split("\n\n")[0].split()),
    )
    parser.add_argument(
        "--run", nargs="+", default=[], help="names of runs to re-run (as in the table)"
    )
    parser.add_argument("--all", action="store_true", help="re-run every run under --max-minutes")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=10.0,
        help="skip runs whose committed run took longer (default: 10)",
    )
    parser.add_argument(
        "--rtol",
        type=float,
        default=1e-4,
        help="relative tolerance of the comparison (default: 1e-4)",
    )
    parser.add_argument(
        "--cores",
        type=int,
        default=None,
        help="pin each re-run to this many cores (default: as many as its "
        f"committed run had; {DEFAULT_CORES} where it does not say)",
    )
    parser.add_argument("--no-record", action="store_true", help="do not update reproduce.json")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help=f"folder of the committed runs (default: {RESULTS})",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="install a re-run over its committed folder when it differs or the "
        "committed file has no provenance (clean code only)",
    )
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        parser.error(
            f"--results must be a folder of committed runs; {str(args.results)!r} "
            "is not one (the default is this checkout's experiments/results)."
        )
    runs = committed_runs(args.results)
    record_path = args.results / "reproduce.json"
    names = {run.name for run in runs}
    if args.cores is not None and not 1 <= args.cores <= len(own_cores()):
        parser.error(
            f"--cores must be between 1 and the {len(own_cores())} cores this process "
            f"may use; got {args.cores}"
        )
    unknown = [name for name in args.run if name not in names]
    if unknown:
        parser.error(
            f"unknown run(s) {', '.join(unknown)}; the committed runs are: "
            f"{', '.join(sorted(names))}"
        )
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    chosen = [
        run
        for run in runs
        if run.name in args.run or (args.all and (run.minutes() or 0) <= args.max_minutes)
    ]
    failed = False
    for run in chosen:
        cores = args.cores or cores_of(run)
        print(
            f"re-running {run.name} on {cores} core{'s' * (cores > 1)}: {run.command_line()}",
            flush=True,
        )
        try:
            entry = rerun(run, args.rtol, args.replace, cores)
        except ValueError as error:
            print(f"  not re-run: {error} (--cores N re-runs it on N cores.)", flush=True)
            failed = True
            continue
        print(
            f"  {entry['status']} in {entry['seconds']:.0f} s",
            *entry.get("differences", []),
            sep="\n  ",
            flush=True,
        )
        failed |= entry["status"] not in ("reproduced", "replaced")
        record[run.name] = entry
        if not args.no_record:
            record_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(table(runs, record))
    return 1 if failed else 0

"""Check that short runs of the commands still give the numbers of a reference commit
(`experiments/check_reference.py` runs [`main`][]).

    python experiments/check_reference.py             # compare with experiments/reference.json
    python experiments/check_reference.py --record    # write it from the code on PYTHONPATH

Each check runs a registered command that declares a `reference` run (`python -m
node_kit.experiments.cnf --steps 30`, `...timeseries --steps 20`) with a fixed seed into a
temporary directory, then compares every column of its history.csv except the wall time,
and the final test metrics of its results.json, with the reference. The comparison is
exact unless `--rtol` is given. The reference was first recorded from commit 84400dc
(before the structure issue), to show that restructuring moved no number; it is
re-recorded, from a clean checkout and on one core, when a change is meant to move the
numbers (its `source` says from which commit):

    python experiments/check_reference.py --record --cores 1

The commands run on as many CPU cores as the reference was recorded on (`source.cpu_cores`;
XLA splits loops over the cores it may use, so float32 training differs in the last bits on
another count), pinned to the first that many of this process's cores; a machine with fewer
is told so instead of comparing.

Exits 1 and prints the differing values if anything differs.
"""

import argparse
import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from . import _registry
from ._outputs import own_cores, run_on_cores


REFERENCE = Path(__file__).resolve().parents[2] / "experiments" / "reference.json"


def checks() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """`{command: (flags, metrics)}` of every registered command with a reference run."""
    return {c.name: c.reference for c in _registry.commands() if c.reference is not None}


def run(command: str, argv: Sequence[str], out: Path, data_dir: str | None, cores: int) -> dict:
    """Run one command on `cores` cores and return its history rows (without `time`) and
    metrics."""
    flags = [*argv, "--out", str(out), "--no-progress"]
    fields = {f.name for f in dataclasses.fields(_registry.get(command).config)}
    if data_dir and "data_dir" in fields:
        flags += ["--data-dir", data_dir]
    run_on_cores(
        [sys.executable, "-m", _registry.get(command).module, *flags],
        cores,
        f"the reference of `{command} {' '.join(argv)}`",
        check=True,
        env=os.environ.copy(),
    )
    with open(out / "history.csv", newline="") as f:
        history = [
            {k: float(v) for k, v in row.items() if k != "time"} for row in csv.DictReader(f)
        ]
    results = json.loads((out / "results.json").read_text())
    return {
        "argv": list(argv),
        "history": history,
        "metrics": {k: results[k] for k in checks()[command][1] if k in results},
    }


def differences(reference: dict, got: dict, rtol: float) -> list[str]:
    """Human-readable lines for every value that differs (empty: the same)."""
    lines = []
    if len(reference["history"]) != len(got["history"]):
        return [f"history has {len(got['history'])} rows, reference {len(reference['history'])}"]
    pairs = [
        (f"history step {want['step']:.0f} {key}", want[key], have.get(key))
        for want, have in zip(reference["history"], got["history"])
        for key in want
    ]
    pairs += [(f"results {k}", v, got["metrics"].get(k)) for k, v in reference["metrics"].items()]
    for where, want, have in pairs:
        if have is None or not math.isclose(want, have, rel_tol=rtol, abs_tol=0.0):
            lines.append(f"{where}: reference {want!r}, now {have!r}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python experiments/check_reference.py",
        description=" ".join((__doc__ or "").split("\n\n")[0].split()),
    )
    parser.add_argument("--record", action="store_true", help="write the reference file")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (0: exact)")
    parser.add_argument("--data-dir", default="", help="datasets directory (default: node_kit's)")
    parser.add_argument(
        "--cores",
        type=int,
        default=None,
        help="cores to run on (default: the reference's, or all when recording)",
    )
    args = parser.parse_args(argv)
    recorded = {} if args.record else json.loads(REFERENCE.read_text())
    reference = recorded.get("checks", {})
    cores = args.cores or recorded.get("source", {}).get("cpu_cores") or len(own_cores())
    got, failed = {}, False
    with tempfile.TemporaryDirectory() as tmp:
        for command, (flags, _) in checks().items():
            try:
                got[command] = run(command, flags, Path(tmp) / command, args.data_dir, cores)
            except (ValueError, subprocess.CalledProcessError) as error:
                print(f"{command} {' '.join(flags)}: NOT RUN: {error}")
                return 1
            if args.record:
                continue
            recorded_flags = reference.get(command, {}).get("argv", list(flags))
            lines = (
                [
                    f"the reference was recorded with {recorded_flags}, the command's reference "
                    f"run is now {list(flags)}: record it again with --record"
                ]
                if command in reference and recorded_flags != list(flags)
                else differences(reference[command], got[command], args.rtol)
                if command in reference
                else [
                    f"no reference recorded for {command} in {REFERENCE.name}; record one "
                    "with --record"
                ]
            )
            failed |= bool(lines)
            status = "DIFFERS" if lines else "same"
            print(f"{command} {' '.join(flags)}: {status}", *lines, sep="\n  ")
    if args.record:
        import node_kit

        package = Path(node_kit.__file__).parent
        commit = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        source = {"commit": commit, "python": sys.version.split()[0], "cpu_cores": cores}
        text = json.dumps({"source": source, "checks": got}, indent=2)
        REFERENCE.write_text(text + "\n")
        print(f"wrote {REFERENCE}")
    return int(failed)

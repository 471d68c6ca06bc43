"""What the commands' tables share: reading committed results, the run a run script marks
as its default, durations and wall times.

A table is a function `tables(results) -> str` of the folder of committed results
(`experiments/results` by default), listed in its command's `Command.tables`; the run
scripts (`experiments/cnf_runs.sh`, ...) sit beside that folder. The engine that puts the
tables into README.md and docs/ is `_tables.py`.
"""

import json
import re
from collections.abc import Callable
from pathlib import Path

from ._protocol import runs_in_folder


MIB = 2**20


def load(path: Path) -> dict:
    """One JSON file."""
    return json.loads(path.read_text())


def from_file(table: Callable[[dict], str], *path: str) -> Callable[[Path], str]:
    """The table of one committed JSON file, `results/<path...>`, as a function of the
    results folder: `table` is the one the script that wrote the file prints."""

    def report(results: Path) -> str:
        return table(load(results.joinpath(*path)))

    return report


def runs(results: Path, command: str) -> list[dict]:
    """Every `<results>/<command>/<run>/results.json`, sorted by run name, with `name` (the
    run's folder) added."""
    return [
        {**load(path), "name": path.parent.name}
        for path in runs_in_folder(command)(results).values()
    ]


def by_name(runs: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in runs}


def default_run(results: Path, script: str) -> str:
    """The run that the run script `script` beside the results folder marks
    `# the default command`."""
    for line in (results.parent / script).read_text().splitlines():
        match = re.match(r"\s*run (\S+).*# the default command", line)
        if match:
            return match.group(1)
    raise ValueError(f"experiments/{script} marks no run `# the default command`")


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def wall_time(r: dict) -> str:
    """`" It took ... (provenance.wall_seconds)."` when the run recorded it, else `""`."""
    provenance, env = r.get("provenance") or {}, r.get("environment") or {}
    wall = provenance.get("wall_seconds")
    if wall is None:
        return ""
    device = provenance.get("device") or env.get("device", "an unrecorded device")
    cores = ""
    if env.get("cpu_cores") and env["cpu_cores"] != env.get("cpu_count"):
        pin = ",".join(map(str, range(env["cpu_cores"])))
        cores = (
            f", {env['cpu_cores']} of its {env['cpu_count']} CPU cores: prefix the "
            f"command with `taskset -c {pin}` for the same bits"
        )
    elif env.get("cpu_count"):
        cores = f", {env['cpu_count']} CPU cores"
    return (
        f" It took {duration(wall)} from start to finish ({device}{cores}; "
        f"`provenance.wall_seconds` in its results.json)."
    )


def times(a: float, b: float) -> str:
    """`a / b` as `"26x"`."""
    return f"{a / b:.0f}x"

"""The table writer: the Markdown that README.md and docs/ quote from committed results,
kept current (`python experiments/tables.py`).

    python experiments/tables.py NAME      # print one block
    python experiments/tables.py --write   # rewrite every marked block of README.md and docs/
    python experiments/tables.py --check   # exit 1, naming each file and block that differs

A page quotes a block between two marker comments; `--write` puts what `NAME` prints
between them, and `--check` (and tests/test_docs.py) fails when the two differ:

    <!-- tables.py NAME -->

    ...what `python experiments/tables.py NAME` prints...

    <!-- /tables.py -->

The blocks are the `Command.tables` of every registered command (`_registry.py`), and the
[`REPORTS`][] of the measuring scripts that are no command. Each is a function of the
folder of committed results (`experiments/results` by default), which a test may point
elsewhere. After new results are committed, run `python experiments/tables.py --write`.
"""

import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from . import _adjoint_tables, _compile_flags, _registry, _reports, _reproduce
from ._table_parts import from_file


ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "experiments" / "results"
REPORTS: dict[str, Callable[[Path], str]] = {
    "scaling": _reports.scaling_report,
    "loop": _reports.loop_report,
    "errors": from_file(_reports.errors_table, "bad_inputs", "summary.json"),
    "reproduce": _reproduce.report,
    "test-time": from_file(_reports.suite_time_table, "test_time.json"),
    "compile-flags": from_file(_compile_flags.table, "compile_flags.json"),
    "adjoint-decision": _adjoint_tables.decision_table,
    "reversible-reconstruction": from_file(
        _adjoint_tables.reconstruction_table, "reversible", "reconstruction.json"
    ),
    "reversible-training": from_file(_adjoint_tables.training_table, "reversible", "training.json"),
    "reversible-overhead": from_file(
        _adjoint_tables.overhead_table, "reversible", "adjoint_overhead.json"
    ),
}
"""The tables of the scripts in experiments/ that are no command (they measure the
package, its tests and its reproducibility), by block name; a script whose result is one
file is shown by the table the script prints."""

BLOCK = re.compile(
    r"(<!-- tables\.py (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /tables\.py -->)", re.S
)


def tables() -> dict[str, Callable[[Path], str]]:
    """Every block name -> its table: the registered commands' tables, then the reports.
    A name two owners give is an error naming both."""
    out: dict[str, Callable[[Path], str]] = {}
    owners: dict[str, str] = {}
    for owner, given in [
        *((f"the command {c.name} ({c.module})", c.tables) for c in _registry.commands()),
        (f"{__name__}.REPORTS", REPORTS),
    ]:
        for name, table in given.items():
            if name in owners:
                raise ValueError(
                    f"the table name {name!r} is given by {owners[name]} and by "
                    f"{owner}; rename one of them."
                )
            owners[name], out[name] = owner, table
    return out


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/ of `root`."""
    return [p for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))] if p.exists()]


def wrap(text: str) -> str:
    """Prose wrapped at 90 columns, table rows whole, never breaking inside `code` (a
    continuation line could then read as a list item)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("|") or len(line) <= 90:
            lines.append(line)
        else:
            whole = re.sub(r"`[^`]*`|\w+ = \w+", lambda m: m[0].replace(" ", "\0"), line)
            indent = "  " if line.startswith("- ") else ""
            lines += [
                part.replace("\0", " ")
                for part in textwrap.wrap(
                    whole,
                    90,
                    subsequent_indent=indent,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            ]
    return "\n".join(lines)


def printed(name: str, results: Path = RESULTS) -> str:
    """What `python experiments/tables.py NAME` prints."""
    known = tables()
    if name not in known:
        raise KeyError(f"unknown block `{name}`; known: {', '.join(known)}")
    return wrap(known[name](results))


def blocks(text: str) -> list[tuple[str, str]]:
    """`(name, body)` of every marked block, the body without its framing blank lines."""
    return [(m["name"], m["body"].strip("\n")) for m in BLOCK.finditer(text)]


def render(text: str, cache: dict[str, str], results: Path = RESULTS) -> str:
    """`text` with every marked block holding what its table prints (`cache`: by name)."""

    def fill(m: re.Match) -> str:
        if m["name"] not in cache:
            cache[m["name"]] = printed(m["name"], results)
        return f"{m[1]}\n{cache[m['name']]}\n\n{m[4]}"

    return BLOCK.sub(fill, text)


def stale(root: Path = ROOT, results: Path = RESULTS) -> list[str]:
    """`file: block` for every marked block of `root`'s pages that differs from what its
    table prints now."""
    cache: dict[str, str] = {}
    out = []
    for page in pages(root):
        text = page.read_text()
        for (name, body), (_, new) in zip(blocks(text), blocks(render(text, cache, results))):
            if body != new:
                out.append(f"{page.relative_to(root)}: {name}")
    return out


def write(root: Path = ROOT, results: Path = RESULTS) -> list[Path]:
    """Rewrite the stale blocks of `root`'s pages in place; return the files changed."""
    cache: dict[str, str] = {}
    changed = []
    for page in pages(root):
        text = page.read_text()
        new = render(text, cache, results)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


def main(argv: list[str], root: Path = ROOT, results: Path = RESULTS) -> int:
    """`python experiments/tables.py NAME | --write | --check`."""
    if argv == ["--write"]:
        for page in write(root, results):
            print(f"rewrote {page.relative_to(root)}")
        return 0
    if argv == ["--check"]:
        differ = stale(root, results)
        for where in differ:
            print(
                f"{where}: differs from `python experiments/tables.py "
                f"{where.rsplit(': ', 1)[1]}`; run `python experiments/tables.py --write`",
                file=sys.stderr,
            )
        return 1 if differ else 0
    if len(argv) == 1 and argv[0] in tables():
        print(printed(argv[0], results))
        return 0
    print(
        f"usage: python experiments/tables.py NAME | --write | --check\n"
        f"NAME: {', '.join(tables())}",
        file=sys.stderr,
    )
    return 2

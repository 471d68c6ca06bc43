"""README.md and docs/: their code runs, and their numbers are what the committed results say.

- Every ```python block of a page runs, the blocks of one page in order in one namespace,
  in float32 (JAX's default, as the pages say), in a temporary working directory. The line
  before a block may mark it: `<!-- test: slow -->` makes that block and every later one of
  the page run only under `-m slow` (the default suite runs the blocks before it);
  `<!-- test: skip (reason) -->` never runs it (later blocks must not need it).
- Every block marked `<!-- tables.py NAME -->` is what `python experiments/tables.py NAME`
  prints now (`python experiments/tables.py --write` rewrites them).
- A decimal number, ratio (`26x`) or percentage in the prose of a page (outside code,
  inline code, links and those blocks) appears in a generated block of the same page, or
  is one of the few settings and citations listed in `NOT_MEASURED`.
- Pictures linked from a page exist; lists follow a blank line (mkdocs needs it); the flag
  tables of the two commands' pages list exactly the command's flags, defaults and choices.
"""

import dataclasses
import importlib
import json
import re
from pathlib import Path

import pytest

from node_kit.experiments import _cnf_tables, _tables as tables

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!-- test: (slow|skip \((?P<reason>[^)]+)\)) -->")


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@dataclasses.dataclass(frozen=True)
class Block:
    code: str
    line: int  # of the block's first code line in the page (1-based)
    mark: str  # "", "slow" or "skip"


def code_blocks(page: Path) -> list[Block]:
    text = page.read_text()
    out = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.fullmatch(before.strip())
        mark = "" if marker is None else marker.group(1).split(" ")[0]
        out.append(Block(match.group(1), text.count("\n", 0, match.start()) + 2, mark))
    return out


def _default_part(blocks: list[Block]) -> list[Block]:
    """The blocks the default suite runs: those before the first `slow` one."""
    slow = next((i for i, b in enumerate(blocks) if b.mark == "slow"), len(blocks))
    return blocks[:slow]


def _run(page: Path, blocks: list[Block], tmp_path, monkeypatch) -> None:
    import jax

    monkeypatch.chdir(tmp_path)
    x64 = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", False)  # the pages run in JAX's default float32
    namespace = {"__name__": "__docs__"}
    try:
        for block in blocks:
            if block.mark != "skip":
                # Leading newlines: a traceback names the page and its own line numbers.
                code = "\n" * (block.line - 1) + block.code
                exec(compile(code, str(page), "exec"), namespace)
    finally:
        jax.config.update("jax_enable_x64", x64)


RUNNABLE = [p for p in PAGES if any(b.mark != "skip" for b in _default_part(code_blocks(p)))]
SLOW = [p for p in PAGES if any(b.mark == "slow" for b in code_blocks(p))]


@pytest.mark.parametrize("page", RUNNABLE, ids=_name)
def test_page_code_runs(page, tmp_path, monkeypatch):
    _run(page, _default_part(code_blocks(page)), tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("page", SLOW, ids=_name)
def test_page_code_runs_slow(page, tmp_path, monkeypatch):
    _run(page, code_blocks(page), tmp_path, monkeypatch)


def test_code_markers_are_known_and_placed():
    """Every `<!-- test: ... -->` is one of the two forms and sits right before a block."""
    bad = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if "<!-- test:" not in line:
                continue
            following = next((x for x in lines[i + 1:] if x.strip()), "")
            if not MARKER.fullmatch(line.strip()) or following.strip() != "```python":
                bad.append(f"{_name(page)}:{i + 1}: {line.strip()}")
    assert not bad, "markers must be `<!-- test: slow -->` or `<!-- test: skip (reason) -->` " \
        "on the line before a ```python block:\n" + "\n".join(bad)


def test_generated_blocks_are_what_tables_py_prints():
    stale = tables.stale()
    assert not stale, ("blocks that differ from what experiments/tables.py prints now "
                       "(run `python experiments/tables.py --write`):\n" + "\n".join(stale))


def test_tables_py_check_and_write_find_a_stale_block(tmp_path):
    page = tmp_path / "README.md"
    page.write_text("a\n\n<!-- tables.py overhead -->\n\n| stale |\n\n<!-- /tables.py -->\n")
    assert tables.stale(tmp_path) == ["README.md: overhead"]
    assert tables.main(["--check"], root=tmp_path) == 1
    assert tables.write(tmp_path) == [page]
    assert tables.stale(tmp_path) == [] and tables.main(["--check"], root=tmp_path) == 0
    assert tables.printed("overhead") in page.read_text()
    page.write_text("<!-- tables.py nonsense -->\n<!-- /tables.py -->\n")
    with pytest.raises(KeyError, match="unknown block `nonsense`"):
        tables.stale(tmp_path)


def test_a_table_name_has_one_owner(monkeypatch):
    monkeypatch.setitem(tables.REPORTS, "cnf", tables.REPORTS["loop"])
    with pytest.raises(ValueError, match=r"'cnf' is given by the command cnf "
                                         r"\(node_kit.experiments.cnf\) and by "
                                         r"node_kit.experiments._tables.REPORTS"):
        tables.tables()


def test_default_run_sentence_has_the_wall_time_only_when_recorded(tmp_path):
    results = tmp_path / "results"
    run = results / "cnf" / "toy"
    run.mkdir(parents=True)
    (tmp_path / "cnf_runs.sh").write_text("run toy --dataset 8gaussians   # the default command\n")
    record = {"config": {}, "environment": {"device": "cpu", "cpu_count": 2}, "test_nll": 2.9,
              "test_nll_se": 0.01, "true_entropy": 2.8, "true_entropy_se": 0.002}
    (run / "results.json").write_text(json.dumps(record))
    sentence = _cnf_tables.cnf_default
    assert "It took" not in sentence(results) and "`toy`" in sentence(results)
    record["provenance"] = {"wall_seconds": 200.4, "device": "cpu"}
    (run / "results.json").write_text(json.dumps(record))
    assert "It took 3 min 20 s from start to finish (cpu, 2 CPU cores;" in sentence(results)
    record["environment"]["cpu_cores"] = 1  # pinned to one of the two
    (run / "results.json").write_text(json.dumps(record))
    assert "(cpu, 1 of its 2 CPU cores: prefix the command with `taskset -c 0` for the same " \
           "bits;" in " ".join(sentence(results).split())


# --- Numbers in prose ----------------------------------------------------------------------

# Numbers in prose that are settings, facts about a dataset or quotes from a paper, not
# measurements of node_kit; each pattern is removed (with its context) before the check.
NOT_MEASURED = [
    r"Python 3\.11",                       # the supported Python
    r"0\.005 s",                           # MuJoCo's time step (datasets, hopper)
    r"1\.414",                             # FFJORD's 8gaussians scale
    r"alpha = 0\.05",                      # the digits' logit alpha
    r"\(1\.5 to 4",                         # periods of periodic's frequency range
    r"70/15/15%",                          # the digits split
    r"standard deviation 0\.01",           # periodic's noise
    r"releases \(3\.5",                    # a mujoco version
    r"40% fewer function evaluations \(up to 62%\)",  # Kidger et al. (2021), abstract
    r"eq\. \(2\.2\)",                      # an equation number of Stumm and Walther (2010)
    r"amplitude in \[0\.1, 5\]",            # the sinusoid tasks of Finn et al. (2017)
    r"\d+% (?:dropped|observed)",          # shares of points, a setting
    r"(?:10|20|30|50|70)%",                # the same shares, listed
    r"0\.1, 0\.2, 0\.3 or 0\.5",            # the same shares, as --observed values
    r"\b75% of a GPU's memory",            # JAX's preallocation default
    r"to 5% of",                           # the floor of the cosine learning-rate schedule
    r"lr 0\.01",                           # the inner SGD rate of the memory sweep
    r"from 0\.1 to 1",                     # a KL warm-up in an example
    r"Share Alike 3\.0",                   # MNIST's licence
]
NUMBER = re.compile(r"(?<![\w.])(?:\d+\.\d+|\d+(?=[x%]))[x%]?(?![\w.]*\d)")


def prose(text: str) -> list[tuple[int, str]]:
    """`(line number, text)` of the prose lines: no code, inline code, links or comments."""
    def blank(m: re.Match) -> str:
        return "\n" * m[0].count("\n")

    text = tables.BLOCK.sub(blank, text)
    text = re.sub(r"<!--.*?-->", blank, text, flags=re.S)
    text = re.sub(r"^(```|~~~).*?^\1[ \t]*$", blank, text, flags=re.S | re.M)
    lines, previous_blank, in_code = [], True, False
    for line in text.splitlines():
        indented = line.startswith("    ") and not line.lstrip().startswith(("- ", "* "))
        in_code = indented and (previous_blank or in_code)
        previous_blank = not line.strip()
        lines.append("" if in_code else line)  # an indented code block
    text = re.sub(r"(`+).+?\1", blank, "\n".join(lines), flags=re.S)  # inline code
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    return list(enumerate(text.splitlines(), 1))


def _numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_prose_numbers_come_from_generated_blocks(page):
    text = page.read_text()
    generated = set().union(*(_numbers(body) for _, body in tables.blocks(text)))
    loose = []
    for number, line in prose(text):
        for pattern in NOT_MEASURED:
            line = re.sub(pattern, "", line)
        loose += [f"{_name(page)}:{number}: {n}" for n in _numbers(line) if n not in generated]
    assert not loose, (
        "numbers in prose that no generated block of the page prints: print them with "
        "experiments/tables.py, drop them, or (settings only) list them in NOT_MEASURED:\n"
        + "\n".join(loose))


# --- Pictures, lists, flags -------------------------------------------------------------------


def test_linked_pictures_exist():
    missing = []
    for page in PAGES:
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text()):
            if not target.startswith(("http://", "https://")) and not (page.parent / target).exists():
                missing.append(f"{_name(page)}: {target}")
    assert not missing, "\n".join(missing)


def test_lists_follow_a_blank_line():
    """Python-Markdown (mkdocs) reads a list right after a paragraph line as that paragraph."""
    bad = []
    for page in PAGES:
        lines = [line for _, line in prose(page.read_text())]
        for i in range(1, len(lines)):
            item = re.match(r"(- |\* |\d+\. )", lines[i])
            above = lines[i - 1]
            if item and above.strip() and not re.match(r"\s*(- |\* |\d+\. )|\s", above) \
                    and not above.startswith(("|", "#", "!!!", "???")):
                bad.append(f"{_name(page)}:{i + 1}: {lines[i][:60]}")
    assert not bad, "a list needs a blank line before it:\n" + "\n".join(bad)


def _flag_rows(page: Path) -> dict[str, tuple[str, str]]:
    """`--flag` -> (its default's cell token, the meaning cell) of a page's flag table."""
    rows = {}
    for line in page.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`--"):
            continue
        flags = [f for f in re.findall(r"`(--[\w-]+)`", cells[0]) if not f.startswith("--no-")]
        defaults = re.findall(r"`([^`]*)`", cells[1]) or [cells[1]] * len(flags)
        for flag, default in zip(flags, defaults, strict=True):
            rows[flag] = (default, cells[2])
    return rows


def _same_default(cell: str, value) -> bool:
    if isinstance(value, bool):
        return cell == ("on" if value else "off")
    if value is None or cell == "None":
        return cell == str(value)
    if isinstance(value, str):
        return cell == (value or '""')
    return float(cell) == value


@pytest.mark.parametrize("command", ["cnf", "timeseries"])
def test_flag_tables_match_the_commands(command):
    """docs/<command>.md lists every flag with the command's default and choices."""
    module = importlib.import_module(f"node_kit.experiments.{command}")
    from node_kit.experiments._choices import SOLVER_NAMES  # fixed-step ones included
    rows = _flag_rows(ROOT / "docs" / f"{command}.md")
    defaults = module.Config()
    fields = {"--" + f.name.replace("_", "-"): f.name for f in dataclasses.fields(module.Config)}
    assert sorted(rows) == sorted(fields), "flags in the table vs the command's"
    choices = module._choices()
    wrong = []
    for flag, name in fields.items():
        default, meaning = rows[flag]
        if not _same_default(default, getattr(defaults, name)):
            wrong.append(f"{flag}: default {default!r}, the command's {getattr(defaults, name)!r}")
        named = set(re.findall(r"`([\w-]+)`", meaning))
        others = set(SOLVER_NAMES).union(*choices.values()) - set(choices.get(name, ()))
        if name in choices and (set(choices[name]) - named or named & others):
            wrong.append(f"{flag}: the table names {sorted(named)}, the choices are "
                         f"{sorted(choices[name])}")
    assert not wrong, "\n".join(wrong)


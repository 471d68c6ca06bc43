"""Count the bad-input matrix: how many of its cases get a clear error, per area.

```
.venv/bin/python experiments/bad_inputs.py
```

Runs the matrix of `tests/test_bad_inputs.py` through pytest (its conftest turns float64
on, as for every test); each case records what it did, classified as clear, unclear,
internal or silent (see `outcome` there), and a plugin here collects those records. Writes
`experiments/results/bad_inputs/summary.json` and prints the markdown table that
docs/errors.md quotes. `tests/test_bad_inputs.py` fails when the summary's total is not
the number of cases, so the published counts cannot go stale unnoticed.
"""

import collections
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "bad_inputs" / "summary.json"
TESTED_IN = "tests/test_bad_inputs.py"
MATRIX = "test_bad_input_gets_a_clear_error"
"""The test of the matrix: one case per parameter, each recording `bad_input`."""


class Outcomes:
    """A pytest plugin: the `bad_input` record of each case, in order, and the kinds of
    outcome (`OUTCOMES` of the test module)."""

    def __init__(self):
        self.cases: list[dict] = []
        self.kinds: tuple[str, ...] = ()

    def pytest_collection_modifyitems(self, items):
        self.kinds = tuple(items[0].module.OUTCOMES) if items else ()

    def pytest_runtest_logreport(self, report):
        if report.when == "call":
            self.cases += [value for name, value in report.user_properties if name == "bad_input"]


def run_matrix() -> Outcomes:
    """Every case of the matrix, run by pytest in this process."""
    outcomes = Outcomes()
    code = pytest.main([f"{ROOT / TESTED_IN}::{MATRIX}", "-q", "-p", "no:cacheprovider"],
                       plugins=[outcomes])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not outcomes.cases:
        raise SystemExit(f"pytest could not run the matrix of {TESTED_IN} (exit {int(code)})")
    return outcomes


def main() -> dict:
    outcomes = run_matrix()
    # Imported after pytest starts, which rewrites the asserts of the plugins it loads
    # (jaxtyping's, which node_kit imports).
    from node_kit.experiments._reports import errors_table

    counts = collections.defaultdict(collections.Counter)
    not_clear = []
    for case in outcomes.cases:
        counts[case["area"]][case["kind"]] += 1
        if case["kind"] != "clear":
            not_clear.append({"id": case["id"], "outcome": case["kind"], "gap": case["gap"],
                              "detail": case["detail"].strip().splitlines()[0][:300]})
    total = collections.Counter()
    for area_counts in counts.values():
        total.update(area_counts)
    kinds = outcomes.kinds
    summary = {
        "command": "python experiments/bad_inputs.py",
        "cases": TESTED_IN,
        "total": len(outcomes.cases),
        "outcomes": {kind: total[kind] for kind in kinds},
        "areas": {area: {kind: c[kind] for kind in kinds} for area, c in counts.items()},
        "not_clear": not_clear,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2) + "\n")
    print(errors_table(summary))
    for case in not_clear:
        print(f"- {case['id']}: {case['outcome']}: {case['detail']}")
    return summary


if __name__ == "__main__":
    main()

"""Count the bad-input matrix: how many of its cases get a clear error, per area.

```
.venv/bin/python experiments/bad_inputs.py
```

Runs every case of `tests/test_bad_inputs.py` outside pytest (float64 on, as the tests
run), classifies each outcome as clear, unclear, internal or silent (see `outcome` there),
writes `experiments/results/bad_inputs/summary.json` and prints the markdown table that
docs/errors.md quotes. `tests/test_bad_inputs.py` fails when the summary's total is not
the number of cases, so the published counts cannot go stale unnoticed.
"""

import collections
import json
import sys
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "results" / "bad_inputs" / "summary.json"
TESTED_IN = "tests/test_bad_inputs.py"


def main() -> dict:
    jax.config.update("jax_enable_x64", True)  # as tests/conftest.py
    sys.path.insert(0, str(ROOT / "tests"))
    import test_bad_inputs as matrix

    counts = collections.defaultdict(collections.Counter)
    not_clear = []
    for case in matrix.CASES:
        kind, detail = matrix.outcome(case)
        counts[case.area][kind] += 1
        if kind != "clear":
            not_clear.append({"id": case.id, "outcome": kind, "gap": case.gap,
                              "detail": detail.strip().splitlines()[0][:300]})
    total = collections.Counter()
    for area_counts in counts.values():
        total.update(area_counts)
    summary = {
        "command": "python experiments/bad_inputs.py",
        "cases": TESTED_IN,
        "total": len(matrix.CASES),
        "outcomes": {kind: total[kind] for kind in matrix.OUTCOMES},
        "areas": {area: {kind: c[kind] for kind in matrix.OUTCOMES} for area, c in counts.items()},
        "not_clear": not_clear,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2) + "\n")
    print(table(summary))
    for case in not_clear:
        print(f"- {case['id']}: {case['outcome']}: {case['detail']}")
    return summary


def table(summary: dict) -> str:
    """The markdown table of docs/errors.md: area, cases, clear, where tested."""
    rows = ["| area | cases | clear | where tested |", "|---|---:|---:|---|"]
    for area, c in summary["areas"].items():
        rows.append(f"| {area} | {sum(c.values())} | {c['clear']} | `{TESTED_IN}` |")
    o = summary["outcomes"]
    rows.append(f"| **total** | **{summary['total']}** | **{o['clear']}** | |")
    share = 100 * o["clear"] / summary["total"]
    rows.append("")
    rows.append(f"Clear: {o['clear']} of {summary['total']} ({share:.1f}%); unclear: "
                f"{o['unclear']}; internal tracebacks: {o['internal']}; silent acceptances: "
                f"{o['silent']}.")
    return "\n".join(rows)


if __name__ == "__main__":
    main()

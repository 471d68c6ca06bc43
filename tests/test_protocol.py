"""A new command is one module: registered, it trains, loads, evaluates, reproduces and
writes its tables."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import node_kit as nk
from node_kit.experiments import _registry, _reproduce, _tables

TESTS = Path(__file__).parent


@pytest.mark.slow  # a whole command end to end: the slow tier (.ci/run runs it)
def test_a_registered_command_trains_loads_evaluates_and_reproduces(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    results = tmp_path / "results"
    out = results / "tiny" / "first"
    # Trained as a user runs it (its own process, float32), then its --evaluate.
    for extra in ([], ["--evaluate"]):
        subprocess.run([sys.executable, "-m", "tiny_command", "--out", str(out),
                        "--no-progress", *extra], check=True, capture_output=True, text=True)
    trained = json.loads((out / "results.json").read_text())
    evaluated = json.loads((out / "evaluation.json").read_text())
    assert evaluated["test_mse"] == trained["test_mse"]
    with pytest.raises(ValueError, match=r"'tiny_command', which is not a registered command"):
        nk.load_run(out)

    command = _registry.register("tiny_command")
    try:
        assert "tiny" in _registry.names() and _registry.get("tiny_command") is command
        model, config = nk.load_run(out, command="tiny")
        assert isinstance(model, nk.NeuralODE) and config.steps == 6 and config.out == str(out)
        assert [row.name for row in _reproduce.committed_runs(results)] == ["tiny/first"]
        assert _reproduce.main(["--results", str(results), "--run", "tiny/first"]) == 0
        record = json.loads((results / "reproduce.json").read_text())["tiny/first"]
        assert record["status"] == "reproduced", record
        assert record["command"] == "python -m tiny_command"
        table = command.tables["tiny"](results)
        assert table.splitlines()[-1].startswith("| tiny/first | 6 |")
        # The table writer fills a page's block with it, from this results folder.
        page = tmp_path / "README.md"
        page.write_text("<!-- tables.py tiny -->\n<!-- /tables.py -->\n")
        assert _tables.main(["--check"], root=tmp_path, results=results) == 1
        assert _tables.write(tmp_path, results) == [page]
        assert page.read_text() == f"<!-- tables.py tiny -->\n\n{table}\n\n<!-- /tables.py -->\n"
        assert _tables.main(["--check"], root=tmp_path, results=results) == 0
    finally:
        _registry.unregister("tiny")
    assert "tiny" not in _registry.names()

"""The library passes ruff (lint and format) and pyright (basic): a failure shows their output.

The configuration is `ruff.toml` and `pyrightconfig.json` at the repository root. The tools
come from the test extra; a missing one fails here (it is not skipped), so that CI notices.
"""

import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent

CHECKED = ["node_kit"]
"""The library, its datasets and its commands: all of node_kit/."""


def _run(*command: str) -> None:
    """Run `python -m <command>` (the tools of this interpreter) at the repository root."""
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True
    )
    output = f"{result.stdout}\n{result.stderr}".strip()
    assert result.returncode == 0, f"`{' '.join(command[:2])}` failed:\n{output}"


def test_ruff_check():
    _run("ruff", "check", "--no-cache", *CHECKED)


def test_ruff_format():
    _run("ruff", "format", "--check", "--no-cache", *CHECKED)


@pytest.mark.slow  # half a minute: the slow tier (.ci/run runs it)
def test_pyright():
    # `--pythonpath`: resolve jax, equinox, diffrax, ... in this interpreter's environment.
    _run("pyright", "--pythonpath", sys.executable, *CHECKED)

"""The library passes ruff (lint and format) and pyright (basic): a failure shows their output.

The configuration is `ruff.toml` and `pyrightconfig.json` at the repository root. The tools
come from the test extra; a missing one fails here (it is not skipped), so that CI notices.
"""

import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent

# The files kept clean so far. Once the branches editing the other files have merged and
# those files are clean too, this list becomes ["node_kit"].
CHECKED = [
    "node_kit/_adjoint.py",
    "node_kit/_checks.py",
    "node_kit/_cnf.py",
    "node_kit/_cnf_dynamics.py",
    "node_kit/_custom_types.py",
    "node_kit/_deq.py",
    "node_kit/_fixed_point.py",
    "node_kit/_history.py",
    "node_kit/_implicit.py",
    "node_kit/_irregular.py",
    "node_kit/_latent_ode.py",
    "node_kit/_latent_ode_loss.py",
    "node_kit/_masked_scan.py",
    "node_kit/_memory.py",
    "node_kit/_meta.py",
    "node_kit/_neural_ode.py",
    "node_kit/_ode_rnn.py",
    "node_kit/_parallel.py",
    "node_kit/_regularisers.py",
    "node_kit/_rk4.py",
    "node_kit/_solve.py",
    "node_kit/_solve_inputs.py",
    "node_kit/_trace.py",
    "node_kit/_vector_field.py",
    *sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "node_kit" / "datasets").glob("*.py")
        if path.name != "__init__.py"
    ),
]


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


def test_pyright():
    # `--pythonpath`: resolve jax, equinox, diffrax, ... in this interpreter's environment.
    _run("pyright", "--pythonpath", sys.executable, *CHECKED)

"""The short reference runs of the commands still give the numbers of commit 84400dc."""

import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_commands_reproduce_the_reference_numbers(tmp_path):
    path = Path(__file__).parents[1] / "experiments" / "check_reference.py"
    spec = importlib.util.spec_from_file_location("check_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--data-dir", str(tmp_path / "data")]) == 0

"""The README's library example runs as written."""

import re
from pathlib import Path


def test_readme_example_runs():
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_implicit_layers_page_examples_run():
    """The DEQ and implicit-minimisation examples of docs/implicit-layers.md run as written."""
    text = (Path(__file__).parents[1] / "docs" / "implicit-layers.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "implicit-layers.md", "exec"), {})


def test_one_version_source_and_a_license():
    """pyproject reads the version from node_kit/__init__.py; the LICENSE is Apache-2.0."""
    import importlib.metadata

    import node_kit

    root = Path(__file__).parents[1]
    assert importlib.metadata.version("node_kit") == node_kit.__version__
    assert 'dynamic = ["version"]' in (root / "pyproject.toml").read_text()
    assert "Apache License" in (root / "LICENSE").read_text()

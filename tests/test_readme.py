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

"""One version source and a license. The README's and the docs' code blocks run in
tests/test_docs.py (README.md and docs/implicit-layers.md in the default suite)."""

from pathlib import Path


def test_one_version_source_and_a_license():
    """pyproject reads the version from node_kit/__init__.py; the LICENSE is Apache-2.0."""
    import importlib.metadata

    import node_kit

    root = Path(__file__).parents[1]
    assert importlib.metadata.version("node_kit") == node_kit.__version__
    assert 'dynamic = ["version"]' in (root / "pyproject.toml").read_text()
    assert "Apache License" in (root / "LICENSE").read_text()

"""The `experiments` extra: what `node_kit.datasets` and the commands need beyond the library.

`import node_kit` needs only the core install. The two packages that need more check for
it when they are imported, with `importlib.util.find_spec` (which finds a package without
importing it, so TFDS, slow to import, still loads only when a dataset is built or read).
"""

import importlib.util


EXPERIMENTS_INSTALL = 'pip install "node_kit[experiments]"'
"""The install line for the `experiments` extra (from a clone:
`pip install -e ".[experiments]"`)."""

DATASET_PACKAGES = {
    "tensorflow_datasets": "tensorflow-datasets",
    "array_record": "array_record",
    "importlib_resources": "importlib_resources",
}
"""What `node_kit.datasets` needs: import name -> distribution name, as pyproject lists it."""

COMMAND_PACKAGES = {**DATASET_PACKAGES, "matplotlib": "matplotlib", "tqdm": "tqdm"}
"""What the commands (`python -m node_kit.experiments.<name>`) need: the whole extra."""


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # already imported, without a spec
        return False


def require_experiments_extra(package: str, needs: dict[str, str]) -> None:
    """Raise `ImportError` naming the install line if a package of `needs` is missing.

    **Arguments:**

    - `package`: the node_kit package that needs them, as the message names it.
    - `needs`: import name -> distribution name (`DATASET_PACKAGES`, `COMMAND_PACKAGES`).
    """
    missing = [distribution for name, distribution in needs.items() if not _installed(name)]
    if missing:
        raise ImportError(
            f"{package} needs the experiments extra ({', '.join(needs.values())}); not "
            f"installed here: {', '.join(missing)}. Install it with: {EXPERIMENTS_INSTALL} "
            '(from a clone: pip install -e ".[experiments]"). The library itself '
            "(import node_kit) needs none of it."
        )

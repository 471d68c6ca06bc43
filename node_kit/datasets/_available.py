"""`available`: what `load` can serve offline right now, found without importing TFDS."""

import glob
import importlib.util
import os

from ._registry import names, resolve_data_dir

_NODE_KIT_BUILDER_DIRS = {
    "digits": "node_kit_digits",
    "toy2d": "node_kit_toy2d",
    "periodic": "node_kit_periodic",
}


def _prepared_variants(dataset_dir: str) -> list[str]:
    pattern = os.path.join(glob.escape(dataset_dir), "**", "dataset_info.json")
    return [
        os.path.dirname(info)
        for info in glob.glob(pattern, recursive=True)
        if glob.glob(os.path.join(glob.escape(os.path.dirname(info)), "*.array_record*"))
    ]


def available(*, data_dir: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Names that `load` can serve right now, offline, without starting a download.

    **Arguments:**

    - `data_dir`: the data directory to inspect (same default as `load`).

    **Returns:**

    A sorted tuple: the 2-D toys and `"periodic"` (always, they are generated), `"digits"` when scikit-learn is installed or a digits
    split is already built, and every other TFDS dataset prepared as array_record in `data_dir`.
    """
    data_dir = resolve_data_dir(data_dir)
    found = [name for name in names() if name != "digits"]
    digits_dir = os.path.join(data_dir, _NODE_KIT_BUILDER_DIRS["digits"])
    if importlib.util.find_spec("sklearn") is not None or _prepared_variants(digits_dir):
        found.append("digits")
    entries = sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []
    for entry in entries:
        skip = entry == "downloads" or entry in _NODE_KIT_BUILDER_DIRS.values()
        if not skip and _prepared_variants(os.path.join(data_dir, entry)):
            found.append(entry)
    return tuple(sorted(found))

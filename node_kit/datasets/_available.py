"""`available`: what `load` can serve offline right now, found without importing TFDS."""

import glob
import importlib.util
import os

from ._digits import SKLEARN_HINT
from ._hopper import HOPPER_HINT, HOPPER_VERSIONS, _installed
from ._registry import names, resolve_data_dir
from ._uea import UEA_HINT, _aeon_data_dir

_NODE_KIT_BUILDER_DIRS = {
    "digits": "node_kit_digits",
    "toy2d": "node_kit_toy2d",
    "periodic": "node_kit_periodic",
    "hopper": "node_kit_hopper",
    "japanese_vowels": "node_kit_japanese_vowels",
}


def _prepared_variants(dataset_dir: str) -> list[str]:
    pattern = os.path.join(glob.escape(dataset_dir), "**", "dataset_info.json")
    return [
        os.path.dirname(info)
        for info in glob.glob(pattern, recursive=True)
        if glob.glob(os.path.join(glob.escape(os.path.dirname(info)), "*.array_record*"))
    ]


def _missing(*modules: str) -> list[str]:
    return [module for module in modules if importlib.util.find_spec(module) is None]


def _hopper_problem() -> str | None:
    missing = _missing(*HOPPER_VERSIONS)
    if missing:
        return f"{' and '.join(missing)} not installed"
    found = {name: _installed(name) for name in HOPPER_VERSIONS}
    if found != HOPPER_VERSIONS:
        return "found " + ", ".join(f"{name} {version}" for name, version in found.items())
    return None


def _japanese_vowels_files_missing() -> bool:
    data_dir = _aeon_data_dir()
    if data_dir is None:
        return True
    folder = os.path.join(data_dir, "JapaneseVowels")
    files = ("JapaneseVowels_TRAIN.ts", "JapaneseVowels_TEST.ts")
    return not all(os.path.isfile(os.path.join(folder, name)) for name in files)


def _reasons() -> dict[str, str]:
    """Why each optional-dependency dataset cannot be built here (absent when it can)."""
    reasons = {}
    if _missing("sklearn"):
        reasons["digits"] = f"scikit-learn is not installed: `{SKLEARN_HINT}`."
    problem = _hopper_problem()
    if problem is not None:
        reasons["hopper"] = (
            f"{problem}; it needs exactly dm_control==1.0.50 and mujoco==3.17.0 (other mujoco "
            f"releases break dm_control 1.0.50): `{HOPPER_HINT}`."
        )
    if _japanese_vowels_files_missing():
        reasons["japanese_vowels"] = (
            f"aeon, whose copy of the UEA archive it reads, is not installed: `{UEA_HINT}`."
        )
    return reasons


def unavailable(*, data_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The node_kit datasets that `load` cannot build here, each with the reason and the fix.

    **Arguments:**

    - `data_dir`: the data directory to inspect (same default as `load`).

    **Returns:**

    A dict from dataset name to a sentence naming the missing package and the `pip install`
    command. A dataset already built in `data_dir` is not listed: it loads without the package.
    """
    data_dir = resolve_data_dir(data_dir)
    return {
        name: reason
        for name, reason in _reasons().items()
        if not _prepared_variants(os.path.join(data_dir, _NODE_KIT_BUILDER_DIRS[name]))
    }


def available(*, data_dir: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """Names that `load` can serve right now, offline, without starting a download.

    **Arguments:**

    - `data_dir`: the data directory to inspect (same default as `load`).

    **Returns:**

    A sorted tuple: the 2-D toys and `"periodic"` (always, they are generated); `"digits"`,
    `"hopper"` and `"japanese_vowels"` when their optional package is installed (scikit-learn;
    dm_control and mujoco; aeon) or the dataset is already built in `data_dir`; and every other
    TFDS dataset prepared as array_record in `data_dir`. `unavailable` says why a node_kit
    dataset is missing.
    """
    data_dir = resolve_data_dir(data_dir)
    missing = unavailable(data_dir=data_dir)
    found = [name for name in names() if name not in missing]
    entries = sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []
    for entry in entries:
        skip = entry == "downloads" or entry in _NODE_KIT_BUILDER_DIRS.values()
        if not skip and _prepared_variants(os.path.join(data_dir, entry)):
            found.append(entry)
    return tuple(sorted(found))

"""`DatasetSpec`: everything node_kit knows about one dataset, in one frozen object.

A dataset's own file (`_toy2d.py`, `_digits.py`, ...) holds its sampler and its spec; the
registry (`_registry.py`) is a list of specs; the one TFDS builder (`_tfds_builders.py`) and
`load` (`_load.py`) read what they need from the spec and never branch on a dataset's name.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._checks import is_int
from ._series import SeriesPreparation


SPLITS: tuple[str, ...] = ("train", "validation", "test")
"""Split names of every node_kit dataset, in the order `split_sizes` lists them."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """One stored feature of an example: its shape and dtype (for ONE example).

    `num_classes` marks a class label (stored as TFDS `ClassLabel`, read back as int64).
    """

    shape: tuple[int, ...]
    dtype: Any
    num_classes: int | None = None


@dataclasses.dataclass(frozen=True)
class Requirement:
    """What building a dataset needs beyond node_kit's own dependencies.

    **Fields:**

    - `packages`: the distributions, in words (`"dm_control 1.0.50 and mujoco 3.17.0"`).
    - `hint`: the install command (`'pip install "node_kit[hopper]"'`).
    - `require`: raises an `ImportError` naming `hint` unless the build can run; called
        before TFDS starts, so the error names the fix.
    - `problem`: a cheap check (no heavy import): why the build cannot run here, or `None`.
    """

    packages: str
    hint: str
    require: Callable[[], None]
    problem: Callable[[], str | None]

    def reason(self) -> str | None:
        """The sentence `unavailable` shows, ending with the install command; `None` if none."""
        problem = self.problem()
        return None if problem is None else f"{problem}: `{self.hint}`."


@dataclasses.dataclass(frozen=True)
class Generated:
    """What a spec's generator returns.

    **Fields:**

    - `splits`: `{split: {feature: array}}`, one array per feature with the examples on the
        first axis, for each of `SPLITS`.
    - `keys`: `{split: int array}`, the TFDS key of each example, or `None` for the running
        row number over the splits in order. TFDS orders the stored rows by a hash of the key
        (by the key itself when the spec keeps the order), so the keys fix the row order.
    - `metadata`: JSON values stored with the data (`metadata()` returns them).
    """

    splits: Mapping[str, Mapping[str, np.ndarray]]
    keys: Mapping[str, np.ndarray] | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def split_rows(arrays: Mapping[str, np.ndarray], sizes: tuple[int, ...]) -> dict[str, dict]:
    """Cut arrays into consecutive (train, validation, test) blocks of `sizes` rows."""
    ends = np.cumsum(sizes)
    starts = ends - np.asarray(sizes)
    return {
        split: {name: values[int(a) : int(b)] for name, values in arrays.items()}
        for split, a, b in zip(SPLITS, starts, ends)
    }


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetSpec:
    """One node_kit dataset: its name, sizes, requirement, features, generator and metadata.

    **Fields:**

    - `name`: what `load` is called with (`"8gaussians"`, `"hopper"`).
    - `default_sizes`: the default `(train, validation, test)` sizes.
    - `features`: `{name: Feature}`, what each stored example holds.
    - `generate`: `generate(sizes, seed) -> Generated`, the NumPy data of every split, a
        pure function of the sizes and the seed.
    - `description`, `homepage`, `citation`: the TFDS dataset info.
    - `builder_name`: the TFDS builder (the folder under `data_dir`), `node_kit_<name>` if
        empty; datasets may share one (the toys: `node_kit_toy2d`).
    - `config_prefix`: put before `seed<seed>-<sizes>` in the config (folder) name, to tell
        apart datasets that share a builder (`"moons-"`).
    - `config_description`: a format string with `{seed}` and `{sizes}`.
    - `version`, `release_notes`: the TFDS version; bump it when the generated data change.
    - `check_sizes`: an extra check of the sizes (raise `ValueError`), or `None`.
    - `requirement`: the optional packages the build needs, or `None`.
    - `supervised_keys`: `(input, label)` feature names, or `None`.
    - `keep_order`: store rows in key order instead of TFDS's hash shuffle.
    - `metadata_keys`: the metadata the generator returns (hopper: `("min", "max")`).
    - `series`: how experiments prepare a time series (`None` for other data).
    """

    name: str
    default_sizes: tuple[int, int, int]
    features: Mapping[str, Feature]
    generate: Callable[[tuple[int, int, int], int], Generated]
    description: str
    homepage: str = ""
    citation: str = ""
    builder_name: str = ""
    config_prefix: str = ""
    config_description: str = "Seed {seed}, (train, validation, test) = {sizes}."
    version: str = "1.0.0"
    release_notes: str = ""
    check_sizes: Callable[[tuple[int, int, int]], None] | None = None
    requirement: Requirement | None = None
    supervised_keys: tuple[str, str] | None = None
    keep_order: bool = False
    metadata_keys: tuple[str, ...] = ()
    series: SeriesPreparation | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty string; got name={self.name!r}.")
        if not isinstance(self.features, Mapping) or not all(
            isinstance(feature, Feature) for feature in self.features.values()
        ):
            raise ValueError(
                "`features` must map feature names to `Feature(shape, dtype)`; got "
                f"features={self.features!r:.80}."
            )
        if not callable(self.generate):
            raise ValueError(
                "`generate` must be a function `generate(sizes, seed) -> Generated`; got "
                f"{type(self.generate).__name__}."
            )
        if not self.builder_name:
            object.__setattr__(self, "builder_name", f"node_kit_{self.name}")
        self.split_sizes(self.default_sizes)

    def split_sizes(self, sizes: tuple[int, int, int] | None) -> tuple[int, int, int]:
        """Check `sizes` (three positive ints, then `check_sizes`); `None` gives the default."""
        if sizes is None:
            return self.default_sizes
        try:
            values = tuple(sizes)
        except TypeError:  # not a sequence: fails the length check below
            values = ()
        if len(values) != 3 or not all(is_int(s) and s > 0 for s in values):
            raise ValueError(
                "`split_sizes` must be three positive ints (train, validation, test); "
                f"got split_sizes={sizes!r}."
            )
        train, validation, test = (int(s) for s in values)
        if self.check_sizes is not None:
            self.check_sizes((train, validation, test))
        return train, validation, test

    def config_name(self, seed: int, sizes: tuple[int, int, int]) -> str:
        """The config (folder) name of one variant, e.g. `moons-seed0-50000-10000-10000`."""
        return f"{self.config_prefix}seed{seed}-" + "-".join(str(size) for size in sizes)

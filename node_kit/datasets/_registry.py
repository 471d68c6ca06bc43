"""The node_kit dataset names, their default split sizes, and the data directory."""

import os

import numpy as np

from ._toy2d import TOY2D_NAMES

SPLITS: tuple[str, ...] = ("train", "validation", "test")
"""Split names of every node_kit dataset, in the order `split_sizes` lists them."""

TOY2D_SPLIT_SIZES: tuple[int, int, int] = (50_000, 10_000, 10_000)
"""Default (train, validation, test) sizes of the 2-D toys: about 3 s to build, 2 s to read train."""

DIGITS_NUM_EXAMPLES = 1797
"""Images in `sklearn.datasets.load_digits`."""

DIGITS_SPLIT_SIZES: tuple[int, int, int] = (1257, 270, 270)
"""Default (train, validation, test) sizes of `digits`: 70% / 15% / 15% of the 1797 images."""

PERIODIC_SPLIT_SIZES: tuple[int, int, int] = (1000, 100, 100)
"""Default (train, validation, test) sizes of `periodic`: the paper's 1000 training series."""

HOPPER_SPLIT_SIZES: tuple[int, int, int] = (8000, 1000, 1000)
"""Default (train, validation, test) sizes of `hopper`: the paper's 10,000 simulated series."""

JAPANESE_VOWELS_NUM_TRAIN = 270
"""Series in the UEA JapaneseVowels training file, split into train and validation."""

JAPANESE_VOWELS_NUM_TEST = 370
"""Series in the UEA JapaneseVowels test file: the `test` split, always all of them."""

JAPANESE_VOWELS_SPLIT_SIZES: tuple[int, int, int] = (240, 30, 370)
"""Default (train, validation, test) sizes of `japanese_vowels`: train + validation = 270."""

TIME_SERIES_NAMES: tuple[str, ...] = ("hopper", "japanese_vowels", "periodic")
"""Time-series datasets node_kit builds itself; their examples hold times `"t"` and values `"x"`."""

DATA_DIR_ENV = "NODE_KIT_DATA_DIR"
"""Environment variable that overrides the default data directory."""

_DEFAULT_DATA_DIR = os.path.join("~", ".cache", "node_kit", "tensorflow_datasets")


def names() -> tuple[str, ...]:
    """Names of the datasets node_kit builds itself (offline, from code or shipped data).

    **Returns:**

    A sorted tuple: the 2-D toys, `"digits"` and the time series (`"hopper"`,
    `"japanese_vowels"`, `"periodic"`). `"digits"`, `"hopper"` and `"japanese_vowels"` need an
    optional package to build (see `available`).
    """
    return tuple(sorted((*TOY2D_NAMES, "digits", *TIME_SERIES_NAMES)))


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> str:
    """The directory datasets are built in and read from.

    **Arguments:**

    - `data_dir`: an explicit directory, or `None` for `$NODE_KIT_DATA_DIR` if set, else
        `~/.cache/node_kit/tensorflow_datasets`.

    **Returns:**

    An absolute path with `~` expanded.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or _DEFAULT_DATA_DIR
    return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))


def check_split(name: str, split: str) -> None:
    """Raise a `ValueError` unless `split` is one of `SPLITS`."""
    if split not in SPLITS:
        raise ValueError(
            f"`split` must be one of {list(SPLITS)} for {name!r}; got split={split!r}."
        )


_DEFAULT_SPLIT_SIZES = {
    "digits": DIGITS_SPLIT_SIZES,
    "periodic": PERIODIC_SPLIT_SIZES,
    "hopper": HOPPER_SPLIT_SIZES,
    "japanese_vowels": JAPANESE_VOWELS_SPLIT_SIZES,
}


def _default_split_sizes(name: str) -> tuple[int, int, int]:
    return _DEFAULT_SPLIT_SIZES.get(name, TOY2D_SPLIT_SIZES)


def _check_japanese_vowels_sizes(sizes: tuple[int, ...]) -> None:
    train, validation, test = sizes
    if train + validation != JAPANESE_VOWELS_NUM_TRAIN or test != JAPANESE_VOWELS_NUM_TEST:
        raise ValueError(
            "`split_sizes` for 'japanese_vowels' must split the UEA training file's "
            f"{JAPANESE_VOWELS_NUM_TRAIN} series into train + validation and keep its "
            f"{JAPANESE_VOWELS_NUM_TEST} test series as test; got {sizes} (train + validation = "
            f"{train + validation}, test = {test}). The default is {JAPANESE_VOWELS_SPLIT_SIZES}."
        )


def check_split_sizes(name: str, split_sizes: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """Validate `split_sizes` for dataset `name`, filling in the default for `None`.

    **Arguments:**

    - `name`: a node_kit dataset name.
    - `split_sizes`: `(train, validation, test)` positive ints, or `None`. For `"digits"` they
        must add up to 1797; for `"japanese_vowels"` train + validation must be 270 and test 370.

    **Returns:**

    The sizes as a tuple of three Python ints.
    """
    if split_sizes is None:
        return _default_split_sizes(name)
    sizes = tuple(split_sizes)
    valid = len(sizes) == 3 and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in sizes
    )
    if not valid:
        raise ValueError(
            "`split_sizes` must be three positive ints (train, validation, test); "
            f"got split_sizes={split_sizes!r}."
        )
    if name == "digits" and sum(sizes) != DIGITS_NUM_EXAMPLES:
        raise ValueError(
            f"`split_sizes` for 'digits' must add up to its {DIGITS_NUM_EXAMPLES} images; got "
            f"{sizes} (sum {sum(sizes)}). The default is {DIGITS_SPLIT_SIZES}."
        )
    if name == "japanese_vowels":
        _check_japanese_vowels_sizes(sizes)
    return tuple(int(s) for s in sizes)

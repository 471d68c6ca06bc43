"""UEA JapaneseVowels, read offline from the copy the `aeon` package ships.

640 utterances of the Japanese vowels /ae/ by nine male speakers (Kudo, Toyama and Shimbo 1999),
each a series of 7 to 29 frames of 12 LPC cepstrum coefficients; the class is the speaker.
The UEA archive splits them into 270 training and 370 test series (`JapaneseVowels_TRAIN.ts`,
`JapaneseVowels_TEST.ts`; the `_eq_` files, padded to equal length by aeon, are not used).

aeon is never imported (it pulls in numba and pandas): its directory is found with
`importlib.util.find_spec` and the `.ts` text format is parsed here.

What the `japanese_vowels` dataset stores, per series, padded at the end to 29 frames:

- `"t"`: float32 `(29,)`, the frame index 0, 1, ..., 28: the same for every series and
    strictly increasing through the padding, so an ODE can be solved across it;
- `"x"`: float32 `(29, 12)`, the coefficients, 0 in the padding;
- `"mask"`: bool `(29, 12)`, True exactly on the first `length` rows (the observed frames);
- `"length"`: int64, the number of observed frames, 7..29;
- `"label"`: int64, the speaker 0..8 (the file's classes "1".."9" minus one).

Nothing is dropped or rescaled here; experiments that hide observations do it themselves.
"""

import importlib.util
import os

import numpy as np

from ._series import SeriesPreparation
from ._spec import DatasetSpec, Feature, Generated, Requirement


UEA_HINT = 'pip install "node_kit[uea]"'
"""The install command for the UEA datasets' optional dependency (aeon)."""

JAPANESE_VOWELS_MAX_LENGTH = 29
"""Frames in the longest series; every series is padded to this length."""

JAPANESE_VOWELS_NUM_CHANNELS = 12
"""LPC cepstrum coefficients per frame."""

JAPANESE_VOWELS_NUM_CLASSES = 9
"""Speakers."""

JAPANESE_VOWELS_NUM_SERIES = {"train": 270, "test": 370}
"""Series in the UEA training and test files."""


def _aeon_data_dir() -> str | None:
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")


def japanese_vowels_path(part: str) -> str:
    """The path of aeon's `JapaneseVowels_TRAIN.ts` (`part="train"`) or `_TEST.ts` (`"test"`).

    Raises an `ImportError` with the install hint when aeon is not installed or lacks the file.
    """
    if part not in JAPANESE_VOWELS_NUM_SERIES:
        raise ValueError(f"`part` must be 'train' or 'test'; got part={part!r}.")
    data_dir = _aeon_data_dir()
    name = f"JapaneseVowels_{part.upper()}.ts"
    path = None if data_dir is None else os.path.join(data_dir, "JapaneseVowels", name)
    if path is None or not os.path.isfile(path):
        where = "aeon is not installed" if data_dir is None else f"{path} does not exist"
        raise ImportError(
            "The 'japanese_vowels' dataset is read from the copy of the UEA archive that the "
            f"aeon package ships (no download), but {where}. Install it with `{UEA_HINT}` (or "
            '`pip install "aeon>=1.0"`). Once built, the dataset loads without aeon.'
        )
    return path


def require_aeon() -> None:
    """Raise an `ImportError` with the install hint unless aeon's JapaneseVowels files exist."""
    for part in JAPANESE_VOWELS_NUM_SERIES:
        japanese_vowels_path(part)


def _parse_line(line: str, path: str) -> tuple[np.ndarray, str]:
    *channels, label = line.split(":")
    values = [np.array(channel.split(","), dtype=np.float64) for channel in channels]
    lengths = sorted({len(v) for v in values})
    if len(lengths) != 1:
        raise RuntimeError(
            f"{path}: every channel of a series must have the same length; got lengths "
            f"{lengths} in the line starting {line[:40]!r}."
        )
    return np.stack(values, axis=-1), label.strip()


def read_ts(path: str) -> tuple[list[np.ndarray], list[str]]:
    """Parse a multivariate `.ts` file of the UEA/UCR archive (sktime/aeon text format).

    Header lines start with `#` or `@`; after `@data` each line holds one series as
    `dim0values:dim1values:...:label`, comma-separated values per dimension.

    **Returns:**

    `(series, labels)`: one float64 array `(length, num_channels)` per series, and the labels
    as the strings the file uses, in file order.
    """
    series, labels, in_data = [], [], False
    with open(path, encoding="utf-8") as file:
        for raw in file:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = line.lower().startswith("@data")
                continue
            values, label = _parse_line(line, path)
            series.append(values)
            labels.append(label)
    return series, labels


def _pad(series: list[np.ndarray]) -> dict[str, np.ndarray]:
    n, length = len(series), JAPANESE_VOWELS_MAX_LENGTH
    x = np.zeros((n, length, JAPANESE_VOWELS_NUM_CHANNELS), dtype=np.float32)
    lengths = np.array([len(s) for s in series], dtype=np.int64)
    for row, values in zip(x, series):
        row[: len(values)] = values
    observed = np.arange(length)[None, :] < lengths[:, None]
    mask = np.repeat(observed[:, :, None], JAPANESE_VOWELS_NUM_CHANNELS, axis=2)
    t = np.tile(np.arange(length, dtype=np.float32), (n, 1))
    return {"t": t, "x": x, "mask": mask, "length": lengths}


def read_japanese_vowels(part: str) -> dict[str, np.ndarray]:
    """The UEA JapaneseVowels training (`part="train"`) or test (`"test"`) series, padded.

    **Arguments:**

    - `part`: `"train"` (270 series) or `"test"` (370 series), in file order.

    **Returns:**

    `{"t": (n, 29) float32, "x": (n, 29, 12) float32, "mask": (n, 29, 12) bool,
    "length": (n,) int64, "label": (n,) int64}` as described in the module docstring.
    """
    path = japanese_vowels_path(part)
    series, labels = read_ts(path)
    expected = JAPANESE_VOWELS_NUM_SERIES[part]
    classes = [str(c) for c in range(1, JAPANESE_VOWELS_NUM_CLASSES + 1)]
    longest = max((len(s) for s in series), default=0)
    channels = sorted({s.shape[1] for s in series})
    shape_ok = longest <= JAPANESE_VOWELS_MAX_LENGTH and channels == [JAPANESE_VOWELS_NUM_CHANNELS]
    if len(series) != expected or not set(labels) <= set(classes) or not shape_ok:
        raise RuntimeError(
            f"{path} holds {len(series)} series with labels {sorted(set(labels))}, lengths up "
            f"to {longest} and {channels} channels; expected {expected} series, labels "
            f"{classes}, lengths up to {JAPANESE_VOWELS_MAX_LENGTH} and "
            f"{JAPANESE_VOWELS_NUM_CHANNELS} channels."
        )
    padded = _pad(series)
    padded["label"] = np.array([classes.index(label) for label in labels], dtype=np.int64)
    return padded


JAPANESE_VOWELS_SPLIT_SIZES: tuple[int, int, int] = (240, 30, 370)
"""Default (train, validation, test) sizes of `japanese_vowels`: train + validation = 270."""


def _check_sizes(sizes: tuple[int, int, int]) -> None:
    train, validation, test = sizes
    num_train, num_test = JAPANESE_VOWELS_NUM_SERIES["train"], JAPANESE_VOWELS_NUM_SERIES["test"]
    if train + validation != num_train or test != num_test:
        raise ValueError(
            "`split_sizes` for 'japanese_vowels' must split the UEA training file's "
            f"{num_train} series into train + validation and keep its {num_test} test series "
            f"as test; got {sizes} (train + validation = {train + validation}, test = {test}). "
            f"The default is {JAPANESE_VOWELS_SPLIT_SIZES}."
        )


def _generate(sizes: tuple[int, int, int], seed: int) -> Generated:
    train, test = read_japanese_vowels("train"), read_japanese_vowels("test")
    order = np.random.default_rng(seed).permutation(len(train["label"]))
    parts = {"train": order[: sizes[0]], "validation": order[sizes[0] :]}
    splits = {s: {k: v[rows] for k, v in train.items()} for s, rows in parts.items()}
    return Generated({**splits, "test": test})


def _problem() -> str | None:
    try:
        require_aeon()
    except ImportError:
        return "aeon, whose copy of the UEA archive it reads, is not installed"
    return None


_CITATION = """@article{kudo1999multidimensional,
  title={Multidimensional curve classification using passing-through regions},
  author={Kudo, Mineichi and Toyama, Jun and Shimbo, Masaru},
  journal={Pattern Recognition Letters},
  volume={20},
  number={11--13},
  pages={1103--1111},
  year={1999}
}

@article{bagnall2018uea,
  title={The {UEA} multivariate time series classification archive, 2018},
  author={Bagnall, Anthony and Dau, Hoang Anh and Lines, Jason and Flynn, Michael and
          Large, James and Bostrom, Aaron and Southam, Paul and Keogh, Eamonn},
  journal={arXiv preprint arXiv:1811.00075},
  year={2018}
}"""

_N, _D = JAPANESE_VOWELS_MAX_LENGTH, JAPANESE_VOWELS_NUM_CHANNELS

JAPANESE_VOWELS = DatasetSpec(
    name="japanese_vowels",
    default_sizes=JAPANESE_VOWELS_SPLIT_SIZES,
    features={
        "t": Feature((_N,), np.float32),
        "x": Feature((_N, _D), np.float32),
        "mask": Feature((_N, _D), np.bool_),
        "length": Feature((), np.int64),
        "label": Feature((), np.int64, num_classes=JAPANESE_VOWELS_NUM_CLASSES),
    },
    generate=_generate,
    description="UEA JapaneseVowels padded to 29 frames: `t`, `x` (29, 12), `mask`, `length`, "
    "`label` 0..8.\n\nRows keep their order: test is the UEA test file in file order, train and "
    "validation the UEA training file in the order of a seeded permutation. See "
    "`node_kit.datasets._uea`.",
    homepage="https://www.timeseriesclassification.com/description.php?Dataset=JapaneseVowels",
    citation=_CITATION,
    config_description="Seed {seed}, (train, validation, test) = {sizes} series.",
    release_notes="aeon's JapaneseVowels_TRAIN/TEST.ts, seeded train/validation.",
    check_sizes=_check_sizes,
    requirement=Requirement("aeon>=1.0", UEA_HINT, require_aeon, _problem),
    keep_order=True,  # The test split stays in the UEA file order.
    series=SeriesPreparation(standardise=True, unit_times=True),
)
"""The `japanese_vowels` dataset: the UEA files, train and validation split by a seed."""

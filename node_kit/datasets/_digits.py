"""The 8x8 handwritten digits that scikit-learn ships, split deterministically from a seed."""

import importlib.util

import numpy as np

from ._spec import DatasetSpec, Feature, Generated, Requirement, SPLITS


SKLEARN_HINT = 'pip install "node_kit[data]"'


def require_sklearn() -> None:
    """Raise an `ImportError` with the install hint when scikit-learn is not importable."""
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "The 'digits' dataset is read from the copy scikit-learn ships (no download), so "
            f"building it needs scikit-learn, which is not installed. Install it with "
            f"`{SKLEARN_HINT}` (or `pip install scikit-learn`). Once built, the dataset loads "
            "without scikit-learn."
        ) from error


def raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as `(pixels, labels)`.

    **Returns:**

    `pixels`: uint8 array `(1797, 64)` with values 0..16 (row-major 8x8 images);
    `labels`: int64 array `(1797,)` with values 0..9.
    """
    require_sklearn()
    from sklearn.datasets import load_digits

    data, target = load_digits(return_X_y=True)
    pixels = np.asarray(data)
    if pixels.shape != (1797, 64) or pixels.min() < 0 or pixels.max() > 16:
        raise RuntimeError(
            "scikit-learn's load_digits returned unexpected data "
            f"(shape {pixels.shape}, range {pixels.min()}..{pixels.max()}); expected "
            "(1797, 64) pixels in 0..16."
        )
    return pixels.astype(np.uint8), np.asarray(target, dtype=np.int64)


def split_indices(sizes: tuple[int, int, int], *, seed: int) -> tuple[np.ndarray, ...]:
    """Disjoint index sets for (train, validation, test), from a seeded permutation.

    **Arguments:**

    - `sizes`: (train, validation, test) sizes adding up to the number of examples.
    - `seed`: non-negative int for `numpy.random.default_rng`.

    **Returns:**

    Three int arrays that together are a permutation of `range(sum(sizes))`.
    """
    permutation = np.random.default_rng(seed).permutation(sum(sizes))
    boundaries = np.cumsum(sizes)[:-1]
    return tuple(np.split(permutation, boundaries))


DIGITS_NUM_EXAMPLES = 1797
"""Images in `sklearn.datasets.load_digits`."""

DIGITS_SPLIT_SIZES: tuple[int, int, int] = (1257, 270, 270)
"""Default (train, validation, test) sizes of `digits`: 70% / 15% / 15% of the 1797 images."""

_CITATION = """@misc{alpaydin1998optical,
  title={Optical Recognition of Handwritten Digits},
  author={Alpaydin, E. and Kaynak, C.},
  howpublished={UCI Machine Learning Repository},
  year={1998}
}"""


def _check_sizes(sizes: tuple[int, int, int]) -> None:
    if sum(sizes) != DIGITS_NUM_EXAMPLES:
        raise ValueError(
            f"`split_sizes` for 'digits' must add up to its {DIGITS_NUM_EXAMPLES} images; got "
            f"{sizes} (sum {sum(sizes)}). The default is {DIGITS_SPLIT_SIZES}."
        )


def _generate(sizes: tuple[int, int, int], seed: int) -> Generated:
    pixels, labels = raw_digits()
    indices = dict(zip(SPLITS, split_indices(sizes, seed=seed)))
    splits = {s: {"x": pixels[i], "label": labels[i]} for s, i in indices.items()}
    return Generated(splits, keys=indices)  # Keyed by image: the stored order stays as before.


def _problem() -> str | None:
    return None if importlib.util.find_spec("sklearn") else "scikit-learn is not installed"


DIGITS = DatasetSpec(
    name="digits",
    default_sizes=DIGITS_SPLIT_SIZES,
    features={"x": Feature((64,), np.uint8), "label": Feature((), np.int64, num_classes=10)},
    generate=_generate,
    description="The 8x8 digits scikit-learn ships: raw pixels 0..16 under `x` (uint8, 64), "
    "`label` 0..9.",
    homepage="https://archive.ics.uci.edu/dataset/80",
    citation=_CITATION,
    release_notes="sklearn.datasets.load_digits, seeded permutation split.",
    check_sizes=_check_sizes,
    requirement=Requirement("scikit-learn", SKLEARN_HINT, require_sklearn, _problem),
    supervised_keys=("x", "label"),
)
"""The `digits` dataset: 1797 images, split by a seeded permutation."""

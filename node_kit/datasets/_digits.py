"""The 8x8 handwritten digits that scikit-learn ships, split deterministically from a seed."""

import numpy as np

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

    bunch = load_digits()
    pixels = np.asarray(bunch.data)
    if pixels.shape != (1797, 64) or pixels.min() < 0 or pixels.max() > 16:
        raise RuntimeError(
            "scikit-learn's load_digits returned unexpected data "
            f"(shape {pixels.shape}, range {pixels.min()}..{pixels.max()}); expected "
            "(1797, 64) pixels in 0..16."
        )
    return pixels.astype(np.uint8), np.asarray(bunch.target, dtype=np.int64)


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

"""The 2-D toy densities of FFJORD (Grathwohl et al. 2019, `lib/toy_data.py`), in NumPy.

Each generator reproduces the FFJORD definition (scales, noise levels, offsets) with a seeded
`numpy.random.Generator` instead of the global NumPy state, and without scikit-learn: `moons`,
`circles` and `swissroll` re-implement `sklearn.datasets.make_moons` / `make_circles` /
`make_swiss_roll` with the arguments FFJORD passes. Where FFJORD needs a sample size that divides
(pinwheel: 5 arms, 2spirals: 2 arms, rings: 4 rings) any size works here and the arm / ring
counts differ by at most one. The points are shuffled at the end, so any contiguous slice is an
i.i.d.-like sample (FFJORD's 2spirals comes out arm by arm).
"""

import functools
from collections.abc import Callable

import numpy as np

from .._checks import check_int
from ._spec import DatasetSpec, Feature, Generated, split_rows


_EIGHT_GAUSSIANS_SCALE = 4.0
_EIGHT_GAUSSIANS_STD = 0.5
_EIGHT_GAUSSIANS_DIVISOR = 1.414  # FFJORD divides by 1.414, not sqrt(2).
_CHECKERBOARD_SCALE = 2.0


def eight_gaussians_centers() -> np.ndarray:
    """Centres of the 8gaussians mixture after FFJORD's scaling, shape `(8, 2)`."""
    r = 1.0 / np.sqrt(2.0)
    unit = np.array(
        [(1, 0), (-1, 0), (0, 1), (0, -1), (r, r), (r, -r), (-r, r), (-r, -r)], dtype=np.float64
    )
    return unit * _EIGHT_GAUSSIANS_SCALE / _EIGHT_GAUSSIANS_DIVISOR


def eight_gaussians_std() -> float:
    """Standard deviation of each 8gaussians component after FFJORD's scaling."""
    return _EIGHT_GAUSSIANS_STD / _EIGHT_GAUSSIANS_DIVISOR


def checkerboard_scale() -> float:
    """Factor FFJORD multiplies the unit checkerboard on `[-2, 2)^2` by."""
    return _CHECKERBOARD_SCALE


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    centers = eight_gaussians_centers() * _EIGHT_GAUSSIANS_DIVISOR
    points = rng.standard_normal((n, 2)) * _EIGHT_GAUSSIANS_STD + centers[rng.integers(8, size=n)]
    return points / _EIGHT_GAUSSIANS_DIVISOR


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, size=n) * 2 + np.floor(x1) % 2
    return np.stack([x1, x2], axis=1) * _CHECKERBOARD_SCALE


def _pinwheel(n: int, rng: np.random.Generator) -> np.ndarray:
    radial_std, tangential_std, num_arms, rate = 0.3, 0.1, 5, 0.25
    rads = np.linspace(0, 2 * np.pi, num_arms, endpoint=False)
    features = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    angles = rads[np.arange(n) % num_arms] + rate * np.exp(features[:, 0])
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)])
    rotations = np.reshape(rotations.T, (-1, 2, 2))
    return 2 * np.einsum("ti,tij->tj", features, rotations)


def _two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    half = (n + 1) // 2
    t = np.sqrt(rng.random((half, 1))) * 540 * (2 * np.pi) / 360
    d1x = -np.cos(t) * t + rng.random((half, 1)) * 0.5
    d1y = np.sin(t) * t + rng.random((half, 1)) * 0.5
    arm = np.hstack([d1x, d1y])
    x = np.vstack([arm, -arm])[:n] / 3
    return x + rng.standard_normal(x.shape) * 0.1


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    n_out = n // 2
    n_in = n - n_out
    outer = np.linspace(0, np.pi, n_out)
    inner = np.linspace(0, np.pi, n_in)
    x = np.concatenate([np.cos(outer), 1 - np.cos(inner)])
    y = np.concatenate([np.sin(outer), 1 - np.sin(inner) - 0.5])
    points = np.stack([x, y], axis=1) + rng.normal(scale=0.1, size=(n, 2))
    return points * 2 + np.array([-1.0, -0.2])


def _circles(n: int, rng: np.random.Generator) -> np.ndarray:
    factor, noise = 0.5, 0.08
    n_out = n // 2
    n_in = n - n_out
    outer = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    inner = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    x = np.concatenate([np.cos(outer), np.cos(inner) * factor])
    y = np.concatenate([np.sin(outer), np.sin(inner) * factor])
    points = np.stack([x, y], axis=1) + rng.normal(scale=noise, size=(n, 2))
    return points * 3


def _rings(n: int, rng: np.random.Generator) -> np.ndarray:
    quarter = n // 4
    counts = (quarter, quarter, quarter, n - 3 * quarter)
    radii = (1.0, 0.75, 0.5, 0.25)
    rings = []
    for count, radius in zip(counts, radii):
        angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
        rings.append(np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius)
    points = np.concatenate(rings) * 3.0
    return points + rng.normal(scale=0.08, size=points.shape)


def _swissroll(n: int, rng: np.random.Generator) -> np.ndarray:
    noise = 1.0
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    points = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    points = points + noise * rng.standard_normal((n, 2))
    return points / 5


_GENERATORS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "2spirals": _two_spirals,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "circles": _circles,
    "moons": _moons,
    "pinwheel": _pinwheel,
    "rings": _rings,
    "swissroll": _swissroll,
}

TOY2D_NAMES: tuple[str, ...] = tuple(sorted(_GENERATORS))


def check_seed(seed: int) -> int:
    """Raise a `ValueError` unless `seed` is a non-negative int (what NumPy seeds accept)."""
    return check_int("seed", seed, minimum=0, show_name=True)


def sample_toy2d(name: str, num_samples: int, *, seed: int) -> np.ndarray:
    """Draw `num_samples` points from one of FFJORD's 2-D toy densities.

    The same `(name, num_samples, seed)` always gives the same points. This is the generator the
    `load` builders store (as float32) and that `true_entropy` samples from.

    **Arguments:**

    - `name`: one of `"2spirals"`, `"8gaussians"`, `"checkerboard"`, `"circles"`, `"moons"`,
        `"pinwheel"`, `"rings"`, `"swissroll"`.
    - `num_samples`: how many points, at least 1.
    - `seed`: a non-negative int seeding `numpy.random.default_rng`.

    **Returns:**

    A float64 NumPy array of shape `(num_samples, 2)`, in shuffled order.
    """
    if name not in _GENERATORS:
        raise ValueError(
            f"`name` must be one of the 2-D toys {list(TOY2D_NAMES)}; got name={name!r}."
        )
    check_int("num_samples", num_samples, expected="at least 1 and an int", show_name=True)
    check_seed(seed)
    rng = np.random.default_rng(seed)
    points = _GENERATORS[name](int(num_samples), rng)
    return points[rng.permutation(len(points))].astype(np.float64)


TOY2D_SPLIT_SIZES: tuple[int, int, int] = (50_000, 10_000, 10_000)
"""Default (train, validation, test) sizes of the 2-D toys (about 3 s to build, 2 s to read)."""

_FFJORD_CITATION = """@inproceedings{grathwohl2019ffjord,
  title={FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models},
  author={Grathwohl, Will and Chen, Ricky T. Q. and Bettencourt, Jesse and Sutskever, Ilya
          and Duvenaud, David},
  booktitle={International Conference on Learning Representations},
  year={2019}
}"""


def _generate(toy: str, sizes: tuple[int, int, int], seed: int) -> Generated:
    points = sample_toy2d(toy, sum(sizes), seed=seed).astype(np.float32)
    return Generated(split_rows({"x": points}, sizes))


def _spec(toy: str) -> DatasetSpec:
    return DatasetSpec(
        name=toy,
        default_sizes=TOY2D_SPLIT_SIZES,
        features={"x": Feature((2,), np.float32)},
        generate=functools.partial(_generate, toy),
        description="FFJORD's 2-D toy densities, generated locally from a seed (float32 points "
        "under `x`).",
        homepage="https://github.com/rtqichen/ffjord",
        citation=_FFJORD_CITATION,
        builder_name="node_kit_toy2d",
        config_prefix=f"{toy}-",
        config_description=f"FFJORD's {toy}, seed {{seed}}, (train, validation, test) = {{sizes}}.",
        release_notes="FFJORD toy_data definitions, seeded numpy.random.Generator.",
    )


TOY2D_SPECS: tuple[DatasetSpec, ...] = tuple(_spec(toy) for toy in TOY2D_NAMES)
"""One spec per toy; they share the TFDS builder `node_kit_toy2d`."""

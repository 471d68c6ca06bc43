"""The toy of Rubanova, Chen and Duvenaud (2019): 1-D sinusoids sampled at random times.

Each series is `x(t) = a sin(2 pi f t + phi) + noise` with its own frequency `f`,
amplitude `a` and phase `phi`, observed at `PERIODIC_NUM_POINTS` sorted uniform random
times on `[0, PERIODIC_T_MAX]`: irregular, and different for every series. Times are stored
as float32; a tie that rounding creates is moved up by one float32 ulp, so times always
increase strictly.
"""

import numpy as np

from .._checks import check_int
from ._series import SeriesPreparation
from ._spec import DatasetSpec, Feature, Generated, split_rows
from ._toy2d import check_seed


PERIODIC_NUM_POINTS = 100
"""Time points per series."""

PERIODIC_T_MAX = 5.0
"""Times are drawn uniformly on `[0, PERIODIC_T_MAX]`."""

PERIODIC_FREQUENCY = (0.3, 0.8)
"""Range of the uniform frequency `f` (cycles per unit time: 1.5 to 4 periods on [0, 5])."""

PERIODIC_AMPLITUDE = (0.5, 1.5)
"""Range of the uniform amplitude `a`."""

PERIODIC_NOISE_STD = 0.01
"""Standard deviation of the Gaussian observation noise (the paper's `obs_std`)."""


def _sorted_unique_times(rng: np.random.Generator, num_series: int, num_points: int) -> np.ndarray:
    t = np.sort(rng.uniform(0.0, PERIODIC_T_MAX, (num_series, num_points)), axis=1)
    t = t.astype(np.float32)
    # Rounding to float32 can tie neighbours; move each tie up by one float32 ulp.
    for i in range(1, num_points):
        t[:, i] = np.maximum(t[:, i], np.nextafter(t[:, i - 1], np.float32(np.inf)))
    return t


def sample_periodic(
    num_series: int, *, seed: int, num_points: int = PERIODIC_NUM_POINTS
) -> dict[str, np.ndarray]:
    """Draw `num_series` noisy sinusoids at random irregular times.

    The same `(num_series, seed, num_points)` always gives the same data; this is what the
    `periodic` builder stores.

    **Arguments:**

    - `num_series`: how many series, at least 1.
    - `seed`: a non-negative int seeding `numpy.random.default_rng`.
    - `num_points`: time points per series, at least 1.

    **Returns:**

    `{"t": (num_series, num_points), "x": (num_series, num_points, 1)}`, float32, with the
    times of every series strictly increasing (also after rounding to float32).
    """
    check_int("num_series", num_series, show_name=True)
    check_int("num_points", num_points, show_name=True)
    check_seed(seed)
    rng = np.random.default_rng(seed)
    t = _sorted_unique_times(rng, int(num_series), int(num_points))
    frequency = rng.uniform(*PERIODIC_FREQUENCY, (num_series, 1))
    amplitude = rng.uniform(*PERIODIC_AMPLITUDE, (num_series, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (num_series, 1))
    clean = amplitude * np.sin(2 * np.pi * frequency * t.astype(np.float64) + phase)
    x = clean + PERIODIC_NOISE_STD * rng.standard_normal(clean.shape)
    return {"t": t, "x": x[..., None].astype(np.float32)}


PERIODIC_SPLIT_SIZES: tuple[int, int, int] = (1000, 100, 100)
"""Default (train, validation, test) sizes of `periodic`: the paper's 1000 training series."""

LATENT_ODE_CITATION = """@inproceedings{rubanova2019latent,
  title={Latent Ordinary Differential Equations for Irregularly-Sampled Time Series},
  author={Rubanova, Yulia and Chen, Ricky T. Q. and Duvenaud, David},
  booktitle={Advances in Neural Information Processing Systems},
  year={2019}
}"""


def _generate(sizes: tuple[int, int, int], seed: int) -> Generated:
    return Generated(split_rows(sample_periodic(sum(sizes), seed=seed), sizes))


PERIODIC = DatasetSpec(
    name="periodic",
    default_sizes=PERIODIC_SPLIT_SIZES,
    features={
        "t": Feature((PERIODIC_NUM_POINTS,), np.float32),
        "x": Feature((PERIODIC_NUM_POINTS, 1), np.float32),
    },
    generate=_generate,
    description="Noisy 1-D sinusoids at random irregular times: `t` (100,) and `x` (100, 1), "
    "float32.",
    homepage="https://github.com/YuliaRubanova/latent_ode",
    citation=LATENT_ODE_CITATION,
    config_description="Seed {seed}, (train, validation, test) = {sizes} series.",
    release_notes="Random frequency, amplitude and phase; seeded numpy Generator.",
    series=SeriesPreparation(),
)
"""The `periodic` dataset: `sample_periodic` cut into consecutive splits."""

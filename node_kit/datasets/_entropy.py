"""Monte Carlo estimates of the differential entropy of the 2-D toys with an exact density."""

import numpy as np

from .._checks import check_int
from ._density import check_analytic_name, log_density
from ._toy2d import sample_toy2d


def true_entropy(name: str, *, num_samples: int = 100_000, seed: int = 0) -> tuple[float, float]:
    """Monte Carlo estimate of the differential entropy `H = -E[log p(x)]`, in nats.

    Draws `x` from the same generator the dataset builder stores (`sample_toy2d`, float64) and
    averages the exact `log_density`. A trained density model's test NLL is bounded below by this
    number (up to its standard error), which makes it the reference line for toy benchmarks.

    For `"checkerboard"` the log density is constant on the support, so the estimate equals
    `log(32)` exactly and the standard error is 0.

    **Arguments:**

    - `name`: `"8gaussians"` or `"checkerboard"`; other toys raise a `ValueError`.
    - `num_samples`: Monte Carlo sample size, at least 2.
    - `seed`: a non-negative int for the sampler.

    **Returns:**

    `(estimate, standard_error)` as Python floats, both in nats.
    """
    check_int(
        "num_samples",
        num_samples,
        minimum=2,
        expected="an int of at least 2 (the standard error needs two)",
        show_name=True,
    )
    check_analytic_name(name)
    samples = sample_toy2d(name, num_samples, seed=seed)
    neg_log_p = -np.asarray(log_density(name, samples), dtype=np.float64)
    estimate = float(np.mean(neg_log_p))
    standard_error = float(np.std(neg_log_p, ddof=1) / np.sqrt(num_samples))
    return estimate, standard_error

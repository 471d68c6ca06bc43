"""jaxtyping aliases shared across node_kit (shapes are for ONE sample)."""

from collections.abc import Callable
from typing import TypeAlias

import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree, Real, Shaped


Times: TypeAlias = Real[ArrayLike, " times"]
"""Output times, 1-D and strictly increasing."""

CheckedTimes: TypeAlias = "Float[Array | np.ndarray, ' times']"
"""Output times already checked (`check_times`), or the concrete `[0, t1]` of a CNF."""

Time: TypeAlias = Real[ArrayLike, ""]
"""One time, a scalar."""

State: TypeAlias = Float[Array, "..."]
"""An ODE state for one sample."""

BatchStates: TypeAlias = Float[Array, "batch ..."]
"""ODE states of a batch, sample first."""

Trajectory: TypeAlias = Float[Array, "times ..."]
"""States at each output time, time first."""

Args: TypeAlias = PyTree | None
"""Extra arguments passed to the vector field as `f(t, y, args)`."""

VectorField: TypeAlias = Callable[..., PyTree[Array]]
"""A vector field `f(t, y, args) -> dy/dt` for one sample, any callable."""

Scalar: TypeAlias = Float[Array, ""]
"""A floating-point scalar array (a loss, a log-density, a trace)."""

SeriesValues: TypeAlias = Real[ArrayLike, "times channels"]
"""The values of one irregular series; entries where the mask is 0 are ignored."""

SeriesMask: TypeAlias = Shaped[ArrayLike, "times channels"]
"""Which entries of a series are observed: bool, or 0/1 numbers, the shape of the values."""

"""jaxtyping aliases shared across node_kit (shapes are for ONE sample)."""

from typing import TypeAlias

from jaxtyping import Array, ArrayLike, Float, PyTree, Real


Times: TypeAlias = Real[ArrayLike, " times"]
"""Output times, 1-D and strictly increasing."""

State: TypeAlias = Float[Array, "..."]
"""An ODE state for one sample."""

Trajectory: TypeAlias = Float[Array, "times ..."]
"""States at each output time, time first."""

Args: TypeAlias = PyTree | None
"""Extra arguments passed to the vector field as `f(t, y, args)`."""

"""The few-shot sinusoid regression tasks of Finn, Abbeel and Levine (2017), for MAML.

A task is `y = amplitude * sin(x - phase)` with `amplitude ~ U[0.1, 5]` and
`phase ~ U[0, pi]`; its inputs are drawn from `U[-5, 5]`, `shots` of them for the
support set (what the model adapts on) and `queries` for the query set (what the
adapted model is scored on). Tasks are drawn from a JAX key, so a run can draw a fresh
meta-batch at every step (`jr.fold_in(key, step)`) and a fixed held-out set from another
key: the task distribution is infinite, nothing is stored.
"""

from typing import NamedTuple

import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, DTypeLike, Float, PRNGKeyArray

from .._checks import check_int, check_key


SINUSOID_AMPLITUDE = (0.1, 5.0)
"""Range of the uniform amplitude."""

SINUSOID_PHASE = (0.0, jnp.pi)
"""Range of the uniform phase."""

SINUSOID_INPUT = (-5.0, 5.0)
"""Range of the uniform inputs."""


class SinusoidTasks(NamedTuple):
    """A batch of sinusoid tasks; `x` and `y` arrays have a trailing feature axis of 1."""

    support_x: Float[Array, "tasks shots 1"]
    support_y: Float[Array, "tasks shots 1"]
    query_x: Float[Array, "tasks queries 1"]
    query_y: Float[Array, "tasks queries 1"]
    amplitude: Float[Array, " tasks"]
    phase: Float[Array, " tasks"]

    @property
    def support(self) -> tuple[Array, Array]:
        """`(support_x, support_y)`: the data each task adapts on."""
        return self.support_x, self.support_y

    @property
    def query(self) -> tuple[Array, Array]:
        """`(query_x, query_y)`: the data each adapted model is scored on."""
        return self.query_x, self.query_y


def sinusoid(x: ArrayLike, amplitude: ArrayLike, phase: ArrayLike) -> Array:
    """`amplitude * sin(x - phase)`, the true curve of a task (broadcasting)."""
    return jnp.asarray(amplitude) * jnp.sin(jnp.asarray(x) - jnp.asarray(phase))


def sinusoid_tasks(
    key: PRNGKeyArray, num_tasks: int, shots: int, queries: int, *, dtype: DTypeLike = jnp.float32
) -> SinusoidTasks:
    """Draw `num_tasks` sinusoid tasks, each with `shots` support and `queries` query points.

    The same key and sizes always give the same tasks; jit it with the sizes static
    (`eqx.filter_jit`).

    **Arguments:**

    - `key`: a JAX PRNG key.
    - `num_tasks`: how many tasks, at least 1.
    - `shots`: support points per task (`K`), at least 1.
    - `queries`: query points per task, at least 1.
    - `dtype`: floating dtype of the arrays.

    **Returns:**

    A [`SinusoidTasks`][]: support `(num_tasks, shots, 1)`, query
    `(num_tasks, queries, 1)`, and each task's `amplitude` and `phase`.
    """
    check_key("key", key)
    num_tasks = check_int("num_tasks", num_tasks, show_name=True)
    shots = check_int("shots", shots, show_name=True)
    queries = check_int("queries", queries, show_name=True)
    amp_key, phase_key, x_key = jr.split(key, 3)
    amplitude = jr.uniform(amp_key, (num_tasks,), dtype, *SINUSOID_AMPLITUDE)
    phase = jr.uniform(phase_key, (num_tasks,), dtype, *SINUSOID_PHASE)
    x = jr.uniform(x_key, (num_tasks, shots + queries, 1), dtype, *SINUSOID_INPUT)
    y = sinusoid(x, amplitude[:, None, None], phase[:, None, None])
    return SinusoidTasks(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], amplitude, phase)

"""Shared test set-up: float64 on, seeded keys, and an explicit-tolerance allclose."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def getkey():
    """Return a function giving a fresh, deterministic key on each call."""
    key = jr.key(5678)
    count = iter(range(10**6))
    return lambda: jr.fold_in(key, next(count))


def tree_allclose(x, y, *, rtol: float, atol: float) -> bool:
    """`True` if two PyTrees have the same structure and allclose leaves."""
    x_leaves, x_def = jax.tree_util.tree_flatten(eqx.filter(x, eqx.is_array))
    y_leaves, y_def = jax.tree_util.tree_flatten(eqx.filter(y, eqx.is_array))
    if x_def != y_def:
        return False
    return all(
        a.shape == b.shape and np.allclose(a, b, rtol=rtol, atol=atol)
        for a, b in zip(x_leaves, y_leaves)
    )


def max_relative_error(x, y) -> float:
    """Largest |x - y| / max(|y|) over the leaves of two PyTrees (y the reference)."""
    errors = []
    for a, b in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)):
        a, b = jnp.asarray(a), jnp.asarray(b)
        errors.append(float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30)))
    return max(errors)

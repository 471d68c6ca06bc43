"""What training checks of a user's loss and its inputs, once, when the step is traced."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from ._checks import check_key, type_name


_SHAPE = "`loss_fn(model, batch, key)` must return a pair `(loss, aux)`"
_FIX = "e.g. `return jnp.mean(errors ** 2), {}` (`aux` a dict of scalars to log, or `{}`)"


class CheckedLoss(eqx.Module):
    """A user's `loss_fn` whose output is checked when it is traced: a pair `(loss, aux)`,
    `loss` a scalar and, with `scalar_aux`, `aux` a dict of scalars (what `fit` logs)."""

    loss_fn: Callable = eqx.field(static=True)
    scalar_aux: bool = eqx.field(static=True)

    def __call__(self, model: PyTree, batch: PyTree, key: Any) -> tuple[jax.Array, Any]:
        return check_loss_output(self.loss_fn(model, batch, key), scalar_aux=self.scalar_aux)


def is_scalar(value: Any) -> bool:
    """An array or number of shape `()`."""
    return eqx.is_array_like(value) and jnp.shape(value) == ()


def _shape_or_type(value: Any) -> str:
    """`"shape (3,)"` for an array, the type's name for anything else."""
    return f"shape {jnp.shape(value)}" if eqx.is_array_like(value) else type_name(value)


def checked_loss(loss_fn: Callable, *, scalar_aux: bool) -> Callable:
    """`loss_fn` wrapped in a `CheckedLoss`, unless it is one already or is a per-device
    loss (which wraps a checked one itself)."""
    if isinstance(loss_fn, CheckedLoss) or hasattr(loss_fn, "value_and_grad"):
        return loss_fn
    return CheckedLoss(loss_fn, scalar_aux)


def check_loss_output(output: Any, *, scalar_aux: bool) -> tuple[jax.Array, Any]:
    """`output` if it is `(scalar loss, aux)`; otherwise a `ValueError` saying what it is."""
    if not (isinstance(output, tuple | list) and len(output) == 2):
        if isinstance(output, tuple | list):
            got = f"a {type(output).__name__} of {len(output)}"
        elif eqx.is_array_like(output):
            got = f"one array of shape {jnp.shape(output)}"
        else:
            got = type_name(output)
        raise ValueError(f"{_SHAPE}; got {got}. Return the loss with its aux, {_FIX}.")
    loss, aux = output
    if not is_scalar(loss):
        raise ValueError(
            f"{_SHAPE} with `loss` a scalar; got {_shape_or_type(loss)}. Reduce it to one "
            "number, e.g. with jnp.mean over the batch."
        )
    if scalar_aux:
        _check_scalar_aux(aux)
    return loss, aux


def _check_scalar_aux(aux: Any) -> None:
    if not isinstance(aux, dict):
        raise ValueError(
            f"{_SHAPE} with `aux` a dict of scalars, which fit logs; got {type_name(aux)}. "
            "Return {} when there is nothing else to log."
        )
    for name, value in aux.items():
        if not (isinstance(name, str) and is_scalar(value)):
            raise ValueError(
                f"`aux[{name!r}]` returned by `loss_fn` must be a scalar under a str name (fit "
                f"logs each as a number); got {_shape_or_type(value)}. Log a summary such as "
                "its mean, or compute the full array outside training."
            )


def check_step_inputs(model: PyTree, opt_state: Any, batch: PyTree, key: Any) -> None:
    """The arrays a training step is given: a model with something to train, an optimizer
    state, a batch with samples in it, and a key."""
    if not jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array)):
        raise ValueError(
            f"`model` has no floating-point arrays to train (a {type_name(model)} with no "
            "parameters, or all of them integer or static). Pass the model whose parameters "
            "the loss depends on."
        )
    if opt_state is None:
        raise ValueError(
            "`opt_state` is None; pass the optimizer's state for this model: "
            "`optimizer.init(eqx.filter(model, eqx.is_inexact_array))`."
        )
    check_key("key", key)
    for path, leaf in jax.tree_util.tree_leaves_with_path(batch):
        if eqx.is_array(leaf) and leaf.size == 0:
            raise ValueError(
                f"`batch` holds an empty array at {jax.tree_util.keystr(path) or 'its root'} "
                f"(shape {leaf.shape}): a step needs at least one sample. Check `batch_at` "
                "(or the batch passed to make_step) against the dataset's size."
            )

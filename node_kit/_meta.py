"""Meta-learning of an Equinox model: MAML, first-order MAML and iMAML.

A meta-learner turns a model and one task's support set into an adapted model
([`node_kit.AbstractMetaLearner.adapt`][]); the meta-loss is the mean, over a meta-batch
of tasks (`jax.vmap`), of the query loss of the adapted model
([`node_kit.meta_loss`][]). Its gradient in the model's parameters is the meta-gradient:

- [`node_kit.MAML`][] (Finn et al. 2017) takes `inner_steps` gradient steps and
  differentiates through them (second order; memory grows with the steps), or with
  `first_order=True` treats the inner gradients as constants (FOMAML).
- [`node_kit.IMAML`][] (Rajeswaran et al. 2019) solves the proximal problem
  `argmin_w loss(w, support) + reg/2 ||w - theta||^2` and differentiates it implicitly:
  the meta-gradient is `(I + H/reg)^{-1} grad`, by conjugate gradients, with memory
  independent of the inner steps.

A task's data is any PyTree (e.g. `(x, y)` arrays for one task); a meta-batch stacks
tasks along a new leading axis. `loss(model, data) -> scalar` is written for one task.
"""

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import optax
import optimistix as optx
from jaxtyping import Array, Float, PyTree, Scalar

from ._checks import check_bool, check_callable, check_int, check_real, type_name
from ._implicit import (
    check_scalar_loss,
    check_solvers,
    default_tolerance,
    implicit_minimise,
    proximal_loss,
)


Loss = Callable[[PyTree, PyTree], Scalar]
"""`loss(model, data) -> scalar` for one task."""


class AbstractMetaLearner(eqx.Module):
    """How a model adapts to one task: the inner loop of a meta-learning method."""

    @abc.abstractmethod
    def adapt(self, model: PyTree, loss: Loss, support: PyTree) -> PyTree:
        """The model adapted to one task.

        **Arguments:**

        - `model`: an Equinox module (any PyTree); its floating-point arrays adapt.
        - `loss`: `loss(model, data) -> scalar` for one task.
        - `support`: one task's support data (no task axis).

        **Returns:**

        A model with the structure of `model`, differentiable in `model`.
        """


def _options(learner: AbstractMetaLearner) -> dict[str, Any]:
    """A learner's fields as keywords: each learner's fields are its adapt function's
    options, by name."""
    return {f.name: getattr(learner, f.name) for f in dataclasses.fields(learner)}


class MAML(AbstractMetaLearner):
    """MAML: `inner_steps` steps of gradient descent on the support loss.

    **Arguments:**

    - `inner_steps`: gradient steps per task (0: the model is not adapted, which
        trains plain regression on all tasks).
    - `inner_lr`: their learning rate.
    - `first_order`: FOMAML: the inner gradients are constants for the meta-gradient.

    !!! warning

        Second-order MAML keeps every inner step for the backward pass: its memory and
        time grow with `inner_steps`.
    """

    inner_steps: int = eqx.field(static=True)
    inner_lr: float = eqx.field(static=True)
    first_order: bool = eqx.field(static=True)

    def __init__(self, inner_steps: int = 1, inner_lr: float = 0.01, *, first_order: bool = False):
        self.inner_steps = check_int("inner_steps", inner_steps, minimum=0)
        self.inner_lr = check_real("inner_lr", inner_lr, positive=True, fix="E.g. inner_lr=0.01.")
        self.first_order = check_bool("first_order", first_order)

    def adapt(self, model: PyTree, loss: Loss, support: PyTree) -> PyTree:
        return maml_adapt(model, loss, support, **_options(self))


class IMAML(AbstractMetaLearner):
    """iMAML: the minimiser of the support loss plus `reg/2 ||w - theta||^2`, differentiated
    implicitly.

    **Arguments:**

    - `reg`: the proximal weight `lambda`; larger keeps the adapted model closer to the
        meta-parameters.
    - `solver`: the inner minimiser, as for [`node_kit.implicit_minimise`][] (an
        `optimistix.AbstractMinimiser` or an optax optimizer). Default
        `optx.LBFGS(rtol=tol, atol=tol)`, `tol` `1e-8` for float64 parameters and `1e-5`
        otherwise (limited memory: BFGS would hold a dense matrix the size of the
        parameters squared, per task).
    - `linear_solver`: for `(H + reg I) u = v`; default CG as in
        [`node_kit.implicit_minimise`][].
    - `max_steps`: the most inner steps; a task that needs more raises an error.
    - `throw`: as for [`node_kit.implicit_minimise`][]; `False` takes the last inner
        iterate of a solve that did not converge (e.g. exactly `max_steps` steps of an
        optax optimizer with tolerances 0), and its gradient is then approximate.

    !!! warning

        The meta-gradient is exact only at the proximal minimum: a loose inner tolerance
        gives an approximate one.
    """

    reg: float = eqx.field(static=True)
    solver: optx.AbstractMinimiser | optax.GradientTransformation | None
    linear_solver: lx.AbstractLinearSolver | None
    max_steps: int = eqx.field(static=True)
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        reg: float = 1.0,
        solver: optx.AbstractMinimiser | optax.GradientTransformation | None = None,
        linear_solver: lx.AbstractLinearSolver | None = None,
        max_steps: int = 256,
        throw: bool = True,
    ):
        self.reg = check_real("reg", reg, positive=True, fix="E.g. reg=1.0.")
        check_solvers(solver, linear_solver)
        self.solver = solver
        self.linear_solver = linear_solver
        self.max_steps = check_int("max_steps", max_steps)
        self.throw = check_bool("throw", throw)

    def adapt(self, model: PyTree, loss: Loss, support: PyTree) -> PyTree:
        return imaml_adapt(model, loss, support, **_options(self))


def maml_adapt(
    model: PyTree,
    loss: Loss,
    support: PyTree,
    *,
    inner_steps: int,
    inner_lr: float,
    first_order: bool = False,
) -> PyTree:
    """`model` after `inner_steps` steps of gradient descent on `loss(model, support)`.

    A `lax.scan`, differentiable through (second-order MAML); with `first_order` the
    inner gradients are `stop_gradient`-ed (FOMAML). Arguments as for [`node_kit.MAML`][].
    """
    _check_loss(loss, model, support)
    inner_steps = check_int("inner_steps", inner_steps, minimum=0)
    inner_lr = check_real("inner_lr", inner_lr, positive=True, fix="E.g. inner_lr=0.01.")
    first_order = check_bool("first_order", first_order)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def step(params: PyTree, _: None) -> tuple[PyTree, None]:
        grads = jax.grad(lambda p: loss(eqx.combine(p, static), support))(params)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        return jtu.tree_map(lambda p, g: p - inner_lr * g, params, grads), None

    params, _ = jax.lax.scan(step, params, None, length=inner_steps)
    return eqx.combine(params, static)


def imaml_adapt(
    model: PyTree,
    loss: Loss,
    support: PyTree,
    *,
    reg: float,
    solver: optx.AbstractMinimiser | optax.GradientTransformation | None = None,
    linear_solver: lx.AbstractLinearSolver | None = None,
    max_steps: int = 256,
    throw: bool = True,
) -> PyTree:
    """`argmin_w loss(w, support) + reg/2 ||w - theta||^2`, `theta` the model's parameters.

    Solved from `theta` by [`node_kit.implicit_minimise`][]; the gradient in `theta` is
    `(I + H/reg)^{-1}` times the gradient in the adapted parameters. Arguments as for
    [`node_kit.IMAML`][].
    """
    _check_loss(loss, model, support)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    if solver is None:
        tol = default_tolerance(params)
        solver = optx.LBFGS(rtol=tol, atol=tol)
    task_loss = lambda w: loss(eqx.combine(w, static), support)
    adapted = implicit_minimise(
        proximal_loss(task_loss, reg),
        params,
        params,
        solver=solver,
        linear_solver=linear_solver,
        max_steps=max_steps,
        throw=throw,
    )
    return eqx.combine(adapted, static)


def query_losses(
    learner: AbstractMetaLearner,
    model: PyTree,
    loss: Loss,
    support: PyTree,
    query: PyTree,
) -> Float[Array, " tasks"]:
    """Each task's query loss after adapting `model` to its support set.

    **Arguments:**

    - `learner`: an [`node_kit.AbstractMetaLearner`][], e.g. `MAML(5, 0.01)`.
    - `model`: the meta-parameters (an Equinox module).
    - `loss`: `loss(model, data) -> scalar` for one task.
    - `support`, `query`: the tasks' data, stacked along a leading task axis.

    **Returns:**

    `loss(learner.adapt(model, loss, support[i]), query[i])` for each task `i`.
    """
    if not isinstance(learner, AbstractMetaLearner):
        raise ValueError(
            f"`learner` must be a node_kit.AbstractMetaLearner such as nk.MAML(5, 0.01) or "
            f"nk.IMAML(reg=1.0); got {type_name(learner)}."
        )
    check_callable("loss", loss, expected="a callable loss(model, data) -> scalar")
    _check_tasks(support, query)
    one_task = lambda s, q: loss(learner.adapt(model, loss, s), q)
    return jax.vmap(one_task)(support, query)


def meta_loss(
    learner: AbstractMetaLearner,
    model: PyTree,
    loss: Loss,
    support: PyTree,
    query: PyTree,
) -> Scalar:
    """The mean over tasks of [`node_kit.query_losses`][]: what meta-training minimises."""
    return jnp.mean(query_losses(learner, model, loss, support, query))


def _check_loss(loss: Any, model: PyTree, support: PyTree) -> None:
    check_callable("loss", loss, expected="a callable loss(model, data) -> scalar")
    check_scalar_loss(
        loss,
        (model, support),
        what=" for one task, loss(model, data)",
        fix="Reduce over the task's points, e.g. with jnp.mean.",
    )


def _check_tasks(support: PyTree, query: PyTree) -> None:
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jtu.tree_leaves((support, query))}
    if not sizes or None in sizes or len(sizes) != 1:
        raise ValueError(
            "`support` and `query` must stack the tasks along a leading axis of one size in "
            f"every array; got leading sizes {sorted(map(str, sizes))}. Pass e.g. support "
            "(x, y) with shapes (tasks, shots, 1)."
        )

"""Gradients through an inner minimisation, by the implicit function theorem.

[`node_kit.implicit_minimise`][] returns `w* = argmin_w loss(w, theta)`, found by any
optimistix minimiser (or an optax optimizer), and differentiates it with respect to
`theta` without differentiating the solver's steps: at a minimum `grad_w loss(w*, theta) = 0`,
so for a cotangent `v` of `w*`,

    H u = v,   H = d^2 loss / dw^2 at (w*, theta),
    grad_theta = -d/dtheta <grad_w loss(w*, theta), u>,

with `H u = v` solved by conjugate gradients on Hessian-vector products (`jvp` of
`grad`), never forming `H`. The backward pass costs one linear solve, and its memory does
not grow with the number of inner steps.

[`node_kit.proximal_loss`][] builds the inner problem of iMAML,
`loss(w) + reg/2 ||w - theta||^2`, whose implicit gradient is `(I + H/reg)^{-1} v`.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import optax
import optimistix as optx
from jaxtyping import Array, PyTree, Scalar

from ._checks import check_bool, check_callable, check_int, check_real, type_name


_SOLVER_HINT = "e.g. optx.BFGS(rtol=1e-8, atol=1e-8), optx.LBFGS(...) or optax.adam(1e-2)"


def implicit_minimise(
    loss: Callable[[PyTree[Array], PyTree], Scalar],
    w0: PyTree[Array],
    theta: PyTree,
    *,
    solver: optx.AbstractMinimiser | optax.GradientTransformation | None = None,
    linear_solver: lx.AbstractLinearSolver | None = None,
    max_steps: int = 256,
    throw: bool = True,
) -> PyTree[Array]:
    """`w* = argmin_w loss(w, theta)`, differentiable in `theta` by the implicit function theorem.

    Works under `jax.jit`, `jax.vmap` and `jax.grad`. The inner solve is never
    differentiated (its start `w0` gets no gradient), so reverse-mode memory does not
    depend on how many steps it took. The gradient with respect to `theta`, and to any
    arrays `loss` closes over, solves `H u = v` (`H` the Hessian in `w` at `w*`) with
    `linear_solver`, by Hessian-vector products.

    **Arguments:**

    - `loss`: `loss(w, theta) -> scalar`, twice differentiable in `w`.
    - `w0`: where the inner solve starts; a PyTree of floating-point arrays (the shape
        of `w*`).
    - `theta`: the outer variables, any PyTree; its floating-point arrays get gradients.
    - `solver`: any `optimistix.AbstractMinimiser`, or an `optax.GradientTransformation`,
        run as `optx.OptaxMinimiser(optimizer, rtol, atol)` (pass an `OptaxMinimiser`
        yourself for other tolerances). Default `optx.BFGS(rtol, atol)`. The default
        `rtol = atol` is `1e-8` when `w0` is float64 and `1e-5` otherwise.
    - `linear_solver`: any `lineax.AbstractLinearSolver` for `H u = v`; the operator is
        tagged symmetric and positive semidefinite. Default `lx.CG(rtol, atol)` (at most
        ten times the size of `w` steps).
    - `max_steps`: the most steps of the inner solve.
    - `throw`: raise if the inner or the linear solve fails (reaches its step limit,
        diverges, or gives a non-finite `w*`). With `False` a failed solve returns its
        last iterate silently.

    **Returns:**

    `w*`, with the structure of `w0`.

    !!! warning

        The gradient is exact only at an exact minimum: a loose inner tolerance, or a
        solve stopped at a saddle point, gives an approximate gradient (and CG may fail
        where `H` is not positive definite). The loss must be twice differentiable in
        `w` near `w*`: at a kink (e.g. of a ReLU network) no stationary point may exist.
        Reverse mode only (`jax.grad`, `jax.vjp`); `jax.jvp` through it raises.
    """
    check_callable("loss", loss, expected="a callable loss(w, theta) -> scalar")
    _check_w0(w0)
    _check_loss_output(loss, w0, theta)
    check_solvers(solver, linear_solver)
    settings = _Settings(
        _as_minimiser(solver, w0),
        _as_linear_solver(linear_solver, w0),
        check_int("max_steps", max_steps),
        check_bool("throw", throw),
    )
    closed = eqx.filter_closure_convert(loss, w0, theta)
    return _argmin((theta, closed), jax.lax.stop_gradient(w0), settings)


def proximal_loss(loss: Callable[[PyTree[Array]], Scalar], reg: float) -> Callable:
    """`(w, theta) -> loss(w) + reg/2 * ||w - theta||^2`: the inner problem of iMAML.

    **Arguments:**

    - `loss`: `loss(w) -> scalar`.
    - `reg`: the proximal weight, a positive float.

    **Returns:**

    A function `(w, theta) -> scalar` for [`node_kit.implicit_minimise`][]; `w` and
    `theta` share a structure.
    """
    check_callable("loss", loss, expected="a callable loss(w) -> scalar")
    reg = check_real("reg", reg, positive=True, fix="E.g. reg=1.0.")

    def proximal(w: PyTree[Array], theta: PyTree[Array]) -> Scalar:
        squares = jtu.tree_map(lambda a, b: jnp.sum((a - b) ** 2), w, theta)
        return loss(w) + 0.5 * reg * sum(jtu.tree_leaves(squares))

    return proximal


class _Settings(eqx.Module):
    solver: optx.AbstractMinimiser
    linear_solver: lx.AbstractLinearSolver
    max_steps: int = eqx.field(static=True)
    throw: bool = eqx.field(static=True)


@eqx.filter_custom_vjp
def _argmin(vjp_arg, w0, settings: _Settings):
    theta, closed = vjp_arg
    sol = optx.minimise(
        lambda w, args: closed(w, args),
        settings.solver,
        w0,
        theta,
        max_steps=settings.max_steps,
        throw=False,
    )
    return _inner_checked(sol, settings)


@_argmin.def_fwd
def _argmin_fwd(perturbed, vjp_arg, w0, settings: _Settings):
    del perturbed
    w_star = _argmin.fn(vjp_arg, w0, settings)
    return w_star, w_star


@_argmin.def_bwd
def _argmin_bwd(w_star, grad_w, perturbed, vjp_arg, w0, settings: _Settings):
    del perturbed, w0
    grad_w = jtu.tree_map(  # a symbolic zero (None) as an array of zeros
        lambda g, w: g if g is not None or w is None else jnp.zeros_like(w),
        grad_w,
        w_star,
        is_leaf=lambda x: x is None,
    )

    def gradient_in_w(w: PyTree[Array], arg: tuple[PyTree[Array], Callable]) -> PyTree[Array]:
        theta, closed = arg
        return jax.grad(closed)(w, theta)

    u = _hessian_solve(lambda w: gradient_in_w(w, vjp_arg), w_star, grad_w, settings)
    _, vjp_fn = eqx.filter_vjp(lambda arg: gradient_in_w(w_star, arg), vjp_arg)
    (grad_arg,) = vjp_fn(u)
    return jtu.tree_map(jnp.negative, grad_arg)


def _hessian_solve(gradient: Callable, w_star, v, settings: _Settings):
    """`u` with `H u = v`, `H` the Jacobian of `gradient` at `w_star` (a Hessian)."""
    operator = lx.FunctionLinearOperator(
        lambda t: jax.jvp(gradient, (w_star,), (t,))[1],
        jax.eval_shape(lambda: w_star),
        tags=(lx.symmetric_tag, lx.positive_semidefinite_tag),
    )
    sol = lx.linear_solve(operator, v, settings.linear_solver, throw=False)
    if not settings.throw:
        return sol.value
    return eqx.error_if(
        sol.value,
        sol.result != lx.RESULTS.successful,
        "implicit_minimise: the linear solve H u = v of the implicit gradient failed (H the "
        "Hessian at w*). CG needs H positive definite: w* may not be a minimum (tighten "
        "the inner solve), or raise the linear solver's max_steps.",
    )


def _inner_checked(sol: optx.Solution, settings: _Settings):
    """The solve's `y`, or an error (with `throw`) if it failed or is not finite."""
    w = sol.value
    if not settings.throw:
        return w
    w = eqx.error_if(
        w,
        sol.result == optx.RESULTS.nonlinear_max_steps_reached,
        f"implicit_minimise: the inner minimisation reached max_steps={settings.max_steps} "
        "without converging; raise `max_steps`, loosen the solver's rtol/atol, or start "
        "closer (w0).",
    )
    w = sol.result.error_if(w, sol.result != optx.RESULTS.successful)  # optimistix's message
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jtu.tree_leaves(w)]))
    return eqx.error_if(
        w,
        ~finite,
        "implicit_minimise: the inner minimisation gave a non-finite w*; check the loss, "
        "lower the learning rate, or use another solver.",
    )


def _check_w0(w0) -> None:
    leaves = jtu.tree_leaves(w0)
    bad = [x for x in leaves if not eqx.is_inexact_array(x)]
    if not leaves or bad:
        shown = "no arrays" if not leaves else f"a leaf of type {type_name(bad[0])}"
        raise ValueError(
            f"`w0` must be a PyTree of floating-point arrays (where the inner solve starts); "
            f"got {shown}. Pass e.g. jnp.zeros(n), or eqx.filter(model, eqx.is_inexact_array)."
        )


def _check_loss_output(loss: Callable, w0, theta) -> None:
    check_scalar_loss(
        loss, (w0, theta), what=", loss(w, theta)", fix="Reduce it, e.g. with jnp.mean or jnp.sum."
    )


def check_scalar_loss(loss: Callable, args: tuple, *, what: str, fix: str) -> None:
    """A `ValueError` unless `loss(*args)` is a floating-point scalar (traced abstractly);
    `what` follows "a floating-point scalar" in the message (e.g. the signature)."""
    out = eqx.filter_eval_shape(loss, *args)
    if not (
        isinstance(out, jax.ShapeDtypeStruct)
        and out.shape == ()
        and jnp.issubdtype(out.dtype, jnp.floating)
    ):
        shown = f"{out.dtype}{out.shape}" if hasattr(out, "shape") else type_name(out)
        raise ValueError(
            f"`loss` must return a floating-point scalar{what} -> shape (); got {shown}. {fix}"
        )


def default_tolerance(w0: PyTree[Array]) -> float:
    """`1e-8` if every leaf of `w0` is float64, else `1e-5`: reachable in the dtype."""
    leaves = jtu.tree_leaves(w0)
    return 1e-8 if all(jnp.result_type(x) == jnp.float64 for x in leaves) else 1e-5


def check_solvers(solver: Any, linear_solver: Any) -> None:
    """`solver`: `None`, an optimistix minimiser or an optax optimizer; `linear_solver`:
    `None` or a lineax solver. A `ValueError` naming the argument otherwise."""
    if not (
        solver is None or isinstance(solver, (optx.AbstractMinimiser, optax.GradientTransformation))
    ):
        raise ValueError(
            f"`solver` must be an optimistix.AbstractMinimiser or an optax.GradientTransformation "
            f"({_SOLVER_HINT}); got {type_name(solver)}."
        )
    if not (linear_solver is None or isinstance(linear_solver, lx.AbstractLinearSolver)):
        raise ValueError(
            "`linear_solver` must be a lineax.AbstractLinearSolver, e.g. lx.CG(rtol=1e-8, "
            f"atol=1e-8, max_steps=100) or lx.Cholesky(); got {type_name(linear_solver)}."
        )


def _as_minimiser(solver: Any, w0) -> optx.AbstractMinimiser:
    tol = default_tolerance(w0)
    if solver is None:
        return optx.BFGS(rtol=tol, atol=tol)
    if isinstance(solver, optax.GradientTransformation):
        return optx.OptaxMinimiser(solver, rtol=tol, atol=tol)
    return solver


def _as_linear_solver(linear_solver: Any, w0) -> lx.AbstractLinearSolver:
    if linear_solver is None:
        tol = default_tolerance(w0)
        return lx.CG(rtol=tol, atol=tol)
    return linear_solver

"""`implicit_minimise`: hypergradients of ridge regression against the closed form, the
solver options, failures, and bad inputs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import optax
import optimistix as optx
import pytest
from conftest import max_relative_error

import node_kit as nk


@pytest.fixture(scope="module")
def ridge():
    """A ridge problem: training data, validation data, and the closed forms."""
    keys = jr.split(jr.key(0), 4)
    X, y = jr.normal(keys[0], (20, 5)), jr.normal(keys[1], (20,))
    X_val, y_val = jr.normal(keys[2], (10, 5)), jr.normal(keys[3], (10,))

    def train_loss(w, theta):
        return 0.5 * jnp.sum((X @ w - theta["targets"]) ** 2) + 0.5 * theta["lam"] * jnp.sum(w**2)

    def val_loss(w):
        return 0.5 * jnp.sum((X_val @ w - y_val) ** 2)

    def closed_form(theta):
        """`w*`, and the hypergradient `-(dL/dw)^T (X^T X + lam I)^{-1} w*` (and in the targets)."""
        matrix = X.T @ X + theta["lam"] * jnp.eye(5)
        w = jnp.linalg.solve(matrix, X.T @ theta["targets"])
        u = jnp.linalg.solve(matrix, jax.grad(val_loss)(w))
        return w, {"lam": -u @ w, "targets": X @ u}

    theta = {"lam": jnp.array(0.7), "targets": y}
    return train_loss, val_loss, closed_form, theta


def _hyper(ridge, **options):
    train_loss, val_loss, _, _ = ridge
    return lambda theta: val_loss(nk.implicit_minimise(train_loss, jnp.zeros(5), theta, **options))


def test_ridge_hypergradient_matches_closed_form_under_jit(ridge):
    train_loss, val_loss, closed_form, theta = ridge
    w_star, expected = closed_form(theta)

    def hyper(theta):
        w = nk.implicit_minimise(train_loss, jnp.zeros(5), theta)
        return val_loss(w), w

    grads, w = jax.jit(jax.grad(hyper, has_aux=True))(theta)
    assert max_relative_error(w, w_star) < 1e-7
    assert max_relative_error(grads["lam"], expected["lam"]) < 1e-7
    assert max_relative_error(grads["targets"], expected["targets"]) < 1e-7


def test_ridge_hypergradient_under_vmap(ridge):
    _, _, closed_form, theta = ridge
    lams = jnp.array([0.1, 1.0, 3.0])
    grad_lam = jax.grad(lambda lam: _hyper(ridge)({**theta, "lam": lam}))
    expected = jnp.stack([closed_form({**theta, "lam": lam})[1]["lam"] for lam in lams])
    assert max_relative_error(jax.jit(jax.vmap(grad_lam))(lams), expected) < 1e-7


def test_optax_inner_solver_and_other_linear_solver(ridge):
    _, _, closed_form, theta = ridge
    _, expected = closed_form(theta)
    grads = jax.jit(jax.grad(_hyper(ridge, solver=optax.adam(1e-2), max_steps=20_000,
                                     linear_solver=lx.Cholesky())))(theta)
    # Adam stops at rtol = atol = 1e-8 on its steps, so w* is less exact than with BFGS.
    assert max_relative_error(grads["lam"], expected["lam"]) < 1e-5
    assert max_relative_error(grads["targets"], expected["targets"]) < 1e-5


def test_gradient_reaches_closed_over_arrays_and_not_w0(ridge):
    train_loss, val_loss, closed_form, theta = ridge

    def outer(targets, w0):
        loss = lambda w, lam: train_loss(w, {"lam": lam, "targets": targets})
        return val_loss(nk.implicit_minimise(loss, w0, theta["lam"]))

    grad_targets, grad_w0 = jax.jit(jax.grad(outer, argnums=(0, 1)))(theta["targets"], jnp.ones(5))
    assert max_relative_error(grad_targets, closed_form(theta)[1]["targets"]) < 1e-7
    assert jnp.all(grad_w0 == 0)


def test_failed_inner_solve_raises_and_throw_false_returns():
    loss = lambda w, theta: jnp.sum((w - theta) ** 4) + jnp.sum(w**2)
    solve = lambda throw: nk.implicit_minimise(
        loss, jnp.zeros(3), jnp.ones(3), max_steps=2, throw=throw)
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"reached max_steps=2 without converging"):
        solve(True)
    assert jnp.all(jnp.isfinite(solve(False)))


def test_saddle_point_fails_the_conjugate_gradient_solve():  # also: no jit around it
    # w0 = 0 is a stationary point (a saddle): BFGS stops there; H = diag(2, -2) is indefinite.
    loss = lambda w, theta: theta * (w[0] ** 2 - w[1] ** 2)
    grad = jax.grad(lambda theta: jnp.sum(nk.implicit_minimise(loss, jnp.zeros(2), theta)))
    with pytest.raises(eqx.EquinoxRuntimeError, match="CG needs H positive definite"):
        grad(jnp.array(1.0))


def test_proximal_loss_value():
    prox = nk.proximal_loss(lambda w: jnp.sum(w["a"]), 4.0)
    w, theta = {"a": jnp.array([1.0, 2.0])}, {"a": jnp.array([0.0, 0.0])}
    assert prox(w, theta) == pytest.approx(3.0 + 0.5 * 4.0 * 5.0)


_LOSS = lambda w, theta: jnp.sum((w - theta) ** 2)


@pytest.mark.parametrize("args, kwargs, match", [
    (("not callable", jnp.zeros(2), 1.0), {}, r"`loss` must be a callable loss\(w, theta\)"),
    ((lambda w, t: w * t, jnp.zeros(2), 1.0), {}, r"`loss` must return a floating-point scalar.*got float64\(2,\)"),
    ((_LOSS, jnp.zeros(2, dtype=int), 1.0), {}, r"`w0` must be a PyTree of floating-point arrays.*got a leaf of type"),
    ((_LOSS, [1.0, 2.0], 1.0), {}, r"`w0` must be a PyTree of floating-point arrays.*got a leaf of type float"),
    ((_LOSS, {}, 1.0), {}, r"`w0` must be .* got no arrays"),
    ((_LOSS, jnp.zeros(2), 1.0), {"solver": "bfgs"}, r"`solver` must be an optimistix.AbstractMinimiser .*got str"),
    ((_LOSS, jnp.zeros(2), 1.0), {"solver": optx.Newton(1e-8, 1e-8)}, r"`solver` must be .*got Newton"),
    ((_LOSS, jnp.zeros(2), 1.0), {"solver": optx.BFGS}, r"got the class BFGS \(pass an instance"),
    ((_LOSS, jnp.zeros(2), 1.0), {"linear_solver": "cg"}, r"`linear_solver` must be a lineax.AbstractLinearSolver"),
    ((_LOSS, jnp.zeros(2), 1.0), {"max_steps": 0}, r"`max_steps` must be a positive int; got 0"),
    ((_LOSS, jnp.zeros(2), 1.0), {"throw": 1}, r"`throw` must be a Python bool"),
])
def test_bad_inputs(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        nk.implicit_minimise(*args, **kwargs)


def test_bad_proximal_inputs():
    with pytest.raises(ValueError, match=r"`reg` must be a positive float; got 0.0. E.g. reg=1.0"):
        nk.proximal_loss(jnp.sum, 0.0)
    with pytest.raises(ValueError, match=r"`loss` must be a callable loss\(w\)"):
        nk.proximal_loss(3.0, 1.0)

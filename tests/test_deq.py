"""DEQ: every forward solver and backward mode against closed forms and finite differences."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import optimistix as optx
import pytest

import node_kit as nk

from conftest import max_relative_error

N, M = 5, 3
TIGHT = dict(rtol=1e-12, atol=1e-12)
SOLVERS = {
    "iteration": nk.FixedPointIteration(**TIGHT),
    "anderson": nk.AndersonAcceleration(**TIGHT),
    "broyden": nk.Broyden(**TIGHT),
}
GMRES = lx.GMRES(rtol=1e-12, atol=1e-12)


class Linear(eqx.Module):
    """`f(z, x) = A z + B x`: `z* = (I - A)^-1 B x` when `|A| < 1`."""

    a: jax.Array
    b: jax.Array

    def __call__(self, z, x):
        return self.a @ z + self.b @ x


class Tanh(eqx.Module):
    """`f(z, x) = tanh(W z + U x + c)`, contractive for `|W| < 1`."""

    w: jax.Array
    u: jax.Array
    c: jax.Array

    def __call__(self, z, x):
        return jnp.tanh(self.w @ z + self.u @ x + self.c)


def _contraction(key, n, norm):
    a = jr.normal(key, (n, n))
    return norm * a / jnp.linalg.norm(a, 2)


@pytest.fixture(scope="module")
def problem():
    k1, k2, k3, k4 = jr.split(jr.key(0), 4)
    f = Linear(_contraction(k1, N, 0.6), jr.normal(k2, (N, M)))
    return f, jr.normal(k3, (M,)), jr.normal(k4, (N,))


def _deq(f, solver="anderson", backward="implicit", **kwargs):
    return nk.DEQ(f, N, solver=SOLVERS[solver], backward=backward, max_steps=300,
                  linear_solver=GMRES, **kwargs)


def _exact_loss(f, x, c):
    return c @ jnp.linalg.solve(jnp.eye(N) - f.a, f.b @ x)


def _phantom_loss(f, x, c):
    """One Jacobian-free step from the exact (constant) equilibrium: `c . f(z*, x)`."""
    z = jax.lax.stop_gradient(jnp.linalg.solve(jnp.eye(N) - f.a, f.b @ x))
    return c @ f(z, x)


# Every solver with the exact backward passes; the phantom gradient (which does not
# depend on how the solution was found) with one solver.
CLOSED_FORM_CASES = [(s, b) for s in SOLVERS for b in ("implicit", "unrolled")] + [
    ("anderson", "phantom")]


@pytest.mark.parametrize("solver, backward", CLOSED_FORM_CASES)
def test_linear_contraction_closed_form(problem, solver, backward):
    f, x, c = problem
    deq = _deq(f, solver, backward)
    sol = eqx.filter_jit(deq.solve)(x)
    z_star = jnp.linalg.solve(jnp.eye(N) - f.a, f.b @ x)
    assert bool(sol.converged) and 0 < int(sol.num_steps) < 300
    assert max_relative_error(sol.value, z_star) < 1e-10
    assert float(sol.relative_residual) < 1e-10
    loss = lambda f, x: c @ _deq(f, solver, backward)(x)  # noqa: E731
    grads = eqx.filter_jit(jax.grad(loss, argnums=(0, 1)))(f, x)
    reference = _phantom_loss if backward == "phantom" else _exact_loss
    expected = jax.grad(reference, argnums=(0, 1))(f, x, c)
    assert max_relative_error(grads, expected) < 1e-9


def test_phantom_is_approximate_and_damped_steps_differ(problem):
    """The phantom gradient is not the true one; more damped steps move towards it."""
    f, x, c = problem
    exact = jax.grad(_exact_loss)(f, x, c)
    errors = []
    for steps in (1, 5, 20):
        deq = _deq(f, backward="phantom", phantom_steps=steps, phantom_damping=0.5)
        grads = jax.grad(lambda f: c @ deq.__class__(
            f, N, solver=deq.solver, backward="phantom", max_steps=300,
            phantom_steps=steps, phantom_damping=0.5)(x))(f)
        errors.append(max_relative_error(grads, exact))
    assert errors[0] > 1e-2 and errors[0] > errors[1] > errors[2]


@pytest.fixture(scope="module")
def nonlinear():
    k1, k2, k3, k4, k5 = jr.split(jr.key(1), 5)
    f = Tanh(_contraction(k1, N, 0.8), jr.normal(k2, (N, M)), jr.normal(k3, (N,)))
    return f, jr.normal(k4, (M,)), jr.normal(k5, (N,))


@pytest.mark.parametrize("backward", ["implicit", "unrolled"])
def test_nonlinear_against_finite_differences(nonlinear, backward):
    f, x, c = nonlinear
    loss = lambda f, x: jnp.sum(jnp.sin(c * _deq(f, "broyden", backward)(x)))  # noqa: E731
    grad_f, grad_x = eqx.filter_jit(jax.grad(loss, argnums=(0, 1)))(f, x)
    eps = 1e-6
    for name in ("w", "u", "c"):
        leaf = getattr(f, name)
        direction = jr.normal(jr.key(7), leaf.shape)
        shift = lambda s: eqx.tree_at(lambda g: getattr(g, name), f, leaf + s * direction)  # noqa: B023, E731
        fd = (loss(shift(eps), x) - loss(shift(-eps), x)) / (2 * eps)
        np.testing.assert_allclose(jnp.vdot(getattr(grad_f, name), direction), fd, rtol=1e-6)
    direction = jr.normal(jr.key(8), x.shape)
    fd = (loss(f, x + eps * direction) - loss(f, x - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(grad_x, direction), fd, rtol=1e-6)


def test_batched_is_one_solve_and_agrees_with_vmap(nonlinear):
    f, _, _ = nonlinear
    xs = jr.normal(jr.key(3), (4, M))
    deq = _deq(f, "iteration")
    one = deq.solve_batched(xs)
    per_sample = jax.vmap(deq.solve)(xs)
    assert one.value.shape == (4, N) and one.num_steps.shape == ()
    assert per_sample.num_steps.shape == (4,)
    assert max_relative_error(one.value, per_sample.value) < 1e-10
    grads = jax.grad(lambda f: jnp.sum(_deq(f, "iteration").batched(xs) ** 2))(f)
    grads_vmap = jax.grad(lambda f: jnp.sum(jax.vmap(_deq(f, "iteration"))(xs) ** 2))(f)
    assert max_relative_error(grads, grads_vmap) < 1e-8


def test_residual_history_falls_and_anderson_beats_iteration(nonlinear):
    f, x, _ = nonlinear
    histories = {name: np.asarray(_deq(f, name).residual_history(x, steps=30))
                 for name in ("iteration", "anderson")}
    for history in histories.values():
        assert history.shape == (30,) and history[0] == pytest.approx(1.0)
        assert history[-1] < 1e-6 * history[0]
    below = {name: int(np.argmax(h < 1e-8)) for name, h in histories.items()}
    assert below["anderson"] < below["iteration"]


def _forced_iterations_memory(f, x, c, backward, k):
    """Temp bytes of the gradient through exactly `k` forward iterations (tol 0)."""
    deq = nk.DEQ(f, N, solver=nk.FixedPointIteration(rtol=0.0, atol=0.0),
                 backward=backward, max_steps=k, throw=False)
    loss = lambda f: c @ eqx.tree_at(lambda d: d.f, deq, f)(x)  # noqa: E731
    compiled = jax.jit(jax.grad(loss)).lower(f).compile()
    return nk.CompiledMemory.of(compiled).temp_bytes


def test_memory_unrolled_grows_with_iterations_implicit_does_not(problem):
    f, x, c = problem
    memory = {(b, k): _forced_iterations_memory(f, x, c, b, k)
              for b in ("implicit", "unrolled") for k in (10, 200)}
    assert memory["implicit", 200] == memory["implicit", 10]
    # Unrolled stores every iterate: about N float64 more per extra iteration.
    per_iteration = (memory["unrolled", 200] - memory["unrolled", 10]) / 190
    assert 0.9 * N * 8 <= per_iteration


def test_not_converged_raises_or_is_reported(problem):
    f, x, _ = problem
    deq = nk.DEQ(f, N, solver=optx.FixedPointIteration(**TIGHT), max_steps=3)
    with pytest.raises(eqx.EquinoxRuntimeError, match="did not converge in max_steps=3"):
        deq(x)
    sol = nk.DEQ(f, N, solver=optx.FixedPointIteration(**TIGHT), max_steps=3,
                 throw=False).solve(x)
    assert not bool(sol.converged) and int(sol.num_steps) == 3
    assert sol.result == optx.RESULTS.nonlinear_max_steps_reached


@pytest.mark.parametrize("solver", SOLVERS)
def test_f_without_a_fixed_point_gives_a_clear_error(solver):
    """`exp(z) + x^2 > z` everywhere: no fixed point, every solver must fail loudly."""
    f = lambda z, x: jnp.exp(z) + jnp.sum(x**2)  # noqa: E731
    deq = nk.DEQ(f, N, solver=SOLVERS[solver], max_steps=2000)
    x = jnp.ones(M)
    with pytest.raises(eqx.EquinoxRuntimeError, match="did not converge|diverged"):
        deq(x)
    sol = nk.DEQ(f, N, solver=SOLVERS[solver], max_steps=2000, throw=False).solve(x)
    assert not bool(sol.converged)


def test_exploding_iterates_are_reported_as_divergence():
    f = Linear(1e3 * jnp.eye(N), jnp.ones((N, M)))
    with pytest.raises(eqx.EquinoxRuntimeError, match="diverged"):
        nk.DEQ(f, N, solver=nk.FixedPointIteration(**TIGHT), max_steps=500)(jnp.ones(M))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(backward="adjoint"), "unknown DEQ backward 'adjoint'; expected one of implicit"),
        (dict(state_shape=0), "`state_shape` must be a positive int"),
        (dict(state_shape=(N, -1)), "`state_shape` must be a positive int"),
        (dict(max_steps=0), "max_steps"),
        (dict(solver="anderson"), "`solver` must be an optimistix fixed-point solver"),
        (dict(linear_solver=optx.BFGS(1e-3, 1e-3)), "`linear_solver` must be a lineax"),
        (dict(phantom_damping=1.5), "phantom_damping"),
        (dict(throw=1), "`throw` must be a Python bool"),
        (dict(f=3), "`f` must be a callable"),
    ],
)
def test_bad_constructor_arguments(problem, kwargs, match):
    f, _, _ = problem
    arguments = dict(f=f, state_shape=N) | kwargs
    with pytest.raises(ValueError, match=match):
        nk.DEQ(arguments.pop("f"), arguments.pop("state_shape"), **arguments)


def test_bad_call_arguments(problem):
    f, x, _ = problem
    with pytest.raises(ValueError, match=r"`f\(z, x\)` failed for z of the state's shape \(4,\)"):
        nk.DEQ(f, 4)(x)
    with pytest.raises(ValueError, match=r"`f\(z, x\)` must return an array of the state's shape \(5,\); got \(2,\)"):
        nk.DEQ(lambda z, x: z[:2], N)(x)
    with pytest.raises(ValueError, match=r"`z0` must have shape \(5,\)"):
        nk.DEQ(f, N)(x, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"`z0s` must have shape \(2, 5\)"):
        nk.DEQ(f, N).batched(jnp.ones((2, M)), jnp.zeros((3, N)))
    with pytest.raises(ValueError, match="leading batch axis"):
        nk.DEQ(f, N).batched(jnp.float64(1.0))
    with pytest.raises(ValueError, match="must be a non-negative float"):
        nk.AndersonAcceleration(rtol=-1.0, atol=1e-6)
    with pytest.raises(ValueError, match="memory"):
        nk.Broyden(rtol=1e-6, atol=1e-6, memory=0)


def test_replace_gives_a_checked_copy(problem):
    f, _, _ = problem
    deq = _deq(f)
    unrolled = deq.replace(backward="unrolled", max_steps=7)
    assert (unrolled.backward, unrolled.max_steps, unrolled.f) == ("unrolled", 7, f)
    assert (deq.backward, deq.max_steps) == ("implicit", 300)
    with pytest.raises(ValueError, match="unknown DEQ backward 'direct'"):
        deq.replace(backward="direct")
    with pytest.raises(ValueError, match=r"`DEQ.replace` got unknown arguments \['tol'\]"):
        deq.replace(tol=1e-3)

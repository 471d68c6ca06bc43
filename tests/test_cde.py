"""The neural CDE and control terms: closed forms, the path's missing values, every adjoint
against finite differences, the batch as one state, causality, and bad input."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import node_kit as nk

N, D, HIDDEN = 6, 2, 3
TS = jnp.linspace(0.0, 1.0, N)
FIXED = dict(solver=diffrax.Tsit5(), stepsize_controller=diffrax.ConstantStepSize(), dt0=0.05,
             max_steps=64)
TIGHT = dict(solver=diffrax.Tsit5(), stepsize_controller=diffrax.PIDController(rtol=1e-11, atol=1e-11),
             max_steps=4096)


def _series(seed=0, batch=None):
    shape = (N, D) if batch is None else (batch, N, D)
    values = jr.normal(jr.key(seed), shape)
    mask = jr.bernoulli(jr.key(seed + 1), 0.6, shape)
    return values, mask


def _model(interpolation="cubic", **settings):
    return nk.NeuralCDE(D, HIDDEN, 4, 1, readout_size=2, interpolation=interpolation,
                        key=jr.key(7), **(settings or FIXED))


def _fixed(interpolation):
    """Fixed steps for the path: the rectilinear one runs over knot indices 0 .. 2n - 2."""
    return FIXED | dict(dt0=0.25 if interpolation == "rectilinear" else 0.05)


@pytest.mark.parametrize("interpolation", [
    "cubic", *(pytest.param(i, marks=pytest.mark.slow) for i in ("rectilinear", "linear"))])
def test_a_constant_field_moves_the_state_by_the_path_increment(interpolation):
    """With f constant (= M), z(end) = z0 + M (X(end) - X(start)) for any path: the path's
    end points, missing values and intensity, computed here by hand."""
    model = _model(interpolation, **TIGHT)
    last = model.vector_field.mlp.layers[-1]
    model = eqx.tree_at(lambda m: m.vector_field.mlp.layers[-1].weight, model,
                        jnp.zeros_like(last.weight))
    M = np.tanh(np.asarray(last.bias)).reshape(HIDDEN, 1 + 2 * D)
    values, mask = _series(3)
    mask = mask.at[0, 0].set(False).at[-1, 1].set(False).at[:, 1].set(mask[:, 1].at[2].set(True))
    v, m = np.asarray(values), np.asarray(mask)
    first = np.array([v[np.argmax(m[:, c]), c] for c in range(D)])
    final = np.array([v[N - 1 - np.argmax(m[::-1, c]), c] for c in range(D)])
    counts = m.cumsum(0) / N
    x_start = np.concatenate([[0.0], first, counts[0]])
    x_end = np.concatenate([[1.0], final, counts[-1]])
    z0 = np.asarray(model.initial.weight) @ x_start + np.asarray(model.initial.bias)
    states = model.states(TS, values, mask)
    np.testing.assert_allclose(states[0], z0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(states[-1], z0 + M @ (x_end - x_start), rtol=1e-8, atol=1e-10)
    # The path itself passes through every observed value at its knot.
    path, knots = model.path(TS, values, mask)
    at_knots = jax.vmap(path.evaluate)(knots)
    np.testing.assert_allclose(np.asarray(at_knots[:, 1:1 + D])[m], v[m], rtol=1e-12)
    np.testing.assert_allclose(at_knots[:, 0], TS, atol=1e-12)


def test_control_terms_match_their_closed_form():
    """dz = z (a . dX) gives z0 exp(a . (X(T) - X(0))); with -k z dt added as a MultiTerm,
    z0 exp(-k T + a . (X(T) - X(0))); a ControlTerm driven by a cubic path is solved as its
    ODE, so Tsit5 reaches 1e-8."""
    ts = jnp.linspace(0.0, 1.0, 7)
    xs = jnp.stack([ts, jnp.sin(3 * ts), ts ** 2], -1)
    path = diffrax.CubicInterpolation(ts, diffrax.backward_hermite_coefficients(ts, xs))
    a, k, z0 = jnp.array([0.3, -0.7, 0.2]), 0.4, jnp.array([1.0, -2.0])
    settings = nk.SolveSettings(**TIGHT)
    control = diffrax.ControlTerm(lambda t, z, args: z[:, None] * a[None, :], path)
    increment = path.evaluate(1.0) - path.evaluate(0.0)
    sol = settings.solve(control, ts, z0)
    np.testing.assert_allclose(sol.ys[-1], z0 * jnp.exp(a @ increment), rtol=1e-8)
    both = diffrax.MultiTerm(diffrax.ODETerm(lambda t, z, args: -k * z), control)
    sol = settings.solve(both, ts, z0)
    np.testing.assert_allclose(sol.ys[-1], z0 * jnp.exp(-k + a @ increment), rtol=1e-8)


def _central_difference(loss, model, direction, eps=1e-6):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    step = jax.tree_util.tree_map(lambda p, d: p + eps * d, params, direction)
    back = jax.tree_util.tree_map(lambda p, d: p - eps * d, params, direction)
    return (loss(eqx.combine(step, static)) - loss(eqx.combine(back, static))) / (2 * eps)


@pytest.mark.parametrize("adjoint, rtol", [
    ("checkpoint", 1e-7),
    # Second cases (the slow tier): direct is checkpoint with one checkpoint per step; the
    # reversible adjoint solves the same ODE form as for any field.
    pytest.param("reversible", 1e-7, marks=pytest.mark.slow),
    pytest.param("direct", 1e-7, marks=pytest.mark.slow),
    pytest.param("backsolve", 1e-3, marks=pytest.mark.slow),
])
def test_every_adjoint_matches_finite_differences(adjoint, rtol):
    """The gradient of a classifier's loss along a random direction of every parameter,
    against central differences of the same forward solve. Backsolve solves the adjoint
    equation backwards, so it matches to its discretisation error only, and on a fully
    observed series: a missing value puts a corner in the cubic path, where its backward
    solve is first order (1.2e-2 off at dt0 = 0.05, 2e-3 at 0.01)."""
    model = _model("cubic").with_settings(nk.SolveSettings(adjoint=adjoint, **FIXED))
    values, mask = _series(5)
    if adjoint == "backsolve":
        mask = jnp.ones_like(mask)

    def loss(m):
        return jnp.sum(jnp.sin(m(TS, values, mask)))

    params = eqx.filter(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jr.split(jr.key(11), len(leaves))
    direction = jax.tree_util.tree_unflatten(
        treedef, [jr.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])
    grad = eqx.filter_grad(loss)(model)
    along = sum(jnp.vdot(g, d) for g, d in zip(jax.tree_util.tree_leaves(grad),
                                               jax.tree_util.tree_leaves(direction)))
    np.testing.assert_allclose(along, _central_difference(loss, model, direction), rtol=rtol)


def test_a_batch_as_one_state_equals_the_series_one_by_one():
    model = _model("linear")
    values, masks = _series(8, batch=3)
    one_by_one = jax.vmap(model, in_axes=(None, 0, 0))(TS, values, masks)
    np.testing.assert_allclose(model.batched(TS, values, masks), one_by_one, rtol=1e-12, atol=1e-12)


def test_masked_entries_never_reach_the_output():
    model = _model("cubic")
    values, mask = _series(2)
    garbage = jnp.where(mask, values, jnp.nan)
    np.testing.assert_array_equal(model(TS, values, mask), model(TS, garbage, mask))


@pytest.mark.parametrize("interpolation", [
    "rectilinear", *(pytest.param(i, marks=pytest.mark.slow) for i in ("cubic", "linear"))])
def test_a_channel_or_a_series_with_nothing_observed_is_a_flat_zero(interpolation):
    """A channel observed once is flat at that value, one never observed is 0 along the
    whole path (diffrax's fill would leave both NaN), also when the series has no
    observation at all (a window in the padding)."""
    model = _model(interpolation, **_fixed(interpolation))
    values, mask = _series(6)
    once = jnp.zeros_like(mask).at[0].set(True)  # one observation: a flat path after it
    path, knots = model.path(TS, values, once)
    np.testing.assert_array_equal(jax.vmap(path.evaluate)(knots)[:, 1:3],
                                  jnp.broadcast_to(values[0], (N, D)))
    assert np.all(np.isfinite(model(TS, values, once)))
    for unseen in (mask.at[:, 1].set(False), jnp.zeros_like(mask)):
        garbage = jnp.where(unseen, values, jnp.nan)
        path, knots = model.path(TS, garbage, unseen)
        np.testing.assert_array_equal(jax.vmap(path.evaluate)(knots)[:, 2], 0.0)
        assert np.all(np.isfinite(model(TS, garbage, unseen)))


@pytest.mark.parametrize("interpolation", ["cubic", pytest.param("rectilinear", marks=pytest.mark.slow)])
def test_the_state_at_a_point_depends_on_no_later_observation(interpolation):
    """Backward Hermite splines and the rectilinear path are causal at the knots: changing
    the observation at point 4 leaves the states at points 0..3 as they were."""
    model = _model(interpolation, **_fixed(interpolation))
    values, _ = _series(4)
    mask = jnp.ones((N, D), bool)
    before = model.states(TS, values, mask)
    after = model.states(TS, values.at[4].add(1.0), mask)
    np.testing.assert_allclose(after[:4], before[:4], rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(after[4:] - before[4:])) > 1e-3


def test_bad_input_names_the_argument_and_the_fix():
    model = _model()
    values, mask = _series(0)
    with pytest.raises(ValueError, match=r"at least 2 time points for a neural CDE's cubic path"):
        model(TS[:1], values[:1], mask[:1])
    with pytest.raises(ValueError, match=r"unknown interpolation 'spline'; expected one of cubic, linear, rectilinear"):
        nk.NeuralCDE(D, HIDDEN, 4, 1, interpolation="spline", key=jr.key(0))
    with pytest.raises(ValueError, match=r"`values` must be a float array of shape \(len\(ts\), "
                                         r"data_size\) = \(6, 2\)"):
        model(TS, values[:, :1], mask[:, :1])
    with pytest.raises(ValueError, match=r"unknown at 'all'; expected one of points, ends"):
        model.states(TS, values, mask, at="all")
    path = diffrax.LinearInterpolation(TS, jnp.stack([TS, TS], -1))
    wrong = diffrax.ControlTerm(lambda t, z, args: z, path)
    with pytest.raises(ValueError, match=r"must return an array of shape y.shape \+ control shape "
                                         r"= \(3,\) \+ \(2,\) = \(3, 2\).*it returned \(3,\)"):
        nk.SolveSettings().solve(wrong, TS, jnp.ones(3))
    with pytest.raises(ValueError, match=r"a batched solve vmaps a per-sample field"):
        model.solve_field(wrong, TS, jnp.ones((2, 3)), batched=True)
    brownian = diffrax.VirtualBrownianTree(0.0, 1.0, 1e-3, (2,), key=jr.key(0))
    sde = diffrax.ControlTerm(lambda t, z, args: jnp.ones((3, 2)), brownian)
    with pytest.raises(ValueError, match=r"adjoint 'reversible' solves ordinary differential "
                                         r"equations.*driven by Brownian motion"):
        nk.SolveSettings(adjoint="reversible", **FIXED).solve(sde, TS, jnp.ones(3))
    with pytest.raises(ValueError, match=r"must be a vector field f\(t, y, args\) \(a callable\) "
                                         r"or a diffrax term"):
        nk.SolveSettings().solve(3.0, TS, jnp.ones(3))

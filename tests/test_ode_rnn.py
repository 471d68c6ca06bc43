"""ODERNN and GRUDelta: zero gaps, zero fields, masking, adjoints, bad inputs, batch helpers.

Compilation dominates the run time, so every ODE-RNN test goes through one jitted
loss-and-gradient (`_LOSS`, fixed shapes `(5, 2)`), and the adjoint comparison is the only
other compiled ODE-RNN graph.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from node_kit._irregular import subsample_mask, union_grid
from node_kit._ode_rnn import ODERNN, GRUDelta

# Euler with fixed steps and the "direct" adjoint: the cheapest to compile. Euler's linear
# output interpolation returns y0 exactly when the field is zero (Heun's Hermite
# interpolation rounds it in the last bit), so the zero-field check can be exact.
FAST = dict(
    solver=diffrax.Euler(),
    stepsize_controller=diffrax.ConstantStepSize(),
    dt0=0.5,
    max_steps=8,
    adjoint="direct",
)
TS = jnp.array([0.0, 0.4, 0.9, 1.3, 2.0])
MASK = jnp.array([[1, 1], [0, 1], [0, 0], [1, 0], [1, 1]])


def _loss(params, ts, mask):
    model, values = params
    before, after = model.states(ts, values, mask)
    predictions = jax.vmap(model.readout)(before)
    residual = jnp.where(mask, predictions - jnp.where(mask, values, 0.0), 0.0)
    return jnp.sum(residual**2) + jnp.sum(after**2), (before, after)


_LOSS = eqx.filter_jit(eqx.filter_value_and_grad(_loss, has_aux=True))


@pytest.fixture(scope="module")
def model():
    return ODERNN(2, 3, 4, 1, key=jr.key(0), **FAST)


@pytest.fixture(scope="module")
def values():
    return jr.normal(jr.key(1), (5, 2))


def _run(model, ts, values, mask):
    (loss, (before, after)), grads = _LOSS((model, values), ts, mask)
    return loss, before, after, grads


def _gru_reference(model, values, mask):
    h, states = jnp.zeros(model.hidden_size), []
    for x, m in zip(values, mask.astype(bool)):
        gru_input = jnp.concatenate([jnp.where(m, x, 0.0), m.astype(x.dtype)])
        h = model.cell(gru_input, h) if bool(m.any()) else h
        states.append(h)
    return jnp.stack(states)


def test_zero_gaps_reduce_to_the_gru(model, values):
    _, before, after, _ = _run(model, jnp.zeros(5), values, MASK)
    # The ODE over a zero gap returns its input bit for bit ...
    np.testing.assert_array_equal(before[0], jnp.zeros(3))
    np.testing.assert_array_equal(before[1:], after[:-1])
    # ... so the states are the GRU's (eager vs jitted may differ in the last bit).
    np.testing.assert_allclose(after, _gru_reference(model, values, MASK), rtol=1e-13, atol=1e-15)


def test_zero_field_keeps_the_state_between_observations(model, values):
    def last_layer(m):
        layer = m.ode.vector_field.field.mlp.layers[-1]
        return layer.weight, layer.bias

    zero = eqx.tree_at(last_layer, model, replace_fn=jnp.zeros_like)
    _, before, after, _ = _run(zero, TS, values, MASK)
    np.testing.assert_array_equal(before[1:], after[:-1])
    _, before, after, _ = _run(model, TS, values, MASK)
    assert not np.allclose(before[1:], after[:-1])


def test_masked_values_change_neither_loss_nor_gradients(model, values):
    loss, _, after, grads = _run(model, TS, values, MASK)
    hidden = jnp.where(MASK, values, jnp.array([[jnp.nan, 1e6]] * 5))
    loss2, _, after2, grads2 = _run(model, TS, hidden, MASK)
    assert np.isfinite(loss) and loss == loss2
    np.testing.assert_array_equal(after, after2)
    for g, g2 in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads2)):
        np.testing.assert_array_equal(g, g2)
    value_grads = grads[1]
    assert np.all(np.where(MASK, True, value_grads == 0))
    assert np.any(value_grads != 0)


@pytest.mark.parametrize("leading", [False, True])
def test_unobserved_time_points_change_no_other_state(model, values, leading):
    # Point 2 (and point 0 if `leading`) is unobserved: moving it and changing its values
    # leaves every other state; the state stays zero until the first observation.
    mask = MASK.at[0].set(0) if leading else MASK
    _, before, after, _ = _run(model, TS, values, mask)
    moved_ts, changed = TS.at[2].set(1.25), values.at[2].set(7.0)
    if leading:
        moved_ts, changed = moved_ts.at[0].set(-0.5), changed.at[0].set(3.0)
    _, before2, after2, _ = _run(model, moved_ts, changed, mask)
    others = np.array([1, 3, 4] if leading else [0, 1, 3, 4])
    np.testing.assert_array_equal(after[others], after2[others])
    np.testing.assert_array_equal(before[others], before2[others])
    assert not np.array_equal(after[2], after2[2])  # the state evolved to another time
    if leading:
        np.testing.assert_array_equal(after[0], np.zeros(3))


@pytest.mark.parametrize("mask", [MASK.at[:].set(0).at[3, 1].set(1), jnp.ones_like(MASK)])
def test_single_observation_and_fully_observed_series(model, values, mask):
    loss, before, after, grads = _run(model, TS, values, mask)
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    changed = np.any(after != before, axis=1)
    np.testing.assert_array_equal(changed, np.any(mask, axis=1))


@eqx.filter_jit
def _parameter_grads(model, ts, values, mask):
    return eqx.filter_grad(lambda m: jnp.sum(m(ts, values, mask) ** 2))(model)


def test_checkpoint_and_backsolve_gradients_agree():
    # Fixed Heun steps of 1/50 of each gap (cheaper to compile than an adaptive solve).
    # Checkpointing differentiates the forward discretisation exactly; backsolve integrates
    # the continuous adjoint backwards on the same grid, so the two differ by the O(dt^2)
    # discretisation error of the adjoint: measured 5e-10 relative to the largest gradient
    # entry (float64), asserted at 1e-6.
    fine = dict(
        solver=diffrax.Heun(),
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=0.02,
        max_steps=64,
    )
    model = ODERNN(2, 3, 4, 1, key=jr.key(2), adjoint="checkpoint", **fine)
    backsolve = model.with_settings(model.ode.settings.with_adjoint(diffrax.BacksolveAdjoint()))
    ts, values, mask = TS[:4], jr.normal(jr.key(3), (4, 2)), MASK[:4]
    exact = _parameter_grads(model, ts, values, mask)
    approx = _parameter_grads(backsolve, ts, values, mask)
    leaves = jax.tree_util.tree_leaves(exact)
    scale = max(float(jnp.max(jnp.abs(g))) for g in leaves)
    for g, a in zip(leaves, jax.tree_util.tree_leaves(approx)):
        np.testing.assert_allclose(a, g, rtol=0, atol=1e-6 * scale)


def _gru_delta_loss(params, ts, mask):
    model, values = params
    before, after = model.states(ts, values, mask)
    return jnp.sum(jax.vmap(model.readout)(before) ** 2) + jnp.sum(after**2), after


_GRU_LOSS = eqx.filter_jit(eqx.filter_value_and_grad(_gru_delta_loss, has_aux=True))


def test_gru_delta_ignores_masked_values_and_unobserved_times(values):
    model = GRUDelta(2, 3, key=jr.key(4))
    (loss, after), grads = _GRU_LOSS((model, values), TS, MASK)
    hidden = jnp.where(MASK, values, jnp.nan).at[2, 0].set(3.0)
    (loss2, after2), grads2 = _GRU_LOSS((model, hidden), TS.at[2].set(1.2), MASK)
    assert np.isfinite(loss) and loss == loss2
    np.testing.assert_array_equal(after, after2)
    for g, g2 in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads2)):
        np.testing.assert_array_equal(g, g2)
    # The time since the last observation is an input: shifting the later times changes it.
    (_, after3), _ = _GRU_LOSS((model, values), TS.at[3:].add(0.5), MASK)
    assert not np.allclose(after3[3], after[3])


# --- Bad inputs --------------------------------------------------------------------------


def test_decreasing_times_raise(model, values):
    with pytest.raises(
        ValueError,
        match=r"`ts` must be non-decreasing within a series; got ts\[2\]=0.5 < ts\[1\]=1.0",
    ):
        model(jnp.array([0.0, 1.0, 0.5, 2.0, 3.0]), values, MASK)
    with pytest.raises(Exception, match="`ts` must be non-decreasing within a series"):
        _run(model, TS.at[2].set(0.1), values, MASK)


def test_shapes_and_mask_values_are_checked(model, values):
    with pytest.raises(
        ValueError, match=r"`mask` must have the shape of `values` \(5, 2\).*got \(5, 1\)"
    ):
        model(TS, values, MASK[:, :1])
    with pytest.raises(
        ValueError,
        match=r"`values` must be a float array of shape \(len\(ts\), data_size\) = \(5, 2\) "
        r"for this model \(data_size=2\); got float64\(5, 3\)",
    ):
        model(TS, jnp.ones((5, 3)), jnp.ones((5, 3)))
    with pytest.raises(ValueError, match=r"Add a channel axis"):
        GRUDelta(1, 2, key=jr.key(0))(TS, jnp.ones(5), jnp.ones(5))
    with pytest.raises(
        ValueError,
        match=r"`mask` must hold only 0 and 1 \(1 = observed\); got the values \[0.0, 0.5, 1.0\]",
    ):
        model(TS, values, MASK * jnp.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="`ts` must be a non-empty 1-D array"):
        model(jnp.zeros((5, 1)), values, MASK)


def test_nan_at_an_observed_entry_raises(model, values):
    with pytest.raises(Exception, match="NaN or inf at observed entries"):
        _run(model, TS, values.at[0, 0].set(jnp.nan), MASK)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="`hidden_size` must be an int >= 1; got 0"):
        ODERNN(2, 0, 4, 1, key=jr.key(0))


# --- Batch helpers -----------------------------------------------------------------------


_SUBSAMPLE = jax.jit(subsample_mask, static_argnums=2)


def test_subsample_mask_keeps_whole_observed_points():
    mask = MASK.astype(bool)
    for i, fraction in enumerate([0.25, 0.5, 1.0]):
        kept = _SUBSAMPLE(jr.key(i), mask, fraction)
        points = np.any(kept, axis=1)
        assert points.sum() == np.ceil(fraction * 4)  # 4 points are observed
        assert not np.any(kept & ~mask)
        np.testing.assert_array_equal(kept[points], mask[points])
    batch = jax.vmap(subsample_mask, in_axes=(0, None, None))(jr.split(jr.key(9), 3), MASK, 0.5)
    assert batch.shape == (3, 5, 2) and batch.dtype == MASK.dtype


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.2, True])
def test_subsample_fraction_outside_unit_interval_raises(fraction):
    with pytest.raises(
        ValueError, match=r"`fraction` .* must be a float in \(0, 1\]; got fraction="
    ):
        subsample_mask(jr.key(0), MASK, fraction)


def test_union_grid_places_every_series_on_the_shared_times():
    ts = [np.array([0.0, 1.0, 2.5]), np.array([0.5, 1.0])]
    values = [np.array([[1.0], [2.0], [3.0]]), np.array([[4.0], [5.0]])]
    grid, stacked, mask = union_grid(ts, values, [np.array([[1], [0], [1]]), np.ones((2, 1))])
    np.testing.assert_array_equal(grid, [0.0, 0.5, 1.0, 2.5])
    np.testing.assert_array_equal(mask[..., 0], [[1, 0, 0, 1], [0, 1, 1, 0]])
    np.testing.assert_array_equal(stacked[..., 0], [[1, 0, 0, 3], [0, 4, 5, 0]])
    with pytest.raises(ValueError, match="`ts` must be strictly increasing"):
        union_grid([np.array([0.0, 0.0])], [np.ones((2, 1))])


# --- Solver-step counts ------------------------------------------------------------------


@eqx.filter_jit
def _counted(model, ts, values, mask, t):
    return (
        model.states(ts, values, mask),
        model.states_counted(ts, values, mask),
        model.state_at(ts, values, mask, t),
        model.state_at_counted(ts, values, mask, t),
    )


# The second step size repeats the count on another grid: the slow tier.
@pytest.mark.parametrize("dt0, per_evolve", [(0.5, 2), pytest.param(0.25, 4, marks=pytest.mark.slow)])
def test_solver_steps_are_counted_per_time_point(values, dt0, per_evolve):
    # Fixed Euler steps of `dt0` on each gap's `s in [0, 1]`. Every time point evolves once,
    # observed or not (point 2 of MASK is not), and zero gaps still run the solver.
    model = ODERNN(2, 3, 4, 1, key=jr.key(0), **dict(FAST, dt0=dt0))  # dt0=0.5: the fixture
    for ts, mask in [(TS, MASK), (jnp.zeros(5), MASK), (TS, MASK.at[:2].set(0))]:
        states, (counted, num_steps), h, (h_counted, at_steps) = _counted(
            model, ts, values, mask, 2.5
        )
        for a, b in zip(states, counted):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(h, h_counted)
        assert jnp.issubdtype(num_steps.dtype, jnp.integer)
        assert int(num_steps) == per_evolve * 5
        # `state_at` adds one evolve, from the last observation to t = 2.5.
        assert int(at_steps) == per_evolve * 6


def test_gru_delta_counts_no_solver_steps(values):
    model = GRUDelta(2, 3, key=jr.key(4))
    states = model.states(TS, values, MASK)
    counted, num_steps = model.states_counted(TS, values, MASK)
    for a, b in zip(states, counted):
        np.testing.assert_array_equal(a, b)
    h, at_steps = model.state_at_counted(TS, values, MASK, 2.5)
    np.testing.assert_array_equal(h, model.state_at(TS, values, MASK, 2.5))
    assert int(num_steps) == 0 and int(at_steps) == 0

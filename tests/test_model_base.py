"""AbstractODEModel: a new model in a few lines gets the settings, with_settings, the batch
as one state and the failure checks; NeuralODE and CNF are built on it."""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import node_kit as nk


class Decay(eqx.Module):
    """dy/dt = -rate * y (times a per-sample scale in `args`, if given)."""

    rate: jax.Array

    def __call__(self, t, y, args):
        return -self.rate * y * (1.0 if args is None else args)


class DecayModel(nk.AbstractODEModel):
    """The whole of a new model: its fields, its checks, and one call of solve_field."""

    vector_field: Callable
    settings: nk.SolveSettings

    def __init__(self, rate, settings=None, **solve_keywords):
        self.vector_field = Decay(jnp.asarray(rate))
        self.settings = nk.SolveSettings.of(settings, **solve_keywords)

    def final(self, y0, args=None, *, batched=False, args_axis=None):
        sol = self.solve_field(self.vector_field, jnp.array([0.0, 1.0]), y0, args,
                               batched=batched, args_axis=args_axis)
        return sol.ys[-1]


TIGHT = dict(solver=diffrax.Tsit5(), stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12))


def test_a_new_model_solves_one_sample_and_a_batch_as_one_state():
    model = DecayModel(0.7, **TIGHT)
    y0s = jnp.array([[1.0, -2.0], [0.5, 3.0], [2.0, 0.0]])
    # One sample against the closed form y0 * exp(-rate).
    np.testing.assert_allclose(model.final(y0s[0]), y0s[0] * np.exp(-0.7), rtol=1e-9)
    # The batch as one state, with shared and with per-sample args, against a loop.
    np.testing.assert_allclose(model.final(y0s, batched=True), y0s * np.exp(-0.7), rtol=1e-9)
    scales = jnp.array([1.0, 2.0, 0.5])
    by_sample = model.final(y0s, scales, batched=True, args_axis=0)
    np.testing.assert_allclose(by_sample, y0s * np.exp(-0.7 * scales)[:, None], rtol=1e-9)
    # The gradient through it, under another adjoint set with with_settings.
    direct = model.with_settings(model.settings.with_adjoint("direct"))
    assert type(direct) is DecayModel and direct.settings.adjoint != model.settings.adjoint
    grad = eqx.filter_grad(lambda m: jnp.sum(m.final(y0s[0])))(direct).vector_field.rate
    np.testing.assert_allclose(grad, -jnp.sum(y0s[0]) * np.exp(-0.7), rtol=1e-8)


def test_a_new_model_gets_the_failure_checks():
    model = DecayModel(0.7, **TIGHT, max_steps=2)
    with pytest.raises(Exception, match=r"max_steps"):
        model.final(jnp.ones(2))
    with pytest.raises(ValueError, match=r"`args_axis` is for a batched solve"):
        DecayModel(0.7).final(jnp.ones(2), jnp.ones(()), args_axis=0)
    with pytest.raises(ValueError, match=r"`args_axis` must be None .* or 0"):
        DecayModel(0.7).final(jnp.ones((3, 2)), batched=True, args_axis=1)
    with pytest.raises(ValueError, match=r"`ts` must be strictly increasing"):
        model.solve_field(model.vector_field, jnp.array([0.0, 0.0]), jnp.ones(2))


def test_with_settings_changes_the_settings_only():
    settings = nk.SolveSettings(adjoint="direct", max_steps=64)
    field = nk.MLPField(2, 4, 1, key=jr.key(0))
    cnf = nk.CNF(field, trace_estimator=nk.HutchinsonTrace(), t1=0.5)
    for model in (nk.NeuralODE(field), cnf):
        assert isinstance(model, nk.AbstractODEModel)
        changed = model.with_settings(settings)
        assert type(changed) is type(model) and bool(eqx.tree_equal(changed.settings, settings))
        rest = lambda m: eqx.tree_at(lambda x: x.settings, m, None)
        assert bool(eqx.tree_equal(rest(changed), rest(model)))
    assert cnf.with_settings(settings).t1 == 0.5


@pytest.mark.parametrize("given", ["direct", None, {"adjoint": "direct"}])
def test_with_settings_refuses_what_is_not_settings(given):
    with pytest.raises(ValueError, match=r"`settings` must be a node_kit.SolveSettings; got "
                                         r".*model.settings.with_adjoint"):
        nk.NeuralODE(nk.MLPField(2, 4, 1, key=jr.key(0))).with_settings(given)


def test_the_base_is_abstract():
    with pytest.raises(TypeError):
        nk.AbstractODEModel()

"""LatentODE: ELBO terms against closed forms, masking, prediction, classification, bad inputs.

Two compiled graphs serve every test: the loss gradient with the posterior (`_TRAIN`) and
prediction with classification (`_PREDICT`).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from node_kit._latent_ode import (
    LatentODE,
    gaussian_kl,
    latent_ode_loss,
    masked_gaussian_log_likelihood,
)

# Fixed Euler steps and the "direct" adjoint: the cheapest set-up to compile.
FAST = dict(
    solver=diffrax.Euler(),
    stepsize_controller=diffrax.ConstantStepSize(),
    dt0=0.25,
    max_steps=16,
    adjoint="direct",
)
TS = jnp.array([[0.0, 0.3, 0.7, 1.2, 1.5], [0.1, 0.2, 0.6, 0.9, 1.6]])
# Series 0 has a single observed entry; series 1 is fully observed.
MASK = jnp.zeros((2, 5, 2), int).at[0, 2, 1].set(1).at[1].set(1)

_traces = []


@eqx.filter_jit
def _train(model, batch, key):
    _traces.append(None)
    loss_and_grad = eqx.filter_value_and_grad(latent_ode_loss, has_aux=True)
    (loss, aux), grads = loss_and_grad(model, batch, key, num_samples=2)
    mu, sigma = jax.vmap(model.posterior)(batch["t"], batch["x"], batch["mask"])
    return loss, aux, grads, mu, sigma


@eqx.filter_jit
def _predict(model, ts, values, mask, ts_query, key):
    samples = model.predict(ts, values, mask, ts_query, key=key, num_samples=4)
    return samples, model.classify(ts, values, mask)


@pytest.fixture(scope="module")
def model():
    return LatentODE(2, 2, 3, 4, 1, num_classes=3, key=jr.key(0), **FAST)


@pytest.fixture(scope="module")
def batch():
    return {"t": TS, "x": jr.normal(jr.key(1), (2, 5, 2)), "mask": MASK}


@pytest.fixture(scope="module")
def trained(model, batch):
    return _train(model, batch, jr.key(2))


def _kl_numpy(mu, sigma):
    mu, sigma = np.asarray(mu), np.asarray(sigma)
    return 0.5 * np.sum(sigma**2 + mu**2 - 1 - 2 * np.log(sigma), axis=-1)


def test_elbo_finite_for_single_and_fully_observed_series(trained):
    loss, aux, grads, mu, sigma = trained
    assert np.isfinite(loss) and all(np.isfinite(v) for v in aux.values())
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
    assert np.all(sigma > 0) and mu.shape == sigma.shape == (2, 2)
    np.testing.assert_allclose(aux["elbo"], aux["log_likelihood"] - aux["kl"], rtol=1e-14)
    np.testing.assert_allclose(loss, -aux["elbo"], rtol=1e-14)


def test_elbo_kl_term_is_the_closed_form(trained):
    _, aux, _, mu, sigma = trained
    np.testing.assert_allclose(aux["kl"], np.mean(_kl_numpy(mu, sigma)), rtol=1e-12)


def test_gaussian_kl_matches_numpy_and_monte_carlo():
    mu = np.array([0.3, -1.2, 0.0])
    sigma = np.array([0.5, 1.3, 0.9])
    kl = float(gaussian_kl(jnp.asarray(mu), jnp.asarray(sigma)))
    np.testing.assert_allclose(kl, _kl_numpy(mu, sigma), rtol=1e-13)
    z = mu + sigma * np.random.default_rng(0).standard_normal((200_000, 3))
    log_q = -0.5 * np.sum(((z - mu) / sigma) ** 2 + 2 * np.log(sigma), axis=1)
    log_p = -0.5 * np.sum(z**2, axis=1)  # the 2 pi terms cancel
    samples = log_q - log_p
    standard_error = samples.std() / np.sqrt(len(samples))
    assert abs(samples.mean() - kl) < 4 * standard_error


def test_log_likelihood_counts_observed_entries_only():
    rng = np.random.default_rng(1)
    values, means = rng.standard_normal((2, 4, 3))
    mask = rng.random((4, 3)) < 0.5
    std = 0.3
    expected = np.sum(
        np.where(mask, -0.5 * ((values - means) / std) ** 2 - np.log(std * np.sqrt(2 * np.pi)), 0)
    )
    got = masked_gaussian_log_likelihood(
        jnp.asarray(np.where(mask, values, np.nan)), jnp.asarray(means), jnp.asarray(mask), std
    )
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_masked_values_change_neither_loss_nor_gradients(model, batch, trained):
    hidden = dict(batch, x=jnp.where(MASK, batch["x"], jnp.array([jnp.nan, 1e6])))
    again = _train(model, hidden, jr.key(2))
    for a, b in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(a, b)
    assert len(_traces) == 1  # the second batch did not compile again


def test_strictly_increasing_times_are_checked_inside_jit(model, batch):
    repeated = dict(batch, t=TS.at[1, 2].set(0.2))
    with pytest.raises(Exception, match="`ts` must be strictly increasing within a series"):
        jax.block_until_ready(_train(model, repeated, jr.key(2)))


def test_predict_and_classify(model, batch):
    ts, values, mask = TS[1], batch["x"][1], MASK[1]
    query = jnp.linspace(0.1, 3.0, 7)  # reconstruction and extrapolation
    samples, logits = _predict(model, ts, values, mask, query, jr.key(3))
    assert samples.shape == (4, 7, 2) and logits.shape == (3,)
    assert np.all(np.isfinite(samples)) and np.all(np.isfinite(logits))
    assert np.all(samples.std(axis=0) > 0)  # z0 draws differ: the spread is the uncertainty
    again, _ = _predict(model, ts, values, mask, query, jr.key(3))
    np.testing.assert_array_equal(samples, again)


# --- Bad inputs --------------------------------------------------------------------------


def test_bad_inputs_raise(model, batch):
    ts, values, mask = TS[0], batch["x"][0], MASK[0]
    key = jr.key(0)
    with pytest.raises(
        ValueError,
        match=r"`ts` must be strictly increasing within a series; got ts\[2\]=0.3 <= ts\[1\]=0.3",
    ):
        model.elbo(ts.at[2].set(0.3), values, mask, key=key)
    with pytest.raises(
        ValueError,
        match=r"`ts_query` must be strictly increasing within a series; got ts_query\[1\]=0.0",
    ):
        model.predict(ts, values, mask, jnp.array([1.0, 0.0]), key=key)
    with pytest.raises(
        ValueError,
        match=r"`values` must be a float array of shape \(len\(ts\), data_size\) = \(5, 2\)",
    ):
        model.elbo(ts, values[:, :1], mask[:, :1], key=key)
    with pytest.raises(ValueError, match=r"`mask` must have the shape of `values`"):
        model.posterior(ts, values, mask[:4])
    with pytest.raises(ValueError, match="`num_samples` must be an int >= 1; got 0"):
        model.elbo(ts, values, mask, key=key, num_samples=0)


def test_bad_construction_and_missing_classifier():
    with pytest.raises(ValueError, match="`obs_std` must be a positive float; got obs_std=0"):
        LatentODE(1, 2, 3, 4, 1, obs_std=0, key=jr.key(0))
    with pytest.raises(ValueError, match="`latent_size` must be an int >= 1"):
        LatentODE(1, 0, 3, 4, 1, key=jr.key(0))
    plain = LatentODE(1, 2, 3, 4, 1, key=jr.key(0))
    with pytest.raises(ValueError, match="no classifier; construct it with `num_classes=`"):
        plain.classify(jnp.arange(3.0), jnp.ones((3, 1)), jnp.ones((3, 1)))

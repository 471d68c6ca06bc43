"""LatentODE: ELBO terms against closed forms, masking, prediction, classification, bad inputs.

Two compiled graphs serve every test: the loss gradient with the posterior (`_TRAIN`) and
prediction with classification (`_PREDICT`).
"""

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import node_kit as nk
from node_kit._latent_ode import LatentODE, gaussian_kl, masked_gaussian_log_likelihood
from node_kit._latent_ode_loss import latent_ode_loss

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


# --- Target masks, logits and solver steps -------------------------------------------------

# Series 0 (one entry observed) is scored on its first four points, series 1 (fully
# observed) on its last three: the targets are wider than the mask in one series and
# narrower in the other, and point 4 of series 0 is neither read nor scored.
TARGET = jnp.ones((2, 5, 2), int).at[0, 4].set(0).at[1, :2].set(0)


@eqx.filter_jit
def _target_terms(model, ts, values, mask, target, key):
    """Every quantity the target-mask tests compare, from one compiled graph."""
    default = model.elbo(ts, values, mask, key=key)
    same = model.elbo(ts, values, mask, key=key, target_mask=mask)

    def log_likelihood(values):
        elbo, aux = model.elbo(ts, values, mask, key=key, num_samples=2, target_mask=target)
        return aux["log_likelihood"], (elbo, aux)

    (_, wide), dvalues = jax.value_and_grad(log_likelihood, has_aux=True)(values)
    with_logits = model.elbo_and_logits(
        ts, values, mask, key=key, num_samples=2, target_mask=target
    )
    # The same two z0 draws by hand: `mu + sigma * jr.normal(key, (num_samples, latent))`.
    mu, sigma = model.posterior(ts, values, mask)
    z0s = mu + sigma * jr.normal(key, (2, model.latent_size))
    means = jax.vmap(lambda z0: model.decode(ts, z0))(z0s)
    by_hand = jax.vmap(masked_gaussian_log_likelihood, in_axes=(None, 0, None, None))(
        values, means, target.astype(bool), model.obs_std
    )
    return dict(
        default=default,
        same=same,
        wide=wide,
        dvalues=dvalues,
        with_logits=with_logits,
        posterior=(mu, sigma),
        by_hand=by_hand,
        logits_by_hand=jax.vmap(model.classifier)(z0s),
    )


@pytest.fixture(scope="module")
def target_terms(model, batch):
    return _target_terms(model, TS[0], batch["x"][0], MASK[0], TARGET[0], jr.key(6))


def test_target_mask_equal_to_mask_is_the_default(target_terms):
    default, same = target_terms["default"], target_terms["same"]
    for a, b in zip(jax.tree_util.tree_leaves(default), jax.tree_util.tree_leaves(same)):
        np.testing.assert_array_equal(a, b)


def test_target_only_entry_moves_the_likelihood_not_the_posterior(model, batch, target_terms):
    # Entry (3, 0) of series 0 is a target but is not observed by the encoder.
    assert TARGET[0, 3, 0] and not MASK[0, 3, 0]
    changed = batch["x"][0].at[3, 0].add(0.5)
    again = _target_terms(model, TS[0], changed, MASK[0], TARGET[0], jr.key(6))
    for a, b in zip(target_terms["posterior"], again["posterior"]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(target_terms["wide"][1]["kl"], again["wide"][1]["kl"])
    assert again["wide"][1]["log_likelihood"] != target_terms["wide"][1]["log_likelihood"]
    # d(log-likelihood)/d(value) is -(value - mean) / obs_std^2 at a target-only entry (the
    # encoder never reads it); an entry neither read nor scored gets no gradient at all.
    dvalues = target_terms["dvalues"]
    assert dvalues[3, 0] != 0
    assert not np.any(TARGET[0, 4] | MASK[0, 4])
    np.testing.assert_array_equal(dvalues[4], np.zeros(2))


def test_wide_target_likelihood_is_the_hand_computed_one(target_terms):
    # The mean over the two z0 draws of the likelihood over the target entries.
    by_hand = target_terms["by_hand"]
    assert by_hand[0] != by_hand[1]
    wide = target_terms["wide"][1]["log_likelihood"]
    np.testing.assert_allclose(wide, np.mean(by_hand), rtol=1e-6, atol=1e-6)
    mu, sigma = target_terms["posterior"]
    np.testing.assert_allclose(target_terms["wide"][1]["kl"], gaussian_kl(mu, sigma), rtol=1e-13)


def test_elbo_and_logits_match_elbo_and_the_classifier(target_terms):
    elbo, aux, logits = target_terms["with_logits"]
    wide_elbo, wide_aux = target_terms["wide"]
    np.testing.assert_array_equal(elbo, wide_elbo)
    assert aux.keys() == wide_aux.keys()
    for name in aux:
        np.testing.assert_array_equal(aux[name], wide_aux[name])
    assert logits.shape == (2, 3)
    assert not np.allclose(logits[0], logits[1])  # one row per z0 draw
    np.testing.assert_allclose(logits, target_terms["logits_by_hand"], rtol=1e-12, atol=1e-14)


def test_elbo_and_logits_without_classifier_raises():
    plain = LatentODE(1, 2, 3, 4, 1, key=jr.key(0))
    with pytest.raises(ValueError, match="no classifier; construct it with `num_classes=`"):
        plain.elbo_and_logits(jnp.arange(3.0), jnp.ones((3, 1)), jnp.ones((3, 1)), key=jr.key(1))


_loss = eqx.filter_jit(latent_ode_loss)


def test_loss_with_target_mask_is_the_mean_of_per_series_elbos(model, batch):
    key = jr.key(7)
    loss, aux = _loss(model, dict(batch, target_mask=TARGET), key, num_samples=2, kl_weight=0.5)
    per_series = [
        _target_terms(model, TS[i], batch["x"][i], MASK[i], TARGET[i], k)["wide"][1]
        for i, k in enumerate(jr.split(key, 2))
    ]
    for name in ("log_likelihood", "kl", "num_steps"):
        expected = np.mean([aux_i[name] for aux_i in per_series])
        np.testing.assert_allclose(aux[name], expected, rtol=1e-12)
    expected_loss = -np.mean([a["log_likelihood"] - 0.5 * a["kl"] for a in per_series])
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)


# Encoder: fixed Euler steps of half a gap (two per evolve); decoder: fixed Heun steps of 0.25.
DECODER = nk.SolveSettings(
    solver=diffrax.Heun(),
    stepsize_controller=diffrax.ConstantStepSize(),
    dt0=0.25,
    max_steps=16,
    adjoint="direct",
)
SPLIT = dict(
    settings=DECODER,
    encoder_settings=DECODER.replace(solver=diffrax.Euler(), dt0=0.5),
)


def test_encoder_settings_reach_the_encoder_only():
    split = LatentODE(2, 2, 3, 4, 1, key=jr.key(0), **SPLIT)
    assert type(split.encoder.ode.settings.solver) is diffrax.Euler
    assert type(split.decoder.settings.solver) is diffrax.Heun
    assert split.encoder.ode.settings.dt0 == 0.5 and split.decoder.settings.dt0 == 0.25
    assert split.encoder.ode.settings.max_steps == split.decoder.settings.max_steps == 16
    # Without encoder settings the encoder takes the decoder's, defaults included.
    for settings in ({"settings": DECODER}, {}):
        same = LatentODE(2, 2, 3, 4, 1, key=jr.key(0), **settings)
        assert same.encoder.ode.settings is same.decoder.settings
    assert type(same.decoder.settings.solver) is not diffrax.Euler  # the library default
    keywords = LatentODE(2, 2, 3, 4, 1, key=jr.key(0), solver=diffrax.Heun(),
                         stepsize_controller=diffrax.ConstantStepSize(), dt0=0.5)
    assert type(keywords.encoder.ode.settings.solver) is diffrax.Heun
    assert keywords.encoder.ode.settings.dt0 == 0.5


@eqx.filter_jit
def _split_steps(model, ts, values, mask, key):
    _, aux = model.elbo(ts, values, mask, key=key)
    mu, sigma = model.posterior(ts, values, mask)
    z0 = mu + sigma * jr.normal(key, (1, model.latent_size))[0]
    return aux["num_steps"], model.decoder.solve(ts, z0).stats["num_steps"]


def test_num_steps_is_encoder_plus_decoder_steps(batch):
    split = LatentODE(2, 2, 3, 4, 1, key=jr.key(0), **SPLIT)
    num_steps, decoder_steps = _split_steps(split, TS[0], batch["x"][0], MASK[0], jr.key(8))
    # The backwards ODE-RNN evolves once per time point (n = 5; even the points before its
    # first observation, over zero gaps), then once more to t0: 2 Euler steps each.
    encoder_steps = 2 * (5 + 1)
    assert decoder_steps == 6  # fixed steps of 0.25 over [0, 1.5]
    assert num_steps == encoder_steps + decoder_steps


def _elbo_of(model, ts, values, mask):
    # A fixed key: z0 = mu + sigma * eps with the same eps, so the ELBO is a deterministic
    # function of the parameters (what a gradient check needs).
    return model.elbo(ts, values, mask, key=jr.key(7), num_samples=2)[0]


# The finite differences read the value of the checkpointing gradient's program (the same
# static model): no third compile for the ELBO alone.
_ELBO_AND_GRAD = eqx.filter_jit(eqx.filter_value_and_grad(_elbo_of))


@functools.cache
def _fine_gradients():
    """Fixed Heun steps (0.02 of each encoder gap; 0.02 time units in the decoder),
    float64: the checkpointing model, its data, and its ELBO gradient."""
    fine = dict(
        solver=diffrax.Heun(),
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=0.02,
        max_steps=128,
    )
    ts, values = TS[1], jr.normal(jr.key(3), (5, 2))
    mask = jnp.ones((5, 2)).at[1, 0].set(0).at[3].set(0)
    models = {
        name: LatentODE(2, 2, 3, 4, 1, key=jr.key(4), adjoint=name, **fine)
        for name in ("checkpoint", "backsolve")
    }
    return models, (ts, values, mask), _ELBO_AND_GRAD(models["checkpoint"], ts, values, mask)[1]


def _directional_derivatives(model, data):
    """Central differences of the ELBO along two random directions of the parameters."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    out = []
    for i in range(2):
        keys = jr.split(jr.key(10 + i), len(leaves))
        direction = [jr.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]

        def shifted(h):
            moved = [leaf + h * d for leaf, d in zip(leaves, direction)]
            return eqx.combine(jax.tree_util.tree_unflatten(treedef, moved), static)

        h = 1e-5
        numeric = (_ELBO_AND_GRAD(shifted(h), *data)[0]
                   - _ELBO_AND_GRAD(shifted(-h), *data)[0]) / (2 * h)
        out.append((direction, numeric))
    return out


def _check_directions(grad, checks, tolerance, name):
    g_leaves = jax.tree_util.tree_leaves(eqx.filter(grad, eqx.is_inexact_array))
    for direction, numeric in checks:
        analytic = sum(jnp.vdot(g, d) for g, d in zip(g_leaves, direction))
        assert abs(analytic - numeric) <= tolerance * abs(numeric), (name, analytic, numeric)


def test_checkpoint_gradient_matches_finite_differences():
    # checkpoint differentiates the discretisation exactly. ("direct" is checkpointing
    # with a checkpoint per step, the same algorithm; tests/test_neural_ode.py compares it;
    # tests/test_reversible.py checks the reversible adjoint on a latent ODE.)
    models, data, grad = _fine_gradients()
    _check_directions(grad, _directional_derivatives(models["checkpoint"], data), 1e-6,
                      "checkpoint")


@pytest.mark.slow  # another adjoint on the check above (tests/test_ode_rnn.py compares
# backsolve with checkpoint on the encoder in the default tier)
def test_backsolve_gradient_is_close_to_checkpoint_and_finite_differences():
    # backsolve integrates the continuous adjoint on the same grid, O(dt^2) apart.
    models, data, reference = _fine_gradients()
    grad = _ELBO_AND_GRAD(models["backsolve"], *data)[1]
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(reference))
    for g, b in zip(jax.tree_util.tree_leaves(reference), jax.tree_util.tree_leaves(grad)):
        np.testing.assert_allclose(b, g, rtol=0, atol=1e-4 * scale)
    _check_directions(grad, _directional_derivatives(models["checkpoint"], data), 1e-4,
                      "backsolve")

"""CNF: closed forms on a linear field for every adjoint, sampling, NFE, RNODE, errors."""

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.linalg
from jax.scipy.linalg import expm
from jaxtyping import Array, Float

import node_kit as nk
from node_kit import ADJOINT_NAMES, AugmentedField, ConcatSquashField, MLPField
from node_kit._cnf import CNF
from node_kit._cnf_loss import cnf_loss
from node_kit._trace import AbstractTraceEstimator, ExactTrace, HutchinsonTrace

T1 = 0.8
MATRIX = jnp.array([[0.3, -0.5, 0.1], [0.2, -0.1, 0.4], [-0.3, 0.2, 0.05]])
X = jnp.array([0.7, -1.2, 0.4])
XS = jnp.array([[0.7, -1.2, 0.4], [-0.3, 0.5, 1.1], [1.5, 0.2, -0.6], [0.0, -0.9, 0.3]])
TIGHT = diffrax.PIDController(rtol=1e-10, atol=1e-10)
GAUSS_NODES, GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(20)


class LinearField(nk.AbstractVectorField):
    """`dz/dt = A z`: every CNF quantity has a closed form."""

    matrix: Float[Array, "d d"]
    data_size: int = eqx.field(static=True)

    @property
    def state_size(self):
        return self.data_size

    def __call__(self, t, y, args):
        return self.matrix @ y


def linear_cnf(adjoint="checkpoint", trace_estimator=ExactTrace(), **kwargs) -> CNF:
    field = LinearField(MATRIX, MATRIX.shape[0])
    return CNF(field, trace_estimator=trace_estimator, stepsize_controller=TIGHT,
               adjoint=adjoint, t1=T1, max_steps=512, **kwargs)


def standard_normal_log_prob(z):
    return -0.5 * (z @ z + z.shape[0] * jnp.log(2 * jnp.pi))


def closed_form_log_prob(matrix, x, trace):
    """`log N(expm(t1 A) x) + t1 * tr`, with `tr` the (estimated) trace of `A`."""
    return standard_normal_log_prob(expm(T1 * matrix) @ x) + T1 * trace


def kinetic_energy_quadrature(matrix, x):
    """`∫_0^t1 ||A expm(t A) x||^2 dt` by 20-point Gauss-Legendre quadrature."""
    times = 0.5 * T1 * (jnp.asarray(GAUSS_NODES) + 1)
    velocities = jax.vmap(lambda t: matrix @ expm(t * matrix) @ x)(times)
    return 0.5 * T1 * jnp.dot(jnp.asarray(GAUSS_WEIGHTS), jnp.sum(velocities**2, axis=1))


@eqx.filter_jit
def log_prob_value_and_grad(cnf, x):
    return eqx.filter_value_and_grad(lambda c: c.log_prob(x))(cnf)


@eqx.filter_jit
def loss_value_and_grad(cnf, xs, key, kinetic_energy, jacobian_norm):
    loss = lambda c: cnf_loss(c, xs, key=key, kinetic_energy=kinetic_energy,  # noqa: E731
                              jacobian_norm=jacobian_norm)
    return eqx.filter_value_and_grad(loss, has_aux=True)(cnf)


@eqx.filter_jit
def log_prob_and_stats(cnf, x, key, regularise):
    return cnf.log_prob_and_stats(x, key=key, regularise=regularise)


@eqx.filter_jit
def log_prob_batched(cnf, xs, key):
    return cnf.log_prob_and_stats_batched(xs, key=key)


@pytest.mark.parametrize("adjoint", ADJOINT_NAMES)
def test_linear_log_prob_and_grad_match_closed_form(adjoint):
    (log_prob, grads) = log_prob_value_and_grad(linear_cnf(adjoint), X)
    expected = closed_form_log_prob(MATRIX, X, jnp.trace(MATRIX))
    expected_grad = jax.grad(lambda a: closed_form_log_prob(a, X, jnp.trace(a)))(MATRIX)
    np.testing.assert_allclose(log_prob, expected, rtol=0, atol=1e-8)
    np.testing.assert_allclose(grads.vector_field.matrix, expected_grad, rtol=0, atol=1e-7)


class UndeclaredLinearField(eqx.Module):
    """`dz/dt = A z` as a plain module: no `data_size`, so the CNF takes it from the data."""

    matrix: Float[Array, "d d"]

    def __call__(self, t, y, args):
        return self.matrix @ y


# backsolve repeats the check on another adjoint: the slow tier.
@pytest.mark.parametrize("adjoint", [pytest.param("backsolve", marks=pytest.mark.slow), "checkpoint"])
def test_field_without_declared_size_matches_closed_form(adjoint, getkey):
    cnf = CNF(UndeclaredLinearField(MATRIX), stepsize_controller=TIGHT, adjoint=adjoint,
              t1=T1, max_steps=512)
    assert cnf.data_size is None
    log_prob, grads = log_prob_value_and_grad(cnf, X)
    expected_grad = jax.grad(lambda a: closed_form_log_prob(a, X, jnp.trace(a)))(MATRIX)
    np.testing.assert_allclose(log_prob, closed_form_log_prob(MATRIX, X, jnp.trace(MATRIX)),
                               rtol=0, atol=1e-8)
    np.testing.assert_allclose(grads.vector_field.matrix, expected_grad, rtol=0, atol=1e-6)
    sized = CNF(UndeclaredLinearField(MATRIX), stepsize_controller=TIGHT, t1=T1, data_size=3)
    x, sample_log_prob = sized.sample_and_log_prob(key=getkey())
    np.testing.assert_allclose(sample_log_prob, sized.log_prob(x), rtol=0, atol=1e-7)


def test_batched_hutchinson_backsolve_loss_matches_closed_form(getkey):
    """The FFJORD training path: one ODE for the batch, one fixed probe per sample,
    backsolve, both RNODE penalties, against closed forms with the same probes."""
    key, weights = getkey(), (0.1, 0.2)
    cnf = linear_cnf("backsolve", HutchinsonTrace("gaussian"))
    (loss, aux), grads = loss_value_and_grad(cnf, XS, key, *weights)
    probes = cnf.trace_estimator.draw_probe(key, XS.shape, XS.dtype)

    def closed_form_loss(matrix):
        traces = jnp.einsum("bi,ij,bj->b", probes, matrix, probes)
        nll = -jnp.mean(jax.vmap(closed_form_log_prob, (None, 0, 0))(matrix, XS, traces))
        energy = jnp.mean(jax.vmap(kinetic_energy_quadrature, (None, 0))(matrix, XS))
        jac_norm = T1 * jnp.mean(jnp.sum((probes @ matrix) ** 2, axis=1))
        return nll + weights[0] * energy + weights[1] * jac_norm, (nll, energy, jac_norm)

    closed_form = jax.jit(jax.value_and_grad(closed_form_loss, has_aux=True))
    (expected, parts), expected_grad = closed_form(MATRIX)
    np.testing.assert_allclose(loss, expected, rtol=0, atol=1e-8)
    for name, value in zip(("nll", "kinetic_energy", "jacobian_norm"), parts):
        np.testing.assert_allclose(aux[name], value, rtol=0, atol=1e-8)
    np.testing.assert_allclose(grads.vector_field.matrix, expected_grad, rtol=0, atol=1e-6)
    assert 0 < int(aux["num_steps"]) < 512


def test_exact_rnode_integrals_on_linear_field():
    cnf = linear_cnf()
    log_prob, stats = log_prob_and_stats(cnf, X, None, True)
    times = 0.5 * T1 * (GAUSS_NODES + 1)
    speeds = [np.sum((MATRIX @ scipy.linalg.expm(t * np.asarray(MATRIX)) @ X) ** 2) for t in times]
    np.testing.assert_allclose(stats["kinetic_energy"], 0.5 * T1 * np.dot(GAUSS_WEIGHTS, speeds),
                               rtol=1e-9, atol=0)
    np.testing.assert_allclose(stats["jacobian_norm"], T1 * jnp.sum(MATRIX**2), rtol=1e-9, atol=0)
    expected = closed_form_log_prob(MATRIX, X, jnp.trace(MATRIX))
    np.testing.assert_allclose(log_prob, expected, rtol=0, atol=1e-8)


def test_batched_exact_log_prob_matches_closed_form():
    log_prob, stats = log_prob_batched(linear_cnf(), XS, None)
    expected = jax.vmap(closed_form_log_prob, (None, 0, None))(MATRIX, XS, jnp.trace(MATRIX))
    np.testing.assert_allclose(log_prob, expected, rtol=0, atol=1e-8)
    assert stats["num_steps"].shape == () and int(stats["num_steps"]) > 0


@eqx.filter_jit
def sampling_solves(cnf, key):
    """Every sampling path of `cnf` in one compiled program (one compile for the tests)."""
    sample_key, batch_key, single_key = jr.split(key, 3)
    x, log_prob_backward = cnf.sample_and_log_prob(key=sample_key)
    z = cnf.transform(x)
    base_draws = jnp.concatenate(
        [jr.normal(batch_key, (3, cnf.data_size)), jr.normal(single_key, (1, cnf.data_size))]
    )
    return dict(
        x=x,
        log_prob_backward=log_prob_backward,
        log_prob_forward=cnf.log_prob(x),
        z=z,
        x_again=cnf.inverse(z),
        batch=cnf.sample_batched(3, key=batch_key),
        single=cnf.sample(key=single_key),
        inverse_of_base_draws=jax.vmap(cnf.inverse)(base_draws),
    )


@pytest.fixture(scope="module")
def sampling():
    field = ConcatSquashField(2, 8, 2, key=jr.key(0))
    flow = CNF(field, stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-9))
    return sampling_solves(flow, jr.key(1))


def test_sample_then_log_prob_is_change_of_variables(sampling):
    s = sampling
    np.testing.assert_allclose(s["log_prob_forward"], s["log_prob_backward"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(s["x_again"], s["x"], rtol=0, atol=1e-7)
    assert float(jnp.max(jnp.abs(s["z"] - s["x"]))) > 1e-2  # the flow is not the identity


def test_sample_and_sample_batched_invert_base_draws(sampling):
    s = sampling
    assert s["batch"].shape == (3, 2) and s["single"].shape == (2,)
    np.testing.assert_allclose(s["batch"], s["inverse_of_base_draws"][:3], rtol=0, atol=1e-7)
    np.testing.assert_allclose(s["single"], s["inverse_of_base_draws"][3], rtol=0, atol=1e-7)


class RedrawnHutchinson(AbstractTraceEstimator):
    """The mistake the CNF avoids: a fresh probe at every evaluation (keyed on the state)."""

    def draw_probe(self, key, shape, dtype):
        return jr.key_data(key)

    def __call__(self, fn, y, probe):
        key = jr.fold_in(jr.wrap_key_data(probe), jnp.asarray(1e6 * y[0], jnp.int32))
        return HutchinsonTrace()(fn, y, jr.rademacher(key, y.shape, dtype=y.dtype))


def test_fixed_hutchinson_probe_keeps_step_count(getkey):
    field = MLPField(2, 16, 2, activation=jnp.tanh, key=jr.key(3))
    field = jax.tree.map(lambda w: 4 * w if eqx.is_inexact_array(w) else w, field)  # ~18 steps
    controller = diffrax.PIDController(rtol=1e-8, atol=1e-8)

    def num_steps(estimator, key):
        cnf = CNF(field, trace_estimator=estimator, stepsize_controller=controller,
                  max_steps=200, throw=False)
        return int(log_prob_and_stats(cnf, X[:2], key, False)[1]["num_steps"])

    key = getkey()
    exact = num_steps(ExactTrace(), None)
    fixed = num_steps(HutchinsonTrace(), key)
    redrawn = num_steps(RedrawnHutchinson(), key)
    print(f"num_steps: exact {exact}, fixed probe {fixed}, redrawn probe {redrawn}")
    assert abs(fixed - exact) <= max(2, exact // 2), (fixed, exact)
    assert redrawn > 3 * exact, (redrawn, exact)  # the contrast: steps blow up


def test_bad_data_raises():
    cnf = linear_cnf()
    with pytest.raises(ValueError, match=r"`x` must have shape \(data_size,\) with data_size=3 "
                       r".*got shape \(2,\)\. Use the \*_batched method"):
        cnf.log_prob(jnp.ones(2))
    with pytest.raises(ValueError, match=r"`xs` must have shape \(batch, data_size\) with "
                       r"data_size=3 .*got shape \(4, 2\)"):
        cnf.log_prob_batched(jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="`x` must be a floating-point array; got dtype int"):
        cnf.log_prob(jnp.ones(3, dtype=jnp.int32))
    with pytest.raises(RuntimeError, match="`x` contains NaN or inf"):
        cnf.log_prob(jnp.array([0.0, jnp.nan, 1.0]))


def test_nan_data_raises_under_jit():
    xs = XS.at[2, 1].set(jnp.nan)
    with pytest.raises(RuntimeError, match="`xs` contains NaN or inf"):
        jax.block_until_ready(log_prob_batched(linear_cnf(), xs, None))


def test_bad_configuration_raises(getkey):
    field = MLPField(2, 4, 1, key=getkey())
    with pytest.raises(ValueError, match="`trace_estimator` must be an AbstractTraceEstimator"):
        CNF(field, trace_estimator="hutchinson")
    with pytest.raises(ValueError, match="`t1` must be a positive Python float; got -1.0"):
        CNF(field, t1=-1.0)
    with pytest.raises(ValueError, match="`data_size`=3 disagrees with the vector field's data_size=2"):
        CNF(field, data_size=3)
    with pytest.raises(ValueError, match="sampling needs the data dimension"):
        CNF(lambda t, y, args: -y).sample(key=getkey())
    with pytest.raises(ValueError, match="cannot be an AugmentedField"):
        CNF(AugmentedField(MLPField(3, 4, 1, key=getkey()), 1))
    cnf = CNF(field, trace_estimator=HutchinsonTrace())
    with pytest.raises(ValueError, match="`key` is required; got key=None"):
        cnf.log_prob(jnp.ones(2))
    with pytest.raises(ValueError, match="`regularise` must be a Python bool"):
        cnf.log_prob_and_stats(jnp.ones(2), key=getkey(), regularise=jnp.array(True))
    with pytest.raises(ValueError, match="`n` must be a positive int; got 0"):
        cnf.sample_batched(0, key=getkey())
    with pytest.raises(ValueError, match="`kinetic_energy` must be a non-negative Python float"):
        cnf_loss(cnf, jnp.ones((2, 2)), key=getkey(), kinetic_energy=-0.1)


class _UnstoppedHutchinson(AbstractTraceEstimator):
    """Hutchinson's estimate with gradients flowing into the probe (the old behaviour)."""

    def draw_probe(self, key, shape, dtype):
        return HutchinsonTrace().draw_probe(key, shape, dtype)

    def __call__(self, fn, y, probe):
        f, vjp_fn = jax.vjp(fn, y)
        (eps_jacobian,) = vjp_fn(probe)
        return f, jnp.sum(eps_jacobian * probe), eps_jacobian


# backsolve repeats the check on another adjoint: the slow tier.
@pytest.mark.parametrize("adjoint", ["checkpoint", pytest.param("backsolve", marks=pytest.mark.slow)])
def test_stopping_the_probe_gradient_keeps_parameter_gradients(adjoint, getkey):
    """float64, nonlinear field: the parameter gradients of the Hutchinson loss are those of
    an estimator that lets gradients into the probe (the same up to rounding under
    checkpointing; up to the backward solve's tolerance under backsolve) and match
    central finite differences along a random direction."""
    field = MLPField(2, 8, 1, activation=jnp.tanh, key=getkey())
    xs, key = jr.normal(getkey(), (3, 2)), getkey()
    cnf = CNF(field, trace_estimator=HutchinsonTrace(), stepsize_controller=TIGHT,
              adjoint=adjoint, max_steps=512)
    loss = lambda c: cnf_loss(c, xs, key=key)[0]  # noqa: E731
    # One program per estimator; the finite differences read the first one's value.
    value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(loss))
    grads = value_and_grad(cnf)[1]
    unstopped = value_and_grad(cnf.with_trace_estimator(_UnstoppedHutchinson()))[1]
    tolerance = 1e-12 if adjoint == "checkpoint" else 1e-7
    for a, b in zip(jax.tree_util.tree_leaves(grads.vector_field),
                    jax.tree_util.tree_leaves(unstopped.vector_field)):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)
    params, static = eqx.partition(cnf, eqx.is_inexact_array)
    flat, unflatten = jax.flatten_util.ravel_pytree(params)
    direction = jr.normal(getkey(), flat.shape)

    def at(h):
        return value_and_grad(eqx.combine(unflatten(flat + h * direction), static))[0]

    step = 1e-5
    finite_difference = (at(step) - at(-step)) / (2 * step)
    directional = jnp.dot(jax.flatten_util.ravel_pytree(eqx.filter(grads, eqx.is_inexact_array))[0],
                          direction)
    np.testing.assert_allclose(directional, finite_difference, rtol=1e-5)


def test_rademacher_probe_is_the_same_in_float32_and_float64():
    """The probe from a key does not depend on the dtype or on x64 (jax.random.rademacher
    draws its uniforms in the default float); with x64 off it is jax's own draw."""
    key = jr.key(11)
    estimator = nk.HutchinsonTrace()
    wide = estimator.draw_probe(key, (3, 500), jnp.float64)
    with jax.enable_x64(False):
        narrow = estimator.draw_probe(key, (3, 500), jnp.float32)
        jax_own = jr.rademacher(key, (3, 500), dtype=jnp.float32)
    np.testing.assert_array_equal(wide, narrow)
    np.testing.assert_array_equal(narrow, jax_own)
    assert set(np.unique(np.asarray(wide))) == {-1.0, 1.0}

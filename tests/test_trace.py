"""Trace estimators: exact vs jax.jacobian, Hutchinson's mean vs the exact trace, errors."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from node_kit import MLPField
from node_kit._regularisers import jacobian_norm_integrand
from node_kit._trace import (
    PROBE_NAMES,
    ExactTrace,
    HutchinsonTrace,
    trace_estimator_from_name,
)

NUM_PROBES = 4000


def _field_at_point(getkey, data_size=4):
    field = MLPField(data_size, 8, 2, key=getkey())
    y = jr.normal(getkey(), (data_size,))
    return (lambda z: field(0.3, z, None)), y


def test_exact_trace_matches_jacobian(getkey):
    fn, y = _field_at_point(getkey)
    f, trace, jacobian = jax.jit(ExactTrace().__call__, static_argnums=0)(fn, y)
    expected = jax.jit(jax.jacobian(fn))(y)
    np.testing.assert_allclose(f, fn(y), rtol=1e-14, atol=0)
    np.testing.assert_allclose(trace, jnp.trace(expected), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jacobian, expected, rtol=1e-12, atol=1e-14)
    assert ExactTrace().draw_probe(None, y.shape, y.dtype) is None


@pytest.mark.parametrize("probe", PROBE_NAMES)
def test_hutchinson_mean_matches_exact_trace(probe, getkey):
    fn, y = _field_at_point(getkey)
    estimator = HutchinsonTrace(probe)
    jacobian = jax.jacobian(fn)(y)

    @jax.jit
    def estimate(key):
        eps = estimator.draw_probe(key, y.shape, y.dtype)
        f, trace, vjp = estimator(fn, y, eps)
        return f, trace, jacobian_norm_integrand(vjp), vjp - eps @ jacobian

    f, traces, frobenius, vjp_error = jax.vmap(estimate)(jr.split(getkey(), NUM_PROBES))
    np.testing.assert_allclose(f, jnp.broadcast_to(fn(y), f.shape), rtol=1e-14, atol=0)
    assert float(jnp.max(jnp.abs(vjp_error))) < 1e-12
    for samples, exact in [(traces, jnp.trace(jacobian)), (frobenius, jnp.sum(jacobian**2))]:
        standard_error = float(jnp.std(samples, ddof=1)) / np.sqrt(NUM_PROBES)
        assert standard_error > 1e-6  # a real estimator, not the exact value
        assert abs(float(jnp.mean(samples) - exact)) < 4 * standard_error


def test_hutchinson_probe_distributions(getkey):
    shape = (2000, 3)
    rademacher = HutchinsonTrace("rademacher").draw_probe(getkey(), shape, jnp.float64)
    gaussian = HutchinsonTrace("gaussian").draw_probe(getkey(), shape, jnp.float64)
    assert rademacher.dtype == gaussian.dtype == jnp.float64
    assert set(np.unique(rademacher).tolist()) == {-1.0, 1.0}
    assert abs(float(jnp.var(gaussian)) - 1) < 0.1 and len(np.unique(gaussian)) == gaussian.size


def test_trace_estimator_from_name():
    assert trace_estimator_from_name("exact") == ExactTrace()
    assert trace_estimator_from_name("hutchinson") == HutchinsonTrace("rademacher")
    assert trace_estimator_from_name("hutchinson", "gaussian") == HutchinsonTrace("gaussian")


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown Hutchinson `probe` 'uniform'; expected one of "
                       "'rademacher', 'gaussian'"):
        HutchinsonTrace("uniform")
    with pytest.raises(ValueError, match="unknown trace estimator 'hutch'; expected one of "
                       "'exact', 'hutchinson'"):
        trace_estimator_from_name("hutch")
    with pytest.raises(ValueError, match="unknown Hutchinson `probe` 'normal'"):
        trace_estimator_from_name("hutchinson", "normal")


def test_hutchinson_needs_key_and_probe(getkey):
    fn, y = _field_at_point(getkey)
    with pytest.raises(ValueError, match="`key` is required; got key=None"):
        HutchinsonTrace().draw_probe(None, y.shape, y.dtype)
    with pytest.raises(ValueError, match="needs the probe drawn by `draw_probe"):
        HutchinsonTrace()(fn, y, None)


def test_hutchinson_probe_gets_no_gradient(getkey):
    """The probe is a sample, not a parameter: its cotangent is zero, the state's is
    `ε^T J` differentiated as usual (against the same estimate without the stop)."""
    fn, y = _field_at_point(getkey)
    eps = HutchinsonTrace().draw_probe(getkey(), y.shape, y.dtype)

    def unstopped(y, eps):  # the estimate as it was before the probe's gradient was stopped
        f, vjp_fn = jax.vjp(fn, y)
        return jnp.sum(vjp_fn(eps)[0] * eps)

    grad = jax.jit(jax.grad(lambda y, e: HutchinsonTrace()(fn, y, e)[1], argnums=(0, 1)))
    grad_y, grad_eps = grad(y, eps)
    assert float(jnp.max(jnp.abs(grad_eps))) == 0.0
    assert float(jnp.max(jnp.abs(jax.grad(unstopped, argnums=1)(y, eps)))) > 1e-3
    np.testing.assert_allclose(grad_y, jax.grad(unstopped)(y, eps), rtol=1e-12, atol=1e-14)

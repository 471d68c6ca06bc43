"""Images: the concat-squash convolution, the convolutional field inside nk.CNF under every
adjoint and both trace estimators, FFJORD's multiscale flow against the exact change of
variables on a 1x4x4 image, sampling then inverting, and bad input. Float64 throughout."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import node_kit as nk
from node_kit._cnf_dynamics import standard_normal_log_prob

SHAPE = (1, 4, 4)
TIGHT = dict(solver=diffrax.Tsit5(),
             stepsize_controller=diffrax.PIDController(rtol=1e-11, atol=1e-11), max_steps=2048)


def _flow(**kwargs):
    """Two scales: (1, 4, 4), squeezed to (4, 2, 2), half factored out, then (2, 2, 2)."""
    return nk.MultiscaleCNF(SHAPE, scales=2, blocks=1, width=3, depth=1, key=jr.key(0),
                            **(TIGHT | kwargs))


def _image(seed=1, batch=None):
    return jr.normal(jr.key(seed), SHAPE if batch is None else (batch, *SHAPE))


@eqx.filter_jit
def _flow_map(flow, xs):
    zs, log_det, _ = flow.transform_and_log_det_batched(xs)
    return zs, log_det


def test_squeeze_layout_and_inverse():
    x = jnp.arange(2 * 3 * 4 * 6.0).reshape(2, 3, 4, 6)
    y = nk.squeeze(x)
    assert y.shape == (2, 12, 2, 3)
    for k, a, b, i, j in [(0, 0, 0, 0, 0), (1, 0, 1, 1, 2), (2, 1, 0, 0, 1), (2, 1, 1, 1, 0)]:
        assert y[1, 4 * k + 2 * a + b, i, j] == x[1, k, 2 * i + a, 2 * j + b]
    np.testing.assert_array_equal(nk.unsqueeze(y), x)
    with pytest.raises(ValueError, match="even height and width"):
        nk.squeeze(jnp.zeros((1, 3, 4)))


def test_default_scales_follow_ffjord():
    assert nk.default_scales((1, 28, 28)) == 3  # 28, 14, 7: squeezed twice
    assert nk.default_scales((1, 14, 14)) == 2
    assert nk.default_scales((1, 8, 8)) == 2
    assert nk.default_scales((1, 4, 4)) == 1
    assert nk.default_scales((3, 9, 9)) == 1  # 9 is odd: no squeeze
    assert nk.scale_shapes((1, 28, 28), 3) == ((1, 28, 28), (2, 14, 14), (4, 7, 7))


def test_log_density_is_the_exact_change_of_variables():
    """log p(x) of the flow (exact trace along each block's solve) equals log N(z(x)) + log|det
    dz/dx| from the dense 16x16 Jacobian of the whole map, to 1e-8; inverting z returns x."""
    flow = _flow()
    x = _image()

    @eqx.filter_jit
    def map_and_jacobian(flow, v):
        def forward(v):
            zs, log_det, _ = flow.transform_and_log_det_batched(v.reshape(1, *SHAPE))
            return zs[0], log_det[0]

        return *forward(v), jax.jacrev(lambda v: forward(v)[0])(v)

    z, log_det, jacobian = map_and_jacobian(flow, x.ravel())
    log_prob = standard_normal_log_prob(z) + log_det
    dense = standard_normal_log_prob(z) + jnp.linalg.slogdet(jacobian)[1]
    assert abs(float(log_prob - dense)) < 1e-8
    np.testing.assert_allclose(flow.inverse_batched(z[None])[0], x, rtol=0, atol=1e-6)
    # The three blocks and the factor-out: every base variable moved.
    assert flow.scales == 2 and [len(s) for s in flow.stages] == [1, 1, 1]


@pytest.mark.slow
def test_samples_invert_to_their_base_draws():
    flow = _flow()
    key = jr.key(3)
    samples = eqx.filter_jit(lambda f: f.sample_batched(3, key=key))(flow)
    assert samples.shape == (3, *SHAPE)
    zs, _ = _flow_map(flow, samples)
    np.testing.assert_allclose(zs, jr.normal(key, (3, 16)), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_hutchinson_matches_the_exact_log_density_on_average():
    """Gaussian probes: unbiased, so the mean over 400 probe draws is within 4 standard errors
    of the exact log-density (the flow's blocks each draw their own probes)."""
    flow = _flow(stepsize_controller=diffrax.ConstantStepSize(), dt0=0.25)
    x = jnp.broadcast_to(_image(), (400, *SHAPE))
    exact = eqx.filter_jit(lambda f: f.log_prob_batched(x[:1]))(flow)[0]
    estimated = eqx.filter_jit(lambda f: f.log_prob_batched(x, key=jr.key(9)))(
        flow.with_trace_estimator(nk.HutchinsonTrace("gaussian")))
    se = float(jnp.std(estimated) / jnp.sqrt(400.0))
    assert float(jnp.std(estimated)) > 0  # the probes do vary
    assert abs(float(jnp.mean(estimated) - exact)) < 4 * se


@pytest.mark.slow
def test_batch_as_one_state_matches_one_by_one():
    flow = _flow(stepsize_controller=diffrax.ConstantStepSize(), dt0=0.25)
    xs = _image(batch=3)
    together = flow.log_prob_batched(xs)
    alone = jnp.stack([flow.log_prob(x) for x in xs])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-12)


# Every adjoint in the slow tier: the default tier ran 6:01 on a clean clone with checkpoint
# here; the exact change-of-variables test above keeps the flow itself in the default tier.
ADJOINTS = [pytest.param(a, marks=pytest.mark.slow)
            for a in ("checkpoint", "reversible", "direct", "backsolve")]


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_conv_cnf_gradient_matches_finite_differences(adjoint):
    """nk.CNF(ConvField) on a flat 1x4x4 state: the gradient of log p (exact trace) along a
    random direction of all parameters against central differences; backsolve's backward solve
    has its own truncation error (1e-5 here)."""
    settings = dict(solver=diffrax.Tsit5(), stepsize_controller=diffrax.ConstantStepSize(),
                    dt0=0.05, max_steps=64) if adjoint == "reversible" else TIGHT
    field = nk.ConvField(SHAPE, 2, 1, key=jr.key(4))
    cnf = nk.CNF(field, adjoint=adjoint, **settings)
    x = _image().ravel()
    params, static = eqx.partition(cnf, eqx.is_inexact_array)
    direction = jax.tree_util.tree_map(lambda p: jr.normal(jr.key(p.size), p.shape), params)
    value = eqx.filter_jit(lambda p: eqx.combine(p, static).log_prob(x))
    grad = eqx.filter_jit(eqx.filter_grad(lambda p: eqx.combine(p, static).log_prob(x)))(params)
    along = sum(jnp.vdot(g, d) for g, d in zip(jax.tree_util.tree_leaves(grad),
                                              jax.tree_util.tree_leaves(direction)))
    h = 1e-5
    shifted = [jax.tree_util.tree_map(lambda p, d: p + s * h * d, params, direction) for s in (1, -1)]
    central = (value(shifted[0]) - value(shifted[1])) / (2 * h)
    tolerance = 1e-5 if adjoint == "backsolve" else 1e-7
    assert abs(float(along - central)) < tolerance * max(1.0, abs(float(central)))


def test_conv_field_takes_image_or_flat_state():
    field = nk.ConvField(SHAPE, 2, 1, key=jr.key(4))
    x = _image()
    np.testing.assert_allclose(field(0.3, x.ravel(), None), field(0.3, x, None).ravel())
    assert field.data_size == field.state_size == 16
    with pytest.raises(ValueError, match=r"ConvField's state must be one image of shape \(1, 4, 4\)"):
        field(0.3, jnp.zeros((2, 16)), None)


def test_concat_squash_conv_gates_by_time():
    """conv(y) * sigmoid(g t + c) + h t, per output channel."""
    layer = nk.ConcatSquashConv2d(1, 2, key=jr.key(0))
    y = _image()
    t = 0.7
    gate = jax.nn.sigmoid(layer.gate.weight[:, 0] * t + layer.gate.bias)
    expected = layer.conv(y) * gate[:, None, None] + (layer.hyper_bias.weight[:, 0] * t)[:, None, None]
    np.testing.assert_allclose(layer(t, y), expected, rtol=1e-12)


def test_bad_images_and_shapes_raise():
    flow = _flow()
    with pytest.raises(ValueError, match=r"`xs` must be floating-point images of shape \(batch, C, H, W\)"):
        flow.log_prob_batched(jnp.zeros((2, 16)))
    with pytest.raises(ValueError, match=r"`x` must be floating-point images of shape \(C, H, W\)"):
        flow.log_prob(jnp.zeros((1, 4, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"`zs` must have shape \(batch, 16\)"):
        flow.inverse_batched(jnp.zeros((2, 15)))
    with pytest.raises(ValueError, match=r"odd height or width, which a squeeze cannot halve"):
        nk.MultiscaleCNF((1, 6, 6), scales=3, key=jr.key(0))
    for shape in [(4, 4), (1, 0, 4), (1, 4.0, 4), "1x4x4"]:
        with pytest.raises(ValueError, match="must be an image shape"):
            nk.ConvField(shape, 2, 1, key=jr.key(0))
    with pytest.raises(ValueError, match="`kernel_size` must be odd"):
        nk.ConcatSquashConv2d(1, 2, 4, key=jr.key(0))
    with pytest.raises(ValueError, match="blocks"):
        nk.MultiscaleCNF(SHAPE, blocks=0, key=jr.key(0))

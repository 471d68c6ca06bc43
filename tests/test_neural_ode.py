"""NeuralODE numerics: forward solution, solver order, gradients of every adjoint vs finite differences."""

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.linalg

import node_kit as nk
from conftest import max_relative_error

TOL = dict(rtol=1e-8, atol=1e-8)
TS = jnp.linspace(0.0, 1.0, 6)


class LinearField(nk.AbstractVectorField):
    """dy/dt = A y, with A a parameter."""

    A: jax.Array
    data_size: int = eqx.field(static=True)

    def __init__(self, A):
        self.A = jnp.asarray(A)
        self.data_size = self.A.shape[0]

    @property
    def state_size(self):
        return self.data_size

    def __call__(self, t, y, args):
        return self.A @ y


def _matrix(key, n=3):
    return 0.5 * jr.normal(key, (n, n)) - 0.3 * jnp.eye(n)


def _model(field, adjoint, **kwargs):
    kwargs.setdefault("stepsize_controller", diffrax.PIDController(**TOL))
    return nk.NeuralODE(field, adjoint=adjoint, **kwargs)


def test_linear_forward_matches_expm(getkey):
    A = _matrix(getkey())
    y0 = jr.normal(getkey(), (3,))
    ys = _model(LinearField(A), "checkpoint")(TS, y0)
    expected = np.stack([scipy.linalg.expm(float(t) * np.asarray(A)) @ y0 for t in TS])
    np.testing.assert_allclose(ys, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(
    "solver, order",
    [(diffrax.Euler(), 1), (diffrax.Heun(), 2), (diffrax.Bosh3(), 3), (nk.RK4(), 4),
     (diffrax.Tsit5(), 5)],
)
def test_solver_order_on_linear_problem(getkey, solver, order):
    # n steps of 1/n for y' = A y on [0, 1] are, up to rounding, n steps of 1 for
    # z' = (A / n) z on [0, n] (z(s) = y(s / n)): one compiled solve serves every n.
    A = _matrix(getkey())
    y0 = jnp.array([1.0, -0.5, 0.25])
    exact = scipy.linalg.expm(np.asarray(A)) @ np.asarray(y0)
    steps = [8, 16, 32, 64] if order < 5 else [4, 8, 16]
    errors = []
    for n in steps:
        model = nk.NeuralODE(
            LinearField(A / n), solver=solver, stepsize_controller=diffrax.ConstantStepSize(),
            dt0=1.0, max_steps=64,
        )
        errors.append(np.linalg.norm(model(jnp.array([0.0, float(n)]), y0)[-1] - exact))
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.35, (slope, errors)


def test_rk4_takes_fixed_steps_only(getkey):
    model = nk.NeuralODE(
        LinearField(_matrix(getkey())), solver=nk.RK4(),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6), dt0=0.1,
    )
    with pytest.raises(Exception, match="does not provide error estimates"):
        model(jnp.array([0.0, 1.0]), jnp.ones(3))


def _loss(model, y0, weights):
    return jnp.sum(weights * model(TS, y0))


def _central_difference(fn, x, direction, h):
    plus = fn(jax.tree.map(lambda a, d: a + h * d, x, direction))
    minus = fn(jax.tree.map(lambda a, d: a - h * d, x, direction))
    return (plus - minus) / (2 * h)


def _random_like(tree, key):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jr.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [jr.normal(k, x.shape) for k, x in zip(keys, leaves)])


def _problems(key):
    k1, k2 = jr.split(key)
    linear = LinearField(_matrix(k1))
    mlp = nk.MLPField(3, 8, 2, activation=jnp.tanh, key=k2)
    return {"linear": linear, "mlp": mlp}


ADJOINT_TOL = {"checkpoint": 1e-6, "direct": 1e-6, "backsolve": 1e-4}


@eqx.filter_jit  # one program per adjoint (an eager grad compiles a forward and a backward)
def _gradient(model, y0, weights):
    """The `(params, y0)` gradient of `_loss`."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    return jax.grad(lambda p, y: _loss(eqx.combine(p, static), y, weights), argnums=(0, 1))(
        params, y0
    )


@functools.cache
def _gradients(problem):
    """The field, y0, loss weights and every adjoint's `(params, y0)` gradient of one
    problem, computed once and shared by the tests below (each costs a compile)."""
    k_field, k_weights = jr.split(jr.key({"linear": 1, "mlp": 2}[problem]))
    field = _problems(k_field)[problem]
    y0 = jnp.array([0.7, -0.4, 0.3])
    weights = jr.normal(k_weights, (len(TS), 3))
    grads = {name: _gradient(_model(field, name), y0, weights) for name in ADJOINT_TOL}
    return field, y0, weights, grads


# The linear field repeats the MLP's check on an easier field: the slow tier.
@pytest.mark.parametrize("problem", [pytest.param("linear", marks=pytest.mark.slow), "mlp"])
def test_gradients_match_finite_differences(getkey, problem):
    field, y0, weights, grads = _gradients(problem)
    params, static = eqx.partition(_model(field, "checkpoint"), eqx.is_inexact_array)
    loss = eqx.filter_jit(lambda p, y: _loss(eqx.combine(p, static), y, weights))
    directions = [(_random_like(params, getkey()), jr.normal(getkey(), (3,))) for _ in range(3)]
    fds = [_central_difference(lambda x: loss(*x), (params, y0), d, 1e-5) for d in directions]
    for name, tol in ADJOINT_TOL.items():
        g_params, g_y0 = grads[name]
        for (d_params, d_y0), fd in zip(directions, fds):
            directional = _dot(g_params, d_params) + jnp.dot(g_y0, d_y0)
            rel = abs(directional - fd) / abs(fd)
            assert rel < tol, f"{problem}/{name}: directional derivative off by {rel:.2e}"


def _dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_adjoints_agree_with_each_other():
    field, y0, weights, grads = _gradients("mlp")
    seminorm = _gradient(
        _model(field, nk.backsolve_adjoint(diffrax.PIDController(**TOL), seminorm=True)),
        y0, weights,
    )
    reference = grads["checkpoint"]
    assert max_relative_error(grads["direct"], reference) < 1e-10
    assert max_relative_error(grads["backsolve"], reference) < 1e-4
    assert max_relative_error(seminorm, reference) < 1e-4


@eqx.filter_jit
@eqx.filter_grad
def _squares_grad(model_and_y0, ts):
    model, y0 = model_and_y0
    return jnp.sum(model(ts, y0) ** 2)


@functools.cache
def _mixed_dtype_gradient(adjoint):
    """A float32 field solved from a float64 y0 (x64 on): the solve runs in float64. The
    gradient under `adjoint`, for the field's parameters and for y0."""
    field = jax.tree.map(
        lambda x: x.astype(jnp.float32) if eqx.is_inexact_array(x) else x,
        nk.MLPField(2, 4, 1, key=jr.key(7)),
    )
    model = nk.NeuralODE(field, adjoint=adjoint, stepsize_controller=diffrax.PIDController(**TOL))
    return _squares_grad((model, jnp.array([0.5, -0.2])), jnp.linspace(0.0, 1.0, 3))


# direct is checkpointing with a checkpoint per step (the same code): the slow tier.
@pytest.mark.parametrize("adjoint", ["checkpoint", pytest.param("direct", marks=pytest.mark.slow),
                                     "backsolve"])
def test_gradients_keep_each_parameter_dtype_for_every_adjoint(adjoint):
    # Every adjoint returns float32 gradients for the float32 parameters, float64 for y0,
    # and the same gradient as checkpointing.
    grads, y0_grad = _mixed_dtype_gradient(adjoint)
    dtypes = {x.dtype for x in jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))}
    assert dtypes == {jnp.dtype(jnp.float32)}, (adjoint, dtypes)
    assert y0_grad.dtype == jnp.float64, adjoint
    reference = _mixed_dtype_gradient("checkpoint")
    assert max_relative_error((grads, y0_grad), reference) < 1e-4, adjoint


def test_checkpoint_count_does_not_change_gradient():
    field, y0, weights, grads = _gradients("mlp")
    few = _gradient(_model(field, nk.checkpoint_adjoint(2)), y0, weights)
    assert max_relative_error(few, grads["checkpoint"]) < 1e-12


def test_batched_and_vmap_match_a_python_loop(getkey):
    field = nk.MLPField(2, 8, 1, key=getkey())
    model = _model(field, "checkpoint")
    y0s = jr.normal(getkey(), (4, 2))
    loop = jnp.stack([model(TS, y0) for y0 in y0s])
    vmapped = jax.vmap(model, in_axes=(None, 0))(TS, y0s)
    batched = model.batched(TS, y0s)
    np.testing.assert_allclose(vmapped, loop, rtol=1e-12, atol=1e-12)
    # One shared step-size sequence: equal to the loop up to the solver tolerance.
    np.testing.assert_allclose(batched, loop, rtol=1e-6, atol=1e-7)
    assert batched.shape == (4, len(TS), 2)


def test_batched_args_per_sample(getkey):
    class Scaled(eqx.Module):
        def __call__(self, t, y, args):
            return args * y

    model = _model(Scaled(), "checkpoint")
    rates = jnp.array([-1.0, 0.5])
    ys = model.batched(TS, jnp.ones((2, 1)), rates[:, None], args_axis=0)
    np.testing.assert_allclose(ys[:, -1, 0], jnp.exp(rates), rtol=1e-7)


def test_per_sample_time_grids_with_vmap(getkey):
    field = LinearField(_matrix(getkey()))
    model = _model(field, "checkpoint")
    ts = jnp.stack([jnp.linspace(0.0, 1.0, 4), jnp.linspace(0.5, 2.0, 4)])
    y0s = jnp.ones((2, 3))
    ys = jax.vmap(model)(ts, y0s)
    for i in range(2):
        np.testing.assert_allclose(ys[i], model(ts[i], y0s[i]), rtol=1e-12)


def test_jit_does_not_recompile(getkey):
    traces = []

    @eqx.filter_jit
    def run(model, y0):
        traces.append(None)
        return model(TS, y0)

    model = _model(nk.MLPField(2, 8, 1, key=getkey()), "backsolve")
    run(model, jnp.ones(2))
    run(model, jnp.zeros(2))
    run(eqx.tree_at(lambda m: m.vector_field.mlp.layers[0].bias, model, jnp.zeros(8)), jnp.ones(2))
    assert len(traces) == 1


def test_num_steps_are_reported(getkey):
    model = _model(LinearField(_matrix(getkey())), "checkpoint")
    sol = model.solve(TS, jnp.ones(3))
    assert sol.stats["num_steps"] > 0
    assert sol.result == diffrax.RESULTS.successful


def test_serialise_round_trip(getkey, tmp_path):
    model = _model(nk.ConcatSquashField(2, 8, 2, key=getkey()), "checkpoint")
    path = tmp_path / "model.eqx"
    eqx.tree_serialise_leaves(path, model)
    skeleton = _model(nk.ConcatSquashField(2, 8, 2, key=getkey()), "checkpoint")
    loaded = eqx.tree_deserialise_leaves(path, skeleton)
    y0 = jnp.array([0.1, 0.2])
    np.testing.assert_array_equal(loaded(TS, y0), model(TS, y0))


def test_augmented_field_pads_and_projects(getkey):
    field = nk.AugmentedField(nk.MLPField(5, 8, 1, key=getkey()), augment_size=3)
    model = _model(field, "checkpoint")
    ys = model(TS, jnp.array([1.0, 2.0]))
    assert ys.shape == (len(TS), 5)
    np.testing.assert_array_equal(ys[0], jnp.array([1.0, 2.0, 0.0, 0.0, 0.0]))
    assert field.project(ys).shape == (len(TS), 2)
    assert model.batched(TS, jnp.ones((3, 2))).shape == (3, len(TS), 5)


def test_concat_squash_field_depends_on_time(getkey):
    field = nk.ConcatSquashField(3, 8, 2, key=getkey())
    y = jnp.array([0.1, -0.2, 0.3])
    assert not np.allclose(field(0.0, y, None), field(1.0, y, None))
    layer = field.layers[0]
    t = 0.3
    expected = (layer.linear.weight @ y + layer.linear.bias) * jax.nn.sigmoid(
        layer.gate.weight[:, 0] * t + layer.gate.bias
    ) + layer.hyper_bias.weight[:, 0] * t
    np.testing.assert_allclose(layer(t, y), expected, rtol=1e-12)


def test_gradient_with_respect_to_the_last_output_time_is_the_field_there():
    # d/dt1 of y(t1) is f(t1, y(t1)) = -y(t1) for dy/dt = -y: the checkpointed adjoint
    # differentiates `ts`; backsolve says it cannot (see the bad-input matrix).
    controller = diffrax.PIDController(rtol=1e-10, atol=1e-10)
    model = nk.NeuralODE(lambda t, y, a: -y, adjoint="checkpoint", stepsize_controller=controller)
    y0 = jnp.array([1.0, 2.0])
    grad = jax.grad(lambda t1: model(jnp.stack([0.0, t1]), y0)[-1].sum())(0.7)
    assert abs(float(grad) - float(-jnp.sum(y0) * jnp.exp(-0.7))) < 1e-7

"""The reversible adjoint: gradients against finite differences of the same reversible
solve (float64), convergence to the closed form at the solver's order, memory flat in the
number of steps, the models that solve through it, and its bad inputs."""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.linalg

import node_kit as nk
from node_kit._reversible import _forward, _Static

TS = jnp.array([0.0, 0.3, 0.7, 1.0])
FIELD = nk.MLPField(3, 8, 2, activation=jnp.tanh, key=jr.key(0))
Y0S = jr.normal(jr.key(1), (2, 3))
WEIGHTS = jr.normal(jr.key(2), (len(TS), 3))
PID = diffrax.PIDController(rtol=1e-5, atol=1e-7)

CASES = {  # solver, controller, dt0
    "euler": (diffrax.Euler(), diffrax.ConstantStepSize(), 0.05),
    "heun": (diffrax.Heun(), diffrax.ConstantStepSize(), 0.1),
    "rk4": (nk.RK4(), diffrax.ConstantStepSize(), 0.1),
    "tsit5": (diffrax.Tsit5(), diffrax.ConstantStepSize(), 0.25),
    "heun-adaptive": (diffrax.Heun(), PID, None),
    "tsit5-adaptive": (diffrax.Tsit5(), PID, None),
}


def _model(solver, controller, dt0, field=FIELD, **kwargs):
    return nk.NeuralODE(field, solver=solver, stepsize_controller=controller, dt0=dt0,
                        adjoint="reversible", max_steps=256, **kwargs)


def _one(model, y0):
    return jnp.sum(jnp.sin(model(TS, y0)) * WEIGHTS)


def _batch(model, y0s):
    return jnp.sum(jnp.cos(model.batched(TS, y0s)) * WEIGHTS)


def _step_times(model, y0, field):
    """The accepted step times of the reversible forward solve of `y0`."""
    s = model.settings
    static = _Static(s.adjoint.coupling, s.solver, s.stepsize_controller, s.dt0, s.max_steps)
    (_, _, accepted, ok), (_, times, _, _) = _forward(static, field, y0, None, TS)
    assert ok
    return times[: int(accepted) + 1]


def _directional_check(loss, model, y0, grads, label):
    """Central differences of `loss` along random directions of the parameters and `y0`
    against the gradient's dot product with them: 1e-7 relative."""
    params, static = eqx.partition(model.vector_field, eqx.is_inexact_array)
    value = eqx.filter_jit(lambda p, y: loss(
        eqx.tree_at(lambda m: m.vector_field, model, eqx.combine(p, static)), y))
    grad_params = jax.tree.leaves(eqx.filter(grads[0].vector_field, eqx.is_inexact_array))
    assert len(grad_params) == len(jax.tree.leaves(params))
    leaves, treedef = jax.tree.flatten(params)
    for i in range(2):
        keys = jr.split(jr.key(10 + i), len(leaves) + 1)
        d_params = [jr.normal(k, p.shape) for k, p in zip(keys, leaves)]
        d_y0 = jr.normal(keys[-1], y0.shape)
        moved = lambda h: jax.tree.unflatten(treedef, [p + h * d for p, d in zip(leaves, d_params)])
        h = 1e-6
        numeric = (value(moved(h), y0 + h * d_y0) - value(moved(-h), y0 - h * d_y0)) / (2 * h)
        analytic = (sum(jnp.vdot(g, d) for g, d in zip(grad_params, d_params))
                    + jnp.vdot(grads[1], d_y0))
        assert abs(analytic - numeric) <= 1e-7 * abs(numeric), (label, float(analytic), float(numeric))


# heun-adaptive repeats tsit5-adaptive's check with another tableau: the slow tier.
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c == "heun-adaptive"
                                  else c for c in CASES])
def test_gradient_is_the_derivative_of_the_reversible_solve(case):
    """Gradients of one sample's solve and of the batch solved as one state, against
    central differences of the same reversible forward solve. Under an adaptive
    controller the differences take the same accepted steps (`StepTo` them), and the
    gradient with those steps fixed is the adaptive one's."""
    solver, controller, dt0 = CASES[case]
    model = _model(solver, controller, dt0)
    for loss, y0, field in ((_one, Y0S[0], FIELD),
                            (_batch, Y0S, nk.BatchedField(FIELD, None))):
        grads = eqx.filter_grad(lambda xy: loss(*xy))((model, y0))
        frozen = model
        if case.endswith("adaptive"):
            frozen = _model(solver, diffrax.StepTo(ts=_step_times(model, y0, field)), None)
            same = eqx.filter_grad(lambda xy: loss(*xy))((frozen, y0))
            for a, b in zip(jax.tree.leaves((grads[0].vector_field, grads[1])),
                            jax.tree.leaves((same[0].vector_field, same[1]))):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        _directional_check(loss, frozen, y0, grads, f"{case}/{loss.__name__}")


class LinearField(nk.AbstractVectorField):
    """dy/dt = A y."""

    A: jax.Array
    data_size: int = eqx.field(static=True)

    def __init__(self, A):
        self.A, self.data_size = jnp.asarray(A), A.shape[0]

    @property
    def state_size(self):
        return self.data_size

    def __call__(self, t, y, args):
        return self.A @ y


A = 0.6 * jr.normal(jr.key(3), (3, 3)) - 0.4 * jnp.eye(3)
C = jr.normal(jr.key(4), (3,))


@pytest.mark.parametrize("solver, order", [(diffrax.Euler(), 1), (diffrax.Heun(), 2),
                                           (nk.RK4(), 4)])
def test_gradient_converges_to_the_closed_form_at_the_solvers_order(solver, order):
    """d/dA and d/dy0 of c·y(1) for dy/dt = A y: the closed form is the derivative of
    c·expm(A) y0. Halving the step divides the error by about 2^order."""
    y0 = Y0S[0]
    exact = jax.grad(lambda a, y: C @ jax.scipy.linalg.expm(a) @ y, argnums=(0, 1))(A, y0)
    assert np.allclose(scipy.linalg.expm(np.asarray(A)) @ y0, jax.scipy.linalg.expm(A) @ y0)
    ts = jnp.array([0.0, 1.0])
    grad = eqx.filter_jit(eqx.filter_grad(lambda my: C @ my[0](ts, my[1])[-1]))
    errors = []
    for steps in (8, 16, 32):
        model = _model(solver, diffrax.ConstantStepSize(), 1.0 / steps, field=LinearField(A))
        g_model, g_y0 = grad((model, y0))
        errors.append(max(float(jnp.max(jnp.abs(g_model.vector_field.A - exact[0]))),
                          float(jnp.max(jnp.abs(g_y0 - exact[1])))))
    rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(rates - order) < 0.35), (errors, rates)


def test_memory_of_a_gradient_is_flat_in_the_steps_where_direct_grows():
    """Compiled temp bytes of one gradient (Heun, fixed steps) at N = 100 and 10^4: the
    growth exponent log(m2/m1)/log(100) is below 0.05 for reversible, near 1 for direct."""
    def temp_bytes(adjoint, steps):
        model = nk.NeuralODE(FIELD, solver=diffrax.Heun(), stepsize_controller=diffrax.ConstantStepSize(),
                             dt0=1.0 / steps, adjoint=adjoint, max_steps=steps + 1)
        return nk.compile_gradient(model, jnp.array([0.0, 1.0]), Y0S).memory.temp_bytes

    exponent = {a: np.log(temp_bytes(a, 10_000) / temp_bytes(a, 100)) / np.log(100)
                for a in ("reversible", "direct")}
    assert exponent["reversible"] < 0.05 and exponent["direct"] > 0.8, exponent


@pytest.mark.slow  # the reversible adjoint on another model (its gradient is checked on the
# neural ODE in the default tier, for every solver case above)
def test_cnf_log_density_and_gradient_through_both_traces_and_the_regularisers():
    """The CNF's loss (Hutchinson with a fixed probe, and the exact trace), with both RNODE
    terms, through the reversible solve: the gradient against central differences of the
    same solve, and the log-density near the plain solve's (another method, same order)."""
    xs = Y0S
    key = jr.key(5)
    for trace in (nk.ExactTrace(), nk.HutchinsonTrace("gaussian")):
        cnf = nk.CNF(FIELD, trace_estimator=trace, solver=nk.RK4(), dt0=0.125,
                     stepsize_controller=diffrax.ConstantStepSize(), adjoint="reversible",
                     max_steps=64)

        def loss(c, x):
            log_prob, stats = c.log_prob_and_stats_batched(x, key=key, regularise=True)
            return -jnp.mean(log_prob) + 0.1 * jnp.mean(stats["kinetic_energy"]) \
                + 0.2 * jnp.mean(stats["jacobian_norm"])

        grads = eqx.filter_grad(lambda cx: loss(*cx))((cnf, xs))
        _directional_check(loss, cnf, xs, grads, type(trace).__name__)
        plain = cnf.with_settings(cnf.settings.with_adjoint("direct"))
        log_prob = lambda c: c.log_prob_and_stats_batched(xs, key=key)[0]
        np.testing.assert_allclose(log_prob(cnf), log_prob(plain), rtol=0, atol=1e-5)


@pytest.mark.slow  # the reversible adjoint on another model (its gradient is checked on the
# neural ODE in the default tier, for every solver case above)
def test_latent_ode_and_its_ode_rnn_encoder_differentiate_through_it():
    """A latent ODE whose ODE-RNN encoder (a solve per gap) and decoder both solve with the
    reversible adjoint: its ELBO's gradient against central differences."""
    model = nk.LatentODE(2, 2, 3, 4, 1, key=jr.key(6), solver=diffrax.Heun(),
                         stepsize_controller=diffrax.ConstantStepSize(), dt0=0.1,
                         adjoint="reversible", max_steps=64)
    assert isinstance(model.encoder.ode.settings.adjoint, nk.ReversibleAdjoint)
    ts = jnp.array([0.0, 0.3, 0.7, 1.2, 1.5])
    values = jr.normal(jr.key(7), (5, 2))
    mask = jnp.ones((5, 2)).at[1, 0].set(0)

    def elbo(m, v):
        return m.elbo(ts, v, mask, key=jr.key(8), num_samples=2)[0]

    grads = eqx.filter_grad(lambda mv: elbo(*mv))((model, values))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    value = eqx.filter_jit(lambda p, v: elbo(eqx.combine(p, static), v))
    leaves, treedef = jax.tree.flatten(params)
    g_leaves = jax.tree.leaves(eqx.filter(grads[0], eqx.is_inexact_array))
    keys = jr.split(jr.key(9), len(leaves) + 1)
    d = [jr.normal(k, p.shape) for k, p in zip(keys, leaves)]
    d_values = jr.normal(keys[-1], values.shape)
    moved = lambda h: jax.tree.unflatten(treedef, [p + h * x for p, x in zip(leaves, d)])
    h = 1e-6
    numeric = (value(moved(h), values + h * d_values)
               - value(moved(-h), values - h * d_values)) / (2 * h)
    analytic = sum(jnp.vdot(g, x) for g, x in zip(g_leaves, d)) + jnp.vdot(grads[1], d_values)
    assert abs(analytic - numeric) <= 1e-7 * abs(numeric), (float(analytic), float(numeric))


def _settings(**kwargs):
    return nk.SolveSettings(**{"adjoint": "reversible", **kwargs})


@pytest.mark.parametrize("make, match", [
    (lambda: _settings(solver=diffrax.Kvaerno5()),
     r"adjoint 'reversible' needs an explicit single-step solver .* got Kvaerno5, an implicit solver"),
    (lambda: _settings(solver=diffrax.ReversibleHeun()),
     r"got ReversibleHeun, not an explicit single-step Runge-Kutta solver"),
    (lambda: _settings(stepsize_controller=diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=1e-3, atol=1e-6), jump_ts=[0.5])),
     r"adjoint 'reversible' works with diffrax.ConstantStepSize, PIDController or StepTo; got "
     r"ClipStepSizeController"),
    (lambda: _settings(max_steps=None), r"`max_steps=None` cannot be used with adjoint 'reversible'"),
    (lambda: nk.ReversibleAdjoint(1.0), r"`coupling` must be a float in \(0, 1\) .* got 1\.0"),
    (lambda: nk.ReversibleAdjoint(0), r"`coupling` must be a float in \(0, 1\) .* got 0\."),
    (lambda: nk.ReversibleAdjoint(float("nan")), r"`coupling` must be a float in \(0, 1\) .* got nan"),
    (lambda: nk.ReversibleAdjoint("0.9"), r"`coupling` must be a float in \(0, 1\) .* got '0\.9'"),
    (lambda: diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, a: -y), diffrax.Tsit5(), 0, 1, 0.1,
                                 1.0, adjoint=nk.ReversibleAdjoint()),
     r"node_kit.ReversibleAdjoint runs through node_kit's solve"),
    (lambda: jax.grad(lambda ts: _model(*CASES["heun"])(ts, Y0S[0])[-1, 0])(TS),
     r"the reversible adjoint cannot differentiate the output times `ts`"),
])
def test_bad_input_is_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _candidates(budget):
    """Four measured adjoints as `adjoint_for_budget` returns them (memory in bytes,
    seconds per gradient), with `fits` for `budget`; the ordering is the usual one."""
    from node_kit._adjoint_choice import AdjointCandidate

    sizes = {"direct": (8000, 1.0, True), "checkpoint(6)": (3000, 1.4, True),
             "reversible": (1000, 1.8, True), "backsolve": (600, 0.9, False)}
    return tuple(AdjointCandidate(name, nk.adjoint_from_name(name.split("(")[0], max_steps=64),
                                  exact, memory, seconds, 0.1, memory <= budget)
                 for name, (memory, seconds, exact) in sizes.items())


@pytest.mark.parametrize("budget, prefer, chosen", [
    (10_000, "time", "direct"),  # everything fits: the fastest exact one
    (10_000, "memory", "reversible"),  # the smallest exact one
    (5000, "time", "checkpoint(6)"),  # direct is out: the fastest exact that fits
    (800, "time", "backsolve"),  # no exact one fits: the approximate one, said to be
])
def test_adjoint_for_budget_rule(budget, prefer, chosen):
    from node_kit._adjoint_choice import _choose

    choice = _choose(budget, prefer, _candidates(budget))
    assert choice.name == chosen
    if chosen == "backsolve":
        assert "approximate" in choice.reason and "the smallest, reversible" in choice.reason
    else:
        assert choice.reason.startswith(f"{chosen} is the {'fastest' if prefer == 'time' else 'smallest'} exact")
    with pytest.raises(ValueError, match=r"`memory_budget_bytes`: no adjoint's gradient fits .* "
                                         r"the smallest is backsolve"):
        _choose(599, prefer, _candidates(599))


@pytest.mark.slow  # compiles and times every adjoint; the rule itself is tested above
def test_adjoint_for_budget_measures_every_adjoint_and_picks_by_its_rule():
    """One measured choice (a generous budget): every candidate compiled and timed, the
    choice the fastest exact one that fits. Then the rule itself on those measurements:
    the smallest exact one for prefer='memory', backsolve (said to be approximate) when
    no exact one fits, an error naming the smallest when nothing fits."""
    from node_kit._adjoint_choice import _choose

    model = nk.NeuralODE(FIELD, solver=diffrax.Heun(), stepsize_controller=diffrax.ConstantStepSize(),
                         dt0=0.02, max_steps=64)
    choice = nk.adjoint_for_budget(2**30, model=model, ts=jnp.array([0.0, 1.0]), y0s=Y0S,
                                   repeats=1)
    by_name = {c.name.split("(")[0]: c for c in choice.candidates}
    assert set(by_name) == {"direct", "checkpoint", "reversible", "backsolve"}
    assert all(c.fits and c.memory_bytes > 0 and c.seconds > 0 for c in choice.candidates)
    exact = [c for c in choice.candidates if c.exact]
    assert choice.name == min(exact, key=lambda c: c.seconds).name
    assert choice.reason.startswith(f"{choice.name} is the fastest exact gradient")
    assert by_name["reversible"].memory_bytes < by_name["direct"].memory_bytes

    smallest = min(exact, key=lambda c: c.memory_bytes)
    assert _choose(2**30, "memory", choice.candidates).name == smallest.name
    # Budgets between the candidates' measured sizes, the fits recomputed for each.
    def refit(budget):
        return tuple(dataclasses.replace(c, fits=c.memory_bytes <= budget) for c in choice.candidates)

    backsolve = by_name["backsolve"]
    if backsolve.memory_bytes < smallest.memory_bytes:
        budget = backsolve.memory_bytes
        picked = _choose(budget, "time", refit(budget))
        assert picked.name == "backsolve" and "approximate" in picked.reason
    budget = min(c.memory_bytes for c in choice.candidates) - 1
    with pytest.raises(ValueError, match=r"`memory_budget_bytes`: no adjoint's gradient fits"):
        _choose(budget, "time", refit(budget))
    implicit = nk.NeuralODE(FIELD, solver=diffrax.Kvaerno3(), max_steps=64)
    with pytest.raises(ValueError, match=r"`memory_budget_bytes` must be a finite number"):
        nk.adjoint_for_budget(0, model=implicit, ts=jnp.array([0.0, 1.0]), y0s=Y0S)

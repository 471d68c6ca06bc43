"""Bad input gets a clear error naming the argument, expected vs given, and the fix."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pytest

import node_kit as nk


@pytest.fixture(scope="module")
def model():
    return nk.NeuralODE(nk.MLPField(2, 4, 1, key=jr.key(0)))


TS = jnp.linspace(0.0, 1.0, 3)


def test_ts_not_increasing(model):
    with pytest.raises(ValueError, match=r"`ts` must be strictly increasing; got ts\[2\]=0.5 <= ts\[1\]=0.5"):
        model(jnp.array([0.0, 0.5, 0.5]), jnp.ones(2))


def test_ts_not_increasing_inside_jit(model):
    with pytest.raises(Exception, match="`ts` must be strictly increasing"):
        eqx.filter_jit(model)(jnp.array([0.0, 1.0, 0.5]), jnp.ones(2)).block_until_ready()


def test_ts_not_1d(model):
    with pytest.raises(ValueError, match=r"`ts` must be 1-D .* got shape \(2, 3\)"):
        model(jnp.ones((2, 3)), jnp.ones(2))


def test_ts_empty(model):
    with pytest.raises(ValueError, match="`ts` must contain at least one time"):
        model(jnp.array([]), jnp.ones(2))


def test_y0_wrong_shape(model):
    with pytest.raises(ValueError, match=r"`y0` must have shape \(data_size,\) = \(2,\) .* got \(3,\)"):
        model(TS, jnp.ones(3))
    with pytest.raises(ValueError, match=r"`y0s` must have shape \(batch, data_size\) = \(4, 2\)"):
        model.batched(TS, jnp.ones((4, 3)))


def test_y0_wrong_shape_for_field_without_data_size():
    field = eqx.nn.Lambda(lambda y: y[:2])
    ode = nk.NeuralODE(lambda t, y, args: field(y))
    with pytest.raises(ValueError, match=r"the vector field must return dy/dt with the shape of `y0` \(3,\); it returned \(2,\)"):
        ode(TS, jnp.ones(3))
    matmul = nk.NeuralODE(lambda t, y, args: jnp.ones((2, 2)) @ y)
    with pytest.raises(ValueError, match=r"`y0` of shape \(3,\) does not fit the vector field"):
        matmul(TS, jnp.ones(3))


def test_y0_not_floating(model):
    with pytest.raises(ValueError, match="`y0` must be a floating-point array; got dtype int"):
        model(TS, jnp.array([1, 2]))


@pytest.mark.parametrize("times, adjoint", [(2, "checkpoint"), (3, "backsolve"), (3, "checkpoint")])
def test_y0_nan_is_named_by_the_solves_one_check(model, times, adjoint):
    """Saved at t0 (two times, or backsolve) the check reads y0 from `ys[0]`: NaN or inf
    there names `y0`, while a finite y0 whose solve fails before its first accepted step
    gets the max_steps message. Saved at `ts` (checkpoint, three times) it checks y0
    itself; also batched, and `throw=False` returns the solution unchecked."""
    ts = jnp.linspace(0.0, 1.0, times)
    ode = model.with_settings(model.settings.with_adjoint(adjoint))
    for bad in (jnp.nan, jnp.inf):  # one compiled program for both
        with pytest.raises(Exception, match="`y0` contains NaN or inf; check the data"):
            ode(ts, jnp.array([1.0, bad])).block_until_ready()
    if times == 2 or adjoint == "backsolve":
        stuck = nk.NeuralODE(model.vector_field, adjoint=adjoint, max_steps=1,
                             stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12))
        with pytest.raises(Exception, match=r"diffeqsolve hit max_steps=1: it stopped between ts\[0\]"):
            stuck(ts, jnp.ones(2)).block_until_ready()
    else:
        with pytest.raises(Exception, match="`y0s` contains NaN or inf"):
            ode.batched(ts, jnp.ones((3, 2)).at[1, 0].set(jnp.nan)).block_until_ready()
        quiet = ode.with_settings(ode.settings.replace(throw=False))
        assert not jnp.all(jnp.isfinite(quiet(ts, jnp.array([1.0, jnp.nan]))))


def test_unknown_adjoint_name():
    with pytest.raises(ValueError, match="unknown adjoint 'adjoint_sensitivity'; expected one of backsolve, checkpoint, direct"):
        nk.adjoint_from_name("adjoint_sensitivity", max_steps=10)
    with pytest.raises(ValueError, match="unknown adjoint 'unroll'"):
        nk.NeuralODE(nk.MLPField(2, 4, 1, key=jr.key(0)), adjoint="unroll")


def test_adjoint_wrong_type():
    with pytest.raises(ValueError, match="`adjoint` must be a diffrax.AbstractAdjoint"):
        nk.NeuralODE(nk.MLPField(2, 4, 1, key=jr.key(0)), adjoint=3)


@pytest.mark.parametrize(
    "adjoint", ["checkpoint", diffrax.DirectAdjoint(), diffrax.RecursiveCheckpointAdjoint(4)]
)
def test_max_steps_none_with_reverse_mode(adjoint):
    with pytest.raises(ValueError, match="`max_steps=None` cannot be used with"):
        nk.NeuralODE(nk.MLPField(2, 4, 1, key=jr.key(0)), adjoint=adjoint, max_steps=None)
    with pytest.raises(ValueError, match="adjoint 'direct' stores every step, so it needs an integer `max_steps`"):
        nk.adjoint_from_name("direct", max_steps=None)


def test_max_steps_none_with_backsolve_is_allowed():
    ode = nk.NeuralODE(nk.MLPField(2, 4, 1, key=jr.key(0)), adjoint="backsolve", max_steps=None)
    assert ode(TS, jnp.ones(2)).shape == (3, 2)


@pytest.mark.parametrize("count", [0, -3, 2.5, True])
def test_bad_checkpoint_count(count):
    with pytest.raises(ValueError, match=f"`checkpoints` must be a positive integer; got {count!r}"):
        nk.checkpoint_adjoint(count)
    with pytest.raises(ValueError, match="`checkpoints` must be a positive integer"):
        nk.adjoint_from_name("checkpoint", max_steps=10, checkpoints=count)


def test_seminorm_needs_pid_controller():
    with pytest.raises(ValueError, match="`seminorm=True` needs the forward `stepsize_controller`"):
        nk.backsolve_adjoint(diffrax.ConstantStepSize(), seminorm=True)


def test_bad_construction_arguments():
    field = nk.MLPField(2, 4, 1, key=jr.key(0))
    with pytest.raises(ValueError, match="`max_steps` must be a positive int or None; got 0"):
        nk.NeuralODE(field, max_steps=0)
    with pytest.raises(ValueError, match="`dt0` must be a positive float or None; got -0.1"):
        nk.NeuralODE(field, dt0=-0.1)
    with pytest.raises(ValueError, match="`solver` must be a diffrax.AbstractSolver"):
        nk.NeuralODE(field, solver="tsit5")
    with pytest.raises(ValueError, match="`dt0=None` needs an adaptive `stepsize_controller`"):
        nk.NeuralODE(field, stepsize_controller=diffrax.ConstantStepSize())
    with pytest.raises(ValueError, match="`solver` Euler has no error estimate"):
        nk.NeuralODE(field, solver=diffrax.Euler())
    with pytest.raises(ValueError, match="`solver` Euler has no error estimate"):
        nk.LatentODE(2, 2, 4, 4, 1, encoder_settings=nk.SolveSettings(diffrax.Euler()),
                     key=jr.key(0))
    with pytest.raises(ValueError, match="unknown solve setting.* encoder_solver; expected some of"):
        nk.LatentODE(2, 2, 4, 4, 1, encoder_solver=diffrax.Euler(), key=jr.key(0))
    with pytest.raises(ValueError, match="pass either `settings` or the solve keywords"):
        nk.NeuralODE(field, nk.SolveSettings(), max_steps=8)
    with pytest.raises(ValueError, match="`width_size` must be an int >= 1; got 0"):
        nk.MLPField(2, 0, 1, key=jr.key(0))
    with pytest.raises(ValueError, match=r"`augment_size` must be an int in \[1, 1\]"):
        nk.AugmentedField(field, 2)


def test_max_steps_reached_names_max_steps_and_where(model):
    short = nk.NeuralODE(model.vector_field, max_steps=2)
    match = r"diffeqsolve hit max_steps=2: it stopped between ts\[0\] and ts\[1\] \(t=0 and t=0.5\)"
    with pytest.raises(Exception, match=match):
        short(TS, jnp.ones(2)).block_until_ready()
    with pytest.raises(Exception, match=r"hit max_steps=2: it stopped between ts\[0\] and ts\[1\]"):
        jax.block_until_ready(
            eqx.filter_grad(lambda m: jnp.sum(m.batched(TS, jnp.ones((2, 2)))))(short)
        )


@pytest.mark.parametrize("max_steps", [3, 9])
def test_max_steps_message_names_the_interval_the_returned_solution_stopped_in(max_steps):
    """The interval in the message is the one the unchecked solution (`throw=False`) shows:
    the last output time it reached (diffrax fills the rest with inf) and the next."""
    settings = dict(stepsize_controller=diffrax.ConstantStepSize(), dt0=0.1, max_steps=max_steps)
    ts = jnp.linspace(0.0, 1.0, 6)
    field = lambda t, y, args: -y
    sol = nk.NeuralODE(field, throw=False, **settings).solve(ts, jnp.ones(2))
    i = int(jnp.sum(jnp.isfinite(sol.ts))) - 1
    assert sol.result == diffrax.RESULTS.max_steps_reached and 0 <= i < 5
    with pytest.raises(Exception, match=rf"hit max_steps={max_steps}: it stopped between "
                       rf"ts\[{i}\] and ts\[{i + 1}\] \(t={float(ts[i]):.6g} and t={float(ts[i + 1]):.6g}\)"):
        nk.NeuralODE(field, **settings)(ts, jnp.ones(2)).block_until_ready()


def test_failed_solve_is_returned_when_throw_is_false(model):
    quiet = nk.NeuralODE(model.vector_field, max_steps=2, throw=False)
    sol = quiet.solve(TS, jnp.ones(2))
    assert sol.result == diffrax.RESULTS.max_steps_reached


def test_fixed_step_nan_is_reported():
    class Blowup(eqx.Module):
        def __call__(self, t, y, args):
            return jnp.where(t > 0.4, jnp.nan, 1.0) * y

    ode = nk.NeuralODE(Blowup(), stepsize_controller=diffrax.ConstantStepSize(), dt0=0.25, max_steps=8)
    with pytest.raises(Exception, match=r"the solution became NaN or inf at ts\[1\] \(t=0.5\) although the solver reported success"):
        ode(TS, jnp.ones(2)).block_until_ready()


def test_solve_values_are_checked():
    field = nk.MLPField(2, 4, 1, key=jr.key(0))
    fixed = diffrax.ConstantStepSize()
    with pytest.raises(ValueError, match="`dt0` must be a positive float or None; got inf"):
        nk.NeuralODE(field, stepsize_controller=fixed, dt0=float("inf"))
    for rtol, atol in ((-1e-3, 1e-6), (1e-3, float("nan")), (0.0, 0.0)):
        with pytest.raises(ValueError, match="`stepsize_controller` tolerances must be finite "
                           "and non-negative, and not both zero"):
            nk.SolveSettings(stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol))
    nk.SolveSettings(stepsize_controller=diffrax.PIDController(rtol=0.0, atol=1e-6))  # fine
    long_step = nk.NeuralODE(field, stepsize_controller=fixed, dt0=2.0)
    with pytest.raises(ValueError, match=r"`dt0`=2.0 is longer than the whole solve \(ts\[-1\] "
                       r"- ts\[0\] = 1\)"):
        long_step(jnp.linspace(0.0, 1.0, 3), jnp.ones(2))


def test_times_must_be_finite():
    model = nk.NeuralODE(nk.MLPField(2, 4, 1, key=jr.key(0)))
    bad = jnp.array([0.0, jnp.nan, 1.0])
    with pytest.raises(ValueError, match=r"`ts` must be finite; got ts\[1\]=nan"):
        model(bad, jnp.ones(2))
    with pytest.raises(Exception, match=r"`ts` must be finite \(no NaN or inf\)"):
        jax.block_until_ready(eqx.filter_jit(model)(bad, jnp.ones(2)))
    latent = nk.LatentODE(2, 2, 3, 4, 1, key=jr.key(0))
    with pytest.raises(ValueError, match=r"`ts` must be finite; got ts\[1\]=inf"):
        latent.elbo(jnp.array([0.0, jnp.inf, 1.0]), jnp.ones((3, 2)), jnp.ones((3, 2)),
                    key=jr.key(1))


def test_keys_must_be_prng_keys():
    field = nk.MLPField(2, 4, 1, key=jr.PRNGKey(0))  # a raw uint32[2] key is still a key
    match = r"`key` must be a JAX PRNG key; got int 0\. Make one with `jax.random.key\(0\)`"
    for call in (
        lambda: nk.MLPField(2, 4, 1, key=0),
        lambda: nk.ODERNN(2, 3, 4, 1, key=0),
        lambda: nk.LatentODE(2, 2, 3, 4, 1, key=0),
        lambda: nk.CNF(field).sample(key=0),
        lambda: nk.CNF(field, trace_estimator=nk.HutchinsonTrace()).log_prob(jnp.ones(2), key=0),
    ):
        with pytest.raises(ValueError, match=match):
            call()
    with pytest.raises(ValueError, match=r"`key` must be a JAX PRNG key; got an array of float32"):
        nk.GRUDelta(2, 3, key=jnp.zeros(2, jnp.float32))


def test_numpy_scalars_are_accepted_where_python_ones_are():
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "JAX array set as static" from a numpy size
        field = nk.MLPField(np.int64(2), np.int32(4), np.int64(1), key=jr.key(0))
        settings = nk.SolveSettings(stepsize_controller=diffrax.ConstantStepSize(),
                                    dt0=np.float32(0.25), max_steps=np.int64(8))
        rnn = nk.ODERNN(np.int64(2), np.int64(3), 4, 1, key=jr.key(0))
    assert type(field.data_size) is int and type(rnn.hidden_size) is int
    assert settings.max_steps == 8 and type(settings.dt0) is float


def _failing_settings():
    # Tolerances no solve can meet in two steps: every model's solve hits max_steps.
    return nk.SolveSettings(
        stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12), max_steps=2
    )


_SERIES = (jnp.linspace(0.0, 3.0, 4), jnp.ones((4, 2)), jnp.ones((4, 2)))
_FAILING_CALLS = {
    "NeuralODE": (lambda: nk.NeuralODE(nk.MLPField(2, 4, 1, key=jr.key(0)),
                                       settings=_failing_settings()),
                  lambda model: model(TS, jnp.ones(2))),
    "CNF": (lambda: nk.CNF(nk.MLPField(2, 4, 1, key=jr.key(0)), settings=_failing_settings()),
            lambda model: model.log_prob(jnp.ones(2))),
    "ODERNN": (lambda: nk.ODERNN(2, 3, 4, 1, settings=_failing_settings(), key=jr.key(0)),
               lambda model: model(*_SERIES)),
    "LatentODE": (lambda: nk.LatentODE(2, 2, 3, 4, 1, settings=_failing_settings(),
                                       key=jr.key(0)),
                  lambda model: model.elbo(*_SERIES, key=jr.key(1))[0]),
}


# The ODE-RNN and the latent ODE repeat the check through models that solve with a
# NeuralODE inside (the same settings' solve): the slow tier.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("ODERNN", "LatentODE")
                                  else n for n in _FAILING_CALLS])
def test_a_failed_solve_raises_one_type_eager_and_under_jit(name):
    # docs/errors.md: `except eqx.EquinoxRuntimeError` catches it, jitted or not.
    build, call = _FAILING_CALLS[name]
    model = build()
    for run in (call, eqx.filter_jit(call)):
        with pytest.raises(eqx.EquinoxRuntimeError, match="diffeqsolve hit max_steps=2"):
            jax.block_until_ready(run(model))

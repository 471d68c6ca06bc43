"""Events: a solve stopped where a condition fires, its time and state differentiated against
closed forms under each adjoint that can, and a clear error where one cannot."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

import node_kit as nk

TIGHT = dict(stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-10), max_steps=256)
GROUND = diffrax.Event(lambda t, y, args, **kwargs: y[0], root_finder=optx.Newton(1e-12, 1e-12))


def fall(t, y, g):
    """A ball: height and velocity under gravity `g` (in `args`)."""
    return jnp.stack([y[1], -g])


def _landing(h, g, adjoint, ts):
    """Where the solve stopped: time and velocity at the ground, and whether it fired."""
    sol = nk.SolveSettings(adjoint=adjoint, event=GROUND, **TIGHT).solve(
        fall, ts, jnp.stack([h, 0.0]), g)
    return jnp.stack([sol.ts[-1], sol.ys[-1, 1]]), nk.event_fired(sol)


@eqx.filter_jit
def _landing_and_jacobian(hg, adjoint, ts):
    """One compiled program: the landing, whether it fired, d(t*, v*)/d(h, g)."""
    landing, fired = _landing(hg[0], hg[1], adjoint, ts)
    jacobian = jax.jacrev(lambda hg: _landing(hg[0], hg[1], adjoint, ts)[0])(hg)
    return landing, fired, jacobian


@pytest.mark.parametrize("adjoint, ts", [
    # The slow tier: the model test below differentiates an event time under checkpoint
    # with six output times in the default tier.
    pytest.param("checkpoint", jnp.array([0.0, 10.0]), marks=pytest.mark.slow),
    pytest.param("direct", jnp.linspace(0.0, 10.0, 5), marks=pytest.mark.slow),
    pytest.param("direct", jnp.array([0.0, 10.0]), marks=pytest.mark.slow),
    pytest.param("checkpoint", jnp.linspace(0.0, 10.0, 5), marks=pytest.mark.slow),
], ids=["checkpoint-two-times", "direct-five-times", "direct-two-times",
        "checkpoint-five-times"])
def test_a_falling_ball_lands_when_and_as_fast_as_the_closed_form_says(adjoint, ts):
    """t* = sqrt(2h/g), v* = -sqrt(2gh), and their derivatives in h and g."""
    h, g = 2.0, 9.81
    (t_land, v_land), fired, jacobian = _landing_and_jacobian(jnp.array([h, g]), adjoint, ts)
    assert bool(fired)
    np.testing.assert_allclose(t_land, np.sqrt(2 * h / g), rtol=1e-10)
    np.testing.assert_allclose(v_land, -np.sqrt(2 * g * h), rtol=1e-9)
    dt = [1 / np.sqrt(2 * g * h), -np.sqrt(2 * h / g) / (2 * g)]
    dv = [-np.sqrt(g / (2 * h)), -np.sqrt(2 * h / g) / 2]
    np.testing.assert_allclose(jacobian, [dt, dv], rtol=1e-8)


class Decay(eqx.Module):
    rate: jax.Array

    def __call__(self, t, y, args):
        return -self.rate * y


def test_a_model_stops_where_a_decaying_state_crosses_a_level():
    """dy/dt = -k y from y0 crosses c at t* = log(y0 / c) / k: a NeuralODE given `event=`,
    the gradient in the field's parameter; outputs after t* are not reached."""
    level = 0.25
    crossing = diffrax.Event(lambda t, y, args, **kwargs: y[0] - level,
                             root_finder=optx.Newton(1e-12, 1e-12))
    model = nk.NeuralODE(Decay(jnp.array(0.8)), event=crossing, **TIGHT)
    ts = jnp.linspace(0.0, 5.0, 6)
    sol = model.solve(ts, jnp.array([1.0]))
    t_star = np.log(1.0 / level) / 0.8
    np.testing.assert_allclose(sol.ts[-1], t_star, rtol=1e-10)
    np.testing.assert_allclose(sol.ys[-1, 0], level, rtol=1e-10)
    # Reached: 0 and 1; not reached (t* = 1.73): 2, 3, 4, which hold inf.
    assert np.all(np.isfinite(sol.ys[:2])) and np.all(np.isinf(sol.ys[2:5]))
    grad = eqx.filter_jit(eqx.filter_grad(lambda m: m.solve(ts, jnp.array([1.0])).ts[-1]))(model)
    np.testing.assert_allclose(grad.vector_field.rate, -t_star / 0.8, rtol=1e-8)


def test_an_event_that_does_not_fire_leaves_the_solve_as_it_was():
    h, g, t1 = 100.0, 9.81, 2.0
    sol = nk.SolveSettings(event=GROUND, **TIGHT).solve(fall, jnp.array([0.0, t1]),
                                                        jnp.array([h, 0.0]), g)
    assert not bool(nk.event_fired(sol))
    np.testing.assert_allclose(sol.ts[-1], t1)
    np.testing.assert_allclose(sol.ys[-1], [h - g * t1 ** 2 / 2, -g * t1], rtol=1e-9)


def test_a_boolean_condition_stops_at_the_end_of_its_step():
    below = diffrax.Event(lambda t, y, args, **kwargs: y[0] < 0)
    sol = nk.SolveSettings(event=below, **TIGHT).solve(fall, jnp.array([0.0, 10.0]),
                                                       jnp.array([2.0, 0.0]), 9.81)
    assert bool(nk.event_fired(sol)) and sol.ys[-1, 0] < 0
    assert np.sqrt(2 * 2.0 / 9.81) < sol.ts[-1] < 10.0


def test_bad_events_name_the_argument_and_the_fix():
    with pytest.raises(ValueError, match=r"`event` must be None or a diffrax.Event; got function. "
                                         r"Wrap the condition: diffrax.Event\(cond_fn"):
        nk.SolveSettings(event=lambda t, y, args: y[0])
    for adjoint, name in (("backsolve", "BacksolveAdjoint"), ("reversible", "ReversibleAdjoint")):
        with pytest.raises(ValueError, match=rf"adjoint {name} cannot differentiate a solve with "
                                             r"an `event`.*use adjoint='checkpoint' or 'direct'"):
            nk.SolveSettings(event=GROUND, adjoint=adjoint)
    with pytest.raises(ValueError, match=r"`event.root_finder` must be None .* or an optimistix "
                                         r"root finder such as optx.Newton\(1e-8, 1e-8\); got str"):
        nk.SolveSettings(event=diffrax.Event(lambda t, y, args, **kw: y[0], root_finder="newton"))
    vector = diffrax.Event(lambda t, y, args, **kwargs: y)
    with pytest.raises(ValueError, match=r"condition function .* must return a scalar: a bool .* "
                                         r"or a float .*; it returned float64\(2,\)"):
        nk.SolveSettings(event=vector).solve(fall, jnp.array([0.0, 1.0]), jnp.array([2.0, 0.0]), 9.8)
    integer = diffrax.Event(lambda t, y, args, **kwargs: jnp.int32(1))
    with pytest.raises(ValueError, match=r"it returned int32\(\)"):
        nk.SolveSettings(event=integer).solve(fall, jnp.array([0.0, 1.0]), jnp.array([2.0, 0.0]), 9.8)

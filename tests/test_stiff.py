"""Stiff solves: an implicit solver (Kvaerno5, PID steps) on a stiff linear system with a
learned term, against its closed form (the matrix exponential) in value and gradient."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
import pytest

import node_kit as nk

# Eigenvalues -1000 and -1: an explicit solver's stable step is about 3e-3.
STIFF = jnp.array([[-1000.0, 999.0], [0.0, -1.0]])
Y0, C, T = jnp.array([1.0, 2.0]), jnp.array([0.5, -1.5]), 1.0
IMPLICIT = dict(solver=diffrax.Kvaerno5(), stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-9))


class StiffField(eqx.Module):
    """dy/dt = (A + W) y: the stiff linear part `A` and a learned linear term `W`."""

    weight: jax.Array

    def __call__(self, t, y, args):
        return (STIFF + self.weight) @ y


WEIGHT = jnp.array([[0.1, -0.2], [0.3, 0.05]])


def closed_form(weight, y0):
    return C @ jax.scipy.linalg.expm((STIFF + weight) * T) @ y0


@eqx.filter_jit
def _loss_and_grad(model, y0):
    def loss(model, y0):
        return C @ model(jnp.array([0.0, T]), y0)[-1]

    return eqx.filter_value_and_grad(loss, has_aux=False)(model, y0), jax.grad(loss, 1)(model, y0)


# The slow tier (the default one keeps the implicit solve's steps and the refusals): the
# default tier's 6 minutes were at 6:02 with it on this machine.
@pytest.mark.slow
@pytest.mark.parametrize("adjoint", ["checkpoint", "direct"])
def test_an_implicit_solve_of_a_stiff_system_matches_the_matrix_exponential(adjoint):
    """Value and gradients (in the learned term and in y0) against c . expm((A + W) T) y0,
    differentiated by autodiff of the Padé approximant: another computation altogether."""
    model = nk.NeuralODE(StiffField(WEIGHT), adjoint=adjoint, **IMPLICIT)
    (value, grad), grad_y0 = _loss_and_grad(model, Y0)
    np.testing.assert_allclose(value, closed_form(WEIGHT, Y0), rtol=1e-7)
    expected_w, expected_y0 = jax.grad(closed_form, argnums=(0, 1))(WEIGHT, Y0)
    np.testing.assert_allclose(grad.vector_field.weight, expected_w, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(grad_y0, expected_y0, rtol=1e-6, atol=1e-9)


def test_the_implicit_solver_takes_far_fewer_steps_than_an_explicit_one():
    """Why it is there: Tsit5 is held to its stability limit (about 3e-3 per step) long after
    the fast mode has decayed; Kvaerno5 is not."""
    ts = jnp.array([0.0, T])
    implicit = nk.NeuralODE(StiffField(WEIGHT), **IMPLICIT).solve(ts, Y0)
    explicit = nk.NeuralODE(StiffField(WEIGHT), solver=diffrax.Tsit5(),
                            stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-9)
                            ).solve(ts, Y0)
    np.testing.assert_allclose(implicit.ys[-1], explicit.ys[-1], rtol=1e-6)
    assert 5 * int(implicit.stats["num_steps"]) < int(explicit.stats["num_steps"]), (
        implicit.stats["num_steps"], explicit.stats["num_steps"])


def test_the_adjoints_that_cannot_take_an_implicit_solver_refuse_it():
    with pytest.raises(ValueError, match=r"adjoint 'backsolve' cannot take the implicit solver "
                                         r"Kvaerno5: it solves the state backwards in time.*Use "
                                         r"adjoint='checkpoint' or 'direct'"):
        nk.NeuralODE(StiffField(WEIGHT), adjoint="backsolve", **IMPLICIT)
    with pytest.raises(ValueError, match=r"adjoint 'reversible' needs an explicit single-step "
                                         r"solver .*got Kvaerno5, an implicit solver.*use "
                                         r"adjoint='checkpoint' with this solver"):
        nk.NeuralODE(StiffField(WEIGHT), adjoint="reversible", **IMPLICIT)

"""What [`node_kit.SolveSettings.solve`][] solves: a vector field (an ODE) or any diffrax
term, each checked for what its kind of term needs.

- a callable `f(t, y, args)`, or a `diffrax.ODETerm`: `dy/dt = f`, whose output must have
  the state's shape ([`node_kit._solve_inputs.CheckedField`][]);
- a `diffrax.ControlTerm(f, control)`: `dy = f(t, y, args) dX(t)` (a controlled
  differential equation, e.g. a neural CDE driven by an interpolated series), whose field
  must return an array of shape `y.shape + X.shape` ([`CheckedControlField`][]). Driven by
  a differentiable path (an interpolation), it is solved as the ODE
  `dy/dt = f(t, y, args) dX/dt` (`to_ode()`), so that a Runge-Kutta solver keeps its
  order: diffrax's solvers apply a control term's increment over the whole step at every
  stage, which for a smooth path is a first-order method;
- a `diffrax.MultiTerm` of those: each term checked;
- any other `diffrax.AbstractTerm`: passed on as it is, the term's own.
"""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from ._checks import type_name
from ._custom_types import Args, State, Time
from ._solve_inputs import call_field, CheckedField


class CheckedControlField(eqx.Module):
    """The field of a control term, checked where diffrax first traces it: it must return
    the matrix (array) of shape `y.shape + control_shape` that multiplies `dX`."""

    field: Callable
    control_shape: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, t: Time, y: State, args: Args) -> jax.Array:
        out = call_field(self.field, t, y, args)
        expected = tuple(jnp.shape(y)) + self.control_shape
        if not (eqx.is_array_like(out) and jnp.shape(out) == expected):
            got = jnp.shape(out) if eqx.is_array_like(out) else type_name(out)
            raise ValueError(
                "the vector field of a control term (a CDE) must return an array of shape "
                f"y.shape + control shape = {tuple(jnp.shape(y))} + {self.control_shape} = "
                f"{expected}, which multiplies dX; it returned {got}. Reshape its output, "
                "e.g. mlp(y).reshape(hidden_size, channels)."
            )
        return out


def checked_term(equation: object, t0: jax.Array) -> diffrax.AbstractTerm:
    """The term to solve: a callable or an ODE term as an ODE term with a checked field, a
    control term with its field checked against the control's shape at `t0`, a
    `MultiTerm` term by term; another `diffrax.AbstractTerm` as it is."""
    if isinstance(equation, diffrax.MultiTerm):
        return diffrax.MultiTerm(*(checked_term(term, t0) for term in equation.terms))
    if isinstance(equation, diffrax.ODETerm):
        return diffrax.ODETerm(CheckedField(equation.vector_field))
    if type(equation) is diffrax.ControlTerm:  # a subclass may change how f and dX combine
        shape = jax.eval_shape(equation.control.evaluate, t0)
        if not isinstance(shape, jax.ShapeDtypeStruct):
            return equation  # a PyTree control: the term's own structure rules
        field = CheckedControlField(equation.vector_field, tuple(shape.shape))
        term = diffrax.ControlTerm(field, equation.control)
        return term.to_ode() if _differentiable(equation.control, t0) else term
    if isinstance(equation, diffrax.AbstractTerm):
        return equation
    if not callable(equation):
        raise ValueError(
            "the equation to solve must be a vector field f(t, y, args) (a callable) or a "
            f"diffrax term (ODETerm, ControlTerm, MultiTerm); got {type_name(equation)}."
        )
    return diffrax.ODETerm(CheckedField(equation))


def _differentiable(control: diffrax.AbstractPath, t0: jax.Array) -> bool:
    """Whether `control` has a derivative (an interpolation, not Brownian motion)."""
    if isinstance(control, diffrax.AbstractBrownianPath):
        return False
    try:
        jax.eval_shape(control.derivative, t0)
    except NotImplementedError:
        return False
    return True


def ode_field(term: diffrax.AbstractTerm, adjoint_name: str) -> Callable:
    """`f(t, y, args)` with `dy/dt = f` for a term of [`checked_term`][] that is an ODE: an
    ODE term (a control term driven by a differentiable path is one already, its
    `to_ode()`) or a `MultiTerm` of them. For an adjoint that steps an ODE itself (the
    reversible one); another term is an error."""
    if isinstance(term, diffrax.ODETerm):
        return term.vector_field
    if isinstance(term, diffrax.MultiTerm):
        fields = tuple(ode_field(t, adjoint_name) for t in term.terms)
        return _SumField(fields)
    raise ValueError(
        f"adjoint {adjoint_name!r} solves ordinary differential equations: a vector field, a "
        "diffrax.ODETerm, a ControlTerm driven by a differentiable path (an interpolation), "
        f"or a MultiTerm of those; got {type_name(term)}"
        + (
            " driven by Brownian motion (an SDE)"
            if isinstance(getattr(term, "control", None), diffrax.AbstractBrownianPath)
            else ""
        )
        + ". Use adjoint='checkpoint' for this term."
    )


class _SumField(eqx.Module):
    fields: tuple[Callable, ...]

    def __call__(self, t: Time, y: State, args: Args) -> State:
        outs = [field(t, y, args) for field in self.fields]
        return jax.tree_util.tree_map(lambda *x: sum(x[1:], x[0]), *outs)

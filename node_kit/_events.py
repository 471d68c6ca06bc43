"""Events: a solve that stops when a condition on the state fires (a ball reaching the
ground, a state crossing a level), with the time of the event differentiable.

[`node_kit.SolveSettings`][] takes a `diffrax.Event` as `event=` and forwards it to
diffrax, its condition functions checked. With an event, the LAST output of a solve is
where the solve stopped: `sol.ts[-1]` is the time of the event if it fired (found by the
event's root finder, and differentiable through it), else `ts[-1]`; `sol.ys[-1]` is the
state there. Output times in between that the solve did not reach hold `inf` (diffrax's
fill), and [`node_kit.event_fired`][] says whether it fired.
"""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import optimistix as optx
from jaxtyping import Array, Bool

from ._checks import type_name
from ._custom_types import CheckedTimes
from ._reversible import ReversibleAdjoint


def event_fired(sol: diffrax.Solution) -> Bool[Array, ""]:
    """Whether the solve stopped at its event (a scalar bool array; `False` without one).

    The time of the event is then `sol.ts[-1]` and the state there `sol.ys[-1]`.
    """
    return sol.result == diffrax.RESULTS.event_occurred


class _CheckedCondition(eqx.Module):
    """A condition function, its output checked where diffrax first traces it."""

    cond_fn: Callable

    def __call__(self, t, y, args, **kwargs: Any):
        out = self.cond_fn(t, y, args, **kwargs)
        ok = eqx.is_array_like(out) and jnp.shape(out) == ()
        if ok:
            dtype = jnp.result_type(out)
            ok = dtype == jnp.bool_ or jnp.issubdtype(dtype, jnp.floating)
        if not ok:
            got = (
                f"{jnp.result_type(out)}{tuple(jnp.shape(out))}"
                if eqx.is_array_like(out)
                else type_name(out)
            )
            raise ValueError(
                "an event's condition function cond_fn(t, y, args, **kwargs) must return a "
                "scalar: a bool (the solve stops on the step where it turns True) or a float "
                f"(it stops where it crosses zero); it returned {got}. Return e.g. y[0] for "
                "'y[0] reaches 0', or y[0] < 0 as a bool."
            )
        return out


def check_event(event: Any, adjoint: diffrax.AbstractAdjoint) -> diffrax.Event | None:
    """`event` with its condition functions checked: `None` or a `diffrax.Event` whose
    conditions are callables and whose root finder is an optimistix root finder, under an
    adjoint that differentiates through events (not backsolve, not the reversible one)."""
    if event is None:
        return None
    if not isinstance(event, diffrax.Event):
        extra = (
            " Wrap the condition: diffrax.Event(cond_fn, root_finder=optx.Newton(1e-8, 1e-8))."
            if callable(event)
            else ""
        )
        raise ValueError(f"`event` must be None or a diffrax.Event; got {type_name(event)}.{extra}")
    conditions = jtu.tree_leaves(event.cond_fn, is_leaf=callable)
    bad = [c for c in conditions if not callable(c)]
    if not conditions or bad:
        raise ValueError(
            "`event.cond_fn` must be a function cond_fn(t, y, args, **kwargs) or a PyTree of "
            f"them; got {type_name(bad[0]) if bad else 'nothing'}."
        )
    if event.root_finder is not None and not isinstance(event.root_finder, optx.AbstractRootFinder):
        raise ValueError(
            "`event.root_finder` must be None (the event time is the end of the step) or an "
            f"optimistix root finder such as optx.Newton(1e-8, 1e-8); got "
            f"{type_name(event.root_finder)}."
        )
    if isinstance(adjoint, diffrax.BacksolveAdjoint | ReversibleAdjoint):
        raise ValueError(
            f"adjoint {type(adjoint).__name__} cannot differentiate a solve with an `event` "
            "(it cannot follow the solve to the time it stopped); use adjoint='checkpoint' or "
            "'direct', which differentiate through the event time."
        )
    checked = jtu.tree_map(_CheckedCondition, event.cond_fn, is_leaf=callable)
    return diffrax.Event(checked, event.root_finder, event.direction)


def unreached(sol: diffrax.Solution, ys: Array) -> Bool[Array, "..."]:
    """The entries of `ys` at output times a solve stopped by its event did not reach
    (their time is `inf`, diffrax's fill), broadcast to `ys`' shape."""
    ts = jnp.asarray(sol.ts)
    after = jnp.isinf(ts) & event_fired(sol)
    return jnp.broadcast_to(jnp.reshape(after, after.shape + (1,) * (ys.ndim - 1)), ys.shape)


def save_at_with_event(ts: CheckedTimes) -> diffrax.SaveAt:
    """Save at `ts[:-1]` and at the end of the solve (the event time if it fired): two
    outputs for two times, else two sub-saves, joined by [`join_event_outputs`][]."""
    if ts.shape[0] <= 2:
        return diffrax.SaveAt(t0=ts.shape[0] == 2, t1=True)
    subs = [diffrax.SubSaveAt(ts=jnp.asarray(ts)[:-1]), diffrax.SubSaveAt(t1=True)]
    return diffrax.SaveAt(subs=subs)


def join_event_outputs(sol: diffrax.Solution) -> diffrax.Solution:
    """A solution saved by two sub-saves as one: `ts` and `ys` at `ts[:-1]`, then the end."""
    if not isinstance(sol.ys, list | tuple) or not isinstance(sol.ts, list | tuple):
        return sol
    ts = jnp.concatenate(sol.ts)
    ys = jtu.tree_map(lambda *parts: jnp.concatenate(parts), *sol.ys)
    return eqx.tree_at(lambda s: (s.ts, s.ys), sol, (ts, ys))

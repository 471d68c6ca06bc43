"""Fixed-point solvers for DEQs: Anderson acceleration and Broyden, which optimistix
does not have, and plain (damped) iteration.

All three are `optimistix.AbstractFixedPointSolver`s, so `optimistix.fixed_point` runs
them with any of its adjoints. They work on the flattened state (one vector, however the
state is structured); Anderson and Broyden keep a history of `memory` vectors in
fixed-size buffers, so a solve compiles once whatever its length.

All stop when the residual `f(y) - y` is small at every entry,
`max |f(y) - y| / (atol + rtol |f(y)|) < 1`, as `optimistix.FixedPointIteration` does
with its default norm, and stop at once, reporting a divergence, when it is inf or NaN.
Their state keeps the state's dtype (`optimistix.FixedPointIteration` 0.1.0 keeps its
error in the default float dtype, which breaks a float32 solve with float64 enabled).
"""

import abc
from collections.abc import Callable
from typing import Generic, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, Int, Scalar

from ._checks import check_int, check_real


# As optimistix's solvers: the state `Y` and the auxiliary output `Aux` of `fn(y, args)`.
Y = TypeVar("Y")
Aux = TypeVar("Aux")


def _residual_error(y_flat, fy_flat, rtol: float, atol: float) -> Scalar:
    """`max |f(y) - y| / (atol + rtol |f(y)|)`: below 1 means converged. NaN when the
    residual is not finite (a divergence); +inf when both tolerances are 0."""
    residual = jnp.abs(fy_flat - y_flat)
    scale = atol + rtol * jnp.abs(fy_flat)
    error = jnp.max(jnp.where(residual == 0, 0.0, residual / scale))
    return jnp.where(jnp.all(jnp.isfinite(residual)), error, jnp.nan)


def _check_tolerances(solver) -> None:
    check_real("rtol", solver.rtol, non_negative=True, fix="E.g. rtol=1e-5.")
    check_real("atol", solver.atol, non_negative=True, fix="E.g. atol=1e-6.")


def _check_tolerances_and_memory(solver) -> None:
    _check_tolerances(solver)
    check_int("memory", solver.memory, fix="E.g. memory=5 (past iterates kept).")


_History = TypeVar("_History")


class _SolverState(eqx.Module, Generic[_History]):
    """What each solver carries between steps: its own `history` (None, past iterates,
    rank-one updates), the step count and the last residual error."""

    history: _History
    count: Int[Array, ""]
    error: Scalar


class _AbstractFlatSolver(optx.AbstractFixedPointSolver[Y, Aux, _SolverState[_History]]):
    """The frame the three solvers share: evaluate `f` once a step on the flattened state,
    let the solver propose the next iterate from its history, and stop on the residual
    error (below 1 converged; NaN a divergence, reported at once)."""

    rtol: eqx.AbstractVar[float]
    atol: eqx.AbstractVar[float]
    norm: eqx.AbstractVar[Callable]

    @abc.abstractmethod
    def _start(self, y_flat: Float[Array, " size"]) -> _History:
        """The empty history for a state like `y_flat`."""

    @abc.abstractmethod
    def _advance(
        self,
        y_flat: Float[Array, " size"],
        fy_flat: Float[Array, " size"],
        history: _History,
        count: Int[Array, ""],
    ) -> tuple[Float[Array, " size"], _History]:
        """The next iterate and history, from `y`, `f(y)` and the history of `count` steps."""

    # The parameters' types are optx.AbstractFixedPointSolver's (pyright reads them there).
    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del fn, args, options, f_struct, aux_struct, tags
        y_flat, _ = ravel_pytree(y)
        return _SolverState(self._start(y_flat), jnp.array(0), jnp.array(jnp.inf, y_flat.dtype))

    def step(self, fn, y, args, options, state, tags):
        del options, tags
        y_flat, unravel = ravel_pytree(y)
        fy, aux = fn(y, args)
        fy_flat = ravel_pytree(fy)[0].astype(y_flat.dtype)
        new_y, history = self._advance(y_flat, fy_flat, state.history, state.count)
        error = _residual_error(y_flat, fy_flat, self.rtol, self.atol)
        return unravel(new_y), _SolverState(history, state.count + 1, error), aux

    def terminate(self, fn, y, args, options, state, tags):
        error = state.error
        finite = ~jnp.isnan(error)
        result = optx.RESULTS.where(
            finite, optx.RESULTS.successful, optx.RESULTS.nonlinear_divergence
        )
        return (error < 1) | ~finite, result

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return y, aux, {}


class FixedPointIteration(_AbstractFlatSolver[Y, Aux, None]):
    """Plain fixed-point iteration `y <- (1 - damping) f(y) + damping y`.

    **Arguments:**

    - `rtol`, `atol`: stop when `max |f(y) - y| / (atol + rtol |f(y)|) < 1`; with both
        0 it runs exactly `max_steps` iterations (then pass `throw=False`).
    - `damping`: the weight kept on the old iterate, in `[0, 1)`.
    """

    rtol: float
    atol: float
    damping: float = 0.0
    norm: Callable = optx.max_norm

    def __check_init__(self):
        _check_tolerances(self)
        check_real(
            "damping",
            self.damping,
            non_negative=True,
            upper=0.999,
            fix="E.g. damping=0.0 (none) or 0.5.",
        )

    def _start(self, y_flat):
        return None

    def _advance(self, y_flat, fy_flat, history, count):
        return (1 - self.damping) * fy_flat + self.damping * y_flat, None


class _AndersonHistory(eqx.Module):
    iterates: Float[Array, "memory size"]
    values: Float[Array, "memory size"]


class AndersonAcceleration(_AbstractFlatSolver[Y, Aux, _AndersonHistory]):
    """Anderson acceleration (type II) for `y = f(y)`.

    Each step mixes the last `memory` values `f(y_i)` with weights `alpha` that minimise
    `|sum_i alpha_i (f(y_i) - y_i)|` subject to `sum_i alpha_i = 1` (a small
    `(memory + 1)`-square linear system, regularised by `regularisation` times the mean
    squared residual), then steps to
    `y = mixing * sum alpha_i f(y_i) + (1 - mixing) * sum alpha_i y_i`.

    **Arguments:**

    - `rtol`, `atol`: stop when `max |f(y) - y| / (atol + rtol |f(y)|) < 1`.
    - `memory`: how many past iterates are mixed (5 is typical).
    - `mixing`: the weight `beta` of the values against the iterates, in `(0, 1]`.
    - `regularisation`: Tikhonov weight of the mixing problem, relative to its scale.
    """

    rtol: float
    atol: float
    memory: int = eqx.field(static=True, default=5)
    mixing: float = 1.0
    regularisation: float = 1e-8
    norm: Callable = optx.max_norm

    def __check_init__(self):
        _check_tolerances_and_memory(self)
        check_real(
            "mixing",
            self.mixing,
            positive=True,
            upper=1.0,
            fix="E.g. mixing=1.0 (no damping) or 0.5.",
        )
        check_real(
            "regularisation",
            self.regularisation,
            non_negative=True,
            fix="E.g. regularisation=1e-8.",
        )

    def _start(self, y_flat):
        buffer = jnp.zeros((self.memory, y_flat.size), y_flat.dtype)
        return _AndersonHistory(buffer, buffer)

    def _advance(self, y_flat, fy_flat, history, count):
        slot = count % self.memory
        iterates = history.iterates.at[slot].set(y_flat)
        values = history.values.at[slot].set(fy_flat)
        valid = jnp.arange(self.memory) < jnp.minimum(count + 1, self.memory)
        alpha = self._weights(values - iterates, valid)
        mixed = self.mixing * (alpha @ values) + (1 - self.mixing) * (alpha @ iterates)
        return mixed, _AndersonHistory(iterates, values)

    def _weights(self, residuals, valid: Bool[Array, " memory"]) -> Float[Array, " memory"]:
        """The constrained least-squares weights over the valid rows (zero elsewhere)."""
        m = self.memory
        gram = residuals @ residuals.T
        pair = valid[:, None] & valid[None, :]
        scale = jnp.sum(jnp.where(valid, jnp.diag(gram), 0)) / jnp.sum(valid)
        ridge = self.regularisation * scale + jnp.finfo(residuals.dtype).tiny
        gram = jnp.where(pair, gram, 0) + jnp.diag(jnp.where(valid, ridge, 1.0))
        ones = valid.astype(residuals.dtype)
        system = jnp.block(
            [[jnp.zeros((1, 1), residuals.dtype), ones[None, :]], [ones[:, None], gram]]
        )
        rhs = jnp.zeros(m + 1, residuals.dtype).at[0].set(1.0)
        return jnp.linalg.solve(system, rhs)[1:]


class _BroydenHistory(eqx.Module):
    previous_y: Float[Array, " size"]
    previous_g: Float[Array, " size"]
    us: Float[Array, "memory size"]
    vs: Float[Array, "memory size"]


class Broyden(_AbstractFlatSolver[Y, Aux, _BroydenHistory]):
    """Limited-memory ("good") Broyden's method on `g(y) = f(y) - y`, as in deep
    equilibrium models (Bai et al. 2019).

    The inverse Jacobian of `g` starts at `-I` (exact when `f` is constant) and gets a
    rank-one update per step, `J^-1 += (s - J^-1 dg) (s^T J^-1) / (s^T J^-1 dg)`; the
    last `memory` updates are kept (the oldest is overwritten). The step is the
    quasi-Newton step `y -= J^-1 g(y)`.

    **Arguments:**

    - `rtol`, `atol`: stop when `max |f(y) - y| / (atol + rtol |f(y)|) < 1`.
    - `memory`: how many rank-one updates are kept.
    """

    rtol: float
    atol: float
    memory: int = eqx.field(static=True, default=20)
    norm: Callable = optx.max_norm

    def __check_init__(self):
        _check_tolerances_and_memory(self)

    def _start(self, y_flat):
        buffer = jnp.zeros((self.memory, y_flat.size), y_flat.dtype)
        return _BroydenHistory(jnp.zeros_like(y_flat), jnp.zeros_like(y_flat), buffer, buffer)

    def _advance(self, y_flat, fy_flat, history, count):
        g = fy_flat - y_flat
        us, vs = jax.lax.cond(
            count > 0,
            self._update,
            lambda *a: (a[0], a[1]),
            history.us,
            history.vs,
            y_flat - history.previous_y,
            g - history.previous_g,
            count,
        )
        return y_flat - _apply_inverse(us, vs, g), _BroydenHistory(y_flat, g, us, vs)

    def _update(self, us, vs, s, dg, count):
        """Add the rank-one update of this step in the oldest slot."""
        inverse_dg = _apply_inverse(us, vs, dg)
        s_inverse = -s + (us @ s) @ vs
        denominator = jnp.dot(s_inverse, dg)
        safe = jnp.abs(denominator) > jnp.finfo(s.dtype).tiny
        u = jnp.where(safe, (s - inverse_dg) / jnp.where(safe, denominator, 1.0), 0.0)
        slot = (count - 1) % self.memory
        return us.at[slot].set(u), vs.at[slot].set(jnp.where(safe, s_inverse, 0.0))


def _apply_inverse(us, vs, x) -> Float[Array, " size"]:
    """`J^-1 x` for `J^-1 = -I + sum_i u_i v_i^T` (`us`, `vs` rows; zero rows unused)."""
    return -x + (vs @ x) @ us

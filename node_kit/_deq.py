"""DEQ: a deep equilibrium layer, `z* = f(z*, x)`, found by a fixed-point solver.

The forward pass is an `optimistix.fixed_point` solve; the backward pass is one of
three, the same contrast as the ODE adjoints:

- `"implicit"`: the implicit function theorem. One linear solve
    `(I - df/dz)^T u = g` at the solution (lineax, GMRES by default); memory does not
    grow with the forward iterations.
- `"unrolled"`: backpropagation through every forward iteration, each one stored
    (`optimistix.RecursiveCheckpointAdjoint` with a checkpoint per step): the exact
    gradient of the K iterations, memory O(K).
- `"phantom"`: the Jacobian-free one-step ("phantom") gradient: the solve is not
    differentiated, and `phantom_steps` damped steps `z <- (1 - a) z + a f(z, x)` from
    the solution are (Fung et al. 2022, Geng et al. 2021). Cheap, approximate.
"""

from collections.abc import Callable
from typing import Any, TypeAlias

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import optimistix as optx
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PyTree

from ._checks import check_bool, check_callable, check_choice, check_int, check_real, type_name
from ._fixed_point import AndersonAcceleration
from ._resources import check_fits, state_bytes


BACKWARD_MODES = ("implicit", "unrolled", "phantom")
"""The backward passes of [`node_kit.DEQ`][]."""

_SOLVER_TYPES = (
    optx.AbstractFixedPointSolver,
    optx.AbstractRootFinder,
    optx.AbstractLeastSquaresSolver,
    optx.AbstractMinimiser,
)
_Solver: TypeAlias = (
    optx.AbstractFixedPointSolver
    | optx.AbstractRootFinder
    | optx.AbstractLeastSquaresSolver
    | optx.AbstractMinimiser
)


class DEQSolution(eqx.Module):
    """What a [`node_kit.DEQ`][] solve found.

    - `value`: the equilibrium `z*` (after the phantom steps for `backward="phantom"`).
    - `residual`: `|f(z*, x) - z*|_2` at the solver's last iterate.
    - `relative_residual`: `residual / |f(z*, x)|_2`.
    - `num_steps`: forward iterations taken (each one evaluation of `f`).
    - `result`: an `optimistix.RESULTS` (successful, max steps reached, divergence).
    """

    value: PyTree[Array]
    residual: Float[Array, ""]
    relative_residual: Float[Array, ""]
    num_steps: Int[Array, ""]
    result: optx.RESULTS

    @property
    def converged(self) -> Bool[Array, ""]:
        """`True` where the forward solve met its tolerances."""
        return self.result == optx.RESULTS.successful


class DEQ(eqx.Module):
    """A deep equilibrium layer: `deq(x)` is the `z*` with `z* = f(z*, x)`.

    **Arguments:**

    - `f`: the layer, a callable (usually an `eqx.Module`) `f(z, x) -> z` for ONE sample;
        its output has the state's shape.
    - `state_shape`: the shape of `z` for one sample (an int for a vector).
    - `solver`: any optimistix fixed-point solver or root finder, e.g.
        [`node_kit.AndersonAcceleration`][] (default, `rtol=1e-5, atol=1e-6`),
        [`node_kit.Broyden`][], [`node_kit.FixedPointIteration`][], `optimistix.Newton`.
    - `backward`: `"implicit"` (default), `"unrolled"` or `"phantom"`, see the module.
    - `max_steps`: the most forward iterations. `"unrolled"` stores this many.
    - `linear_solver`: the lineax solver of the implicit backward pass. Default
        `lineax.GMRES(restart=20)` with tolerances for the state's dtype: `rtol=1e-4,
        atol=1e-7` in float32 (tighter ones break down in float32 precision) and
        `rtol=1e-8, atol=1e-10` in float64.
    - `phantom_steps`, `phantom_damping`: the phantom gradient's steps and damping
        `a` in `(0, 1]` (1 step at `a = 1` is the Jacobian-free gradient of `f(z*, x)`).
    - `throw`: if `True` (default) a solve that does not converge raises an
        `equinox.EquinoxRuntimeError` saying so; if `False` it returns, and
        [`node_kit.DEQ.solve`][]'s `result` says what happened.

    !!! warning

        The implicit gradient is the gradient of the exact equilibrium: it is only as
        good as the forward solve's tolerances. The phantom gradient is an
        approximation (a descent direction when `f` is contractive, not the gradient).
    """

    f: Callable
    solver: _Solver
    linear_solver: lx.AbstractLinearSolver | None
    state_shape: tuple[int, ...] = eqx.field(static=True)
    backward: str = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    phantom_steps: int = eqx.field(static=True)
    phantom_damping: float = eqx.field(static=True)
    throw: bool = eqx.field(static=True)

    def __init__(
        self,
        f: Callable,
        state_shape: int | tuple[int, ...],
        *,
        solver: _Solver | None = None,
        backward: str = "implicit",
        max_steps: int = 100,
        linear_solver: lx.AbstractLinearSolver | None = None,
        phantom_steps: int = 1,
        phantom_damping: float = 1.0,
        throw: bool = True,
    ):
        self.f = check_callable("f", f, expected="a callable f(z, x) -> z such as an eqx.Module")
        self.state_shape = _check_shape(state_shape)
        self.solver = AndersonAcceleration(rtol=1e-5, atol=1e-6) if solver is None else solver
        self.linear_solver = linear_solver
        self.backward = check_choice("backward", backward, BACKWARD_MODES, what="DEQ")
        self.max_steps = check_int("max_steps", max_steps, fix="E.g. max_steps=100.")
        self.phantom_steps = check_int("phantom_steps", phantom_steps, fix="E.g. 1.")
        self.phantom_damping = check_real(
            "phantom_damping",
            phantom_damping,
            positive=True,
            upper=1.0,
            fix="E.g. 1.0 (no damping) or 0.5.",
        )
        self.throw = check_bool("throw", throw)

    def __check_init__(self):
        if not isinstance(self.solver, _SOLVER_TYPES):
            raise ValueError(
                f"`solver` must be an optimistix fixed-point solver or root finder (e.g. "
                f"nk.AndersonAcceleration(rtol=1e-5, atol=1e-6), nk.Broyden(...), "
                f"nk.FixedPointIteration(...)); got {type_name(self.solver)}."
            )
        if not isinstance(self.linear_solver, (lx.AbstractLinearSolver, type(None))):
            raise ValueError(
                f"`linear_solver` must be a lineax solver (e.g. lineax.GMRES(rtol=1e-6, "
                f"atol=1e-8)); got {type_name(self.linear_solver)}."
            )

    def replace(self, **changes: Any) -> "DEQ":
        """A copy with some constructor arguments changed (checked again), e.g.
        `deq.replace(backward="unrolled")`."""
        names = tuple(
            "f state_shape solver backward max_steps linear_solver phantom_steps "
            "phantom_damping throw".split()
        )
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ValueError(
                f"`DEQ.replace` got unknown arguments {unknown}; expected some "
                f"of {', '.join(names)}."
            )
        current = {name: getattr(self, name) for name in names}
        f, shape = (
            changes.pop("f", current.pop("f")),
            changes.pop("state_shape", current.pop("state_shape")),
        )
        return DEQ(f, shape, **{**current, **changes})

    def __call__(
        self, x: PyTree[Array], z0: Float[ArrayLike, "..."] | None = None
    ) -> Float[Array, "..."]:
        """The equilibrium `z*` for one input `x` (from `z0`, default zeros)."""
        return self.solve(x, z0).value

    def solve(self, x: PyTree[Array], z0: Float[ArrayLike, "..."] | None = None) -> DEQSolution:
        """Like `__call__` but returns the [`node_kit.DEQSolution`][] (residual, steps)."""
        z0 = self.initial_state(x, z0, batch=None)
        return self._solve(_Layer(self.f), x, z0)

    def batched(
        self, xs: PyTree[Array], z0s: Float[ArrayLike, "batch ..."] | None = None
    ) -> Float[Array, "batch ..."]:
        """Solve a batch as ONE fixed-point problem whose state is the whole batch.

        One solve (the iterations stop when every sample has converged), as
        [`node_kit.NeuralODE.batched`][]; `jax.vmap(deq)` instead runs one solve per
        sample. **Returns:** `z*` for each sample, shape `(batch, *state_shape)`.
        """
        return self.solve_batched(xs, z0s).value

    def solve_batched(
        self, xs: PyTree[Array], z0s: Float[ArrayLike, "batch ..."] | None = None
    ) -> DEQSolution:
        """Like [`node_kit.DEQ.batched`][] but returns the [`node_kit.DEQSolution`][]."""
        batch = _batch_size(xs)
        z0s = self.initial_state(xs, z0s, batch=batch)
        return self._solve(_Layer(self.f, batched=True), xs, z0s)

    def initial_state(
        self, x: PyTree[Array], z0: Float[ArrayLike, "..."] | None, *, batch: int | None
    ) -> Float[Array, "..."]:
        """`z0` checked against the state's shape, or zeros in `x`'s float dtype."""
        shape = self.state_shape if batch is None else (batch, *self.state_shape)
        if z0 is None:
            return jnp.zeros(shape, _float_dtype(x))
        z0 = jnp.asarray(z0)
        if z0.shape != shape:
            what = "z0s" if batch is not None else "z0"
            raise ValueError(
                f"`{what}` must have shape {shape} (the state's shape "
                f"{self.state_shape}{'' if batch is None else ' per sample'}); got {z0.shape}."
            )
        return z0

    def residual_history(
        self,
        x: PyTree[Array],
        z0: Float[ArrayLike, "..."] | None = None,
        *,
        batched: bool = False,
        steps: int | None = None,
    ) -> Float[Array, " steps"]:
        """The relative residual `|f(z_k) - z_k| / |f(z_k)|` at each of `steps` solver
        iterations (default `max_steps`), without stopping at convergence: for plots.

        **Returns:** an array `(steps,)`, entry k for the k-th iterate (`z_0 = z0`).
        """
        steps = self.max_steps if steps is None else check_int("steps", steps)
        if not isinstance(self.solver, optx.AbstractFixedPointSolver):
            raise ValueError(
                f"`residual_history` steps a fixed-point solver; this DEQ's `solver` is a "
                f"{type_name(self.solver)}. Use nk.AndersonAcceleration, nk.Broyden or "
                "nk.FixedPointIteration."
            )
        layer = _Layer(self.f, batched=batched)
        z0 = self.initial_state(x, z0, batch=_batch_size(x) if batched else None)
        args = (layer, x)
        struct = jax.eval_shape(lambda: z0)
        state = self.solver.init(_with_aux, z0, args, {}, struct, None, frozenset())

        def body(carry: tuple, _: None) -> tuple[tuple, Float[Array, ""]]:
            z, state = carry
            new_z, state, _ = self.solver.step(_with_aux, z, args, {}, state, frozenset())
            return (new_z, state), _relative_residual(layer, z, x)

        _, history = jax.lax.scan(body, (z0, state), None, length=steps)
        return history

    def _solve(self, layer: "_Layer", x, z0) -> DEQSolution:
        _check_output_shape(layer, x, z0)
        if self.backward == "phantom":
            sol = self._fixed_point(_stop_gradient((layer, x)), z0)
            value = jax.lax.stop_gradient(sol.value)
            for _ in range(self.phantom_steps):
                a = self.phantom_damping
                value = layer(value, x) if a == 1.0 else (1 - a) * value + a * layer(value, x)
        else:
            sol = self._fixed_point((layer, x), z0)
            value = sol.value
        return self._report(layer, x, sol, value)

    def _fixed_point(self, args, z0) -> optx.Solution:
        if self.backward == "unrolled":
            check_fits(
                self.max_steps * state_bytes(z0),
                what=f"the unrolled backward pass, which stores each of max_steps={self.max_steps} "
                f"forward iterations of this state ({state_bytes(z0)} bytes),",
                lower="Lower `max_steps` to what the solve needs, or use backward='implicit'.",
            )
            adjoint = optx.RecursiveCheckpointAdjoint(checkpoints=self.max_steps)
        else:
            adjoint = optx.ImplicitAdjoint(linear_solver=self._linear_solver(z0.dtype))
        return optx.fixed_point(
            _apply, self.solver, z0, args, max_steps=self.max_steps, adjoint=adjoint, throw=False
        )

    def _linear_solver(self, dtype) -> lx.AbstractLinearSolver:
        if self.linear_solver is not None:
            return self.linear_solver
        if jnp.finfo(dtype).bits >= 64:
            return lx.GMRES(rtol=1e-8, atol=1e-10, restart=20)
        return lx.GMRES(rtol=1e-4, atol=1e-7, restart=20)

    def _report(self, layer: "_Layer", x, sol: optx.Solution, value) -> DEQSolution:
        z = jax.lax.stop_gradient(sol.value)
        fz = layer(z, *_stop_gradient((x,)))
        fz = jax.lax.stop_gradient(fz)
        residual = jnp.linalg.norm((fz - z).ravel())
        relative = residual / jnp.maximum(jnp.linalg.norm(fz.ravel()), jnp.finfo(z.dtype).tiny)
        result = optx.RESULTS.where(
            jnp.isfinite(residual), sol.result, optx.RESULTS.nonlinear_divergence
        )
        if self.throw:
            value = eqx.error_if(value, ~jnp.isfinite(residual), _DIVERGED_MESSAGE)
            value = eqx.error_if(
                value, result != optx.RESULTS.successful, _not_converged_message(self)
            )
        return DEQSolution(value, residual, relative, sol.stats["num_steps"], result)


class _Layer(eqx.Module):
    """`f(z, x)`, or `vmap(f)` over a leading batch axis of both."""

    f: Callable
    batched: bool = eqx.field(static=True, default=False)

    def __call__(self, z, x):
        return jax.vmap(self.f)(z, x) if self.batched else self.f(z, x)


def _stop_gradient(tree):
    """`tree` with the gradient stopped at its arrays (other leaves kept)."""
    return jax.tree_util.tree_map(
        lambda a: jax.lax.stop_gradient(a) if eqx.is_array(a) else a, tree
    )


def _apply(z, args):
    layer, x = args
    return layer(z, x)


def _with_aux(z, args):
    return _apply(z, args), None


def _relative_residual(layer, z, x):
    fz = layer(z, x)
    tiny = jnp.finfo(z.dtype).tiny
    return jnp.linalg.norm((fz - z).ravel()) / jnp.maximum(jnp.linalg.norm(fz.ravel()), tiny)


def _check_shape(state_shape) -> tuple[int, ...]:
    shape = (state_shape,) if isinstance(state_shape, int) else state_shape
    if not (
        isinstance(shape, tuple)
        and shape
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        raise ValueError(
            f"`state_shape` must be a positive int or a tuple of positive ints (the shape "
            f"of z for one sample, e.g. 64 or (8, 8)); got {state_shape!r}."
        )
    return shape


def _check_output_shape(layer, x, z0) -> None:
    try:
        out = jax.eval_shape(layer, z0, x)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`f(z, x)` failed for z of the state's shape {z0.shape}: {error} (check "
            "`state_shape` against f's sizes, and x's shape)."
        ) from error
    if getattr(out, "shape", None) != z0.shape:
        shown = getattr(out, "shape", type_name(out))
        raise ValueError(
            f"`f(z, x)` must return an array of the state's shape {z0.shape}; got {shown}. "
            "A DEQ's layer maps the state to a new state of the same shape (check "
            "`state_shape` and f's output size)."
        )


def _batch_size(xs) -> int:
    leaves = jax.tree_util.tree_leaves(xs)
    if not leaves or getattr(leaves[0], "ndim", 0) == 0:
        raise ValueError(
            f"`xs` must hold arrays with a leading batch axis; got {type_name(xs)}. For one "
            "sample call the DEQ itself."
        )
    return leaves[0].shape[0]


def _float_dtype(x):
    dtypes = [jnp.result_type(leaf) for leaf in jax.tree_util.tree_leaves(x)]
    floats = [d for d in dtypes if jnp.issubdtype(d, jnp.floating)]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


_DIVERGED_MESSAGE = (
    "DEQ forward solve diverged: the residual f(z, x) - z became inf or NaN. `f` is "
    "probably not a contraction in z; keep its Jacobian's norm below 1 (e.g. smaller "
    "weights on z, spectral normalisation, or damping) or try another `solver`."
)


def _not_converged_message(deq: DEQ) -> str:
    return (
        f"DEQ forward solve did not converge in max_steps={deq.max_steps} iterations (the "
        f"solver's rtol/atol were not met). Increase `max_steps`, loosen the solver's "
        f"tolerances, use a faster solver (nk.AndersonAcceleration, nk.Broyden), make `f` "
        f"more contractive, or pass throw=False and check `DEQ.solve(...).result`."
    )

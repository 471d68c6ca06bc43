"""Estimators of the trace of a vector field's Jacobian, for the CNF log-density.

An estimator is called on `fn: y -> f(y)` (the field at a fixed time) and returns
`(f(y), trace_estimate, vjp)`. `vjp` holds vector-Jacobian products whose squared
sum estimates `||∂f/∂y||_F^2`, so the RNODE Jacobian regulariser reuses the work
already done for the trace (see [`node_kit.cnf_loss`][]).
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, DTypeLike, Float, PRNGKeyArray

from ._checks import check_key


PROBE_NAMES = ("rademacher", "gaussian")
TRACE_ESTIMATOR_NAMES = ("exact", "hutchinson")

_Field = Callable[[Float[Array, " dim"]], Float[Array, " dim"]]
_Estimate = tuple[Float[Array, " dim"], Float[Array, ""], Float[Array, "*rows dim"]]


class AbstractTraceEstimator(eqx.Module):
    """Estimates `tr(∂f/∂y)` for a field `f` on ONE unbatched state `y` of shape `(dim,)`.

    A stochastic estimator draws its probe once per solve with
    [`node_kit.AbstractTraceEstimator.draw_probe`][]; the CNF passes that probe to every
    evaluation along the trajectory (through the solver's `args`), so the adaptive
    solver sees a smooth function of time.
    """

    @abc.abstractmethod
    def draw_probe(
        self, key: PRNGKeyArray | None, shape: tuple[int, ...], dtype: DTypeLike
    ) -> Float[Array, "*batch dim"] | None:
        """Draw the probe for one solve (`None` for a deterministic estimator).

        **Arguments:**

        - `key`: a `jax.random` key; may be `None` for a deterministic estimator.
        - `shape`: the state's shape, `(dim,)`, or `(batch, dim)` for one probe per sample.
        - `dtype`: the state's floating dtype.

        **Returns:**

        The probe, of shape `shape`, or `None`.
        """

    @abc.abstractmethod
    def __call__(
        self, fn: _Field, y: Float[Array, " dim"], probe: Float[Array, " dim"] | None
    ) -> _Estimate:
        """Evaluate `fn` at `y` and estimate the trace of its Jacobian.

        **Arguments:**

        - `fn`: the field at a fixed time, `y -> f(y)`, shape `(dim,) -> (dim,)`.
        - `y`: the state, shape `(dim,)`.
        - `probe`: from `draw_probe` (held fixed along a solve).

        **Returns:**

        `(f, trace, vjp)`: `f(y)` of shape `(dim,)`; the trace estimate, a scalar;
        and vector-Jacobian products `v^T ∂f/∂y` whose squared sum estimates the
        squared Frobenius norm of the Jacobian (shape `(dim,)` or `(dim, dim)`).
        """


class ExactTrace(AbstractTraceEstimator):
    """The exact trace from the full Jacobian: one vector-Jacobian product per dimension.

    Costs `dim` backward passes per evaluation (reverse mode, `jax.vjp` vmapped over
    the basis vectors, i.e. `jax.jacrev`), so it is the right choice for low
    dimension (2-D toys) and the reference for testing.
    The returned `vjp` is the full Jacobian, shape `(dim, dim)` (row `i` is
    `e_i^T ∂f/∂y`), so the Frobenius regulariser is exact too.
    """

    def draw_probe(
        self, key: PRNGKeyArray | None, shape: tuple[int, ...], dtype: DTypeLike
    ) -> None:
        """No probe: the exact trace is deterministic (`key` is ignored)."""
        del key, shape, dtype
        return None

    def __call__(
        self, fn: _Field, y: Float[Array, " dim"], probe: Float[Array, " dim"] | None = None
    ) -> _Estimate:
        """`(f(y), tr(∂f/∂y), ∂f/∂y)`, `probe` unused; see [`node_kit.AbstractTraceEstimator`][]."""
        del probe
        f, vjp_fn = jax.vjp(fn, y)
        (jacobian,) = jax.vmap(vjp_fn)(jnp.eye(f.shape[0], dtype=f.dtype))
        return f, jnp.trace(jacobian), jacobian


class HutchinsonTrace(AbstractTraceEstimator):
    """Hutchinson's unbiased estimate `ε^T (∂f/∂y) ε` from ONE vector-Jacobian product.

    The cost is one backward pass per evaluation, whatever the dimension (FFJORD,
    Grathwohl et al. 2019). `E[ε ε^T] = I` for both probes, so the estimate is
    unbiased; the Rademacher probe has the smaller variance.
    The returned `vjp` is `ε^T ∂f/∂y`, shape `(dim,)`, and `||ε^T ∂f/∂y||^2` is an
    unbiased estimate of `||∂f/∂y||_F^2` (the RNODE regulariser).

    !!! warning

        Draw the probe once per solve and keep it fixed along the trajectory (the CNF
        does). A probe redrawn at each evaluation makes the dynamics a different
        function at every stage, and an adaptive solver then shrinks its steps until
        it hits `max_steps`.

    **Arguments:**

    - `probe`: `"rademacher"` (entries ±1, default) or `"gaussian"` (standard normal).
    """

    probe: str = eqx.field(static=True, default="rademacher")

    def __check_init__(self):
        if self.probe not in PROBE_NAMES:
            raise ValueError(
                f"unknown Hutchinson `probe` {self.probe!r}; expected one of "
                f"{', '.join(map(repr, PROBE_NAMES))}."
            )

    def draw_probe(
        self, key: PRNGKeyArray | None, shape: tuple[int, ...], dtype: DTypeLike
    ) -> Float[Array, "*batch dim"]:
        """A Rademacher or Gaussian probe of shape `shape`; `key` is required.

        A Rademacher probe is drawn from float32 uniforms whatever `dtype` and JAX's x64
        setting (`jax.random.rademacher` draws its uniforms in the default float, so with
        x64 on it gave other signs from the same key): a float64 check of a float32 run
        sees the same probe.
        """
        if key is None:
            raise ValueError(
                "HutchinsonTrace draws a random probe, so `key` is required; got "
                "key=None. Pass `key=jax.random.key(...)` (a fresh key per step)."
            )
        check_key("key", key)
        if self.probe == "rademacher":
            signs = jr.bernoulli(key, jnp.float32(0.5), shape)
            return (2 * signs.astype(jnp.int32) - 1).astype(dtype)
        return jr.normal(key, shape, dtype=dtype)

    def __call__(
        self, fn: _Field, y: Float[Array, " dim"], probe: Float[Array, " dim"] | None
    ) -> _Estimate:
        """`(f(y), ε^T J ε, ε^T J)`; see [`node_kit.AbstractTraceEstimator`][]."""
        if probe is None:
            raise ValueError(
                "HutchinsonTrace needs the probe drawn by `draw_probe(key, shape, dtype)`; "
                "got probe=None. Draw it once per solve and pass it to every call."
            )
        # The probe is a sample, not a parameter: no gradient flows into it (under
        # backsolve, diffrax would otherwise integrate a probe adjoint for nothing).
        probe = jax.lax.stop_gradient(probe)
        f, vjp_fn = jax.vjp(fn, y)
        (eps_jacobian,) = vjp_fn(probe.astype(f.dtype))
        return f, jnp.sum(eps_jacobian * probe), eps_jacobian


def trace_estimator_from_name(name: str, probe: str = "rademacher") -> AbstractTraceEstimator:
    """Map a trace estimator name from a command line or config to an estimator.

    **Arguments:**

    - `name`: `"exact"` ([`node_kit.ExactTrace`][]) or `"hutchinson"`
        ([`node_kit.HutchinsonTrace`][]).
    - `probe`: for `"hutchinson"`, `"rademacher"` or `"gaussian"`; ignored for `"exact"`.

    **Returns:**

    An [`node_kit.AbstractTraceEstimator`][].
    """
    if name == "exact":
        return ExactTrace()
    if name == "hutchinson":
        return HutchinsonTrace(probe)
    raise ValueError(
        f"unknown trace estimator {name!r}; expected one of "
        f"{', '.join(map(repr, TRACE_ESTIMATOR_NAMES))}."
    )

"""CNF: a continuous normalizing flow (FFJORD) on top of NeuralODE.

The flow maps data `x = z(0)` to the base `z(t1) ~ N(0, I)` along `dz/dt = f(t, z)`.
The log-density follows from the instantaneous change of variables,
`log p(x) = log N(z(t1); 0, I) + ∫_0^t1 tr(∂f/∂z) dt`, solved as one augmented state
`[z, ∫ tr, (∫ ||f||^2, ∫ ||∂f/∂z||_F^2)]`.

Sampling runs the flow backwards. Every solve goes through
[`node_kit.SolveSettings.solve`][] on the CNF's settings (same solver, controller, adjoint,
`max_steps` and failure checks as a [`node_kit.NeuralODE`][]), with times
`[0, t1]`; the backward direction solves the time-reversed field
`g(s, y) = -F(t1 - s, y)` forward in `s`, so `y(s = t1)` is the state at `t = 0`.
"""

from collections.abc import Callable
from typing import Any, TypeAlias

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import (
    as_array,
    check_bool,
    check_callable,
    check_int,
    check_key,
    check_optional_int,
    check_real,
    type_name,
)
from ._cnf_dynamics import CNFDynamics, standard_normal_log_prob, TimeReversed
from ._model import AbstractODEModel
from ._regularisers import REGULARISER_NAMES
from ._solve import saved_states, SolveSettings
from ._trace import AbstractTraceEstimator, ExactTrace
from ._vector_field import field_sizes


_Stats = dict[str, Array]

# One data point, and a batch of them (sample first).
Sample: TypeAlias = Float[Array, " data_size"]
Samples: TypeAlias = Float[Array, "batch data_size"]


class CNF(AbstractODEModel):
    """A continuous normalizing flow (FFJORD, Grathwohl et al. 2019) with a standard normal base.

    Data `x` at `t=0` flows along `dz/dt = f(t, z)` to `z(t1) ~ N(0, I)`. All methods
    are for ONE sample except the `*_batched` ones, which solve the whole batch as one
    ODE (shared step sizes, one probe per sample): the layout FFJORD trains with, and
    much cheaper than `jax.vmap` for `adjoint="backsolve"`.

    **Arguments:**

    - `vector_field`: any callable `f(t, z, args)` for one sample (`args` is `None`),
        e.g. [`node_kit.ConcatSquashField`][]. An [`node_kit.AbstractVectorField`][]
        declares its `data_size`; for any other callable the size is taken from the data.
    - `trace_estimator`: an [`node_kit.AbstractTraceEstimator`][]: `ExactTrace()`
        (default, for low dimension) or `HutchinsonTrace()`.
    - `t1`: the flow's end time, a positive float.
    - `data_size`: the data dimension, needed only to sample from a field that does not
        declare it (must agree with the field's if both are given).
    - `settings`: a [`node_kit.SolveSettings`][]; or its arguments as keywords
        (`solver=...`, `adjoint="backsolve"`, ...), as for [`node_kit.NeuralODE`][].

    !!! warning

        With `adjoint="backsolve"` the gradients of `log_prob` are approximate: the
        backward solve reconstructs the trajectory and the log-density integral by
        integrating in reverse, with its own truncation error. Use tight tolerances,
        or `"checkpoint"` for exact gradients of the computed solution.
    """

    vector_field: Callable
    settings: SolveSettings
    trace_estimator: AbstractTraceEstimator
    t1: float = eqx.field(static=True)
    data_size: int | None = eqx.field(static=True)

    def __init__(
        self,
        vector_field: Callable,
        *,
        trace_estimator: AbstractTraceEstimator = ExactTrace(),
        t1: float = 1.0,
        data_size: int | None = None,
        settings: SolveSettings | None = None,
        **solve_keywords: Any,
    ):
        self.data_size = _check_field(vector_field, data_size)
        _check_trace_estimator(trace_estimator)
        self.t1 = check_real(
            "t1", t1, positive=True, expected="a positive Python float", fix="E.g. t1=1.0."
        )
        self.trace_estimator = trace_estimator
        self.vector_field = vector_field
        self.settings = SolveSettings.of(settings, **solve_keywords)

    def with_trace_estimator(self, trace_estimator: AbstractTraceEstimator) -> "CNF":
        """The same flow with another trace estimator (e.g. `ExactTrace()` to evaluate)."""
        return CNF(
            self.vector_field,
            trace_estimator=trace_estimator,
            t1=self.t1,
            data_size=self.data_size,
            settings=self.settings,
        )

    def log_prob(self, x: Sample, *, key: PRNGKeyArray | None = None) -> Float[Array, ""]:
        """Log-density of one sample, by solving from the data to the base.

        **Arguments:**

        - `x`: one sample, shape `(data_size,)`, finite.
        - `key`: draws the Hutchinson probe (held fixed along the solve); unused by
            `ExactTrace` and may then be `None`.

        **Returns:**

        `log p(x)`, a scalar (unbiased, not exact, with `HutchinsonTrace`).
        """
        return self.log_prob_and_stats(x, key=key)[0]

    def log_prob_and_stats(
        self, x: Sample, *, key: PRNGKeyArray | None = None, regularise: bool = False
    ) -> tuple[Float[Array, ""], _Stats]:
        """Like [`node_kit.CNF.log_prob`][], with the solve's statistics.

        **Arguments:**

        - `x`, `key`: as for `log_prob`.
        - `regularise`: also integrate the RNODE regularisers along the solve (two
            extra state entries, which also enter the step-size control).

        **Returns:**

        `(log_prob, stats)`: `stats["num_steps"]` is the number of solver steps (the
        NFE is about the solver's stages times that, 6 for Tsit5); with `regularise`,
        `stats["kinetic_energy"]` is `∫ ||f||^2 dt` and `stats["jacobian_norm"]` is
        `∫ ||∂f/∂z||_F^2 dt` (exact with `ExactTrace`, estimated with Hutchinson), scalars.
        """
        x = self._check_data(x, batched=False)
        probe = self.trace_estimator.draw_probe(key, x.shape, x.dtype)
        return self._log_prob(x, probe, regularise=regularise, batched=False)

    def log_prob_batched(
        self, xs: Samples, *, key: PRNGKeyArray | None = None
    ) -> Float[Array, " batch"]:
        """Log-densities of a batch, solved as ONE ODE whose state is the whole batch.

        Each sample gets its own probe, held fixed along the solve; all samples share
        the step sizes. Matches `jax.vmap(cnf.log_prob)` up to the solver tolerance.

        **Arguments:**

        - `xs`: samples, shape `(batch, data_size)`, finite.
        - `key`: draws the Hutchinson probes; unused by `ExactTrace`.

        **Returns:**

        `log p(xs)`, shape `(batch,)`.
        """
        return self.log_prob_and_stats_batched(xs, key=key)[0]

    def log_prob_and_stats_batched(
        self, xs: Samples, *, key: PRNGKeyArray | None = None, regularise: bool = False
    ) -> tuple[Float[Array, " batch"], _Stats]:
        """Like [`node_kit.CNF.log_prob_batched`][], with the solve's statistics.

        **Returns:**

        `(log_prob, stats)` as for [`node_kit.CNF.log_prob_and_stats`][]; `log_prob`
        and the regulariser integrals have shape `(batch,)`, `num_steps` is a scalar
        (one solve for the batch).
        """
        xs = self._check_data(xs, batched=True)
        probes = self.trace_estimator.draw_probe(key, xs.shape, xs.dtype)
        return self._log_prob(xs, probes, regularise=regularise, batched=True)

    def transform(self, x: Float[Array, " data_size"]) -> Float[Array, " data_size"]:
        """Map one sample from the data to the base: `z(t1)` from `z(0) = x`."""
        x = self._check_data(x, batched=False)
        return self._solve(self.vector_field, x, None, reverse=False, batched=False, name="x")[0]

    def inverse(self, z: Float[Array, " data_size"]) -> Float[Array, " data_size"]:
        """Map one point from the base to the data: `z(0)` from `z(t1) = z`."""
        z = self._check_data(z, batched=False, name="z")
        return self._solve(self.vector_field, z, None, reverse=True, batched=False, name="z")[0]

    def sample(self, *, key: PRNGKeyArray) -> Float[Array, " data_size"]:
        """Draw one sample: `z ~ N(0, I)` solved backwards from `t1` to `0`.

        **Returns:**

        A sample, shape `(data_size,)`.
        """
        return self.inverse(self._base_sample(key, ()))

    def sample_batched(self, n: int, *, key: PRNGKeyArray) -> Float[Array, "n data_size"]:
        """Draw `n` samples, solved backwards as ONE ODE for the whole batch.

        **Returns:**

        Samples, shape `(n, data_size)`.
        """
        check_int("n", n)
        return self.inverse_batched(self._base_sample(key, (n,)))

    def sample_and_log_prob(
        self, *, key: PRNGKeyArray
    ) -> tuple[Float[Array, " data_size"], Float[Array, ""]]:
        """Draw one sample and its log-density from the same backward solve.

        `log p(x) = log N(z) - Δ`, where `Δ = -∫_0^t1 tr(∂f/∂z) dt` is accumulated by
        the backward solve; cheaper than `sample` followed by `log_prob`.

        **Returns:**

        `(x, log_prob)`: shape `(data_size,)` and a scalar.
        """
        z_key, probe_key = jr.split(check_key("key", key))
        z = self._base_sample(z_key, ())
        probe = self.trace_estimator.draw_probe(probe_key, z.shape, z.dtype)
        dynamics = self._dynamics(z.shape[-1], regularise=False)
        y0 = jnp.concatenate([z, jnp.zeros((1,), z.dtype)])
        y, _ = self._solve(dynamics, y0, probe, reverse=True, batched=False, name="z")
        return y[: z.shape[-1]], standard_normal_log_prob(z) - y[z.shape[-1]]

    def transform_and_log_det(
        self, x: Sample, *, key: PRNGKeyArray | None = None
    ) -> tuple[Sample, Float[Array, ""]]:
        """Map one sample to the base with the log-determinant of the map.

        **Arguments:**

        - `x`, `key`: as for `log_prob`.

        **Returns:**

        `(z, log_det)`: `z = z(t1)` of shape `(data_size,)` and `log_det = ∫_0^t1
        tr(∂f/∂z) dt` (estimated with `HutchinsonTrace`), so that `log p(x) = log N(z) +
        log_det`. A flow that feeds `z` into another flow adds the log-determinants.
        """
        x = self._check_data(x, batched=False)
        probe = self.trace_estimator.draw_probe(key, x.shape, x.dtype)
        z, log_det, _ = self._flow(x, probe, regularise=False, batched=False)
        return z, log_det

    def transform_and_log_det_batched(
        self, xs: Samples, *, key: PRNGKeyArray | None = None, regularise: bool = False
    ) -> tuple[Samples, Float[Array, " batch"], _Stats]:
        """[`node_kit.CNF.transform_and_log_det`][] for a batch solved as ONE ODE.

        **Returns:**

        `(zs, log_det, stats)`: shapes `(batch, data_size)` and `(batch,)`, and the
        statistics of [`node_kit.CNF.log_prob_and_stats_batched`][].
        """
        xs = self._check_data(xs, batched=True)
        probes = self.trace_estimator.draw_probe(key, xs.shape, xs.dtype)
        return self._flow(xs, probes, regularise=regularise, batched=True)

    def inverse_batched(self, zs: Samples) -> Samples:
        """Map a batch from the base to the data, solved backwards as ONE ODE."""
        zs = self._check_data(zs, batched=True, name="zs")
        return self._solve(self.vector_field, zs, None, reverse=True, batched=True, name="zs")[0]

    def _log_prob(self, x, probe, *, regularise: bool, batched: bool):
        z, log_det, stats = self._flow(x, probe, regularise=regularise, batched=batched)
        return standard_normal_log_prob(z) + log_det, stats

    def _flow(self, x, probe, *, regularise: bool, batched: bool):
        dynamics = self._dynamics(x.shape[-1], regularise=regularise)
        extra = 1 + (len(REGULARISER_NAMES) if regularise else 0)
        y0 = jnp.concatenate([x, jnp.zeros((*x.shape[:-1], extra), x.dtype)], axis=-1)
        y1, num_steps = self._solve(
            dynamics, y0, probe, reverse=False, batched=batched, name="xs" if batched else "x"
        )
        size = x.shape[-1]
        z, integrals = y1[..., :size], y1[..., size:]
        stats = {"num_steps": num_steps}
        if regularise:
            stats.update({n: integrals[..., 1 + i] for i, n in enumerate(REGULARISER_NAMES)})
        return z, integrals[..., 0], stats

    def _dynamics(self, size: int, *, regularise: bool) -> CNFDynamics:
        check_bool("regularise", regularise, why="it changes the ODE state")
        return CNFDynamics(self.vector_field, self.trace_estimator, size, regularise)

    def _solve(self, field, y0, args, *, reverse: bool, batched: bool, name: str):
        """One solve of `field` over `[0, t1]` (time-reversed if `reverse`).

        `y0`'s shape was checked by `_check_data`, and its values are checked by the
        settings' solve (NaN or inf named `name`, with the failure check: one run-time
        check); the times `[0, t1]` are concrete and valid by construction, so this goes
        straight to the settings' solve without NeuralODE's input checks.
        """
        if reverse:
            field = TimeReversed(field, self.t1)
        ts = np.array([0.0, self.t1], dtype=y0.dtype)
        sol = self.solve_field(
            field,
            ts,
            y0,
            args,
            batched=batched,
            args_axis=0 if batched and args is not None else None,
            y0_name=name,
            times_checked=True,
        )
        return saved_states(sol)[-1], sol.stats["num_steps"]

    def _base_sample(self, key: PRNGKeyArray, batch: tuple[int, ...]) -> Array:
        check_key("key", key)
        if self.data_size is None:
            raise ValueError(
                "sampling needs the data dimension, but the vector field does not declare "
                "one; pass `data_size=` to CNF (or use an AbstractVectorField)."
            )
        return jr.normal(key, (*batch, self.data_size), dtype=jnp.result_type(float))

    def _check_data(self, x, *, batched: bool, name: str | None = None) -> Array:
        name = name or ("xs" if batched else "x")
        x = as_array(name, x, "a floating-point array")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(
                f"`{name}` must be a floating-point array; got dtype {x.dtype}. "
                f"Convert it, e.g. `{name}.astype(jnp.float32)`."
            )
        expected = "(batch, data_size)" if batched else "(data_size,)"
        size_ok = self.data_size is None or x.shape[-1:] == (self.data_size,)
        if x.ndim != (2 if batched else 1) or not size_ok:
            hint = "Use the *_batched method or jax.vmap for a batch." if not batched else ""
            size = (
                ""
                if self.data_size is None
                else f" with data_size={self.data_size} (the vector field's data_size)"
            )
            raise ValueError(
                f"`{name}` must have shape {expected}{size}; got shape {tuple(x.shape)}. "
                f"{hint}".rstrip()
            )
        return x  # NaN or inf: checked by the solve, with its failure check


def _check_field(vector_field, data_size) -> int | None:
    check_callable(
        "vector_field",
        vector_field,
        expected="a callable f(t, z, args) such as nk.ConcatSquashField",
    )
    declared, state_size = field_sizes(vector_field)
    if declared is not None and state_size != declared:
        raise ValueError(
            "`vector_field` cannot be an AugmentedField (or any field whose state_size "
            f"{state_size} differs from its data_size {declared}): zero-padding the data makes "
            "the flow non-invertible on the data space, so the change of variables does not "
            "give a density. Pass the field directly (its data_size = the data's)."
        )
    data_size = check_optional_int("data_size", data_size)
    if declared is not None and data_size is not None and declared != data_size:
        raise ValueError(
            f"`data_size`={data_size} disagrees with the vector field's data_size={declared}; "
            "drop the argument (the field's size is used)."
        )
    return declared if declared is not None else data_size


def _check_trace_estimator(trace_estimator) -> None:
    if not isinstance(trace_estimator, AbstractTraceEstimator):
        raise ValueError(
            "`trace_estimator` must be an AbstractTraceEstimator such as ExactTrace() or "
            f"HutchinsonTrace(); got {type_name(trace_estimator)}. Map a name with "
            "trace_estimator_from_name('exact' | 'hutchinson')."
        )

"""ODE-RNN (Rubanova, Chen and Duvenaud 2019) and the GRU-Δt baseline, for ONE irregular series.

Both read a series `(ts, values, mask)` in the layout of `node_kit._irregular`: between
observations the hidden state follows a neural ODE (ODE-RNN) or stays put (GRU-Δt); at
each time point with at least one observed channel a `GRUCell` reads
`concat(values * mask, mask)` (GRU-Δt adds the time since the last observation). Masked-out
values are replaced by zeros with `jnp.where`, and a time point with nothing observed skips
the update and leaves the carried `(h, t_last)` alone, so it changes no later state.

**Zero gaps.** `NeuralODE` needs strictly increasing output times, but a series may repeat
a time (two events at once, or padding by repeating the last time). Each gap is therefore
solved on the normalised interval `s in [0, 1]` with the field
`dh/ds = gap * f(t_prev + s * gap, h)` ([`node_kit.GapField`][]): the output times are
always `[0, 1]`, and at `gap = 0` the field is exactly zero, so the solve is valid and
its gradients are those of the identity. `ODERNN.evolve` then returns `h` itself (a
`jnp.where`: Heun's Hermite output interpolation would round it in the last bit), so a zero
gap is exactly a no-op for every solver. There is no branch (`lax.cond` would run both sides
under `vmap` anyway). The cost: at least one solver step per gap, and a fixed `dt0` is a
fraction of each gap, not an absolute time.
"""

import abc
from collections.abc import Callable
from typing import Any, TypeAlias

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree, Real

from ._checks import check_ints, check_key
from ._custom_types import Scalar, SeriesMask, SeriesValues, Time, Times
from ._irregular import check_series
from ._masked_scan import scan_observations, ScanResult
from ._neural_ode import NeuralODE
from ._solve import saved_states, SolveSettings
from ._vector_field import AbstractVectorField, field_sizes, MLPField


# The hidden state of one series; the values of one time point and which are observed.
Hidden: TypeAlias = Float[Array, " hidden"]
Observation: TypeAlias = Float[Array, " data_size"]
Observed: TypeAlias = Bool[Array, " data_size"]


class GapField(AbstractVectorField):
    """A field rescaled to one gap: `dh/ds = gap * f(t_start + s * gap, h, args)` on `s in [0, 1]`.

    Solving it from `s = 0` to `1` with `args = (t_start, gap, field_args)` is solving
    `dh/dt = f(t, h)` from `t_start` to `t_start + gap`; a zero gap gives a zero field.
    The wrapped field's parameters stay in the term, so every adjoint differentiates them.

    **Arguments:**

    - `field`: a vector field `f(t, h, args)` for one sample.
    """

    field: Callable

    def __init__(self, field: Callable):
        self.field = field

    @property
    def data_size(self) -> int | None:
        """The wrapped field's data size, if it declares one."""
        return field_sizes(self.field)[0]

    @property
    def state_size(self) -> int | None:
        """The wrapped field's state size, if it declares one."""
        return field_sizes(self.field)[1]

    def __call__(self, s: Real[Array, ""], h: Hidden, args: PyTree) -> Hidden:
        t_start, gap, field_args = args  # always a tuple here, unlike other fields' `args`
        return gap * self.field(t_start + s * gap, h, field_args)


def _gru_input(x: Array, observed: Array, *extra: Array) -> Float[Array, " input"]:
    values = jnp.where(observed, x, jnp.zeros_like(x))
    return jnp.concatenate([values, observed.astype(x.dtype), *extra])


def _gru_and_readout(
    data_size: int,
    hidden_size: int,
    readout_size: int | None,
    *,
    extra_inputs: int,
    keys: tuple[PRNGKeyArray, PRNGKeyArray],
) -> tuple[int, int, eqx.nn.GRUCell, eqx.nn.Linear]:
    """The checked sizes, the GRU cell reading `concat(values * mask, mask, extra)` and the
    linear readout (`readout_size` defaults to `data_size`)."""
    readout_size = data_size if readout_size is None else readout_size
    data_size, hidden_size, readout_size = check_ints(
        1, data_size=data_size, hidden_size=hidden_size, readout_size=readout_size
    )
    cell_key, readout_key = keys
    cell = eqx.nn.GRUCell(2 * data_size + extra_inputs, hidden_size, key=cell_key)
    return data_size, hidden_size, cell, eqx.nn.Linear(hidden_size, readout_size, key=readout_key)


@eqx.filter_jit
def _compiled_scan(model, ts, values, observed):
    """`model.scan` as one compiled program.

    Under an outer `jit` it is inlined. Called eagerly, the scan compiles once per shape,
    and a check failing inside it (a failed solve) raises `eqx.EquinoxRuntimeError` as
    every other model does, not the `JaxRuntimeError` of an eager `lax.scan`.
    """
    # One dtype for the carried state: float32 data with float64 parameters (or back).
    dtype = jnp.result_type(values.dtype, model.readout.weight.dtype)
    h0 = jnp.zeros(model.hidden_size, dtype)
    return scan_observations(
        model.evolve_counted, model.update, h0, ts.astype(dtype), values.astype(dtype), observed
    )


class AbstractIrregularRNN(eqx.Module):
    """A recurrent model of ONE irregular series: `evolve` between points, a GRU `update` at each.

    Subclasses say how the state moves between time points (`evolve`) and how it reads an
    observation; the scan, the masking and the outputs are shared (see
    `scan_observations`). The state is zero until the first observation.
    """

    cell: eqx.AbstractVar[eqx.nn.GRUCell]
    readout: eqx.AbstractVar[eqx.nn.Linear]
    data_size: eqx.AbstractVar[int]
    hidden_size: eqx.AbstractVar[int]

    @abc.abstractmethod
    def evolve_counted(self, h: Hidden, t0: Time, t1: Time) -> tuple[Hidden, Int[Array, ""]]:
        """`(state at t1, solver steps taken)` from the state `h` at `t0`."""

    def evolve(self, h: Hidden, t0: Time, t1: Time) -> Hidden:
        """The state at `t1` from the state `h` at `t0` (`evolve_counted` without the count).

        **Arguments:**

        - `h`: the hidden state at `t0`, shape `(hidden_size,)`.
        - `t0`, `t1`: scalar times, in either order.

        **Returns:**

        The hidden state at `t1`, shape `(hidden_size,)`.
        """
        return self.evolve_counted(h, t0, t1)[0]

    @abc.abstractmethod
    def update(self, h: Hidden, x: Observation, observed: Observed, gap: Scalar) -> Hidden:
        """The state after reading the observation `x` (mask `observed`), `gap` after the last."""

    def _scan(self, ts: Times, values: SeriesValues, mask: SeriesMask):
        ts, values, observed = check_series(
            ts, values, mask, data_size=self.data_size, strict=False
        )
        return self.scan(ts, values, observed)

    def scan(
        self,
        ts: Float[Array, " times"],
        values: Float[Array, "times data_size"],
        observed: Bool[Array, "times data_size"],
    ) -> ScanResult:
        """The scan over a series already checked by `check_series` (no checks again).

        **Arguments:** `ts`, `values` and the bool mask `observed` as `check_series`
        returns them.

        **Returns:** `((h_last, t_last), (before, after), num_steps)`, see
        `scan_observations`.
        """
        return _compiled_scan(self, ts, values, observed)

    def states(
        self, ts: Times, values: SeriesValues, mask: SeriesMask
    ) -> tuple[Float[Array, "times hidden"], Float[Array, "times hidden"]]:
        """The hidden states at every time point, before and after reading its observations.

        **Arguments:**

        - `ts`: non-decreasing times `(n,)` (a repeated time is a zero gap).
        - `values`: `(n, data_size)`; entries where `mask` is 0 are ignored (NaN is fine).
        - `mask`: like `values`, bool or 0/1 (1 = observed).

        **Returns:**

        `(before, after)`, each `(n, hidden_size)`: the state of the last observation
        evolved to each time point, and the state after its update (equal to `before` at
        a point with nothing observed).
        """
        return self._scan(ts, values, mask)[1]

    def __call__(
        self, ts: Times, values: SeriesValues, mask: SeriesMask
    ) -> Float[Array, "times hidden"]:
        """The hidden state at every time point after its update (`states(...)[1]`)."""
        return self.states(ts, values, mask)[1]

    def predict(
        self, ts: Times, values: SeriesValues, mask: SeriesMask
    ) -> Float[Array, "times readout"]:
        """One-step-ahead readout: at each time point, from the observations before it.

        Arguments as for `states`. **Returns:** `readout` of the state before each
        time point's update, shape `(n, readout_size)`.
        """
        return jax.vmap(self.readout)(self.states(ts, values, mask)[0])

    def state_at(self, ts: Times, values: SeriesValues, mask: SeriesMask, t: Time) -> Hidden:
        """The hidden state at time `t` after reading the whole series.

        The state of the last observation evolved to `t` (forwards or backwards); `ts`,
        `values`, `mask` as for `states`. **Returns:** shape `(hidden_size,)`.
        """
        return self.state_at_counted(ts, values, mask, t)[0]

    def state_at_counted(
        self, ts: Times, values: SeriesValues, mask: SeriesMask, t: Time
    ) -> tuple[Hidden, Int[Array, ""]]:
        """`(state_at(ts, values, mask, t), solver steps)`: the steps of every gap and the last."""
        if isinstance(t, str) or jnp.ndim(t) != 0:
            raise ValueError(f"`t` must be one time, a real scalar; got {type(t).__name__} {t!r}.")
        (h, t_last), _, num_steps = self._scan(ts, values, mask)
        h, last_steps = self.evolve_counted(h, t_last, t)
        return h, num_steps + last_steps

    def states_counted(
        self, ts: Times, values: SeriesValues, mask: SeriesMask
    ) -> tuple[tuple[Float[Array, "times hidden"], Float[Array, "times hidden"]], Int[Array, ""]]:
        """`(states(ts, values, mask), solver steps)`: the work done, summed over all solves.

        One solve runs per time point: from the last observation to that point (a
        zero-gap solve before the first observation), so a point with nothing observed
        costs a solve whose result later points do not use. The number of function
        evaluations is about `num_steps` times the solver's stages (Tsit5: 6).
        `GRUDelta` takes no solver steps.
        """
        _, states, num_steps = self._scan(ts, values, mask)
        return states, num_steps


class ODERNN(AbstractIrregularRNN):
    """ODE-RNN: a neural ODE between observations and a GRU update at each of them.

    The hidden state is zero until the first observation. Between time points it follows
    `dh/dt = f(t, h)` (a [`node_kit.MLPField`][] with `tanh` output, solved per gap by a
    [`node_kit.NeuralODE`][] around a [`node_kit.GapField`][]); at a time point with any
    observed channel a `GRUCell` reads `concat(values * mask, mask)`. Change the solve
    with [`node_kit.ODERNN.with_settings`][].

    **Arguments:**

    - `data_size`: channels per time point.
    - `hidden_size`: size of the hidden state.
    - `width_size`, `depth`: the ODE field's MLP.
    - `readout_size`: outputs of the linear readout (default `data_size`).
    - `settings`: the [`node_kit.SolveSettings`][] of the per-gap `NeuralODE`, on
        `s in [0, 1]` (so a fixed `dt0=0.25` is four steps per gap); or its arguments as
        keywords (`solver=...`, `adjoint=...`).
    - `key`: a `jax.random` key, keyword-only.
    """

    data_size: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    ode: NeuralODE
    cell: eqx.nn.GRUCell
    readout: eqx.nn.Linear

    def __init__(
        self,
        data_size: int,
        hidden_size: int,
        width_size: int,
        depth: int,
        *,
        readout_size: int | None = None,
        settings: SolveSettings | None = None,
        key: PRNGKeyArray,
        **solve_keywords: Any,
    ):
        field_key, cell_key, readout_key = jr.split(check_key("key", key), 3)
        sizes = (data_size, hidden_size, readout_size)
        self.data_size, self.hidden_size, self.cell, self.readout = _gru_and_readout(
            *sizes, extra_inputs=0, keys=(cell_key, readout_key)
        )
        field = MLPField(
            self.hidden_size, width_size, depth, final_activation=jnp.tanh, key=field_key
        )
        self.ode = NeuralODE(GapField(field), SolveSettings.of(settings, **solve_keywords))

    def with_settings(self, settings: SolveSettings) -> "ODERNN":
        """The same model (parameters included) with other solve settings for its gaps."""
        return eqx.tree_at(lambda m: m.ode, self, self.ode.with_settings(settings))

    def evolve_counted(self, h: Hidden, t0: Time, t1: Time) -> tuple[Hidden, Int[Array, ""]]:
        """Follow the ODE from `(t0, h)` to `t1`; return the state and the solver steps.

        Either order of `t0` and `t1` works; `t1 == t0` returns `h` exactly (the solver
        still runs, on a zero field).
        """
        s = jnp.array([0.0, 1.0], dtype=h.dtype)
        t0 = jnp.asarray(t0, h.dtype)
        gap = jnp.asarray(t1, h.dtype) - t0
        sol = self.ode.solve(s, h, (t0, gap, None))
        # The field is exactly zero at gap 0, but some solvers' output interpolation
        # (Heun's Hermite polynomial) rounds y0 in the last bit; return h itself.
        return jnp.where(gap == 0, h, saved_states(sol)[-1]), sol.stats["num_steps"].astype(
            jnp.int32
        )

    def update(self, h: Hidden, x: Observation, observed: Observed, gap: Scalar) -> Hidden:
        """The GRU update `cell(concat(values * mask, mask), h)`."""
        del gap
        return self.cell(_gru_input(x, observed), h)


class GRUDelta(AbstractIrregularRNN):
    """The GRU-Δt baseline: a GRU reading `(values * mask, mask, Δt)` at each observation.

    `Δt` is the time since the last time point with an observation (0 at the first);
    between observations the state does not change.

    **Arguments:**

    - `data_size`: channels per time point.
    - `hidden_size`: size of the hidden state.
    - `readout_size`: outputs of the linear readout (default `data_size`).
    - `key`: a `jax.random` key, keyword-only.
    """

    cell: eqx.nn.GRUCell
    readout: eqx.nn.Linear
    data_size: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)

    def __init__(
        self,
        data_size: int,
        hidden_size: int,
        *,
        readout_size: int | None = None,
        key: PRNGKeyArray,
    ):
        keys = tuple(jr.split(check_key("key", key)))
        self.data_size, self.hidden_size, self.cell, self.readout = _gru_and_readout(
            data_size, hidden_size, readout_size, extra_inputs=1, keys=keys
        )

    def evolve_counted(self, h: Hidden, t0: Time, t1: Time) -> tuple[Hidden, Int[Array, ""]]:
        """The state does not change between observations: `(h, 0)`."""
        del t0, t1
        return h, jnp.array(0, jnp.int32)

    def update(self, h: Hidden, x: Observation, observed: Observed, gap: Scalar) -> Hidden:
        """The GRU update `cell(concat(values * mask, mask, [gap]), h)`."""
        return self.cell(_gru_input(x, observed, gap[None]), h)

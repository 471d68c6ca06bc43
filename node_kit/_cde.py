"""Neural controlled differential equations (Kidger, Morrill, Foster and Lyons 2020) for
irregularly sampled, partially observed series.

A series `(ts, values, mask)` (the layout of `node_kit._irregular`) becomes a continuous
control path `X(t)` through its points, and the hidden state solves

    z(t0) = ζ(X(t0)),    dz(t) = f(z(t)) dX(t),    output = ℓ(z(t_end))

with `f` a network returning a `(hidden_size, channels)` matrix ([`node_kit.CDEField`][]),
`ζ` and `ℓ` linear maps. The path's channels (`channels = 1 + data_size (+ data_size)`):

- **time**, `t` itself, so that the state moves with time even where nothing is observed;
- **the values**, missing entries (mask 0) interpolated over by diffrax's interpolation
  from the observed ones of the same channel, as the paper does: a channel's value before
  its first observation is that first observation (0 if it is never observed), and after
  its last one the last one (the path is flat there);
- **the observational intensity** (`intensity=True`): per channel the number of
  observations so far, so the model can tell an interpolated stretch from an observed one;
  divided by the number of points `len(ts)` (torchcde and the paper use the raw count),
  so that it runs from 0 to at most 1 like the time channel of a series on [0, 1] (raw
  counts over a few dozen points move an untrained hidden state, and a classifier's first
  logits, far).

The interpolation (`interpolation=`): `"cubic"`, Hermite cubic splines with backward
differences (`diffrax.backward_hermite_coefficients`, the default; continuously
differentiable where the series is fully observed, with a corner at a knot beside a
missing value); `"linear"`; or
`"rectilinear"` (time moves, then the data jumps: the path at a time depends on no later
observation, the online case of Morrill et al. 2021; it is parametrised by knot index
`0 .. 2n - 2`, observation `i` at `2i`). An adaptive controller is told the knots
(`diffrax.ClipStepSizeController(..., jump_ts=knots)`) so that no step passes over one:
a step wider than a segment can miss the data in it altogether. Fixed steps should divide
the spacing of the knots; `backsolve` converges at first order in the step size where the
path has corners (its backward solve crosses them), the other adjoints are exact for the
forward solve.

The equation goes to the settings' solve as a `diffrax.ControlTerm` for one series; a
batch that shares its times solves as ONE state ([`node_kit.NeuralCDE.batched`][]), each
series' path handed to the vmapped field as its `args`.
"""

from collections.abc import Callable
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Real

from ._checks import check_bool, check_callable, check_choice, check_ints, check_key
from ._custom_types import Args, SeriesMask, SeriesValues, Time, Times
from ._irregular import check_series
from ._model import AbstractODEModel
from ._reversible import ReversibleAdjoint
from ._solve import saved_states, SolveSettings


INTERPOLATIONS = ("cubic", "linear", "rectilinear")
"""The control paths a [`node_kit.NeuralCDE`][] builds from a series."""


class CDEField(eqx.Module):
    """The vector field of a neural CDE: an MLP from the hidden state to the
    `(hidden_size, channels)` matrix that multiplies `dX`.

    **Arguments:**

    - `hidden_size`, `channels`: the sizes of the state and of the control path.
    - `width_size`, `depth`: the MLP's hidden width and number of hidden layers.
    - `activation`: hidden nonlinearity (default softplus).
    - `final_activation`: default `jnp.tanh`, which bounds the field: the paper's choice,
        it keeps the solve stable as the model trains.
    - `key`: a `jax.random` key, keyword-only.
    """

    hidden_size: int = eqx.field(static=True)
    channels: int = eqx.field(static=True)
    mlp: eqx.nn.MLP

    def __init__(
        self,
        hidden_size: int,
        channels: int,
        width_size: int,
        depth: int,
        *,
        activation: Callable = jax.nn.softplus,
        final_activation: Callable = jnp.tanh,
        key: PRNGKeyArray,
    ):
        hidden_size, channels, width_size = check_ints(
            1, hidden_size=hidden_size, channels=channels, width_size=width_size
        )
        (depth,) = check_ints(0, depth=depth)
        check_callable("activation", activation, expected="a callable such as jax.nn.softplus")
        check_callable("final_activation", final_activation, expected="a callable such as jnp.tanh")
        self.hidden_size, self.channels = hidden_size, channels
        self.mlp = eqx.nn.MLP(
            hidden_size,
            hidden_size * channels,
            width_size,
            depth,
            activation,
            final_activation,
            key=check_key("key", key),
        )

    def __call__(self, t: Time, z: Float[Array, " hidden"], args: Args) -> Array:
        del t, args  # time enters through the control's time channel
        return self.mlp(z).reshape(self.hidden_size, self.channels)


class _DrivenField(eqx.Module):
    """`dz/dt = f(t, z) dX/dt` with the path `X` as `args`: a CDE as an ODE, for a batch
    solved as one state (each series its own path)."""

    field: Callable

    def __call__(self, t: Real[Array, ""], z: Array, path: diffrax.AbstractPath) -> Array:
        return self.field(t, z, None) @ path.derivative(t)


def _stepping_on(settings: SolveSettings, knots: Float[Array, " times"]) -> SolveSettings:
    """`settings` whose adaptive controller never steps over a knot of the path.

    A step wider than a segment can put all its stages outside it and never see the data
    there (Tsit5 from 0.31 to 2.31 evaluates at 0.31, 0.63, 0.96, 2.11, 2.27 and 2.31, and a
    jump on [1, 2] is lost at any tolerance). So the steps end on every knot, as `jump_ts`:
    the derivative of a linear path jumps at every knot, and that of the cubic one at a
    knot beside a missing value (diffrax's fill joins the pieces there with a corner). The
    reversible adjoint lands a step on each output time instead
    ([`node_kit.NeuralCDE.solve`][] gives it every knot); fixed steps are the caller's: a
    `dt0` that divides the spacing of the knots.
    """
    controller = settings.stepsize_controller
    if (
        isinstance(settings.adjoint, ReversibleAdjoint)
        or not isinstance(controller, diffrax.AbstractAdaptiveStepSizeController)
        or isinstance(controller, diffrax.ClipStepSizeController)
    ):
        return settings
    clip = diffrax.ClipStepSizeController(controller, jump_ts=jax.lax.stop_gradient(knots))
    return settings.replace(stepsize_controller=clip)


def control_path(
    ts: Float[Array, " times"],
    values: Float[Array, "times data_size"],
    observed: Bool[Array, "times data_size"],
    *,
    interpolation: str,
    intensity: bool,
) -> tuple[diffrax.AbstractPath, Float[Array, " times"]]:
    """The control path of ONE checked series, and the path times of its points.

    `(path, knots)`: `path.evaluate(knots[i])` is the path at observation `i` (`ts` itself,
    except for `"rectilinear"`, whose path runs over knot indices).
    """
    dtype = values.dtype
    n, channels = values.shape
    # Missing entries are NaN for diffrax's interpolation to fill. A channel observed once
    # is that value throughout, and one never observed 0: diffrax's fill leaves a channel
    # with fewer than two observations NaN.
    count = jnp.sum(observed, axis=0)
    first = jnp.where(count > 0, values[jnp.argmax(observed, axis=0), jnp.arange(channels)], 0)
    data = jnp.where(observed, values, jnp.where(count < 2, first, jnp.nan))
    counts = jnp.cumsum(observed, axis=0).astype(dtype) / n
    parts = [ts[:, None].astype(dtype), data] + ([counts] if intensity else [])
    xs = jnp.concatenate(parts, axis=-1)
    start = jnp.concatenate([ts[:1].astype(dtype), first] + ([counts[0]] if intensity else []))
    if interpolation == "rectilinear":
        _, path_xs = diffrax.rectilinear_interpolation(ts, xs, replace_nans_at_start=start)
        # Time jumps with the data in the rectilinear path: the time channel leads.
        path_xs = path_xs.at[:, 0].set(jnp.repeat(ts, 2)[1:].astype(dtype))
        knots = jnp.arange(path_xs.shape[0], dtype=dtype)
        return diffrax.LinearInterpolation(knots, path_xs), knots[::2]
    if interpolation == "linear":
        filled = diffrax.linear_interpolation(
            ts, xs, fill_forward_nans_at_end=True, replace_nans_at_start=start
        )
        return diffrax.LinearInterpolation(ts, filled), ts
    coeffs = diffrax.backward_hermite_coefficients(
        ts, xs, fill_forward_nans_at_end=True, replace_nans_at_start=start
    )
    return diffrax.CubicInterpolation(ts, coeffs), ts


class NeuralCDE(AbstractODEModel):
    """A neural CDE classifier or regressor of ONE irregular, partially observed series.

    **Arguments:**

    - `data_size`: channels of the series' values.
    - `hidden_size`: size of the hidden state `z`.
    - `width_size`, `depth`: of the field's MLP ([`node_kit.CDEField`][]).
    - `readout_size`: outputs of the linear readout of `z` (classes for a classifier);
        default `data_size`.
    - `interpolation`: `"cubic"` (default), `"linear"` or `"rectilinear"` (see the module).
    - `intensity`: add the observation counts as channels (default `True`).
    - `settings` / `**solve_keywords`: the [`node_kit.SolveSettings`][] (default Tsit5
        with a PID controller, `checkpoint`); every adjoint works.
    - `key`: a `jax.random` key, keyword-only.
    """

    vector_field: Callable  # a CDEField (declared Callable, as the base declares it)
    initial: eqx.nn.Linear
    readout: eqx.nn.Linear
    settings: SolveSettings
    data_size: int = eqx.field(static=True)
    interpolation: str = eqx.field(static=True)
    intensity: bool = eqx.field(static=True)

    def __init__(
        self,
        data_size: int,
        hidden_size: int,
        width_size: int,
        depth: int,
        *,
        readout_size: int | None = None,
        interpolation: str = "cubic",
        intensity: bool = True,
        settings: SolveSettings | None = None,
        key: PRNGKeyArray,
        **solve_keywords: Any,
    ):
        readout_size = data_size if readout_size is None else readout_size
        data_size, hidden_size, readout_size = check_ints(
            1, data_size=data_size, hidden_size=hidden_size, readout_size=readout_size
        )
        self.interpolation = check_choice("interpolation", interpolation, INTERPOLATIONS)
        self.intensity = check_bool("intensity", intensity)
        channels = 1 + data_size * (2 if self.intensity else 1)
        field_key, initial_key, readout_key = jax.random.split(check_key("key", key), 3)
        self.vector_field = CDEField(hidden_size, channels, width_size, depth, key=field_key)
        self.initial = eqx.nn.Linear(channels, hidden_size, key=initial_key)
        self.readout = eqx.nn.Linear(hidden_size, readout_size, key=readout_key)
        self.settings = SolveSettings.of(settings, **solve_keywords)
        self.data_size = data_size

    @property
    def hidden_size(self) -> int:
        """The size of the hidden state."""
        return int(self.initial.out_features)

    def path(
        self, ts: Times, values: SeriesValues, mask: SeriesMask
    ) -> tuple[diffrax.AbstractPath, Float[Array, " times"]]:
        """The control path `X` of one series (checked) and the path times of its points."""
        ts, values, observed = check_series(ts, values, mask, data_size=self.data_size, strict=True)
        if ts.shape[0] < 2:
            raise ValueError(
                f"`ts` must hold at least 2 time points for a neural CDE's {self.interpolation} "
                f"path (it is driven by the change of the path); got {ts.shape[0]}. Pad the "
                "series with an unobserved later time (mask 0)."
            )
        dtype = jnp.result_type(values.dtype, self.initial.weight.dtype)
        return control_path(
            ts.astype(dtype),
            values.astype(dtype),
            observed,
            interpolation=self.interpolation,
            intensity=self.intensity,
        )

    def solve(
        self,
        ts: Times,
        values: SeriesValues,
        mask: SeriesMask,
        *,
        at: Times | str = "points",
    ) -> diffrax.Solution:
        """The solve of one series from its first point, saving the hidden state `at`:

        - `"points"` (default): at each point of the series, `(len(ts), hidden_size)`;
        - `"ends"`: at the first and last point only (no outputs in between: cheaper);
        - times after `ts[0]`, strictly increasing, the last at most `ts[-1]` (path times:
            knot indices for `"rectilinear"`): the solution then holds `ts[0]` first, then
            these (`states` drops `ts[0]`).
        """
        path, knots = self.path(ts, values, mask)
        z0 = self.initial(path.evaluate(knots[0]))
        term = diffrax.ControlTerm(self.vector_field, path)
        model = self.with_settings(_stepping_on(self.settings, knots))
        reversible = isinstance(self.settings.adjoint, ReversibleAdjoint)
        if isinstance(at, str):
            check_choice("at", at, ("points", "ends"))
            # The reversible solve lands a step on each output time: on every knot.
            ends = at == "ends" and not reversible
            out, checked = (knots[jnp.array([0, -1])] if ends else knots), True
        else:
            out, checked = jnp.concatenate([knots[:1], jnp.asarray(at, knots.dtype)]), False
        sol = model.solve_field(term, out, z0, None, times_checked=checked, y0_name="values")
        if at == "ends" and reversible:
            first_last = jnp.array([0, -1])
            return eqx.tree_at(
                lambda s: (s.ts, s.ys), sol, (out[first_last], saved_states(sol)[first_last])
            )
        return sol

    def states(
        self, ts: Times, values: SeriesValues, mask: SeriesMask, *, at: Times | str = "points"
    ) -> Float[Array, "times hidden"]:
        """The hidden states of one series `at` its points (or as in `solve`)."""
        return self.states_counted(ts, values, mask, at=at)[0]

    def states_counted(
        self, ts: Times, values: SeriesValues, mask: SeriesMask, *, at: Times | str = "points"
    ) -> tuple[Float[Array, "times hidden"], Int[Array, ""]]:
        """`states` and the solver steps they took."""
        sol = self.solve(ts, values, mask, at=at)
        states = saved_states(sol) if isinstance(at, str) else saved_states(sol)[1:]
        return states, sol.stats["num_steps"]

    def __call__(self, ts: Times, values: SeriesValues, mask: SeriesMask) -> Float[Array, " out"]:
        """The readout of the final hidden state of one series: logits or a prediction."""
        return self.counted(ts, values, mask)[0]

    def counted(
        self, ts: Times, values: SeriesValues, mask: SeriesMask
    ) -> tuple[Float[Array, " out"], Int[Array, ""]]:
        """`__call__` and the solver steps it took."""
        states, num_steps = self.states_counted(ts, values, mask, at="ends")
        return self.readout(states[-1]), num_steps

    def batched(
        self, ts: Times, values: Float[Array, "batch times data_size"], masks: Array
    ) -> Float[Array, "batch out"]:
        """The readouts of a batch of series that share the times `ts`, solved as ONE state.

        Series with their own times: `jax.vmap(model)(ts, values, masks)`.
        """
        if jnp.ndim(values) != 3:
            raise ValueError(
                "`values` must be a batch of shape (batch, len(ts), data_size) for `batched`; "
                f"got shape {tuple(jnp.shape(values))}. Call the model on one series."
            )
        paths, knots = jax.vmap(self.path, in_axes=(None, 0, 0))(ts, values, masks)
        z0s = jax.vmap(lambda p, k: self.initial(p.evaluate(k)))(paths, knots[:, 0])
        out = knots[0][jnp.array([0, -1])]
        sol = self.solve_field(
            _DrivenField(self.vector_field), out, z0s, paths,
            batched=True, args_axis=0, times_checked=True, y0_name="values",
        )  # fmt: skip
        return jax.vmap(self.readout)(saved_states(sol)[-1])

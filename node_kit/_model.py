"""AbstractODEModel: what every node_kit model built on one differential-equation solve
shares. A subclass declares its `vector_field` and `settings` and writes only what is its
own (a CNF's log-density, a neural ODE's trajectory); the settings, `with_settings` and
the solve of one sample or of the batch as one state live here."""

from collections.abc import Callable
from typing import Any, cast, Self

import diffrax
import equinox as eqx
import jax

from ._checks import is_int, type_name
from ._custom_types import Args, CheckedTimes, Time, Times
from ._solve import SolveSettings
from ._solve_inputs import check_times


class BatchedField(eqx.Module):
    """The per-sample field vmapped over a leading batch axis: the batch is one ODE state.

    **Arguments:**

    - `field`: a per-sample vector field `f(t, y, args)`.
    - `args_axis`: `None` if `args` is shared by the batch, or the axis of `args`
        holding one entry per sample (`0`), as for `jax.vmap`'s `in_axes`.
    """

    field: Callable
    args_axis: int | None = eqx.field(static=True, default=None)

    def __call__(self, t: Time, y: Any, args: Args) -> Any:
        return jax.vmap(self.field, in_axes=(None, 0, self.args_axis))(t, y, args)


class AbstractODEModel(eqx.Module):
    """The base of node_kit's models that solve a differential equation: it holds the
    [`node_kit.SolveSettings`][], gives [`node_kit.AbstractODEModel.with_settings`][], and
    solves a field for one sample or for a batch as one state
    ([`node_kit.AbstractODEModel.solve_field`][]) through the settings' one `diffeqsolve`
    call and failure checks. [`node_kit.NeuralODE`][] and [`node_kit.CNF`][] subclass it.

    A new model is one file: an `eqx.Module` subclass that declares the two fields below
    (and its own), checks its arguments in `__init__`, and calls `solve_field`.

    **Fields (abstract):**

    - `vector_field`: the per-sample field `f(t, y, args)`.
    - `settings`: the [`node_kit.SolveSettings`][].
    """

    vector_field: eqx.AbstractVar[Callable]
    settings: eqx.AbstractVar[SolveSettings]

    def with_settings(self, settings: SolveSettings) -> Self:
        """The same model, parameters included, with other solve settings (e.g.
        `model.settings.with_adjoint("direct")` or `model.settings.replace(...)`)."""
        if not isinstance(settings, SolveSettings):
            raise ValueError(
                f"`settings` must be a node_kit.SolveSettings; got {type_name(settings)}. "
                "Build one with nk.SolveSettings(...), or change the model's with "
                "model.settings.replace(...) or model.settings.with_adjoint(...)."
            )
        return eqx.tree_at(lambda m: m.settings, self, settings)

    def solve_field(
        self,
        field: Callable | diffrax.AbstractTerm,
        ts: Times,
        y0: Any,
        args: Args = None,
        *,
        batched: bool = False,
        args_axis: int | None = None,
        y0_name: str = "y0",
        times_checked: bool = False,
    ) -> diffrax.Solution:
        """Solve `dy/dt = field(t, y, args)` from `y0` at `ts[0]`, saving at `ts`, with the
        model's settings.

        **Arguments:**

        - `field`: a per-sample field (the model's `vector_field`, or one built from it),
            or for one sample any diffrax term (a `diffrax.ControlTerm` for a CDE).
        - `ts`: output times, 1-D, strictly increasing (checked).
        - `y0`: the initial state, already checked by the model (a batch if `batched`).
        - `args`: passed to the field.
        - `batched`: solve `y0`'s leading axis as ONE state, the field vmapped inside one
            solve ([`node_kit.BatchedField`][]); `args_axis` is then `None` (shared
            `args`) or `0` (one entry per sample).
        - `y0_name`: the name the failure messages give the initial state.
        - `times_checked`: `ts` were checked already, or built by the model and valid by
            construction (a CNF's `[0, t1]`), so they go to the solve as they are.
        """
        checked = cast(CheckedTimes, ts) if times_checked else check_times(ts)
        if batched:
            if isinstance(field, diffrax.AbstractTerm):
                raise ValueError(
                    f"a batched solve vmaps a per-sample field f(t, y, args); got a "
                    f"{type(field).__name__}. Pass the term's field (a CDE's as "
                    "f(t, z) @ path.derivative(t), each sample's path in `args`), or solve "
                    "each sample with batched=False under jax.vmap."
                )
            field = BatchedField(field, check_args_axis(args_axis))
        elif args_axis is not None:
            raise ValueError(
                f"`args_axis` is for a batched solve (the batch as one state); got "
                f"args_axis={args_axis!r} for one sample. Pass args_axis=None, or solve "
                "the batch with batched=True."
            )
        return self.settings.solve(field, checked, y0, args, y0_name=y0_name)


def check_args_axis(args_axis: Any) -> int | None:
    """`args_axis` of a batched solve: `None` (shared `args`) or `0` (one entry per sample)."""
    if args_axis is not None and not (is_int(args_axis) and args_axis == 0):
        raise ValueError(
            "`args_axis` must be None (the batch shares `args`) or 0 (`args` has one entry per "
            f"sample along axis 0); got {args_axis!r}."
        )
    return args_axis

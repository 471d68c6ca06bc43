"""The bad-input matrix (issue 10): every public entry point and command flag, fed bad values.

Each [`Case`][] is one bad input: a call that does the bad thing, the error type it must
raise, and a pattern the message must match, which names the argument (`` `rtol` `` or
`--batch-size`) and, where the message has one, says what was given. [`outcome`][]
classifies what a call does:

- `clear`: the expected type, and the message matches;
- `unclear`: a documented type (a `ValueError`, a run-time `equinox.EquinoxRuntimeError`,
  `nk.TrainingDiverged`, a command's `error:` exit) with another message or type;
- `internal`: any other exception (a `TypeError` or `KeyError` from deep inside);
- `silent`: no error (a command that goes on to load data or run its sweep counts too).

Commands run in-process as users see them, through their `COMMAND.run`: the case asserts the
exit status (2 for a bad flag, 1 for an unusable checkpoint), the message on stderr and
that there is no traceback. The command's first piece of work (loading data, the sweep) is
replaced by a stub that raises, so a flag that is accepted never starts real work.

Every case fails before XLA compiles anything, except the few run-time checks, which share
one compiled function. `experiments/bad_inputs.py` runs this matrix through pytest,
collects the outcome each case records, and writes the counts quoted in docs/errors.md.
"""

import contextlib
import dataclasses
import functools
import importlib
import io
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import node_kit as nk
from node_kit import datasets


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input.

    - `id`: unique, `<area>-<what>`; `area`: the entry point or command it exercises.
    - `call`: does the bad thing (no arguments).
    - `error`: the exception type it must raise; `match`: a regex the message must match.
    - `code`: for a command, the exit status it must end with.
    - `gap`: why it is known not to be clear yet (the test is then an expected failure).
    """

    id: str
    area: str
    call: Callable[[], Any]
    error: type[BaseException]
    match: str
    code: int | None = None
    gap: str | None = None


class CommandExit(Exception):
    """A command ended with `SystemExit`: the message is what it printed on stderr."""

    def __init__(self, code, stderr: str):
        super().__init__(stderr)
        self.code = code


class ReachedWork(Exception):
    """A command got past its checks to its first piece of work: the bad flag was accepted."""


DOCUMENTED = (ValueError, eqx.EquinoxRuntimeError, nk.TrainingDiverged, CommandExit)
"""The error types node_kit documents for bad input (`CheckpointError` is a `ValueError`)."""

OUTCOMES = ("clear", "unclear", "internal", "silent")


def outcome(case: Case) -> tuple[str, str]:
    """`(kind, detail)`: what `case.call()` did, as one of `OUTCOMES`, and its message."""
    try:
        case.call()
    except ReachedWork as error:
        return "silent", str(error)
    except Exception as error:  # noqa: BLE001 (classifying every kind is the point)
        notes = [n for n in getattr(error, "__notes__", []) if n.startswith("node_kit:")]
        message = "\n".join([str(error), *notes])  # a user's own error, with node_kit's note
        detail = f"{type(error).__name__}: {message}"
        if isinstance(error, CommandExit) and (error.code not in (1, 2) or "Traceback" in message):
            return "internal", detail
        if not isinstance(error, DOCUMENTED) and not notes:
            return "internal", detail
        code_ok = case.code is None or getattr(error, "code", None) == case.code
        if isinstance(error, case.error) and code_ok and re.search(case.match, message):
            return "clear", message
        return "unclear", detail
    return "silent", "no error was raised"


# ---------------------------------------------------------------------------- the cases

CASES: list[Case] = []


def _add(area: str, prefix: str, rows, *, gap: str | None = None) -> None:
    """Add `(what, call, error, match)` rows as cases of `area`, ids `<prefix>-<what>`."""
    for what, call, error, match in rows:
        CASES.append(Case(f"{prefix}-{what}", area, call, error, match, gap=gap))


V = ValueError
RT = eqx.EquinoxRuntimeError
KEY = jr.key(0)
TS = jnp.linspace(0.0, 1.0, 3)
Y0 = jnp.ones(2)
VALUES = jnp.ones((3, 2))
MASK = jnp.ones((3, 2), bool)
PID = diffrax.PIDController(rtol=1e-3, atol=1e-6)
NAN, INF = float("nan"), float("inf")


@functools.cache
def _field() -> nk.MLPField:
    return nk.MLPField(2, 2, 1, key=KEY)


@functools.cache
def _ode() -> nk.NeuralODE:
    return nk.NeuralODE(_field())


@functools.cache
def _cnf(hutchinson: bool = False) -> nk.CNF:
    estimator = nk.HutchinsonTrace() if hutchinson else nk.ExactTrace()
    return nk.CNF(nk.MLPField(2, 2, 1, key=KEY), trace_estimator=estimator)


@functools.cache
def _multiscale() -> nk.MultiscaleCNF:
    """A one-scale image flow on 1x4x4 images (no solve runs in its cases)."""
    return nk.MultiscaleCNF((1, 4, 4), scales=1, blocks=1, width=2, depth=0, key=KEY)


def _rnn() -> nk.ODERNN:
    return nk.ODERNN(2, 2, 2, 1, key=KEY)


@functools.cache
def _gru() -> nk.GRUDelta:
    return nk.GRUDelta(2, 2, key=KEY)


@functools.cache
def _latent(num_classes: int | None = None) -> nk.LatentODE:
    return nk.LatentODE(2, 2, 2, 2, 1, num_classes=num_classes, key=KEY)


def _batch(**changes) -> dict:
    """A batch of two series of three points for the latent ODE losses."""
    return {"t": jnp.stack([TS, TS]), "x": jnp.ones((2, 3, 2)), **changes}


@functools.cache
def _jit_solve():
    """The one compiled function of the run-time checks: a solve with `ts` and `y0` traced."""
    return eqx.filter_jit(lambda model, ts, y0: model(ts, y0))


_add("MLPField", "mlp", [
    ("data-size-zero", lambda: nk.MLPField(0, 2, 1, key=KEY), V, r"`data_size` must be an int >= 1; got 0"),
    ("data-size-float", lambda: nk.MLPField(2.0, 2, 1, key=KEY), V, r"`data_size` must be an int >= 1; got 2\.0"),
    ("data-size-bool", lambda: nk.MLPField(True, 2, 1, key=KEY), V, r"`data_size` must be an int >= 1; got True"),
    ("width-negative", lambda: nk.MLPField(2, -1, 1, key=KEY), V, r"`width_size` must be an int >= 1; got -1"),
    ("width-string", lambda: nk.MLPField(2, "4", 1, key=KEY), V, r"`width_size` must be an int >= 1; got '4'"),
    ("depth-negative", lambda: nk.MLPField(2, 2, -1, key=KEY), V, r"`depth` must be an int >= 0; got -1"),
    ("depth-float", lambda: nk.MLPField(2, 2, 1.5, key=KEY), V, r"`depth` must be an int >= 0; got 1\.5"),
    ("key-int", lambda: nk.MLPField(2, 2, 1, key=0), V, r"`key` must be a JAX PRNG key; got int 0"),
    ("key-none", lambda: nk.MLPField(2, 2, 1, key=None), V, r"`key` must be a JAX PRNG key; got NoneType"),
    ("key-float-array", lambda: nk.MLPField(2, 2, 1, key=jnp.zeros(2)), V, r"`key` must be a JAX PRNG key; got an array of float"),
    ("activation-string", lambda: nk.MLPField(2, 2, 1, activation="relu", key=KEY), V, r"`activation` must be a callable .*; got str 'relu'"),
    ("final-activation-none", lambda: nk.MLPField(2, 2, 1, final_activation=None, key=KEY), V, r"`final_activation` must be a callable .*; got NoneType"),
])

_add("ConcatSquashField", "csf", [
    ("data-size-negative", lambda: nk.ConcatSquashField(-2, 2, 1, key=KEY), V, r"`data_size` must be an int >= 1; got -2"),
    ("width-zero", lambda: nk.ConcatSquashField(2, 0, 1, key=KEY), V, r"`width_size` must be an int >= 1; got 0"),
    ("depth-none", lambda: nk.ConcatSquashField(2, 2, None, key=KEY), V, r"`depth` must be an int >= 0; got None"),
    ("key-string", lambda: nk.ConcatSquashField(2, 2, 1, key="seed"), V, r"`key` must be a JAX PRNG key; got str"),
    ("activation-int", lambda: nk.ConcatSquashField(2, 2, 1, activation=3, key=KEY), V, r"`activation` must be a callable .*; got int 3"),
    ("linear-in-size-zero", lambda: nk.ConcatSquashLinear(0, 2, key=KEY), V, r"`in_size` must be an int >= 1; got 0"),
    ("linear-out-size-float", lambda: nk.ConcatSquashLinear(2, 2.5, key=KEY), V, r"`out_size` must be an int >= 1; got 2\.5"),
    ("linear-key-int", lambda: nk.ConcatSquashLinear(2, 2, key=0), V, r"`key` must be a JAX PRNG key; got int 0"),
])

_add("AugmentedField", "aug", [
    ("size-zero", lambda: nk.AugmentedField(_field(), 0), V, r"`augment_size` must be an int in \[1, 1\]; got 0\. The field's state has 2 dims"),
    ("size-whole-state", lambda: nk.AugmentedField(_field(), 2), V, r"`augment_size` must be an int in \[1, 1\]; got 2\."),
    ("size-float", lambda: nk.AugmentedField(_field(), 1.0), V, r"`augment_size` must be an int in \[1, 1\]; got 1\.0\."),
    ("field-without-size", lambda: nk.AugmentedField(lambda t, y, args: y, 1), V, r"`field` must expose `data_size` .*; got function"),
])

_add("SolveSettings", "settings", [
    ("solver-string", lambda: nk.SolveSettings(solver="tsit5"), V, r"`solver` must be a diffrax\.AbstractSolver .*; got str"),
    ("solver-class", lambda: nk.SolveSettings(solver=diffrax.Tsit5), V, r"`solver` must be a diffrax\.AbstractSolver .*; got the class Tsit5 \(pass an instance"),
    ("controller-none", lambda: nk.SolveSettings(stepsize_controller=None), V, r"`stepsize_controller` must be a diffrax\.AbstractStepSizeController .*; got NoneType"),
    ("rtol-negative", lambda: nk.SolveSettings(stepsize_controller=diffrax.PIDController(rtol=-1e-3, atol=1e-6)), V, r"`stepsize_controller` tolerances must be finite and non-negative.*; got rtol=-0\.001"),
    ("atol-nan", lambda: nk.SolveSettings(stepsize_controller=diffrax.PIDController(rtol=1e-3, atol=NAN)), V, r"`stepsize_controller` tolerances must be finite .*atol=nan"),
    ("rtol-1e3", lambda: nk.SolveSettings(stepsize_controller=diffrax.PIDController(rtol=1e3, atol=1e3)), V, r"`stepsize_controller` rtol must be below 1: a relative tolerance of 1 or more accepts any step.*; got rtol=1000\.0"),
    ("tolerances-both-zero", lambda: nk.SolveSettings(stepsize_controller=diffrax.PIDController(rtol=0.0, atol=0.0)), V, r"`stepsize_controller` tolerances .*not both zero; got rtol=0\.0, atol=0\.0"),
    ("rtol-inf", lambda: nk.SolveSettings(stepsize_controller=diffrax.PIDController(rtol=INF, atol=1e-6)), V, r"`stepsize_controller` tolerances must be finite.*rtol=inf"),
    ("dt0-zero", lambda: nk.SolveSettings(dt0=0.0), V, r"`dt0` must be a positive float or None; got 0\.0"),
    ("dt0-negative", lambda: nk.SolveSettings(dt0=-0.1), V, r"`dt0` must be a positive float or None; got -0\.1"),
    ("dt0-nan", lambda: nk.SolveSettings(dt0=NAN), V, r"`dt0` must be a positive float or None; got nan"),
    ("dt0-inf", lambda: nk.SolveSettings(dt0=INF), V, r"`dt0` must be a positive float or None; got inf"),
    ("dt0-string", lambda: nk.SolveSettings(dt0="0.1"), V, r"`dt0` must be a positive float or None; got '0\.1'"),
    ("dt0-bool", lambda: nk.SolveSettings(dt0=True), V, r"`dt0` must be a positive float or None; got True"),
    ("dt0-none-fixed-steps", lambda: nk.SolveSettings(stepsize_controller=diffrax.ConstantStepSize()), V, r"`dt0=None` needs an adaptive `stepsize_controller`; got ConstantStepSize\. Pass `dt0`"),
    ("euler-adaptive", lambda: nk.SolveSettings(solver=diffrax.Euler()), V, r"`solver` Euler has no error estimate.*Pass `stepsize_controller=diffrax\.ConstantStepSize\(\)`"),
    ("max-steps-zero", lambda: nk.SolveSettings(max_steps=0), V, r"`max_steps` must be a positive int or None; got 0"),
    ("max-steps-negative", lambda: nk.SolveSettings(max_steps=-5), V, r"`max_steps` must be a positive int or None; got -5"),
    ("max-steps-float", lambda: nk.SolveSettings(max_steps=10.5), V, r"`max_steps` must be a positive int or None; got 10\.5"),
    ("max-steps-bool", lambda: nk.SolveSettings(max_steps=True), V, r"`max_steps` must be a positive int or None; got True"),
    ("max-steps-string", lambda: nk.SolveSettings(max_steps="100"), V, r"`max_steps` must be a positive int or None; got '100'"),
    ("max-steps-2-31", lambda: nk.SolveSettings(max_steps=2**31), V, r"`max_steps` must be at most 2\*\*31 - 1 = 2147483647 \(diffrax counts steps in 32-bit ints\); got 2147483648"),
    ("max-steps-1e15", lambda: nk.SolveSettings(max_steps=10**15), V, r"`max_steps` must be at most 2\*\*31 - 1 .*; got 1000000000000000"),
    ("max-steps-none-checkpoint", lambda: nk.SolveSettings(max_steps=None), V, r"`max_steps=None` cannot be used with RecursiveCheckpointAdjoint.*Pass an integer `max_steps`"),
    ("adjoint-int", lambda: nk.SolveSettings(adjoint=3), V, r"`adjoint` must be a diffrax\.AbstractAdjoint or one of .*; got int"),
    ("adjoint-unknown-name", lambda: nk.SolveSettings(adjoint="unroll"), V, r"unknown adjoint 'unroll'; expected one of backsolve, checkpoint, direct"),
    ("adjoint-class", lambda: nk.SolveSettings(adjoint=diffrax.BacksolveAdjoint), V, r"`adjoint` must be .*; got the class BacksolveAdjoint"),
    ("throw-string", lambda: nk.SolveSettings(throw="yes"), V, r"`throw` must be a Python bool; got str"),
    ("throw-int", lambda: nk.SolveSettings(throw=1), V, r"`throw` must be a Python bool; got int"),
    ("replace-unknown", lambda: nk.SolveSettings().replace(rtol=1e-3), V, r"unknown solve setting\(s\) rtol; expected some of solver, stepsize_controller"),
    ("replace-max-steps-zero", lambda: nk.SolveSettings().replace(max_steps=0), V, r"`max_steps` must be a positive int or None; got 0"),
    ("with-adjoint-unknown", lambda: nk.SolveSettings().with_adjoint("adjoint_sensitivity"), V, r"unknown adjoint 'adjoint_sensitivity'"),
    ("with-adjoint-none", lambda: nk.SolveSettings().with_adjoint(None), V, r"`adjoint` must be a diffrax\.AbstractAdjoint .*; got NoneType"),
])

_add("adjoints", "adjoint", [
    ("name-unknown", lambda: nk.adjoint_from_name("unroll", max_steps=10), V, r"unknown adjoint 'unroll'; expected one of backsolve, checkpoint, direct"),
    ("name-int", lambda: nk.adjoint_from_name(3, max_steps=10), V, r"unknown adjoint 3; expected one of"),
    ("direct-max-steps-none", lambda: nk.adjoint_from_name("direct", max_steps=None), V, r"adjoint 'direct' stores every step, so it needs an integer `max_steps`; got max_steps=None"),
    ("direct-max-steps-zero", lambda: nk.adjoint_from_name("direct", max_steps=0), V, r"`max_steps` must be a positive integer; got 0\. Pass an int >= 1"),
    ("checkpoints-zero", lambda: nk.adjoint_from_name("checkpoint", max_steps=10, checkpoints=0), V, r"`checkpoints` must be a positive integer; got 0"),
    ("checkpoints-float", lambda: nk.checkpoint_adjoint(2.5), V, r"`checkpoints` must be a positive integer; got 2\.5"),
    ("checkpoints-bool", lambda: nk.checkpoint_adjoint(True), V, r"`checkpoints` must be a positive integer; got True"),
    ("seminorm-fixed-steps", lambda: nk.backsolve_adjoint(diffrax.ConstantStepSize(), seminorm=True), V, r"`seminorm=True` needs the forward `stepsize_controller`.*; got ConstantStepSize"),
    ("seminorm-no-controller", lambda: nk.backsolve_adjoint(None, seminorm=True), V, r"`seminorm=True` needs the forward `stepsize_controller`.*; got NoneType"),
    ("seminorm-string", lambda: nk.backsolve_adjoint(PID, seminorm="yes"), V, r"`seminorm` must be a Python bool; got str"),
    ("direct-negative", lambda: nk.direct_adjoint(-1), V, r"`max_steps` must be a positive integer; got -1"),
])

def _solve_with(field, **settings):
    return nk.NeuralODE(field, **settings)(TS, Y0)


# A bug inside the user's field is the field's own error, raised as it is with a note
# saying where it arose (not blamed on `y0`); a field that returns NaN is named as a cause.
_add("vector field bugs", "field", [
    ("float-of-state", lambda: _solve_with(lambda t, y, a: y * float(y[0])), jax.errors.ConcretizationTypeError, r"(?s)raised inside the vector field f\(t, y, args\), called with y of shape \(2,\).*Python float\(\), bool\(\), `if` or np\.asarray on the state need concrete values"),
    ("numpy-of-state", lambda: _solve_with(lambda t, y, a: jnp.asarray(np.asarray(y))), jax.errors.TracerArrayConversionError, r"(?s)raised inside the vector field.*use jnp functions and jnp\.where"),
    ("if-on-state", lambda: _solve_with(lambda t, y, a: y if y[0] > 0 else -y), jax.errors.TracerBoolConversionError, r"(?s)raised inside the vector field.*`if`"),
    ("key-error", lambda: _solve_with(lambda t, y, a: {"a": y}["b"]), KeyError, r"(?s)'b'.*raised inside the vector field"),
    ("args-missing", lambda: _solve_with(lambda t, y, a: y * a["w"]), TypeError, r"(?s)not subscriptable.*args=None\. No `args` was passed: pass them to the model call"),
    ("shape-bug", lambda: _solve_with(lambda t, y, a: jnp.ones((3, 3)) @ y), V, r"`y0` of shape \(2,\) does not fit the vector field: calling it raised TypeError: dot_general"),
    ("returns-nan", lambda: _solve_with(lambda t, y, a: y * jnp.nan, max_steps=8), eqx.EquinoxRuntimeError, r"diffeqsolve hit max_steps=8: .*A vector field that returns NaN or inf also ends here"),
])

_add("NeuralODE", "ode", [
    ("field-not-callable", lambda: nk.NeuralODE("mlp"), V, r"`vector_field` must be a callable f\(t, y, args\).*; got str 'mlp'"),
    ("settings-string", lambda: nk.NeuralODE(_field(), "tsit5"), V, r"`settings` must be a node_kit\.SolveSettings; got str"),
    ("settings-and-keywords", lambda: nk.NeuralODE(_field(), nk.SolveSettings(), max_steps=8), V, r"pass either `settings` or the solve keywords \(max_steps\), not both"),
    ("unknown-keyword", lambda: nk.NeuralODE(_field(), encoder_solver=diffrax.Euler()), V, r"unknown solve setting\(s\) encoder_solver; expected some of"),
    ("ts-2d", lambda: _ode()(jnp.ones((2, 3)), Y0), V, r"`ts` must be 1-D \(the output times\); got shape \(2, 3\)"),
    ("ts-empty", lambda: _ode()(jnp.array([]), Y0), V, r"`ts` must contain at least one time .*got an empty array"),
    ("ts-repeated", lambda: _ode()(jnp.array([0.0, 0.5, 0.5]), Y0), V, r"`ts` must be strictly increasing; got ts\[2\]=0\.5 <= ts\[1\]=0\.5"),
    ("ts-decreasing", lambda: _ode()(jnp.array([1.0, 0.0]), Y0), V, r"`ts` must be strictly increasing; got ts\[1\]=0\.0 <= ts\[0\]=1\.0"),
    ("ts-nan", lambda: _ode()(jnp.array([0.0, NAN, 1.0]), Y0), V, r"`ts` must be finite; got ts\[1\]=nan"),
    ("ts-inf", lambda: _ode()(jnp.array([0.0, INF]), Y0), V, r"`ts` must be finite; got ts\[1\]=inf"),
    ("ts-none", lambda: _ode()(None, Y0), V, r"`ts` must be a 1-D array of increasing times; got NoneType"),
    ("ts-strings", lambda: _ode()(["0", "1"], Y0), V, r"`ts` must be a 1-D array of increasing times; got list"),
    ("y0-wrong-size", lambda: _ode()(TS, jnp.ones(3)), V, r"`y0` must have shape \(data_size,\) = \(2,\) .*; got \(3,\)"),
    ("y0-int", lambda: _ode()(TS, jnp.array([1, 2])), V, r"`y0` must be a floating-point array; got dtype int"),
    ("y0-string", lambda: _ode()(TS, "ab"), V, r"`y0` must be a floating-point array; got str 'ab'"),
    ("y0-batched-in-call", lambda: _ode()(TS, jnp.ones((4, 2))), V, r"`y0` must have shape \(data_size,\) = \(2,\) .*; got \(4, 2\)"),
    ("y0s-scalar", lambda: _ode().batched(TS, jnp.array(1.0)), V, r"`y0s` must have a leading batch axis; got a scalar"),
    ("y0s-wrong-size", lambda: _ode().batched(TS, jnp.ones((4, 3))), V, r"`y0s` must have shape \(batch, data_size\) = \(4, 2\) .*; got \(4, 3\)"),
    ("dt0-longer-than-solve", lambda: nk.NeuralODE(_field(), stepsize_controller=diffrax.ConstantStepSize(), dt0=2.0)(TS, Y0), V, r"`dt0`=2\.0 is longer than the whole solve"),
    ("field-returns-wrong-shape", lambda: nk.NeuralODE(lambda t, y, args: y[:2])(TS, jnp.ones(3)), V, r"the vector field must return dy/dt with the shape of `y0` \(3,\); it returned \(2,\)"),
    ("y0-does-not-fit-field", lambda: nk.NeuralODE(lambda t, y, args: jnp.ones((2, 2)) @ y)(TS, jnp.ones(3)), V, r"`y0` of shape \(3,\) does not fit the vector field"),
    ("y0-nan", lambda: _ode()(TS, jnp.array([1.0, NAN])), RT, r"`y0` contains NaN or inf; check the data"),
    ("jit-ts-decreasing", lambda: _jit_solve()(_ode(), jnp.array([0.0, 1.0, 0.5]), Y0).block_until_ready(), RT, r"`ts` must be strictly increasing"),
    ("jit-ts-nan", lambda: _jit_solve()(_ode(), jnp.array([0.0, NAN, 1.0]), Y0).block_until_ready(), RT, r"`ts` must be finite \(no NaN or inf\)"),
    ("jit-y0-inf", lambda: _jit_solve()(_ode(), TS, jnp.array([INF, 1.0])).block_until_ready(), RT, r"`y0` contains NaN or inf"),
])

_add("CNF", "cnf", [
    ("t1-zero", lambda: nk.CNF(_field(), t1=0.0), V, r"`t1` must be a positive Python float; got 0\.0\. E\.g\. t1=1\.0"),
    ("t1-negative", lambda: nk.CNF(_field(), t1=-1), V, r"`t1` must be a positive Python float; got -1"),
    ("t1-inf", lambda: nk.CNF(_field(), t1=INF), V, r"`t1` must be a positive Python float \(not inf\); got inf"),
    ("t1-string", lambda: nk.CNF(_field(), t1="1"), V, r"`t1` must be a positive Python float; got '1'"),
    ("trace-estimator-string", lambda: nk.CNF(_field(), trace_estimator="exact"), V, r"`trace_estimator` must be an AbstractTraceEstimator .*; got str\. Map a name with trace_estimator_from_name"),
    ("field-not-callable", lambda: nk.CNF(None), V, r"`vector_field` must be a callable f\(t, z, args\).*; got NoneType"),
    ("augmented-field", lambda: nk.CNF(nk.AugmentedField(_field(), 1)), V, r"`vector_field` cannot be an AugmentedField"),
    ("data-size-disagrees", lambda: nk.CNF(_field(), data_size=3), V, r"`data_size`=3 disagrees with the vector field's data_size=2"),
    ("data-size-zero", lambda: nk.CNF(lambda t, z, args: z, data_size=0), V, r"`data_size` must be a positive int; got 0"),
    ("sample-without-data-size", lambda: nk.CNF(lambda t, z, args: z).sample(key=KEY), V, r"sampling needs the data dimension.*pass `data_size=` to CNF"),
    ("x-wrong-size", lambda: _cnf().log_prob(jnp.ones(3)), V, r"`x` must have shape \(data_size,\) with data_size=2 .*; got shape \(3,\)"),
    ("x-int", lambda: _cnf().log_prob(jnp.array([1, 2])), V, r"`x` must be a floating-point array; got dtype int"),
    ("x-none", lambda: _cnf().log_prob(None), V, r"`x` must be a floating-point array; got NoneType"),
    ("xs-one-dimensional", lambda: _cnf().log_prob_batched(jnp.ones(2)), V, r"`xs` must have shape \(batch, data_size\) .*; got shape \(2,\)"),
    ("z-wrong-size", lambda: _cnf().inverse(jnp.ones((2, 2))), V, r"`z` must have shape \(data_size,\) .*; got shape \(2, 2\)"),
    ("x-nan", lambda: _cnf().log_prob(jnp.array([NAN, 0.0])), RT, r"`x` contains NaN or inf; check the data"),
    ("hutchinson-key-none", lambda: _cnf(True).log_prob(Y0), V, r"HutchinsonTrace draws a random probe, so `key` is required; got key=None"),
    ("hutchinson-key-int", lambda: _cnf(True).log_prob(Y0, key=0), V, r"`key` must be a JAX PRNG key; got int 0"),
    ("sample-key-int", lambda: _cnf().sample(key=0), V, r"`key` must be a JAX PRNG key; got int 0"),
    ("sample-batched-n-zero", lambda: _cnf().sample_batched(0, key=KEY), V, r"`n` must be a positive int; got 0"),
    ("sample-batched-n-float", lambda: _cnf().sample_batched(2.0, key=KEY), V, r"`n` must be a positive int; got 2\.0"),
    ("regularise-string", lambda: _cnf().log_prob_and_stats(Y0, regularise="yes"), V, r"`regularise` must be a Python bool \(it changes the ODE state\); got str"),
    ("probe-unknown", lambda: nk.HutchinsonTrace(probe="uniform"), V, r"unknown Hutchinson `probe` 'uniform'; expected one of 'rademacher', 'gaussian'"),
    ("estimator-name-unknown", lambda: nk.trace_estimator_from_name("stochastic"), V, r"unknown trace estimator 'stochastic'; expected one of 'exact', 'hutchinson'"),
    ("estimator-probe-unknown", lambda: nk.trace_estimator_from_name("hutchinson", "uniform"), V, r"unknown Hutchinson `probe` 'uniform'"),
    ("loss-kinetic-negative", lambda: nk.cnf_loss(_cnf(), jnp.ones((2, 2)), kinetic_energy=-1.0), V, r"`kinetic_energy` must be a non-negative Python float .*; got -1\.0"),
    ("loss-jacobian-nan", lambda: nk.cnf_loss(_cnf(), jnp.ones((2, 2)), jacobian_norm=NAN), V, r"`jacobian_norm` must be a non-negative Python float .*; got nan"),
    ("loss-kinetic-string", lambda: nk.cnf_loss(_cnf(), jnp.ones((2, 2)), kinetic_energy="0.1"), V, r"`kinetic_energy` must be a non-negative Python float .*; got '0\.1'"),
    ("loss-xs-wrong-size", lambda: nk.cnf_loss(_cnf(), jnp.ones((4, 3))), V, r"`xs` must have shape \(batch, data_size\) with data_size=2 .*; got shape \(4, 3\)"),
])

_add("ODERNN", "rnn", [
    ("data-size-zero", lambda: nk.ODERNN(0, 2, 2, 1, key=KEY), V, r"`data_size` must be an int >= 1; got 0"),
    ("hidden-negative", lambda: nk.ODERNN(2, -1, 2, 1, key=KEY), V, r"`hidden_size` must be an int >= 1; got -1"),
    ("readout-zero", lambda: nk.ODERNN(2, 2, 2, 1, readout_size=0, key=KEY), V, r"`readout_size` must be an int >= 1; got 0"),
    ("width-zero", lambda: nk.ODERNN(2, 2, 0, 1, key=KEY), V, r"`width_size` must be an int >= 1; got 0"),
    ("key-int", lambda: nk.ODERNN(2, 2, 2, 1, key=0), V, r"`key` must be a JAX PRNG key; got int 0"),
    ("settings-and-keywords", lambda: nk.ODERNN(2, 2, 2, 1, settings=nk.SolveSettings(), max_steps=4, key=KEY), V, r"pass either `settings` or the solve keywords"),
    ("gru-hidden-float", lambda: nk.GRUDelta(2, 0.5, key=KEY), V, r"`hidden_size` must be an int >= 1; got 0\.5"),
    ("gru-key-float-array", lambda: nk.GRUDelta(2, 2, key=jnp.zeros(2, jnp.float32)), V, r"`key` must be a JAX PRNG key; got an array of float32"),
    ("ts-2d", lambda: _rnn()(jnp.ones((3, 1)), VALUES, MASK), V, r"`ts` must be a non-empty 1-D array of times for ONE series; got shape \(3, 1\)"),
    ("ts-decreasing", lambda: _rnn()(jnp.array([0.0, 1.0, 0.5]), VALUES, MASK), V, r"`ts` must be non-decreasing within a series; got ts\[2\]=0\.5 < ts\[1\]=1\.0"),
    ("ts-nan", lambda: _gru()(jnp.array([0.0, NAN, 1.0]), VALUES, MASK), V, r"`ts` must be finite; got ts\[1\]=nan"),
    ("values-1d", lambda: _rnn()(TS, jnp.ones(3), jnp.ones(3)), V, r"`values` must be a float array of shape \(len\(ts\), data_size\) = \(3, 2\) .*got float\d+\(3,\)\. Add a channel axis"),
    ("values-int", lambda: _gru()(TS, jnp.ones((3, 2), int), MASK), V, r"`values` must be a float array .*; got int\d+\(3, 2\)"),
    ("values-none", lambda: _rnn()(TS, None, MASK), V, r"`values` must be a float array of shape \(len\(ts\), 2\); got NoneType"),
    ("mask-wrong-shape", lambda: _rnn()(TS, VALUES, jnp.ones((3, 1), bool)), V, r"`mask` must have the shape of `values` \(3, 2\) .*; got \(3, 1\)"),
    ("mask-two", lambda: _rnn()(TS, VALUES, jnp.full((3, 2), 2)), V, r"`mask` must hold only 0 and 1 \(1 = observed\); got the values \[2\]"),
    ("mask-fraction", lambda: _gru()(TS, VALUES, jnp.full((3, 2), 0.5)), V, r"`mask` must hold only 0 and 1 .*; got the values \[0\.5\]"),
    ("values-nan-observed", lambda: _gru()(TS, VALUES.at[0, 0].set(NAN), MASK), RT, r"`values` holds NaN or inf at observed entries"),
    ("subsample-fraction-zero", lambda: nk.subsample_mask(KEY, MASK, 0.0), V, r"`fraction` .* must be a float in \(0, 1\]; got fraction=0\.0"),
    ("subsample-fraction-large", lambda: nk.subsample_mask(KEY, MASK, 1.5), V, r"`fraction` .* must be a float in \(0, 1\]; got fraction=1\.5"),
    ("subsample-mask-1d", lambda: nk.subsample_mask(KEY, jnp.ones(3), 0.5), V, r"`mask` must have shape \(times, data_size\) for ONE series; got \(3,\)"),
    ("subsample-key-int", lambda: nk.subsample_mask(0, MASK, 0.5), V, r"`key` must be a JAX PRNG key; got int 0"),
    ("union-grid-empty", lambda: nk.union_grid([], []), V, r"`ts_list` and `values_list` must be non-empty lists of the same length .*; got 0 and 0"),
    ("union-grid-lengths", lambda: nk.union_grid([np.arange(3.0)], []), V, r"`ts_list` and `values_list` must be non-empty lists of the same length .*; got 1 and 0"),
    ("union-grid-unsorted", lambda: nk.union_grid([np.array([0.0, 2.0, 1.0])], [np.ones((3, 1))]), V, r"`ts` must be strictly increasing within a series; got ts\[2\]=1\.0 <= ts\[1\]=2\.0"),
])

_add("LatentODE", "latent", [
    ("latent-size-zero", lambda: nk.LatentODE(2, 0, 2, 2, 1, key=KEY), V, r"`latent_size` must be an int >= 1; got 0"),
    ("hidden-size-zero", lambda: nk.LatentODE(2, 2, 0, 2, 1, key=KEY), V, r"`hidden_size` must be an int >= 1; got 0"),
    ("obs-std-zero", lambda: nk.LatentODE(2, 2, 2, 2, 1, obs_std=0.0, key=KEY), V, r"`obs_std` must be a positive float; got obs_std=0\.0"),
    ("obs-std-nan", lambda: nk.LatentODE(2, 2, 2, 2, 1, obs_std=NAN, key=KEY), V, r"`obs_std` must be a positive float; got obs_std=nan"),
    ("obs-std-inf", lambda: nk.LatentODE(2, 2, 2, 2, 1, obs_std=INF, key=KEY), V, r"`obs_std` must be a positive float \(not inf\); got obs_std=inf"),
    ("num-classes-zero", lambda: nk.LatentODE(2, 2, 2, 2, 1, num_classes=0, key=KEY), V, r"`num_classes` must be an int >= 2 or None; got 0"),
    ("num-classes-one", lambda: nk.LatentODE(2, 2, 2, 2, 1, num_classes=1, key=KEY), V, r"`num_classes` must be an int >= 2 or None; got 1\. A classifier needs two classes or more"),
    ("encoder-settings-string", lambda: nk.LatentODE(2, 2, 2, 2, 1, encoder_settings="euler", key=KEY), V, r"`settings` must be a node_kit\.SolveSettings; got str"),
    ("encoder-keyword", lambda: nk.LatentODE(2, 2, 2, 2, 1, encoder_solver=diffrax.Euler(), key=KEY), V, r"unknown solve setting\(s\) encoder_solver.*takes `encoder_settings=`"),
    ("key-none", lambda: nk.LatentODE(2, 2, 2, 2, 1, key=None), V, r"`key` must be a JAX PRNG key; got NoneType"),
    ("elbo-num-samples-zero", lambda: _latent().elbo(TS, VALUES, MASK, key=KEY, num_samples=0), V, r"`num_samples` must be an int >= 1; got 0"),
    ("elbo-key-int", lambda: _latent().elbo(TS, VALUES, MASK, key=0), V, r"`key` must be a JAX PRNG key; got int 0"),
    ("elbo-ts-repeated", lambda: _latent().elbo(jnp.array([0.0, 0.5, 0.5]), VALUES, MASK, key=KEY), V, r"`ts` must be strictly increasing within a series; got ts\[2\]=0\.5 <= ts\[1\]=0\.5"),
    ("elbo-target-mask-shape", lambda: _latent().elbo(TS, VALUES, MASK, key=KEY, target_mask=jnp.ones((2, 2))), V, r"`mask` must have the shape of `values` \(3, 2\) .*; got \(2, 2\)"),
    ("elbo-mask-all-zero", lambda: _latent().elbo(TS, VALUES, jnp.zeros((3, 2)), key=KEY), V, r"`mask` must observe at least one entry of every series; got a series with every entry 0"),
    ("elbo-target-all-zero", lambda: _latent().elbo(TS, VALUES, MASK, key=KEY, target_mask=jnp.zeros((3, 2), bool)), V, r"`target_mask` must observe at least one entry of every series"),
    ("elbo-and-logits-no-classifier", lambda: _latent().elbo_and_logits(TS, VALUES, MASK, key=KEY), V, r"this LatentODE has no classifier; construct it with `num_classes=`"),
    ("classify-no-classifier", lambda: _latent().classify(TS, VALUES, MASK), V, r"this LatentODE has no classifier; construct it with `num_classes=`"),
    ("classify-key-int", lambda: _latent(3).classify(TS, VALUES, MASK, key=1), V, r"`key` must be a JAX PRNG key; got int 1"),
    ("predict-query-decreasing", lambda: _latent().predict(TS, VALUES, MASK, jnp.array([1.0, 0.0]), key=KEY), V, r"`ts_query` must be strictly increasing within a series; got ts_query\[1\]=0\.0"),
    ("predict-num-samples-negative", lambda: _latent().predict(TS, VALUES, MASK, TS, key=KEY, num_samples=-1), V, r"`num_samples` must be an int >= 1; got -1"),
    ("decode-ts-2d", lambda: _latent().decode(jnp.ones((2, 2)), jnp.ones(2)), V, r"`ts` must be a non-empty 1-D array of times for ONE series; got shape \(2, 2\)"),
    ("loss-mask-all-zero", lambda: nk.latent_ode_loss(_latent(), _batch(mask=jnp.ones((2, 3, 2)).at[1].set(0)), KEY), V, r"`mask` must observe at least one entry of every series; got a series with every entry 0 \(series 1 of the batch\)"),
    ("loss-target-all-zero", lambda: nk.latent_ode_loss(_latent(), _batch(target_mask=jnp.zeros((2, 3, 2), bool)), KEY), V, r"`target_mask` must observe at least one entry of every series; got .* \(series 0 of the batch\)"),
    ("loss-kl-weight-negative", lambda: nk.latent_ode_loss(_latent(), _batch(), KEY, kl_weight=-1.0), V, r"`kl_weight` must be a non-negative float \(or a traced scalar\); got -1\.0"),
    ("loss-kl-weight-nan", lambda: nk.latent_ode_loss(_latent(), _batch(), KEY, kl_weight=NAN), V, r"`kl_weight` must be a non-negative float .*; got nan"),
    ("loss-kl-weight-string", lambda: nk.latent_ode_loss(_latent(), _batch(), KEY, kl_weight="1"), V, r"`kl_weight` must be a non-negative float .*; got '1'"),
    ("loss-kl-weight-array-negative", lambda: nk.latent_ode_loss(_latent(), _batch(), KEY, kl_weight=jnp.array(-0.5)), V, r"`kl_weight` must be a non-negative float .*; got -0\.5"),
    ("loss-batch-without-x", lambda: nk.latent_ode_loss(_latent(), {"t": TS}, KEY), V, r"`batch` must be a dict with the times \"t\" .*; got a dict with the keys \['t'\]"),
    ("loss-batch-tuple", lambda: nk.latent_ode_loss(_latent(), (TS, VALUES), KEY), V, r"`batch` must be a dict with the times \"t\" .*; got tuple"),
    ("loss-num-samples-zero", lambda: nk.latent_ode_loss(_latent(), _batch(), KEY, num_samples=0), V, r"`num_samples` must be an int >= 1; got 0"),
    ("vmap-mask-all-zero", lambda: jax.vmap(lambda m: _latent().elbo(TS, VALUES, m, key=KEY))(jnp.zeros((2, 3, 2), bool)), RT, r"`mask` must observe at least one entry of every series"),
    ("vmap-kl-weight-negative", lambda: jax.vmap(lambda w: nk.latent_ode_loss(_latent(), _batch(), KEY, kl_weight=w))(jnp.array([-1.0])), RT, r"`kl_weight` must be finite and non-negative"),
    ("terms-key-int", lambda: nk.latent_ode_terms(_latent(), _batch(), 0), V, r"`key` must be a JAX PRNG key; got int 0"),
    ("terms-logits-no-classifier", lambda: nk.latent_ode_terms(_latent(), _batch(), KEY, logits=True), V, r"this LatentODE has no classifier"),
])


# --- training and checkpoints ------------------------------------------------------------


def _loss(model, batch, key):
    del batch, key
    return jnp.sum(model["w"] ** 2), {}


def _fit(**changes):
    arguments = {"model": {"w": jnp.ones(2)}, "loss_fn": _loss, "optimizer": optax.sgd(0.1),
                 "batch_at": lambda step: None, "num_steps": 2, "key": KEY, "progress": False}
    return nk.fit(**{**arguments, **changes})


_TEMP = tempfile.TemporaryDirectory()  # removed when the process ends


@functools.cache
def _files() -> dict[str, Path]:
    """Checkpoint files, good and bad, in a folder removed when the process ends."""
    folder = Path(_TEMP.name)
    good = folder / "good.eqx"
    nk.save_checkpoint(good, nk.Checkpoint({"w": jnp.ones(2)}, None, 1), {"lr": 0.1})
    data, sidecar = good.read_bytes(), (folder / "good.eqx.json").read_bytes()
    files = {"good": good, "missing": folder / "missing.eqx"}
    for name, content, its_sidecar in (
            ("text", b"not a checkpoint\n", None), ("truncated", data[:30], sidecar),
            ("flipped", data[:-3] + bytes([data[-3] ^ 1]) + data[-2:], sidecar)):
        files[name] = folder / f"{name}.eqx"
        files[name].write_bytes(content)
        if its_sidecar is not None:
            (folder / f"{name}.eqx.json").write_bytes(its_sidecar)
    return files


def _load(name: str, like=None, meta=None, *, resume: bool = False):
    like = nk.Checkpoint({"w": jnp.ones(2)}, None, 0) if like is None else like
    load = nk.resume_checkpoint if resume else nk.load_checkpoint
    return load(_files()[name], like, {"lr": 0.1} if meta is None else meta)


CE = nk.CheckpointError

_add("fit", "fit", [
    ("num-steps-zero", lambda: _fit(num_steps=0), V, r"`num_steps` must be a positive int; got 0"),
    ("num-steps-float", lambda: _fit(num_steps=2.5), V, r"`num_steps` must be a positive int; got 2\.5"),
    ("key-int", lambda: _fit(key=0), V, r"`key` must be a JAX PRNG key; got int 0"),
    ("checkpoint-every-zero", lambda: _fit(checkpoint_every=0), V, r"`checkpoint_every` must be a positive int; got 0"),
    ("log-every-negative", lambda: _fit(log_every=-1), V, r"`log_every` must be a positive int; got -1"),
    ("resume-without-path", lambda: _fit(resume=True), V, r"`resume=True` needs the `checkpoint_path` to resume from; got None"),
    ("resume-missing-file", lambda: _fit(resume=True, checkpoint_path=_files()["missing"]), CE, r"no checkpoint at .*missing\.eqx\. Train without resuming"),
])

_add("fit", "fit", [
    ("optimizer-string", lambda: _fit(optimizer="adam"), V, r"`optimizer` must be an optax\.GradientTransformation"),
    ("batch-at-not-callable", lambda: _fit(batch_at=[1, 2]), V, r"`batch_at` must be a callable"),
    ("make-step-optimizer-string", lambda: nk.make_step({"w": Y0}, None, None, KEY, _loss, "adam"), V, r"`optimizer` must be an optax\.GradientTransformation"),
])

def _pair(loss, aux):
    """A loss_fn returning `(loss(w), aux(w))`."""
    return lambda model, batch, key: (loss(model["w"]), aux(model["w"]))


_add("fit", "fit", [
    ("loss-vector", lambda: _fit(loss_fn=_pair(lambda w: w ** 2, lambda w: {})), V, r"`loss_fn\(model, batch, key\)` must return a pair `\(loss, aux\)` with `loss` a scalar; got shape \(2,\)\. Reduce it"),
    ("loss-without-aux", lambda: _fit(loss_fn=lambda m, b, k: jnp.sum(m["w"] ** 2)), V, r"must return a pair `\(loss, aux\)`; got one array of shape \(\)\. Return the loss with its aux"),
    ("loss-three-values", lambda: _fit(loss_fn=lambda m, b, k: (jnp.sum(m["w"]), {}, 0)), V, r"must return a pair `\(loss, aux\)`; got a tuple of 3"),
    ("loss-string", lambda: _fit(loss_fn=_pair(lambda w: "loss", lambda w: {})), V, r"with `loss` a scalar; got str"),
    ("aux-vector", lambda: _fit(loss_fn=_pair(jnp.sum, lambda w: {"w": w})), V, r"`aux\['w'\]` returned by `loss_fn` must be a scalar under a str name .*; got shape \(2,\)"),
    ("aux-none", lambda: _fit(loss_fn=_pair(jnp.sum, lambda w: None)), V, r"with `aux` a dict of scalars, which fit logs; got NoneType\. Return \{\}"),
    ("aux-list", lambda: _fit(loss_fn=_pair(jnp.sum, lambda w: [w[0]])), V, r"with `aux` a dict of scalars, which fit logs; got list"),
    ("empty-batch", lambda: _fit(batch_at=lambda step: {"x": jnp.zeros((0, 2))}), V, r"`batch` holds an empty array at \['x'\] \(shape \(0, 2\)\): a step needs at least one sample"),
    ("no-trainable-arrays", lambda: _fit(model={"n": jnp.arange(2)}), V, r"`model` has no floating-point arrays to train \(a dict"),
    ("checkpoint-path-folder", lambda: _fit(checkpoint_path=_TEMP.name), V, r"`checkpoint_path` must name a file; got '.*', which is a folder\. Name a file in it, e.g\. '.*checkpoint\.eqx'"),
    ("checkpoint-path-empty", lambda: _fit(checkpoint_path=""), V, r"`checkpoint_path` must name a file; got '\.', which is a folder"),
    ("checkpoint-path-below-file", lambda: _fit(checkpoint_path=Path(__file__) / "c.eqx"), V, r"`checkpoint_path` '.*c\.eqx' lies below '.*test_bad_inputs\.py', which is a file"),
    ("checkpoint-path-int", lambda: _fit(checkpoint_path=3), V, r"`checkpoint_path` must be a file path \(a str or pathlib\.Path\) or None; got int 3"),
    ("explosion-factor-below-one", lambda: _fit(explosion_factor=0.5), V, r"`explosion_factor` must be a number above 1 \(a ratio to the first losses\) or None; got 0\.5"),
    ("explosion-factor-string", lambda: _fit(explosion_factor="1e4"), V, r"`explosion_factor` must be a number above 1 .*; got '1e4'"),
    ("explosion-factor-nan", lambda: _fit(explosion_factor=NAN), V, r"`explosion_factor` must be a number above 1 .*; got nan"),
    ("history-path-folder", lambda: _fit(history_path=_TEMP.name), V, r"`history_path` must name a file; got '.*', which is a folder\. Name a file in it, e\.g\. '.*history\.csv'"),
    ("make-step-opt-state-none", lambda: nk.make_step({"w": Y0}, None, None, KEY, _loss, optax.sgd(0.1)), V, r"`opt_state` is None; pass the optimizer's state"),
    ("make-step-key-int", lambda: nk.make_step({"w": Y0}, optax.sgd(0.1).init({"w": Y0}), None, 0, _loss, optax.sgd(0.1)), V, r"`key` must be a JAX PRNG key; got int 0"),
    ("make-step-loss-vector", lambda: nk.make_step({"w": Y0}, optax.sgd(0.1).init({"w": Y0}), None, KEY, _pair(lambda w: w, lambda w: {}), optax.sgd(0.1)), V, r"with `loss` a scalar; got shape \(2,\)"),
])

_add("checkpoint", "ckpt", [
    ("load-folder", lambda: nk.load_checkpoint(_TEMP.name, nk.Checkpoint({"w": jnp.ones(2)}, None, 0), {}), CE, r"is a folder, not a checkpoint file\. Pass the checkpoint file in it"),
    ("load-like-model", lambda: nk.load_checkpoint(_files()["good"], {"w": jnp.ones(2)}, {}), V, r"`like` must be a node_kit\.Checkpoint of the structure to load into; got dict"),
    ("load-meta-none", lambda: nk.load_checkpoint(_files()["good"], nk.Checkpoint({"w": jnp.ones(2)}, None, 0), None), V, r"`meta` must be a dict \(the config the checkpoint must match, \{\} for none\); got NoneType"),
])

_add("checkpoint", "ckpt", [
    ("load-missing", lambda: _load("missing"), CE, r"no checkpoint at .*missing\.eqx"),
    ("load-not-a-checkpoint", lambda: _load("text"), CE, r"checkpoint .*text\.eqx cannot be read: its sidecar text\.eqx\.json is missing .*, and the file is in no older node_kit format \(17 bytes\)"),
    ("load-truncated", lambda: _load("truncated"), CE, r"checkpoint .*truncated\.eqx is damaged: it holds 30 bytes where its sidecar truncated\.eqx\.json records \d+"),
    ("load-flipped-byte", lambda: _load("flipped"), CE, r"checkpoint .*flipped\.eqx is damaged: its contents do not match the checksum in its sidecar flipped\.eqx\.json"),
    ("load-other-config", lambda: _load("good", meta={"lr": 0.2}), CE, r"checkpoint .*good\.eqx is from another config \(lr: checkpoint 0\.1 vs now 0\.2\)"),
    ("load-other-model-size", lambda: _load("good", like=nk.Checkpoint({"w": jnp.ones(3)}, None, 0)), CE, r"checkpoint .*good\.eqx does not fit this model and optimizer"),
    ("resume-damaged-no-previous", lambda: _load("flipped", resume=True), CE, r"checkpoint .*flipped\.eqx is damaged"),
    ("save-meta-not-json", lambda: nk.save_checkpoint(Path(_TEMP.name) / "x.eqx", nk.Checkpoint({}, None, 0), {"solver": diffrax.Tsit5()}), V, r"`meta` must hold JSON values only .*; got Object of type Tsit5 is not JSON serializable"),
    ("save-meta-nan", lambda: nk.save_checkpoint(Path(_TEMP.name) / "x.eqx", nk.Checkpoint({}, None, 0), {"lr": NAN}), V, r"`meta` must hold JSON values only .*finite float"),
])

_add("checkpoint", "ckpt", [
    ("save-state-not-checkpoint", lambda: nk.save_checkpoint(Path(_TEMP.name) / "y.eqx", {"w": 1}, {}), V, r"`state` must be a node_kit\.Checkpoint"),
])


# --- round three: what a user would plausibly pass wrong, asked of each public function ------

def _afile() -> Path:
    """A plain file, where a folder or a file to write is expected."""
    path = Path(_TEMP.name) / "a_file"
    path.write_text("not a folder\n")
    return path


def _w() -> nk.Checkpoint:
    return nk.Checkpoint({"w": jnp.ones(2)}, None, 0)


# Sizes that cannot fit: refused with the predicted bytes and the argument to lower, before
# anything is allocated (4e12 bytes: more than any device has).
_FITS = r"needs at least [\d.e+]+ GiB \(4\d{12} bytes\), more than the [\d.e+]+ GiB the device has"
_add("MLPField", "mlp", [
    ("width-1e6", lambda: nk.MLPField(2, 10**6, 2, key=KEY), V, r"a field MLP of width_size=1000000 and depth=2 \(its float32 weights\) " + _FITS + r" \(\w+\)\. Lower `width_size`"),
])
_add("ConcatSquashField", "concat", [
    ("width-1e6", lambda: nk.ConcatSquashField(2, 10**6, 2, key=KEY), V, r"a field MLP of width_size=1000000 .*" + _FITS),
])
_add("NeuralODE", "ode", [
    ("direct-max-steps-1e9", lambda: nk.NeuralODE(lambda t, y, a: -y, adjoint="direct", max_steps=10**9)(TS, jnp.ones(500)), V, r"the adjoint, which keeps 1000000000 steps of this state \(4000 bytes\) for the backward pass, " + _FITS + r".*Lower `max_steps`"),
])
_add("DEQ", "deq", [
    ("unrolled-max-steps-1e9", lambda: nk.DEQ(lambda z, x: 0.5 * z + x, (500,), backward="unrolled", max_steps=10**9)(jnp.ones(500)), V, r"the unrolled backward pass, which stores each of max_steps=1000000000 forward iterations of this state \(4000 bytes\), " + _FITS + r".*backward='implicit'"),
])

def _grad_wrt_last_time(adjoint: str):
    model = nk.NeuralODE(lambda t, y, a: -y, adjoint=adjoint)
    return jax.grad(lambda t1: model(jnp.stack([0.0, t1]), Y0)[-1].sum())(1.0)


_add("NeuralODE", "ode", [
    ("backsolve-grad-wrt-ts", lambda: _grad_wrt_last_time("backsolve"), V, r"the backsolve adjoint cannot differentiate the output times `ts` .*Use adjoint='checkpoint' or 'direct'"),
])

_add("runs and history", "runs", [
    ("load-run-missing", lambda: nk.load_run(Path(_TEMP.name) / "nope"), V, r"`run` must be the output folder of a training run .*; got '.*nope', which does not exist"),
    ("load-run-file", lambda: nk.load_run(_afile()), V, r"`run` must be the output folder .*; got '.*a_file', which is a file, not a folder"),
    ("load-run-empty-folder", lambda: nk.load_run(tempfile.mkdtemp(dir=_TEMP.name)), V, r"`run` must be the output folder of a training run; '.*' holds no trained run \(no model\.eqx or checkpoint\.eqx\)"),
    ("load-run-int", lambda: nk.load_run(3), V, r"`run` must be the output folder of a training run \(a str or path, .*\); got int"),
    ("load-run-best-missing", lambda: nk.load_run(tempfile.mkdtemp(dir=_TEMP.name), best=True), V, r"holds no best\.eqx .*Pass best=False"),
    ("read-history-folder", lambda: nk.read_history(_TEMP.name), V, r"`path` must be a history CSV file; got '.*', which is a folder"),
    ("read-history-not-a-history", lambda: nk.read_history(_afile()), V, r"`path` '.*a_file' is not a history CSV of node_kit\.fit \(its header has no 'step' and 'loss' columns"),
    ("save-path-folder", lambda: nk.save_checkpoint(_TEMP.name, _w(), {}), V, r"`path` must name a file; got '.*', which is a folder\. Name a file in it, e\.g\. '.*checkpoint\.eqx'"),
    ("save-path-below-file", lambda: nk.save_checkpoint(_afile() / "c.eqx", _w(), {}), V, r"`path` '.*c\.eqx' lies below '.*a_file', which is a file"),
    ("save-step-negative", lambda: nk.save_checkpoint(Path(_TEMP.name) / "n.eqx", nk.Checkpoint({"w": jnp.ones(2)}, None, -1), {}), V, r"`state\.step` must be a non-negative int; got -1"),
    ("save-step-float", lambda: nk.save_checkpoint(Path(_TEMP.name) / "n.eqx", nk.Checkpoint({"w": jnp.ones(2)}, None, 1.5), {}), V, r"`state\.step` must be a non-negative int; got 1\.5"),
    ("save-meta-list", lambda: nk.save_checkpoint(Path(_TEMP.name) / "n.eqx", _w(), [1]), V, r"`meta` must be a dict of JSON values; got list"),
    ("save-info-string", lambda: nk.save_checkpoint(Path(_TEMP.name) / "n.eqx", _w(), {}, info="x"), V, r"`info` must be a dict of JSON values or None; got str"),
    ("resume-like-dict", lambda: nk.resume_checkpoint(Path(_TEMP.name) / "x.eqx", {"w": 1}, {}), V, r"`like` must be a node_kit\.Checkpoint of the structure to load into; got dict"),
])

_add("fit", "fit", [
    ("evaluate-not-callable", lambda: _fit(evaluate=3), V, r"`evaluate` must be a callable evaluate\(model, step\) -> dict; got int 3"),
    ("evaluate-every-zero", lambda: _fit(evaluate=lambda m, s: {}, evaluate_every=0), V, r"`evaluate_every` must be a positive int; got 0"),
    ("evaluate-returns-list", lambda: _fit(evaluate=lambda m, s: [1.0], evaluate_every=1), V, r"`evaluate\(model, step\)` must return a dict of scalars by name .*; got list after step 1"),
    ("evaluate-returns-vector", lambda: _fit(evaluate=lambda m, s: {"v": jnp.ones(3)}, evaluate_every=1), V, r"`evaluate\(model, step\)` must return a dict of scalars by name .*; got 'v': ArrayImpl of shape \(3,\) after step 1"),
    ("meta-list", lambda: _fit(meta=[1, 2]), V, r"`meta` must be a dict of JSON values \(the config a resume must match\) or None; got list"),
    ("info-string", lambda: _fit(info="x", checkpoint_path=Path(_TEMP.name) / "i.eqx"), V, r"`info` must be a dict of JSON values or None; got str"),
    ("progress-string", lambda: _fit(progress="yes"), V, r"`progress` must be a Python bool; got str"),
    ("resume-string", lambda: _fit(resume="yes"), V, r"`resume=True` needs the `checkpoint_path` to resume from"),
    ("data-parallel-int", lambda: _fit(data_parallel=2), V, r"`data_parallel` must be a node_kit\.DataParallel or None; got int\. E\.g\. data_parallel=nk\.DataParallel\(4\)"),
    ("batch-at-raises", lambda: _fit(batch_at=lambda step: [][step]), IndexError, r"(?s)list index out of range.*raised by batch_at\(0\), which fit calls for each step's batch"),
    ("num-steps-bool", lambda: _fit(num_steps=True), V, r"`num_steps` must be a positive int; got True"),
    ("log-every-float", lambda: _fit(log_every=1.5), V, r"`log_every` must be a positive int; got 1\.5"),
    ("model-none", lambda: _fit(model=None), V, r"`model` has no floating-point arrays to train \(a NoneType"),
    ("make-step-model-none", lambda: nk.make_step(None, optax.sgd(0.1).init({"w": Y0}), None, KEY, _loss, optax.sgd(0.1)), V, r"`model` has no floating-point arrays to train"),
])

_add("parallel", "parallel", [
    ("devices-zero", lambda: nk.DataParallel(0), V, r"`devices` must be an int in \[1, \d+\] \(the devices JAX sees: .*\); got 0"),
    ("devices-negative", lambda: nk.DataParallel(-1), V, r"`devices` must be an int in \[1, \d+\] .*; got -1"),
    ("devices-float", lambda: nk.DataParallel(1.5), V, r"`devices` must be None \(all devices\), a number of devices, or a list of jax\.Device; got float 1\.5"),
    ("per-device-string", lambda: nk.DataParallel(1, per_device="yes"), V, r"`per_device` must be a Python bool; got str"),
    ("timeout-zero", lambda: nk.initialize_distributed("127.0.0.1:1", 2, 0, timeout=0), V, r"`timeout` must be a positive int; got 0\. E\.g\. timeout=120 \(seconds\)"),
    ("coordinator-no-port", lambda: nk.initialize_distributed("localhost", 2, 0), V, r"`coordinator` must be 'host:port', e\.g\. '10\.0\.0\.1:1234'; got 'localhost'"),
    ("process-id-out-of-range", lambda: nk.initialize_distributed("localhost:1234", 2, 2), V, r"`process_id` must be an int in \[0, 1\]; got 2"),
    ("num-processes-zero", lambda: nk.initialize_distributed("localhost:1234", 0, 0), V, r"`num_processes` must be a positive int; got 0"),
])

_add("NeuralODE", "ode", [
    ("args-axis-string", lambda: nk.NeuralODE(_field()).batched(TS, jnp.ones((3, 2)), None, args_axis="0"), V, r"`args_axis` must be None \(the batch shares `args`\) or 0 .*; got '0'"),
    ("args-axis-one", lambda: nk.NeuralODE(_field()).batched(TS, jnp.ones((3, 2)), jnp.ones((2, 3)), args_axis=1), V, r"`args_axis` must be None .* or 0 .*; got 1"),
    ("with-settings-string", lambda: nk.NeuralODE(_field()).with_settings("tsit5"), V, r"`settings` must be a node_kit\.SolveSettings; got str"),
    ("backsolve-controller-string", lambda: nk.backsolve_adjoint("pid"), V, r"`stepsize_controller` must be a diffrax step-size controller .* or None; got str 'pid'"),
])

_add("CNF", "cnf", [
    ("log-prob-given-a-batch", lambda: _cnf().log_prob(jnp.ones((5, 2))), V, r"`x` must have shape \(data_size,\) with data_size=2 .*; got shape \(5, 2\)\. Use the \*_batched method or jax\.vmap"),
    ("log-prob-batched-3d", lambda: _cnf().log_prob_batched(jnp.ones((5, 2, 1))), V, r"`xs` must have shape \(batch, data_size\) with data_size=2 .*; got shape \(5, 2, 1\)"),
    ("inverse-wrong-size", lambda: _cnf().inverse(jnp.ones(3)), V, r"`z` must have shape \(data_size,\) with data_size=2 .*; got shape \(3,\)"),
    ("sample-and-log-prob-key-int", lambda: _cnf().sample_and_log_prob(key=0), V, r"`key` must be a JAX PRNG key; got int 0"),
    ("with-settings-string", lambda: _cnf().with_settings("tsit5"), V, r"`settings` must be a node_kit\.SolveSettings; got str"),
    ("with-trace-estimator-string", lambda: _cnf().with_trace_estimator("hutchinson"), V, r"`trace_estimator` must be an AbstractTraceEstimator .*; got str"),
])

_add("ODERNN", "rnn", [
    ("with-settings-string", lambda: _rnn().with_settings("tsit5"), V, r"`settings` must be a node_kit\.SolveSettings; got str"),
    ("state-at-t-string", lambda: _rnn().state_at(TS, jnp.ones((3, 2)), jnp.ones((3, 2)), "1"), V, r"`t` must be one time, a real scalar; got str '1'"),
    ("state-at-t-vector", lambda: _rnn().state_at(TS, jnp.ones((3, 2)), jnp.ones((3, 2)), TS), V, r"`t` must be one time, a real scalar; got ArrayImpl"),
    ("predict-mask-3d", lambda: _rnn().predict(TS, jnp.ones((3, 2)), jnp.ones((3, 2, 1))), V, r"`mask` must have the shape of `values` \(3, 2\) .*; got \(3, 2, 1\)"),
    ("gru-values-wrong-channels", lambda: _gru()(TS, jnp.ones((3, 5)), jnp.ones((3, 5))), V, r"`values` must be a float array of shape \(len\(ts\), data_size\) = \(3, 2\) .*; got float64\(3, 5\)"),
])

_add("LatentODE", "latent", [
    ("posterior-ts-string", lambda: _latent().posterior("abc", jnp.ones((3, 2)), jnp.ones((3, 2))), V, r"`ts` must be a 1-D array of times; got str 'abc'"),
    ("predict-key-none", lambda: _latent().predict(TS, jnp.ones((3, 2)), jnp.ones((3, 2)), TS, key=None), V, r"`key` must be a JAX PRNG key; got NoneType None"),
    ("elbo-num-samples-float", lambda: _latent().elbo(TS, jnp.ones((3, 2)), jnp.ones((3, 2)), key=KEY, num_samples=1.5), V, r"`num_samples` must be an int >= 1; got 1\.5"),
])

_add("DEQ", "deq", [
    ("replace-unknown", lambda: _deq().replace(width=3), V, r"`DEQ\.replace` got unknown arguments \['width'\]; expected some of f, state_shape"),
])

_add("memory", "memory", [
    ("predict-zero-checkpoints", lambda: _memory_model().predict(0), V, r"`checkpoints` must be a positive int; got 0"),
    ("predict-float-checkpoints", lambda: _memory_model().predict(2.5), V, r"`checkpoints` must be a positive int; got 2\.5"),
    ("checkpoint-adjoint-string", lambda: nk.checkpoint_adjoint("4"), V, r"`checkpoints` must be a positive integer; got '4'"),
])

_add("meta-learning", "meta", [
    ("maml-inner-steps-float", lambda: nk.MAML(1.5), V, r"`inner_steps` must be a non-negative int; got 1\.5"),
    ("imaml-max-steps-zero", lambda: nk.IMAML(max_steps=0), V, r"`max_steps` must be a positive int; got 0"),
    ("meta-loss-learner-class", lambda: nk.meta_loss(nk.MAML, _meta_model(), _mse_task, *_TASKS), V, r"`learner` must be a node_kit\.AbstractMetaLearner .*; got the class MAML \(pass an instance"),
])

_add("datasets", "data", [
    ("data-dir-a-file", lambda: datasets.load("8gaussians", "train", data_dir=str(_afile())), V, r"`data_dir` must name a folder for the datasets; '.*a_file' is a file\. Pass another folder"),
    ("data-dir-below-a-file", lambda: datasets.load("8gaussians", "train", data_dir=str(_afile() / "d")), V, r"`data_dir` must name a folder for the datasets; '.*d' lies below '.*a_file', which is a file"),
    ("data-dir-uncreatable", lambda: datasets.load("8gaussians", "train", data_dir="/proc/node_kit_data"), V, r"`data_dir`: cannot create the folder '/proc/node_kit_data' \(.*\)\. Choose a folder this process can write to"),
    ("data-dir-int", lambda: datasets.load("8gaussians", "train", data_dir=3), V, r"`data_dir` must name a folder for the datasets; got 3\. Pass another folder, or None"),
    ("batch-at-step-float", lambda: datasets.batch_at(_X, 1.5, batch_size=2, seed=0), V, r"`step` must be a non-negative int; got step=1\.5"),
    ("batch-at-batch-size-string", lambda: datasets.batch_at(_X, 1, batch_size="2", seed=0), V, r"`batch_size` must be a positive int; got batch_size='2'"),
])


# --- datasets ------------------------------------------------------------------------------

_SPEC = {"name": "tiny", "default_sizes": (1, 1, 1), "generate": lambda sizes, seed: None,
         "features": {"x": datasets.Feature((2,), np.float32)}, "description": "a test spec"}
_X = np.zeros((4, 2))

_add("datasets", "data", [
    ("load-name-int", lambda: datasets.load(3, "train"), V, r"`name` must be a string; got 3"),
    ("load-split-unknown", lambda: datasets.load("8gaussians", "training"), V, r"`split` must be one of \['train', 'validation', 'test'\] for '8gaussians'; got split='training'"),
    ("load-seed-negative", lambda: datasets.load("8gaussians", "train", seed=-1), V, r"`seed` must be a non-negative int; got seed=-1"),
    ("load-seed-float", lambda: datasets.load("8gaussians", "train", seed=1.5), V, r"`seed` must be a non-negative int; got seed=1\.5"),
    ("load-split-sizes-two", lambda: datasets.load("8gaussians", "train", split_sizes=(1, 2)), V, r"`split_sizes` must be three positive ints .*; got split_sizes=\(1, 2\)"),
    ("load-split-sizes-zero", lambda: datasets.load("8gaussians", "train", split_sizes=(0, 1, 1)), V, r"`split_sizes` must be three positive ints .*; got split_sizes=\(0, 1, 1\)"),
    ("load-split-sizes-int", lambda: datasets.load("8gaussians", "train", split_sizes=5), V, r"`split_sizes` must be three positive ints .*; got split_sizes=5"),
    ("load-digits-sizes", lambda: datasets.load("digits", "train", split_sizes=(1, 1, 1)), V, r"split_sizes.*1797"),
    ("load-unknown-name", lambda: datasets.load("mnist3", "train"), V, r"`name` must be a node_kit dataset, one of .*; got name='mnist3'"),
    ("load-seed-for-tfds", lambda: datasets.load("mnist", "train", seed=1), V, r"`seed` and `split_sizes` apply only to node_kit datasets .*; got name='mnist'"),
    ("metadata-unknown-name", lambda: datasets.metadata("8gaussian"), V, r"`name` must be a node_kit dataset.*Did you mean '8gaussians'"),
    ("metadata-seed-negative", lambda: datasets.metadata("8gaussians", seed=-2), V, r"`seed` must be a non-negative int; got seed=-2"),
    ("get-spec-unknown", lambda: datasets.get_spec("nope"), V, r"`name` must be one of \[.*\]; got name='nope'"),
    ("batch-step-negative", lambda: datasets.batch_at(_X, -1, batch_size=2, seed=0), V, r"`step` must be a non-negative int; got step=-1"),
    ("batch-size-zero", lambda: datasets.batch_at(_X, 0, batch_size=0, seed=0), V, r"`batch_size` must be a positive int; got batch_size=0"),
    ("batch-size-larger-than-data", lambda: datasets.batch_at(_X, 0, batch_size=8, seed=0), V, r"`batch_size` must be at most the number of examples; got batch_size=8 for 4 examples"),
    ("batch-seed-negative", lambda: datasets.batch_at(_X, 0, batch_size=2, seed=-1), V, r"`seed` must be a non-negative int; got seed=-1"),
    ("batch-empty-tree", lambda: datasets.batch_at({}, 0, batch_size=2, seed=0), V, r"`data` must hold at least one array; got an empty PyTree"),
    ("batch-ragged-tree", lambda: datasets.batch_at({"x": _X, "y": np.zeros(3)}, 0, batch_size=2, seed=0), V, r"`data` must be an array or a PyTree .* sharing their first axis; got leading sizes \['3', '4'\]"),
    ("batches-epoch-negative", lambda: list(datasets.batches(_X, batch_size=2, seed=0, epoch=-1)), V, r"`epoch` must be a non-negative int; got epoch=-1"),
    ("num-batches-no-examples", lambda: datasets.num_batches(0, 1), V, r"`num_examples` must be a positive int; got num_examples=0"),
    ("register-not-spec", lambda: datasets.register("tiny"), V, r"`spec` must be a DatasetSpec; got str"),
    ("register-name-taken", lambda: datasets.register(datasets.DatasetSpec(**{**_SPEC, "name": "moons"})), V, r"a dataset named 'moons' is already registered; pick another `name`"),
    ("spec-sizes-two", lambda: datasets.DatasetSpec(**{**_SPEC, "default_sizes": (1, 2)}), V, r"`split_sizes` must be three positive ints .*; got split_sizes=\(1, 2\)"),
    ("spec-name-empty", lambda: datasets.DatasetSpec(**{**_SPEC, "name": ""}), V, r"`name` must be a non-empty string; got name=''"),
    ("spec-generate-not-callable", lambda: datasets.DatasetSpec(**{**_SPEC, "generate": "x"}), V, r"`generate` must be a function `generate\(sizes, seed\) -> Generated`; got str"),
    ("spec-features-tuple", lambda: datasets.DatasetSpec(**{**_SPEC, "features": {"x": (2,)}}), V, r"`features` must map feature names to `Feature\(shape, dtype\)`; got features=\{'x': \(2,\)\}"),
    ("toy-unknown", lambda: datasets.sample_toy2d("spiral", 10, seed=0), V, r"`name` must be one of the 2-D toys \[.*\]; got name='spiral'"),
    ("toy-num-samples-zero", lambda: datasets.sample_toy2d("moons", 0, seed=0), V, r"`num_samples` must be at least 1 and an int; got num_samples=0"),
    ("toy-seed-negative", lambda: datasets.sample_toy2d("moons", 10, seed=-1), V, r"`seed` must be a non-negative int; got seed=-1"),
    ("periodic-num-series-zero", lambda: datasets.sample_periodic(0, seed=0), V, r"`num_series` must be a positive int; got num_series=0"),
    ("periodic-num-points-float", lambda: datasets.sample_periodic(2, seed=0, num_points=5.0), V, r"`num_points` must be a positive int; got num_points=5\.0"),
    ("entropy-not-analytic", lambda: datasets.true_entropy("moons"), V, r"`name` must be a 2-D toy with an analytic density, one of .*; got name='moons', a toy without one"),
    ("entropy-one-sample", lambda: datasets.true_entropy("8gaussians", num_samples=1), V, r"`num_samples` must be an int of at least 2 .*; got num_samples=1"),
    ("log-density-wrong-shape", lambda: datasets.log_density("8gaussians", np.ones(3)), V, r"`x` must have shape \(\.\.\., 2\); got shape \(3,\)"),
    ("dequantize-one-level", lambda: datasets.dequantize(_X, key=KEY, num_levels=1), V, r"`num_levels` must be an int of at least 2; got 1"),
    ("dequantize-key-int", lambda: datasets.dequantize(_X, key=7), V, r"`key` must be a JAX PRNG key; got int 7"),
    ("logit-alpha-half", lambda: datasets.logit_transform(_X, alpha=0.5), V, r"`alpha` must satisfy 0 <= alpha < 0\.5 .*; got alpha=0\.5"),
    ("preprocess-alpha-string", lambda: datasets.preprocess(_X, key=KEY, alpha="0.05"), V, r"`alpha` must satisfy 0 <= alpha < 0\.5 .*; got alpha='0\.05'"),
    ("bits-per-dim-zero", lambda: datasets.bits_per_dim(1.0, 0.0, dim=0), V, r"`dim` must be a positive int; got dim=0"),
])


# --- the reversible adjoint and the adjoint from a budget ------------------------------------


def _reversible(**changes):
    return nk.SolveSettings(**{"adjoint": "reversible", **changes})


def _reversible_ts_gradient():
    model = nk.NeuralODE(_field(), solver=diffrax.Heun(), stepsize_controller=diffrax.ConstantStepSize(),
                         dt0=0.25, adjoint="reversible", max_steps=16)
    return jax.grad(lambda ts: model(ts, jnp.ones(2))[-1, 0])(TS)


def _choose(budget=1e9, **changes):
    solve = {"model": nk.NeuralODE(_field(), max_steps=4), "ts": TS, "y0s": jnp.ones((2, 2))}
    return nk.adjoint_for_budget(budget, **{**solve, **changes})


_add("reversible adjoint", "reversible", [
    ("coupling-one", lambda: nk.ReversibleAdjoint(1.0), V, r"`coupling` must be a float in \(0, 1\) \(the coupling parameter λ .*\); got 1\.0\. At 1 the scheme is unstable"),
    ("coupling-zero", lambda: nk.ReversibleAdjoint(0), V, r"`coupling` must be a float in \(0, 1\) .*; got 0\."),
    ("coupling-negative", lambda: nk.ReversibleAdjoint(-0.5), V, r"`coupling` must be a float in \(0, 1\) .*; got -0\.5"),
    ("coupling-above-one", lambda: nk.ReversibleAdjoint(1.5), V, r"`coupling` must be a float in \(0, 1\) .*; got 1\.5"),
    ("coupling-nan", lambda: nk.ReversibleAdjoint(NAN), V, r"`coupling` must be a float in \(0, 1\) .*; got nan"),
    ("coupling-string", lambda: nk.ReversibleAdjoint("0.9"), V, r"`coupling` must be a float in \(0, 1\) .*; got '0\.9'"),
    ("coupling-bool", lambda: nk.ReversibleAdjoint(True), V, r"`coupling` must be a float in \(0, 1\) .*; got True"),
    ("implicit-solver", lambda: _reversible(solver=diffrax.Kvaerno5()), V, r"adjoint 'reversible' needs an explicit single-step solver .*got Kvaerno5, an implicit solver\. Pass one of those, or use adjoint='checkpoint'"),
    ("reversible-heun", lambda: _reversible(solver=diffrax.ReversibleHeun()), V, r"got ReversibleHeun, not an explicit single-step Runge-Kutta solver"),
    ("multistep-solver", lambda: _reversible(solver=diffrax.LeapfrogMidpoint(), stepsize_controller=diffrax.ConstantStepSize(), dt0=0.1), V, r"got LeapfrogMidpoint, not an explicit single-step"),
    ("clip-controller", lambda: _reversible(stepsize_controller=diffrax.ClipStepSizeController(diffrax.PIDController(rtol=1e-3, atol=1e-6), jump_ts=[0.5])), V, r"adjoint 'reversible' works with diffrax\.ConstantStepSize, PIDController or StepTo; got ClipStepSizeController"),
    ("max-steps-none", lambda: _reversible(max_steps=None), V, r"`max_steps=None` cannot be used with adjoint 'reversible': it stores the accepted step times"),
    ("in-diffeqsolve", lambda: diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, a: -y), diffrax.Tsit5(), 0, 1, 0.1, 1.0, adjoint=nk.ReversibleAdjoint()), V, r"node_kit\.ReversibleAdjoint runs through node_kit's solve .*not through diffrax\.diffeqsolve"),
    ("gradient-wrt-ts", _reversible_ts_gradient, V, r"the reversible adjoint cannot differentiate the output times `ts` .* Use adjoint='checkpoint' or 'direct'"),
    ("stepto-with-dt0", lambda: nk.SolveSettings(stepsize_controller=diffrax.StepTo(ts=[0.0, 0.5, 1.0]), dt0=0.1), V, r"`dt0` must be None with diffrax\.StepTo .*; got dt0=0\.1\. Pass dt0=None"),
    ("budget-zero", lambda: _choose(0), V, r"`memory_budget_bytes` must be a finite number of bytes >= 1.*; got 0"),
    ("budget-string", lambda: _choose("1 GiB"), V, r"`memory_budget_bytes` must be a finite number .*; got '1 GiB'"),
    ("prefer-unknown", lambda: _choose(prefer="speed"), V, r"unknown prefer 'speed'; expected one of time, memory"),
    ("repeats-zero", lambda: _choose(repeats=0), V, r"`repeats` must be a positive int; got 0"),
    ("batched-string", lambda: _choose(batched="yes"), V, r"`batched` must be a Python bool; got str"),
    ("model-cnf", lambda: _choose(model=_cnf()), V, r"`model` must be a node_kit\.NeuralODE; got CNF"),
    ("model-max-steps-none", lambda: _choose(model=nk.NeuralODE(_field(), adjoint="backsolve", max_steps=None)), V, r"`model\.settings\.max_steps` must be an int to budget checkpoints .*; got None"),
])


# --- memory --------------------------------------------------------------------------------


@functools.cache
def _memory_model() -> nk.CheckpointMemoryModel:
    return nk.CheckpointMemoryModel(floor_bytes=100, bytes_per_checkpoint=10, max_steps=8)


def _budget(budget, **changes):
    solve = {"model": nk.NeuralODE(_field(), max_steps=4), "ts": TS, "y0s": jnp.ones((2, 2))}
    return nk.checkpoint_adjoint_for_budget(budget, **{**solve, **changes})


_add("memory", "mem", [
    ("budget-zero", lambda: _budget(0), V, r"`memory_budget_bytes` must be a finite number of bytes >= 1, an int or a float .*; got 0"),
    ("budget-negative-float", lambda: _budget(-1.5e9), V, r"`memory_budget_bytes` must be a finite number of bytes >= 1.*; got -1500000000\.0"),
    ("budget-nan", lambda: _budget(np.float64(NAN)), V, r"`memory_budget_bytes` must be a finite number .*; got (np\.float64\()?nan"),
    ("budget-inf", lambda: _budget(INF), V, r"`memory_budget_bytes` must be a finite number .*; got inf"),
    ("budget-string", lambda: _budget("1e9"), V, r"`memory_budget_bytes` must be a finite number .*; got '1e9'"),
    ("budget-bool", lambda: _budget(True), V, r"`memory_budget_bytes` must be a finite number .*; got True"),
    ("budget-below-one-byte", lambda: _memory_model().checkpoints_for(0.5), V, r"`memory_budget_bytes` must be a finite number of bytes >= 1.*; got 0\.5"),
    ("budget-below-floor", lambda: _memory_model().checkpoints_for(99.9), V, r"`memory_budget_bytes`=99 \(0\.00 MiB\) is below the floor .*Raise the budget to at least 100 bytes"),
    ("model-not-neural-ode", lambda: _budget(1e9, model=_cnf()), V, r"`model` must be a node_kit\.NeuralODE; got CNF"),
    ("model-max-steps-none", lambda: _budget(1e9, model=nk.NeuralODE(_field(), adjoint="backsolve", max_steps=None)), V, r"`model\.settings\.max_steps` must be an int to budget checkpoints .*; got None"),
    ("verify-string", lambda: _budget(1e9, verify="no"), V, r"`verify` must be a Python bool; got str"),
    ("compile-model-string", lambda: nk.compile_gradient("model", TS, jnp.ones((2, 2))), V, r"`model` must be a node_kit\.NeuralODE; got str"),
    ("compile-batched-string", lambda: nk.compile_gradient(_ode(), TS, jnp.ones((2, 2)), batched="yes"), V, r"`batched` must be a Python bool; got str"),
    ("compile-loss-not-callable", lambda: nk.compile_gradient(_ode(), TS, jnp.ones((2, 2)), loss="mse"), V, r"`loss` must be a callable mapping the states to a scalar; got str 'mse'"),
])


# --- implicit layers ---------------------------------------------------------------------

def _deq_layer(z, x):
    return jnp.tanh(0.5 * z + x)


def _deq(**changes) -> nk.DEQ:
    return nk.DEQ(changes.pop("f", _deq_layer), changes.pop("state_shape", 2), **changes)


_add("DEQ", "deq", [
    ("f-not-callable", lambda: _deq(f="tanh"), V, r"`f` must be a callable f\(z, x\) -> z .*; got str 'tanh'"),
    ("state-shape-zero", lambda: _deq(state_shape=0), V, r"`state_shape` must be a positive int or a tuple of positive ints .*; got 0"),
    ("state-shape-string", lambda: _deq(state_shape="2"), V, r"`state_shape` must be a positive int .*; got '2'"),
    ("backward-unknown", lambda: _deq(backward="adjoint"), V, r"unknown DEQ backward 'adjoint'; expected one of implicit, unrolled, phantom"),
    ("max-steps-zero", lambda: _deq(max_steps=0), V, r"`max_steps` must be a positive int; got 0"),
    ("solver-string", lambda: _deq(solver="anderson"), V, r"`solver` must be an optimistix fixed-point solver or root finder .*; got str"),
    ("solver-optax", lambda: _deq(solver=optax.adam(1e-3)), V, r"`solver` must be an optimistix fixed-point solver"),
    ("linear-solver-string", lambda: _deq(linear_solver="gmres"), V, r"`linear_solver` must be a lineax solver .*; got str"),
    ("phantom-steps-zero", lambda: _deq(phantom_steps=0), V, r"`phantom_steps` must be a positive int; got 0"),
    ("phantom-damping-above-one", lambda: _deq(phantom_damping=1.5), V, r"`phantom_damping` must be a positive float <= 1\.0; got 1\.5"),
    ("throw-int", lambda: _deq(throw=1), V, r"`throw` must be a Python bool; got int"),
    ("z0-shape", lambda: _deq()(jnp.ones(2), jnp.zeros(3)), V, r"`z0` must have shape \(2,\) .*; got \(3,\)"),
    ("output-shape", lambda: _deq(f=lambda z, x: z[:1])(jnp.ones(2)), V, r"`f\(z, x\)` must return an array of the state's shape \(2,\); got \(1,\)"),
    ("x-shape", lambda: _deq()(jnp.ones(3)), V, r"`f\(z, x\)` failed for z of the state's shape \(2,\)"),
    ("batched-no-batch-axis", lambda: _deq().batched(jnp.float32(1.0)), V, r"`xs` must hold arrays with a leading batch axis"),
    ("z0s-shape", lambda: _deq().batched(jnp.ones((3, 2)), jnp.zeros((2, 2))), V, r"`z0s` must have shape \(3, 2\)"),
    ("history-steps-zero", lambda: _deq().residual_history(jnp.ones(2), steps=0), V, r"`steps` must be a positive int; got 0"),
    ("history-root-finder", lambda: _deq(solver=__import__("optimistix").Newton(1e-5, 1e-5)).residual_history(jnp.ones(2)), V, r"`residual_history` steps a fixed-point solver; this DEQ's `solver` is a Newton"),
    ("anderson-rtol-negative", lambda: nk.AndersonAcceleration(rtol=-1.0, atol=1e-6), V, r"`rtol` must be a non-negative float; got -1\.0"),
    ("anderson-memory-zero", lambda: nk.AndersonAcceleration(rtol=1e-5, atol=1e-6, memory=0), V, r"`memory` must be a positive int; got 0"),
    ("anderson-mixing-zero", lambda: nk.AndersonAcceleration(rtol=1e-5, atol=1e-6, mixing=0.0), V, r"`mixing` must be a positive float <= 1\.0; got 0\.0"),
    ("broyden-atol-nan", lambda: nk.Broyden(rtol=1e-5, atol=NAN), V, r"`atol` must be a non-negative float; got nan"),
    ("iteration-damping-one", lambda: nk.FixedPointIteration(rtol=1e-5, atol=1e-6, damping=1.0), V, r"`damping` must be a non-negative float <= 0\.999; got 1\.0"),
])
_add("DEQ", "deq-run", [
    ("no-fixed-point", lambda: _deq(f=lambda z, x: jnp.exp(z) + x, solver=nk.FixedPointIteration(1e-6, 1e-6), max_steps=50)(jnp.ones(2)), RT, r"DEQ forward solve (diverged|did not converge)"),
    ("not-converged", lambda: _deq(solver=nk.FixedPointIteration(0.0, 0.0), max_steps=3)(jnp.ones(2)), RT, r"DEQ forward solve did not converge in max_steps=3 iterations"),
])


def _sq(w, theta):
    return jnp.sum((w - theta) ** 2)


def _mse_task(model, data):
    x, y = data
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


@functools.cache
def _meta_model():
    return eqx.nn.MLP(1, 1, 4, 1, activation=jnp.tanh, key=KEY)


_TASKS = (jnp.ones((2, 3, 1)), jnp.ones((2, 3, 1)))

_add("implicit_minimise", "argmin", [
    ("loss-not-callable", lambda: nk.implicit_minimise("mse", jnp.zeros(2), 1.0), V, r"`loss` must be a callable loss\(w, theta\)"),
    ("loss-not-scalar", lambda: nk.implicit_minimise(lambda w, t: w * t, jnp.zeros(2), 1.0), V, r"`loss` must return a floating-point scalar"),
    ("w0-ints", lambda: nk.implicit_minimise(_sq, jnp.zeros(2, dtype=int), 1.0), V, r"`w0` must be a PyTree of floating-point arrays"),
    ("w0-empty", lambda: nk.implicit_minimise(_sq, {}, 1.0), V, r"`w0` must be .* got no arrays"),
    ("solver-string", lambda: nk.implicit_minimise(_sq, jnp.zeros(2), 1.0, solver="bfgs"), V, r"`solver` must be an optimistix\.AbstractMinimiser .*got str"),
    ("solver-class", lambda: nk.implicit_minimise(_sq, jnp.zeros(2), 1.0, solver=__import__("optimistix").BFGS), V, r"got the class BFGS \(pass an instance"),
    ("linear-solver-string", lambda: nk.implicit_minimise(_sq, jnp.zeros(2), 1.0, linear_solver="cg"), V, r"`linear_solver` must be a lineax\.AbstractLinearSolver"),
    ("max-steps-zero", lambda: nk.implicit_minimise(_sq, jnp.zeros(2), 1.0, max_steps=0), V, r"`max_steps` must be a positive int; got 0"),
    ("proximal-reg-zero", lambda: nk.proximal_loss(jnp.sum, 0.0), V, r"`reg` must be a positive float; got 0\.0"),
])
_add("meta-learning", "meta", [
    ("maml-steps-negative", lambda: nk.MAML(-1), V, r"`inner_steps` must be a non-negative int; got -1"),
    ("maml-lr-zero", lambda: nk.MAML(1, 0.0), V, r"`inner_lr` must be a positive float; got 0\.0"),
    ("maml-first-order-string", lambda: nk.MAML(1, 0.01, first_order="yes"), V, r"`first_order` must be a Python bool"),
    ("imaml-reg-negative", lambda: nk.IMAML(reg=-1.0), V, r"`reg` must be a positive float; got -1\.0"),
    ("imaml-solver-string", lambda: nk.IMAML(solver="lbfgs"), V, r"`solver` must be an optimistix\.AbstractMinimiser"),
    ("imaml-throw-int", lambda: nk.IMAML(throw=1), V, r"`throw` must be a Python bool"),
    ("learner-string", lambda: nk.meta_loss("maml", _meta_model(), _mse_task, *_TASKS), V, r"`learner` must be a node_kit\.AbstractMetaLearner .*got str"),
    ("tasks-mismatch", lambda: nk.meta_loss(nk.MAML(1), _meta_model(), _mse_task, _TASKS, (jnp.ones((3, 3, 1)),) * 2), V, r"`support` and `query` must stack the tasks along a leading axis"),
    ("loss-not-scalar", lambda: nk.meta_loss(nk.MAML(1), _meta_model(), lambda m, d: jnp.ones(3), *_TASKS), V, r"`loss` must return a floating-point scalar for one task"),
    ("sinusoid-shots-zero", lambda: datasets.sinusoid_tasks(KEY, 2, 0, 3), V, r"`shots` must be a positive int; got shots=0"),
    ("sinusoid-key-int", lambda: datasets.sinusoid_tasks(0, 2, 3, 3), V, r"`key` must be a JAX PRNG key"),
])


def _cde(**changes):
    return nk.NeuralCDE(2, 3, 4, 1, key=KEY, **changes)


_CDE_PATH = diffrax.LinearInterpolation(TS, jnp.stack([TS, TS ** 2], -1))
_SERIES = (TS, jnp.ones((3, 2)), jnp.ones((3, 2), bool))
_GROUND = diffrax.Event(lambda t, y, args, **kwargs: y[0])


def _falls(event, **changes):
    settings = nk.SolveSettings(event=event, **changes)
    return settings.solve(lambda t, y, args: jnp.stack([y[1], -9.8]), TS, jnp.array([1.0, 0.0]))


_add("images", "image", [
    ("conv-field-shape-2d", lambda: nk.ConvField((4, 4), 2, 1, key=KEY), V, r"`shape` must be an image shape \(channels, height, width\) of three positive ints; got \(4, 4\) \(tuple\)\. E\.g\. shape=\(1, 28, 28\)"),
    ("conv-field-shape-zero", lambda: nk.ConvField((1, 0, 4), 2, 1, key=KEY), V, r"`shape` must be an image shape .*; got \(1, 0, 4\)"),
    ("conv-field-width-zero", lambda: nk.ConvField((1, 4, 4), 0, 1, key=KEY), V, r"`width` must be an int >= 1; got 0"),
    ("conv-field-flat-batch", lambda: nk.ConvField((1, 4, 4), 2, 1, key=KEY)(0.0, jnp.zeros((2, 16)), None), V, r"ConvField's state must be one image of shape \(1, 4, 4\) or its flattening \(16,\); got shape \(2, 16\)\. For a batch, use the models' \*_batched methods or jax\.vmap"),
    ("conv-kernel-even", lambda: nk.ConcatSquashConv2d(1, 2, 4, key=KEY), V, r"`kernel_size` must be odd so that the convolution keeps the image size; got 4"),
    ("multiscale-odd-squeeze", lambda: nk.MultiscaleCNF((1, 6, 6), scales=3, key=KEY), V, r"`scales`=3 squeezes the image 2 times, but the scale of shape \(2, 3, 3\) has an odd height or width.*Use scales <= 2"),
    ("multiscale-blocks-zero", lambda: nk.MultiscaleCNF((1, 4, 4), blocks=0, key=KEY), V, r"`blocks` must be a positive int; got 0"),
    ("multiscale-flat-batch", lambda: _multiscale().log_prob_batched(jnp.zeros((2, 16))), V, r"`xs` must be floating-point images of shape \(batch, C, H, W\) = \(batch, 1, 4, 4\); got shape \(2, 16\).*xs\.reshape\(-1, 1, 4, 4\)"),
    ("multiscale-integer-pixels", lambda: _multiscale().log_prob(jnp.zeros((1, 4, 4), jnp.int32)), V, r"`x` must be floating-point images of shape \(C, H, W\).*dtype int32.*dequantize"),
    ("multiscale-base-size", lambda: _multiscale().inverse_batched(jnp.zeros((2, 15))), V, r"`zs` must have shape \(batch, 16\) \(C \* H \* W base variables per image of shape \(1, 4, 4\)\); got shape \(2, 15\)"),
    ("squeeze-odd", lambda: nk.squeeze(jnp.zeros((1, 3, 4))), V, r"squeeze needs an even height and width; got an image of shape \(1, 3, 4\)"),
    ("dequantize-pixel-256", lambda: datasets.dequantize(np.array([0, 256]), key=KEY, num_levels=256), V, r"`x` must hold integer pixels in \[0, 255\] \(256 grey levels\); got 1 outside \(range 0\.\.256\)"),
    ("dequantize-scaled-images", lambda: datasets.dequantize(np.array([0.0, 0.5]), key=KEY, num_levels=256), V, r"`x` must hold integer pixels in \[0, 255\].*not images scaled to \[0, 1\]"),
    ("dequantize-negative", lambda: datasets.dequantize(np.array([-1, 3]), key=KEY), V, r"`x` must hold integer pixels in \[0, 16\] \(17 grey levels\); got 1 outside"),
    ("downsample-not-a-divisor", lambda: datasets.downsample(np.zeros((2, 784), np.uint8), (1, 28, 28), 3), V, r"`factor`=3 must divide the image height and width 28x28"),
    ("load-images-unknown", lambda: datasets.load_images("cifar10", "train"), V, r"`name` must be one of \['digits', 'mnist_5k', 'mnist'\]; got name='cifar10'"),
    ("mnist-not-prepared", lambda: datasets.check_mnist_prepared(str(_afile().parent / "empty")), V, r"'mnist' is the full TensorFlow-Datasets MNIST, which is not prepared in data_dir '.*empty', and node_kit never downloads.*`tfds build mnist --file_format=array_record --data_dir=DIR`"),
    ("mnist-5k-split-sizes", lambda: datasets.load("mnist_5k", "train", split_sizes=(4000, 500, 400)), V, r"`split_sizes` for 'mnist_5k' must add up to its 5000 images; got \(4000, 500, 400\)"),
])


_add("neural CDE and terms", "cde", [
    ("field-output-shape", lambda: nk.SolveSettings().solve(diffrax.ControlTerm(lambda t, z, a: z, _CDE_PATH), TS, jnp.ones(3)), V, r"the vector field of a control term \(a CDE\) must return an array of shape y\.shape \+ control shape = \(3,\) \+ \(2,\) = \(3, 2\), which multiplies dX; it returned \(3,\)"),
    ("field-output-tuple", lambda: nk.SolveSettings().solve(diffrax.ControlTerm(lambda t, z, a: (z, z), _CDE_PATH), TS, jnp.ones(3)), V, r"must return an array of shape .*; it returned tuple"),
    ("one-point", lambda: _cde()(TS[:1], jnp.ones((1, 2)), jnp.ones((1, 2), bool)), V, r"`ts` must hold at least 2 time points for a neural CDE's cubic path .*; got 1\. Pad the series"),
    ("interpolation-name", lambda: _cde(interpolation="spline"), V, r"unknown interpolation 'spline'; expected one of cubic, linear, rectilinear"),
    ("intensity-string", lambda: _cde(intensity="yes"), V, r"`intensity` must be a Python bool"),
    ("hidden-zero", lambda: nk.NeuralCDE(2, 0, 4, 1, key=KEY), V, r"`hidden_size` must be an int >= 1; got 0"),
    ("values-channels", lambda: _cde()(TS, jnp.ones((3, 1)), jnp.ones((3, 1), bool)), V, r"`values` must be a float array of shape \(len\(ts\), data_size\) = \(3, 2\)"),
    ("times-decreasing", lambda: _cde()(TS[::-1], *_SERIES[1:]), V, r"`ts` must be strictly increasing within a series"),
    ("mask-shape", lambda: _cde()(TS, jnp.ones((3, 2)), jnp.ones((3, 1), bool)), V, r"`mask` must have the shape of `values` \(3, 2\)"),
    ("at-name", lambda: _cde().states(*_SERIES, at="all"), V, r"unknown at 'all'; expected one of points, ends"),
    ("batched-one-series", lambda: _cde().batched(*_SERIES), V, r"`values` must be a batch of shape \(batch, len\(ts\), data_size\) for `batched`; got shape \(3, 2\)"),
    ("batched-term", lambda: _cde().solve_field(diffrax.ControlTerm(lambda t, z, a: z, _CDE_PATH), TS, jnp.ones((2, 3)), batched=True), V, r"a batched solve vmaps a per-sample field f\(t, y, args\); got a ControlTerm"),
    ("not-a-term", lambda: nk.SolveSettings().solve("f", TS, jnp.ones(3)), V, r"the equation to solve must be a vector field f\(t, y, args\) \(a callable\) or a diffrax term .*; got str"),
    ("sde-reversible", lambda: nk.SolveSettings(adjoint="reversible", stepsize_controller=diffrax.ConstantStepSize(), dt0=0.1).solve(diffrax.ControlTerm(lambda t, z, a: jnp.ones((3, 2)), diffrax.VirtualBrownianTree(0.0, 1.0, 1e-3, (2,), key=KEY)), TS, jnp.ones(3)), V, r"adjoint 'reversible' solves ordinary differential equations.* driven by Brownian motion \(an SDE\)\. Use adjoint='checkpoint'"),
])
_add("events and stiff solves", "event", [
    ("callable-not-event", lambda: nk.SolveSettings(event=lambda t, y, args: y[0]), V, r"`event` must be None or a diffrax\.Event; got function\. Wrap the condition: diffrax\.Event\(cond_fn"),
    ("string", lambda: nk.SolveSettings(event="ground"), V, r"`event` must be None or a diffrax\.Event; got str\.$"),
    ("cond-not-callable", lambda: nk.SolveSettings(event=diffrax.Event(3.0)), V, r"`event\.cond_fn` must be a function cond_fn\(t, y, args, \*\*kwargs\) or a PyTree of them; got float"),
    ("root-finder-string", lambda: nk.SolveSettings(event=diffrax.Event(_GROUND.cond_fn, root_finder="newton")), V, r"`event\.root_finder` must be None .* or an optimistix root finder such as optx\.Newton\(1e-8, 1e-8\); got str"),
    ("cond-vector", lambda: _falls(diffrax.Event(lambda t, y, args, **kwargs: y)), V, r"an event's condition function .* must return a scalar: a bool .* or a float .*; it returned float64\(2,\)"),
    ("cond-int", lambda: _falls(diffrax.Event(lambda t, y, args, **kwargs: jnp.int32(0))), V, r"must return a scalar.*; it returned int32\(\)"),
    ("cond-none", lambda: _falls(diffrax.Event(lambda t, y, args, **kwargs: None)), V, r"must return a scalar.*; it returned NoneType"),
    ("backsolve", lambda: nk.SolveSettings(event=_GROUND, adjoint="backsolve"), V, r"adjoint BacksolveAdjoint cannot differentiate a solve with an `event` .*use adjoint='checkpoint' or 'direct'"),
    ("reversible", lambda: nk.SolveSettings(event=_GROUND, adjoint="reversible"), V, r"adjoint ReversibleAdjoint cannot differentiate a solve with an `event`"),
    ("implicit-backsolve", lambda: nk.SolveSettings(solver=diffrax.Kvaerno5(), adjoint="backsolve"), V, r"adjoint 'backsolve' cannot take the implicit solver Kvaerno5: it solves the state backwards in time.* Use adjoint='checkpoint' or 'direct'"),
    ("implicit-reversible", lambda: nk.SolveSettings(solver=diffrax.Kvaerno5(), adjoint="reversible"), V, r"adjoint 'reversible' needs an explicit single-step solver .*got Kvaerno5, an implicit solver"),
])


# --- commands ------------------------------------------------------------------------------

_WORK = {"cnf": "load_data", "timeseries": "load_data", "spiral": "true_trajectory",
         "memory": "run_sweep", "deq": "load_data", "meta": "run_one"}
"""Each command's first piece of work, replaced by a stub that raises `ReachedWork`."""


def _reached(*args, **kwargs):
    raise ReachedWork("the command accepted its flags and went on to work")


def command(name: str, *argv: str) -> Callable[[], None]:
    """Run `python -m node_kit.experiments.<name> argv` in-process, in a temporary `--out`.

    Raises `CommandExit` with the exit status and stderr if the command exits, and
    `ReachedWork` if it gets past its checks.
    """

    def call() -> None:
        module = importlib.import_module(f"node_kit.experiments.{name}")
        stderr = io.StringIO()
        with tempfile.TemporaryDirectory() as out, mock.patch.object(module, _WORK[name], _reached):
            flags = ["--out", f"{out}/run", *argv, "--no-progress"]  # a case's --out wins
            try:
                with contextlib.redirect_stderr(stderr):
                    module.COMMAND.run(flags)
            except SystemExit as exit:
                raise CommandExit(exit.code, stderr.getvalue()) from None

    return call


def _commands(area: str, name: str, rows) -> None:
    """Add `(what, argv, exit code, match)` rows of command `name` as cases of `area`."""
    for what, argv, code, match in rows:
        CASES.append(Case(f"{name}-cmd-{what}", area, command(name, *argv), CommandExit, match, code))


USAGE = r"(?s)^usage: .*error: argument "
ERROR = r"^error: "

_commands("cnf command", "cnf", [
    ("dataset-unknown", ["--dataset", "cifar10"], 2, USAGE + r"--dataset: invalid choice: 'cifar10'"),
    ("trace-unknown", ["--trace", "stochastic"], 2, USAGE + r"--trace: invalid choice: 'stochastic'"),
    ("solver-euler", ["--solver", "euler"], 2, USAGE + r"--solver: invalid choice: 'euler'"),
    ("steps-not-a-number", ["--steps", "ten"], 2, USAGE + r"--steps: invalid int value: 'ten'"),
    ("steps-zero", ["--steps", "0"], 2, ERROR + r"--steps must be a positive int; got 0\."),
    ("batch-size-zero", ["--batch-size", "0"], 2, ERROR + r"--batch-size must be a positive int; got 0\."),
    ("batch-size-larger-than-data", ["--batch-size", "60000"], 2, ERROR + r"--batch-size must be at most the number of 8gaussians training points \(50000\); got 60000\. Pass --batch-size 50000 or less"),
    ("digits-batch-size-larger-than-data", ["--dataset", "digits", "--batch-size", "2000", "--eval-batch", "270"], 2, ERROR + r"--batch-size must be at most the number of digits training images \(1257\); got 2000"),
    ("eval-batch-larger-than-data", ["--eval-batch", "20000"], 2, ERROR + r"--eval-batch must be at most the number of 8gaussians test points \(10000\); got 20000\. Pass --eval-batch 10000 or less"),
    ("digits-default-eval-batch", ["--dataset", "digits"], 2, ERROR + r"--eval-batch must be at most the number of digits test images \(270\); got 2000"),
    ("eval-batch-zero", ["--eval-batch", "0"], 2, ERROR + r"--eval-batch must be a positive int; got 0\."),
    ("eval-probes-zero", ["--eval-probes", "0"], 2, ERROR + r"--eval-probes must be a positive int; got 0\."),
    ("width-zero", ["--width", "0"], 2, ERROR + r"--width must be a positive int; got 0\."),
    ("depth-negative", ["--depth", "-1"], 2, ERROR + r"--depth must be a non-negative int; got -1\."),
    ("t1-zero", ["--t1", "0"], 2, ERROR + r"--t1 must be a positive float; got 0\.0\."),
    ("t1-inf", ["--t1", "inf"], 2, ERROR + r"--t1 must be a positive float \(not inf\); got inf\."),
    ("rtol-negative", ["--rtol=-1e-5"], 2, ERROR + r"--rtol must be a non-negative float; got -1e-05\. E\.g\. --rtol 1e-3"),
    ("atol-nan", ["--atol", "nan"], 2, ERROR + r"--atol must be a non-negative float; got nan\."),
    ("tolerances-zero", ["--rtol", "0", "--atol", "0"], 2, ERROR + r"--rtol and --atol must not both be 0 .*Pass e\.g\. --rtol 1e-3 --atol 1e-6"),
    ("kinetic-energy-negative", ["--kinetic-energy", "-0.01"], 2, ERROR + r"--kinetic-energy must be a non-negative float; got -0\.01\."),
    ("jacobian-norm-inf", ["--jacobian-norm", "inf"], 2, ERROR + r"--jacobian-norm must be a non-negative float \(not inf\); got inf\."),
    ("lr-zero", ["--lr", "0"], 2, ERROR + r"--lr must be a positive float; got 0\.0\. E\.g\. --lr 1e-3"),
    ("lr-inf", ["--lr", "inf"], 2, ERROR + r"--lr must be a positive float \(not inf\); got inf"),
    ("clip-norm-negative", ["--clip-norm", "-1"], 2, ERROR + r"--clip-norm must be a non-negative float; got -1\.0\. 0 switches it off"),
    ("checkpoint-every-zero", ["--checkpoint-every", "0"], 2, ERROR + r"--checkpoint-every must be a positive int; got 0\."),
    ("seed-negative", ["--seed", "-1"], 2, ERROR + r"--seed must be a non-negative int; got -1\."),
    ("resume-without-checkpoint", ["--resume"], 1, ERROR + r"--resume found no checkpoint in .*; drop --resume"),
    ("model-unknown", ["--model", "realnvp"], 2, USAGE + r"--model: invalid choice: 'realnvp'"),
    ("multiscale-on-a-toy", ["--model", "multiscale"], 2, ERROR + r"--model multiscale applies to image datasets \['digits', 'mnist_5k', 'mnist'\]; got --dataset 8gaussians"),
    ("downsample-on-a-toy", ["--downsample", "2"], 2, ERROR + r"--downsample 2 applies to image datasets .*; got --dataset 8gaussians"),
    ("downsample-not-a-divisor", ["--dataset", "mnist_5k", "--downsample", "3"], 2, ERROR + r"--downsample 3 must divide the 28x28 images of mnist_5k; e\.g\. --downsample 2"),
    ("downsample-zero", ["--dataset", "mnist_5k", "--downsample", "0"], 2, ERROR + r"--downsample must be a positive int; got 0\."),
    ("scales-odd-height", ["--dataset", "mnist_5k", "--scales", "4"], 2, ERROR + r"`scales`=4 squeezes the image 3 times, but the scale of shape \(4, 7, 7\) has an odd height or width.*Use scales <= 3"),
    ("scales-without-multiscale", ["--dataset", "digits", "--scales", "2", "--eval-batch", "270"], 2, ERROR + r"--scales 2 applies to --model multiscale; got --model auto on digits"),
    ("blocks-zero", ["--dataset", "digits", "--model", "multiscale", "--blocks", "0"], 2, ERROR + r"--blocks must be a positive int; got 0\."),
    ("alpha-half", ["--dataset", "digits", "--alpha", "0.5", "--eval-batch", "270"], 2, ERROR + r"--alpha must satisfy 0 <= alpha < 0\.5 .*; got 0\.5\. E\.g\. --alpha 1e-6"),
    ("mnist-not-prepared", ["--dataset", "mnist", "--data-dir", "/tmp/node_kit_no_mnist_here"], 2, ERROR + r"'mnist' is the full TensorFlow-Datasets MNIST, which is not prepared in --data-dir '/tmp/node_kit_no_mnist_here'.*pass --data-dir DIR\. Offline, 'mnist_5k' trains"),
    ("mnist-batch-larger-than-data", ["--dataset", "mnist_5k", "--batch-size", "5000"], 2, ERROR + r"--batch-size must be at most the number of mnist_5k training images \(4000\); got 5000"),
])

# Every command: an --out that cannot be a run folder, a seed JAX cannot take.
for _name in _WORK:
    _commands(f"{_name} command", _name, [
        ("seed-2-64", ["--seed", str(2**64)], 2, ERROR + r"--seed must be an int in \[0, 2\*\*63 - 1\]; got 18446744073709551616"),
        ("out-empty", ["--out", ""], 2, ERROR + r"--out must name a folder for the run's files; got ''\. Choose another --out, e\.g\. --out runs/mine"),
        ("out-a-file", ["--out", __file__], 2, ERROR + r"--out must name a folder for the run's files; '.*test_bad_inputs\.py' is a file\. Choose another --out"),
        ("out-below-a-file", ["--out", f"{__file__}/run"], 2, ERROR + r"--out must name a folder .*; '.*run' lies below '.*test_bad_inputs\.py', which is a file"),
    ])

# The folder is made (or found impossible) when the run starts, after the flags pass; spiral
# computes its true trajectory first (the matrix's stub for its work), so it is left out.
for _name in ("cnf", "timeseries", "deq", "meta", "memory"):
    _commands(f"{_name} command", _name, [
        ("out-uncreatable", ["--out", "/proc/node_kit_run"], 2, ERROR + r"--out: cannot create the folder '/proc/node_kit_run' \(.*\)\. Choose a folder this process can write to"),
    ])

_commands("timeseries command", "timeseries", [
    ("window-one", ["--window", "1"], 2, ERROR + r"--window must be at least 2 for --task interpolation"),
    ("dataset-unknown", ["--dataset", "periodik"], 2, USAGE + r"--dataset: invalid choice: 'periodik'"),
    ("model-unknown", ["--model", "lstm"], 2, USAGE + r"--model: invalid choice: 'lstm'"),
    ("interpolation-unknown", ["--model", "ncde", "--interpolation", "spline"], 2, USAGE + r"--interpolation: invalid choice: 'spline' \(choose from 'cubic', 'linear', 'rectilinear'\)"),
    ("observed-not-a-number", ["--observed", "half"], 2, USAGE + r"--observed: invalid float value: 'half'"),
    ("batch-size-larger-than-data", ["--batch-size", "2000"], 2, ERROR + r"--batch-size must be at most the number of periodic training series \(1000\); got 2000\. Pass --batch-size 1000 or less"),
    ("batch-size-larger-than-train-size", ["--train-size", "4", "--batch-size", "8"], 2, ERROR + r"--batch-size must be at most the number of periodic training series kept by --train-size \(4\); got 8"),
    ("train-size-larger-than-data", ["--train-size", "5000"], 2, ERROR + r"--train-size must be at most the number of periodic training series \(1000\); got 5000"),
    ("train-size-negative", ["--train-size", "-1"], 2, ERROR + r"--train-size must be a non-negative int; got -1\."),
    ("eval-batch-larger-than-data", ["--eval-batch", "1000"], 2, ERROR + r"--eval-batch must be at most the number of periodic test series \(100\); got 1000\. Pass --eval-batch 100 or less"),
    ("observed-zero", ["--observed", "0"], 2, ERROR + r"--observed \(the share of time points the model reads\) must be in \(0, 1\]; got 0\.0"),
    ("observed-above-one", ["--observed", "1.5"], 2, ERROR + r"--observed .* must be in \(0, 1\]; got 1\.5\. For '30% dropped'"),
    ("latent-zero", ["--latent", "0"], 2, ERROR + r"--latent must be a positive int; got 0\."),
    ("hidden-negative", ["--hidden", "-4"], 2, ERROR + r"--hidden must be a positive int; got -4\."),
    ("window-too-short-for-task", ["--task", "extrapolation", "--window", "1"], 2, ERROR + r"--window must be at least 2 for --task extrapolation .*; got 1\."),
    ("encoder-steps-zero", ["--encoder-steps", "0"], 2, ERROR + r"--encoder-steps must be a positive int; got 0\."),
    ("kl-warmup-negative", ["--kl-warmup", "-10"], 2, ERROR + r"--kl-warmup must be a non-negative int; got -10\."),
    ("obs-std-zero", ["--obs-std", "0"], 2, ERROR + r"--obs-std must be a positive float; got 0\.0\."),
    ("ce-weight-negative", ["--ce-weight", "-1"], 2, ERROR + r"--ce-weight must be a non-negative float; got -1\.0\."),
    ("eval-samples-zero", ["--eval-samples", "0"], 2, ERROR + r"--eval-samples must be a positive int; got 0\."),
    ("atol-negative", ["--atol=-1e-4"], 2, ERROR + r"--atol must be a non-negative float; got -0\.0001\."),
    ("classification-without-labels", ["--task", "classification"], 2, ERROR + r"--task classification needs a labelled dataset; 'periodic' has no labels"),
    ("steps-zero", ["--steps", "0"], 2, ERROR + r"--steps must be a positive int; got 0\."),
    ("lr-negative", ["--lr=-3e-3"], 2, ERROR + r"--lr must be a positive float; got -0\.003\."),
])

_commands("spiral command", "spiral", [
    ("adjoint-unknown", ["--adjoint", "unroll"], 2, USAGE + r"--adjoint: invalid choice: 'unroll'"),
    ("window-one", ["--window", "1"], 2, ERROR + r"--window must be an int in \[2, 999\]; got 1\. A training window is shorter"),
    ("window-longer-than-trajectory", ["--window", "2000"], 2, ERROR + r"--window must be an int in \[2, 999\]; got 2000\."),
    ("num-points-two", ["--num-points", "2"], 2, ERROR + r"--num-points must be an int >= 3; got 2\."),
    ("num-points-1e11", ["--num-points", str(10**11)], 2, ERROR + r"the observed trajectory of --num-points 100000000000 .* needs at least 2\.98e\+03 GiB .* Lower --num-points\."),
    ("t-end-zero", ["--t-end", "0"], 2, ERROR + r"--t-end must be a positive float; got 0\.0\."),
    ("t-end-nan", ["--t-end", "nan"], 2, ERROR + r"--t-end must be a positive float; got nan\."),
    ("rtol-negative", ["--rtol", "-1"], 2, ERROR + r"--rtol must be a non-negative float; got -1\.0\."),
    ("width-zero", ["--width", "0"], 2, ERROR + r"--width must be a positive int; got 0\."),
    ("depth-negative", ["--depth", "-2"], 2, ERROR + r"--depth must be a non-negative int; got -2\."),
    ("batch-size-zero", ["--batch-size", "0"], 2, ERROR + r"--batch-size must be a positive int; got 0\."),
    ("steps-negative", ["--steps", "-5"], 2, ERROR + r"--steps must be a positive int; got -5\."),
])

_commands("deq command", "deq", [
    ("solver-unknown", ["--solver", "newton"], 2, USAGE + r"--solver: invalid choice: 'newton'"),
    ("backward-unknown", ["--backward", "adjoint"], 2, USAGE + r"--backward: invalid choice: 'adjoint'"),
    ("ode-adjoint-unknown", ["--ode-adjoint", "none"], 2, USAGE + r"--ode-adjoint: invalid choice: 'none'"),
    ("radius-one", ["--radius", "1.0"], 2, ERROR + r"--radius must be in \(0, 1\) so that the DEQ's f is a contraction .*; got 1\.0"),
    ("width-zero", ["--width", "0"], 2, ERROR + r"--width must be a positive int; got 0"),
    ("max-iterations-zero", ["--max-iterations", "0"], 2, ERROR + r"--max-iterations must be a positive int; got 0"),
    ("batch-size-too-large", ["--batch-size", "5000"], 2, ERROR + r"--batch-size .*5000"),
    ("rtol-negative", ["--rtol", "-1"], 2, ERROR + r"--rtol must be a non-negative float; got -1\.0"),
    ("mlp-width-negative", ["--mlp-width", "-2"], 2, ERROR + r"--mlp-width must be a non-negative int; got -2"),
    ("steps-zero", ["--steps", "0"], 2, ERROR + r"--steps must be a positive int; got 0"),
])

_commands("meta command", "meta", [
    ("method-unknown", ["--methods", "reptile"], 2, USAGE + r"--methods: invalid choice: 'reptile'"),
    ("activation-relu-imaml", ["--activation", "relu"], 2, ERROR + r"--activation relu cannot train imaml"),
    ("methods-repeated", ["--methods", "maml", "maml"], 2, ERROR + r"--methods must name distinct methods"),
    ("shots-zero", ["--shots", "0"], 2, ERROR + r"--shots must be a positive int; got 0"),
    ("reg-zero", ["--reg", "0"], 2, ERROR + r"--reg must be a positive float; got 0\.0"),
    ("plot-tasks-too-many", ["--plot-tasks", "9", "--eval-tasks", "4"], 2, ERROR + r"--plot-tasks must be at most the number of test tasks"),
])

_commands("memory command", "memory", [
    ("solver-unknown", ["--solver", "rk45"], 2, USAGE + r"--solver: invalid choice: 'rk45'"),
    ("layouts-unknown", ["--layouts", "diagonal"], 2, USAGE + r"--layouts: invalid choice: 'diagonal'"),
    ("steps-missing", ["--solver-steps"], 2, USAGE + r"--solver-steps: expected at least one argument"),
    ("dim-zero", ["--dim", "0"], 2, ERROR + r"`dim` must be an int >= 1; got 0\."),
    ("batch-negative", ["--batch-size", "-1"], 2, ERROR + r"`batch_size` must be an int >= 1; got -1\."),
    ("depth-negative", ["--depth", "-1"], 2, ERROR + r"`depth` must be an int >= 0; got -1\."),
    ("repeats-zero", ["--repeats", "0"], 2, ERROR + r"`repeats` must be an int >= 1; got 0\."),
    ("time-limit-zero", ["--time-limit-s", "0"], 2, ERROR + r"`time_limit_s` must be a positive number of seconds; got 0\.0\."),
    ("steps-zero", ["--solver-steps", "10", "0"], 2, ERROR + r"`solver_steps` must be an int >= 1; got 0\. Pass the number of fixed solver steps"),
    ("modes-unknown", ["--modes", "unroll"], 2, ERROR + r"`modes` entry 'unroll' is not a mode; expected one of: backsolve"),
    ("modes-zero-checkpoints", ["--modes", "checkpoint:0"], 2, ERROR + r"`modes` entry 'checkpoint:0' is not a mode.*K a positive int"),
    ("budgets-negative", ["--budgets", "-1"], 2, ERROR + r"`budgets` must be an int >= 0; got -1\."),
    ("seed-negative", ["--seed", "-3"], 2, ERROR + r"`seed` must be an int >= 0; got -3\."),
    ("name-with-folder", ["--name", "a/b"], 2, ERROR + r"`name` must be a file stem \(non-empty, no '/'\); got 'a/b'\. Put the folder in --out"),    ("family-unknown", ["--family", "sde"], 2, USAGE + r"--family: invalid choice: 'sde'"),
    ("deq-mode-unknown", ["--family", "deq", "--modes", "backsolve"], 2, ERROR + r"`modes` entry 'backsolve' is not a deq mode; expected some of implicit, unrolled, phantom"),
])


# ---------------------------------------------------------------------------------- tests


def _param(case: Case):
    marks = [pytest.mark.xfail(reason=case.gap, strict=True)] if case.gap else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_bad_input_gets_a_clear_error(case: Case, record_property):
    kind, detail = outcome(case)
    # What experiments/bad_inputs.py counts (its pytest plugin reads this record).
    record_property("bad_input", {"id": case.id, "area": case.area, "kind": kind,
                                  "gap": case.gap, "detail": detail})
    assert kind == "clear", f"{kind}: {detail}"


def test_case_ids_are_unique_and_the_matrix_is_large():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 500


def test_published_counts_are_those_of_this_matrix():
    import json

    summary = Path(__file__).parents[1] / "experiments/results/bad_inputs/summary.json"
    counts = json.loads(summary.read_text())
    assert counts["total"] == len(CASES), (
        "tests/test_bad_inputs.py changed: run `.venv/bin/python experiments/bad_inputs.py` "
        "and paste its table into docs/errors.md"
    )
    assert sorted(counts["areas"]) == sorted({case.area for case in CASES})


@pytest.mark.parametrize(
    "call",
    [
        lambda: nk.MLPField(np.int64(2), np.int32(2), np.int64(1), key=KEY),
        lambda: nk.SolveSettings(stepsize_controller=diffrax.ConstantStepSize(),
                                 dt0=np.float32(0.25), max_steps=np.int64(8)),
        lambda: nk.CNF(_field(), t1=np.float64(0.5)),
        lambda: nk.LatentODE(np.int64(2), 2, 2, 2, 1, obs_std=np.float32(0.1), key=KEY),
        lambda: nk.checkpoint_adjoint(np.int32(4)),
        lambda: datasets.batch_at(_X, np.int64(1), batch_size=np.int64(2), seed=np.int64(0)),
        lambda: _memory_model().checkpoints_for(np.float64(150.7)),
        lambda: _memory_model().checkpoints_for(2.5e9),
    ],
    ids=["mlp-sizes", "settings", "cnf-t1", "latent-ode", "checkpoints", "batch-at",
         "budget-numpy-float", "budget-float"],
)
def test_numpy_scalars_and_float_budgets_are_accepted(call):
    call()


def test_float_budget_is_rounded_down_to_whole_bytes():
    assert _memory_model().checkpoints_for(np.float64(150.7)) == 6  # (150 - 100) / 10 + 1
    assert _memory_model().checkpoints_for(2.5e9) == 8


def test_concrete_kl_weights_of_every_kind_are_accepted():
    from node_kit._latent_ode_loss import _check_kl_weight

    for weight in (0, 0.5, np.float32(0.5), jnp.array(1.0)):
        assert _check_kl_weight(weight) == float(weight)


@pytest.mark.parametrize(
    "name, argv",
    [
        ("cnf", []),
        ("cnf", ["--dataset", "digits", "--trace", "hutchinson", "--batch-size", "128",
                 "--eval-batch", "270"]),
        ("timeseries", []),
        ("timeseries", ["--dataset", "japanese_vowels", "--task", "classification",
                        "--batch-size", "32"]),
        ("timeseries", ["--dataset", "hopper", "--task", "extrapolation", "--observed", "0.1"]),
        ("spiral", []),
        ("memory", []),
        ("memory", ["--family", "deq"]),
        ("deq", []),
        ("meta", []),
    ],
    ids=["cnf", "cnf-digits", "timeseries", "timeseries-vowels", "timeseries-hopper",
         "spiral", "memory", "memory-deq", "deq", "meta"],
)
def test_good_flags_reach_the_work(name, argv):
    """The defaults and the committed configs (experiments/*_runs.sh) pass every check, and
    an accepted flag set is seen as such (so a silent acceptance cannot pass for clear)."""
    with pytest.raises(ReachedWork):
        command(name, *argv)()

"""Shared test set-up: float64 on, seeded keys, an explicit-tolerance allclose, and the
reference numbers of the tiny command runs."""

import json
import math
import os
from pathlib import Path

# JAX's persistent compilation cache, outside the repository. Many tests compile the same
# program (the same solve in another test, another file, or a subprocess); the cache lets
# each compile once per run, and a second run reuses them all. NODE_KIT_TEST_CACHE=off turns
# it off, or names another directory. Set before jax is imported so that subprocesses
# (several devices, several processes, kill and resume) inherit it through the environment.
_CACHE = os.environ.get("NODE_KIT_TEST_CACHE", str(Path.home() / ".cache" / "node_kit" / "jax-test-cache"))
if _CACHE != "off":
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

import subprocess
import sys

from node_kit.experiments._compile_flags import FAST_COMPILE_FLAGS, with_xla_flags

# XLA compile options for the test run. Most of the suite's time is XLA compiling small
# programs that then run for milliseconds. With LLVM at -O0 and XLA:CPU's elemental fusion
# emitter (instead of its newer MLIR fusion emitters), XLA compiles about 3x faster and
# the compiled code runs several times slower (node_kit/experiments/_compile_flags.py
# holds the flags, experiments/compile_flags.py measures both), which cuts the suite by
# about a third. XLA's HLO passes still run; what changes is how the fused HLO becomes
# machine code, so results may differ in the last bits (the tests' tolerances are the same
# either way). NODE_KIT_TEST_FAST_COMPILE=off runs the suite at XLA's defaults, as users
# run. The flags are used on the CPU only (on a GPU, -O0 would slow its kernels). An
# unknown flag makes XLA abort the process, so they are first tried in a subprocess, once
# per test run, which also says which backend the tests get. The outcome is left in the
# environment (NODE_KIT_TEST_FAST_COMPILE=applied, unsupported, not-cpu or xla-fails) for
# the xdist workers and the tests' subprocesses, which inherit XLA_FLAGS too. Importing
# node_kit (for the flags) imports JAX but starts no backend, and XLA reads XLA_FLAGS when
# the first backend starts: the flags set below still apply.


_PROBE = "import jax; jax.jit(lambda x: x + 1)(1.0).block_until_ready(); print(jax.default_backend())"
_MODES = ("on", "off", "applied", "unsupported", "not-cpu", "xla-fails")


def _backend_with(flags: list[str]) -> str | None:
    """The default backend of a process started with `flags` added, or None if it fails."""
    env = dict(os.environ, XLA_FLAGS=with_xla_flags(flags))
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                              text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else None


def _use_fast_compile_flags() -> None:
    mode = os.environ.get("NODE_KIT_TEST_FAST_COMPILE", "on")
    if mode not in _MODES:
        raise ValueError(f"NODE_KIT_TEST_FAST_COMPILE must be 'on' (the default) or 'off'; "
                         f"got {mode!r}.")
    if mode != "on":  # off, or already decided by the process that started this one
        return
    flags = list(FAST_COMPILE_FLAGS)
    backend = _backend_with(flags)
    if backend is None:  # keep the flags this XLA knows
        alone = {flag: _backend_with([flag]) for flag in flags}
        flags = [flag for flag, backend in alone.items() if backend is not None]
        backend = alone[flags[0]] if flags else None
    if backend not in (None, "cpu"):
        mode, flags = "not-cpu", []
    elif flags:
        mode = "applied"
    else:  # neither flag works: this XLA lacks both, or the inherited XLA_FLAGS stop it
        mode = "unsupported" if _backend_with([]) is not None else "xla-fails"
    os.environ["XLA_FLAGS"] = with_xla_flags(flags)
    os.environ["NODE_KIT_TEST_FAST_COMPILE"] = mode
    os.environ["NODE_KIT_TEST_FAST_COMPILE_FLAGS"] = " ".join(flags)


_use_fast_compile_flags()

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
if _CACHE != "off":  # also here: a plugin may have imported jax before the lines above ran
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_report_header(config):
    mode = os.environ.get("NODE_KIT_TEST_FAST_COMPILE")
    if mode == "off":
        return "node_kit: XLA at its default compile options (NODE_KIT_TEST_FAST_COMPILE=off)"
    if mode == "not-cpu":
        return "node_kit: XLA at its default compile options (the tests run on a GPU or TPU)"
    if mode == "xla-fails":
        return (f"node_kit: a process with XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} cannot "
                "compile; fix or unset XLA_FLAGS (XLA stops on a flag it does not know)")
    flags = os.environ.get("NODE_KIT_TEST_FAST_COMPILE_FLAGS") or "(none: this XLA knows neither)"
    return f"node_kit: fast-compile XLA flags {flags}; NODE_KIT_TEST_FAST_COMPILE=off for XLA's defaults"


# The test files of the default tier that take longest (seconds of one full run on 2 cores,
# 2026-12-07, after the end-to-end tests moved to the slow tier), slowest first.
# `-n 2 --dist loadfile` hands out whole files; by default (xdist's `--loadscope-reorder`)
# in order of their number of tests, so the few-test files that run for a minute came last
# and one worker ran them while the other had finished. Handing out the slowest files
# first, the many short ones fill in at the end and both workers finish together. Files
# not named here follow in collection order.
SLOWEST_FILES = (
    "test_latent_ode.py",  # 107
    "test_neural_ode.py",  # 93
    "test_reversible.py",  # 65
    "test_cnf.py",  # 57
    "test_errors.py",  # 43
    "test_multiscale.py",  # about 40 (new: one worker, cold cache, 2026-12-08)
    "test_ode_rnn.py",  # 36
    "test_cde.py",  # about 30 (new, not yet in the measured list)
    "test_stiff.py",  # about 30 (new)
    "test_docs.py",  # 34
    "test_memory.py",  # 33
    "test_events.py",  # about 25 (new)
    "test_deq.py",  # 29
    "test_experiment_cnf.py",  # 19
    "test_training.py",  # 18
    "test_datasets.py",  # 18
    "test_bad_inputs.py",  # 17
    "test_lean_core.py",  # 16
    "test_parallel.py",  # 13
    "test_overhead.py",  # 13
    "test_experiment_timeseries.py",  # 12
    "test_timeseries_datasets.py",  # 10
    "test_meta.py",  # 8
)


def pytest_configure(config):
    if getattr(config.option, "loadscopereorder", False):  # pytest-xdist's default
        config.option.loadscopereorder = False  # keep the order set below


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


@pytest.fixture
def getkey():
    """Return a function giving a fresh, deterministic key on each call."""
    key = jr.key(5678)
    count = iter(range(10**6))
    return lambda: jr.fold_in(key, next(count))


def tree_allclose(x, y, *, rtol: float, atol: float) -> bool:
    """`True` if two PyTrees have the same structure and allclose leaves."""
    x_leaves, x_def = jax.tree_util.tree_flatten(eqx.filter(x, eqx.is_array))
    y_leaves, y_def = jax.tree_util.tree_flatten(eqx.filter(y, eqx.is_array))
    if x_def != y_def:
        return False
    return all(
        a.shape == b.shape and np.allclose(a, b, rtol=rtol, atol=atol)
        for a, b in zip(x_leaves, y_leaves)
    )


def max_relative_error(x, y) -> float:
    """Largest |x - y| / max(|y|) over the leaves of two PyTrees (y the reference)."""
    errors = []
    for a, b in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)):
        a, b = jnp.asarray(a), jnp.asarray(b)
        errors.append(float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30)))
    return max(errors)


REFERENCE_NUMBERS = Path(__file__).with_name("reference_numbers.json")
RECORD_ENV = "NODE_KIT_RECORD_REFERENCE"


def check_reference_numbers(name: str, values: dict, *, rtol: float = 1e-5) -> None:
    """The numbers a tiny command run gives are the committed ones in
    tests/reference_numbers.json, so that a change to the numerics fails here instead of
    silently staling the committed results and the README.

    A change meant to move the numbers re-records them (`NODE_KIT_RECORD_REFERENCE=1
    python -m pytest tests/test_experiment_cnf.py tests/test_experiment_timeseries.py`,
    without `-n`) and, in the same commit, re-runs what they feed
    (`python experiments/reproduce.py`).
    """
    values = {k: float(v) for k, v in values.items()}
    stored = json.loads(REFERENCE_NUMBERS.read_text()) if REFERENCE_NUMBERS.exists() else {}
    if os.environ.get(RECORD_ENV):
        stored[name] = values
        REFERENCE_NUMBERS.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
        return
    assert name in stored, f"no reference numbers for {name!r}; record them with {RECORD_ENV}=1"
    moved = {k: (stored[name].get(k), v) for k, v in values.items()
             if stored[name].get(k) is None or not math.isclose(v, stored[name][k], rel_tol=rtol)}
    assert not moved, (
        f"{name}: numbers moved from tests/reference_numbers.json (reference, now): {moved}. "
        f"If the change is meant to move them, re-record with {RECORD_ENV}=1 and re-run the "
        "committed results they feed (python experiments/reproduce.py)."
    )


@pytest.fixture
def trained_models(monkeypatch) -> list:
    """The models the commands' `Run.fit` returns during the test: what training ended with."""
    from node_kit.experiments._run import Run

    models, fit = [], Run.fit

    def recording_fit(self, *args, **kwargs):
        model, history = fit(self, *args, **kwargs)
        models.append(model)
        return model, history

    monkeypatch.setattr(Run, "fit", recording_fit)
    return models


def pytest_sessionfinish(session, exitstatus):
    """Drop JAX's garbage-collection callback (it frees XLA's buffers) once the tests are
    done: pytest-xdist stops its workers with a KeyboardInterrupt, and one arriving inside
    that callback ended every run with a PytestUnraisableExceptionWarning."""
    import gc

    gc.callbacks[:] = [c for c in gc.callbacks if getattr(c, "__name__", "") != "_xla_gc_callback"]

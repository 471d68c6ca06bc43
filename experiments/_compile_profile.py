"""A pytest plugin that records, per test, JAX's compile events and the test's own time.

Loaded by experiments/test_time.py (`-p _compile_profile` with this folder on PYTHONPATH);
each pytest process (every xdist worker) writes one JSON-lines file into the folder named
by the environment variable NODE_KIT_COMPILE_PROFILE. A line is
`[test id, event, function name, seconds]`, the events being JAX's
`jaxpr_trace_duration` (Python tracing), `jaxpr_to_mlir_module_duration` (lowering),
`backend_compile_duration` (XLA, or reading the persistent cache on a hit), the persistent
cache's `cache_hits` and `cache_misses` (a program compiled and written to it; seconds 0),
and this plugin's `test_wall` and `test_cpu` (the process's CPU time during the test).
Compiles made by a test's subprocesses are not seen.
"""

import json
import os
import time
from pathlib import Path

import jax.monitoring
import pytest

EVENTS = ("jaxpr_trace_duration", "jaxpr_to_mlir_module_duration", "backend_compile_duration")
_current = [None]
_records: list = []


def _listener(event: str, duration: float, **kwargs) -> None:
    name = event.rsplit("/", 1)[-1]
    if name in EVENTS:
        _records.append((_current[0], name, kwargs.get("fun_name"), duration))


def _cache_listener(event: str, **kwargs) -> None:
    name = event.rsplit("/", 1)[-1]
    if name in ("cache_hits", "cache_misses"):
        _records.append((_current[0], name, None, 0.0))


jax.monitoring.register_event_duration_secs_listener(_listener)
jax.monitoring.register_event_listener(_cache_listener)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current[0] = item.nodeid
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    _records.append((item.nodeid, "test_wall", None, time.perf_counter() - wall))
    _records.append((item.nodeid, "test_cpu", None, time.process_time() - cpu))
    _current[0] = None


def pytest_unconfigure(config):
    folder = os.environ.get("NODE_KIT_COMPILE_PROFILE")
    if not folder:
        return
    # One file per process: an xdist controller run inside a worker (a test that runs
    # pytest) inherits the worker's PYTEST_XDIST_WORKER, so that name alone could collide.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(Path(folder) / f"{worker}-{os.getpid()}.jsonl", "w") as f:
        for record in _records:
            f.write(json.dumps(record) + "\n")

"""The run lock: a second process training into the same files is refused at once, naming
the first; a lock whose holder was killed does not block. Two real processes each time."""

import json
import re
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from unittest import mock
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import optax
import pytest

import node_kit as nk
from node_kit._lock import lock_path, run_lock


# Holds the lock on argv[1] and says so, then waits to be killed (or exits on its own).
# node_kit/_lock.py needs the standard library only: loaded as a file, the holder starts
# in a fraction of a second, without importing JAX.
HOLDER = textwrap.dedent("""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("lock", sys.argv[3])
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    with lock.run_lock(sys.argv[1], what="the test files"):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _holder(path: Path, seconds: float = 120.0) -> subprocess.Popen:
    """A process holding the lock at `path`, started and holding it when this returns."""
    source = Path(__file__).parents[1] / "node_kit" / "_lock.py"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds), str(source)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    return process


def test_a_second_process_is_refused_and_a_killed_holder_does_not_block(tmp_path):
    path = tmp_path / "run.lock"
    holder = _holder(path)
    try:
        with pytest.raises(nk.RunLocked, match=rf"the test files is in use by process {holder.pid} on host"):
            with run_lock(path, what="the test files"):
                pass
        assert json.loads(path.read_text())["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert path.exists()  # killed: nothing removed its lock file
    with pytest.warns(UserWarning, match=rf"was locked by process {holder.pid} .*which is gone"):
        with run_lock(path, what="the test files"):
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()  # released: removed


def test_a_lock_released_by_a_finished_process_is_free(tmp_path):
    path = tmp_path / "run.lock"
    holder = _holder(path, seconds=0.0)
    holder.wait()
    assert holder.returncode == 0 and not path.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no takeover warning: it was released
        with run_lock(path, what="the test files"):
            pass


def _loss(model, batch, key):
    del batch, key
    return jnp.sum(model["w"] ** 2), {}


def test_fit_refuses_a_checkpoint_another_process_trains_into(tmp_path):
    checkpoint = tmp_path / "checkpoint.eqx"
    holder = _holder(lock_path(checkpoint))
    try:
        with pytest.raises(nk.RunLocked, match=rf"the checkpoint .*checkpoint\.eqx is in use by process {holder.pid}"):
            nk.fit({"w": jnp.ones(2)}, _loss, optax.sgd(0.1), lambda step: None, 2,
                   key=jr.key(0), checkpoint_path=checkpoint, progress=False)
        assert not checkpoint.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with pytest.warns(UserWarning, match=r"which is gone .*taking it over"):
        model, _ = nk.fit({"w": jnp.ones(2)}, _loss, optax.sgd(0.1), lambda step: None, 2,
                          key=jr.key(0), checkpoint_path=checkpoint, progress=False)
    assert checkpoint.exists() and not lock_path(checkpoint).exists()
    assert eqx.tree_equal(model, {"w": jnp.ones(2) * 0.8 ** 2}, rtol=1e-12, atol=0)


def test_a_lock_where_nothing_can_be_created_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"cannot write the test files: creating .*run\.lock failed"):
        with run_lock(blocker / "run.lock", what="the test files"):
            pass


class _Reached(Exception):
    pass


def _reached(*args, **kwargs):
    raise _Reached


def test_a_command_into_a_folder_another_process_runs_in_exits_at_once(tmp_path, capsys):
    from node_kit.experiments import cnf

    out = tmp_path / "run"
    holder = _holder(out / "run.lock")
    try:
        with mock.patch.object(cnf, "load_data", _reached), pytest.raises(SystemExit) as exit:
            cnf.COMMAND.run(["--out", str(out), "--no-progress"])
        assert exit.value.code == 1
        assert re.search(rf"^error: the run folder {re.escape(str(out))} is in use by process "
                         rf"{holder.pid} on host .*Wait for it to finish", capsys.readouterr().err)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Its holder killed, the folder is free: the command goes on to its work.
    with mock.patch.object(cnf, "load_data", _reached), pytest.raises(_Reached):
        with pytest.warns(UserWarning, match=r"the run folder .* which is gone"):
            cnf.COMMAND.run(["--out", str(out), "--no-progress"])
    assert not (out / "run.lock").exists()

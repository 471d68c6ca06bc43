"""Data parallelism: one device vs four, per-device solves vs each shard alone, two processes
vs one process with two devices, an uneven batch. Each run is a subprocess
(`tests/parallel_runs.py`): the device count is fixed when JAX starts."""

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import node_kit as nk

RUNS = str(Path(__file__).with_name("parallel_runs.py"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("devices")
    done = subprocess.run([sys.executable, RUNS, "devices", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "devices.json").read_text())


@pytest.mark.slow  # several devices or processes, each a subprocess: the slow tier
def test_cnf_command_on_four_devices_matches_one(four_devices):
    one, four = four_devices["cnf1"], four_devices["cnf4"]
    assert (one["devices"], four["devices"], four["processes"]) == (1, 4, 1)
    assert len(one["losses"]) == len(four["losses"]) == 2  # steps 10 and 20
    assert abs(four["losses"][0] - one["losses"][0]) <= 1e-5 * abs(one["losses"][0])
    assert abs(four["test_nll"] - one["test_nll"]) <= 1e-3


@pytest.mark.slow  # several devices or processes, each a subprocess: the slow tier
def test_per_device_solves_each_shard_alone(four_devices):
    result = four_devices["per_device"]
    assert result["loss"] == pytest.approx(result["mean_of_shards"], rel=1e-5)
    # The shards' scales differ, so each takes its own number of steps; one solve over the
    # global batch takes one shared count (its error norm is over the whole batch).
    assert len(set(result["shard_steps"])) == 4
    assert result["global_steps"] not in result["shard_steps"]


@pytest.mark.slow  # several devices or processes, each a subprocess: the slow tier
def test_uneven_global_batch_lists_the_nearest_sizes(four_devices):
    message = four_devices["uneven"]
    assert "error: `batch_size`=10 does not split evenly over 4 devices; pass a multiple of 4, " \
           "e.g. 8 or 12" in message, message
    assert "Traceback" not in message


@pytest.mark.slow  # several devices or processes, each a subprocess: the slow tier
def test_two_processes_match_one_process_with_two_devices(tmp_path):
    port = _free_port()
    processes = [
        subprocess.Popen([sys.executable, RUNS, "fit", "2", str(i), str(port), str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    alone = subprocess.run([sys.executable, RUNS, "fit", "1", "0", "0", str(tmp_path)],
                           capture_output=True, text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr[-3000:]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    expected = json.loads((tmp_path / "fit1-0.json").read_text())
    for i in range(2):
        losses = json.loads((tmp_path / f"fit2-{i}.json").read_text())
        assert losses == pytest.approx(expected, rel=1e-5)
    # Only process 0 wrote the history and the checkpoint, and they are complete.
    assert [row["step"] for row in nk.read_history(tmp_path / "fit2.csv")] == [1, 2, 3, 4]
    assert nk.load_checkpoint(tmp_path / "fit2.eqx", nk.Checkpoint({}, None, 0), {}).step == 4


def test_per_device_needs_backsolve_and_says_so():
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    ts = jnp.linspace(0.0, 1.0, 3)
    batch = np.ones((4, 2), np.float32)

    def loss(m, b, k):
        return jnp.mean(m.batched(ts, b) ** 2), {}

    parallel = nk.DataParallel(1, per_device=True)
    for adjoint in ("checkpoint", "backsolve"):
        model = nk.NeuralODE(nk.MLPField(2, 4, 1, key=jr.key(0)), adjoint=adjoint)
        step = eqx.filter_jit(parallel.loss(loss).value_and_grad)
        args = parallel.replicate(model), parallel.put_batch(batch), jr.key(0)
        if adjoint == "checkpoint":
            with pytest.raises(ValueError, match=r"`per_device=True` cannot differentiate a "
                               r"solve with a checkpointing adjoint.*Use adjoint='backsolve'"):
                step(*args)
        else:
            (value, _), _ = step(*args)
            assert float(value) == pytest.approx(float(loss(model, batch, None)[0]), rel=1e-6)


def test_bad_device_arguments_name_what_to_pass():
    import jax

    count = len(jax.devices())
    with pytest.raises(ValueError, match=rf"`devices` must be an int in \[1, {count}\] .*; got "
                       rf"{count + 1}\. On a CPU, XLA_FLAGS=--xla_force_host_platform_device_count"):
        nk.DataParallel(count + 1)
    with pytest.raises(ValueError, match=r"`devices` must be None \(all devices\), a number"):
        nk.DataParallel("gpu")
    with pytest.raises(ValueError, match=r"pass all of `coordinator` \('host:port'\), "
                       r"`num_processes` and `process_id`, or none"):
        nk.initialize_distributed("127.0.0.1:1234")


def test_a_process_whose_coordinator_never_answers_gives_up_and_says_where():
    # Process 1 of 2, with nothing listening at the coordinator's port: it must not hang
    # (JAX alone waits 300 s in silence) but end after the timeout, naming the coordinator.
    port = _free_port()
    code = ("import node_kit as nk; "
            f"nk.initialize_distributed('127.0.0.1:{port}', 2, 1, timeout=1)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode != 0
    assert re.search(rf"RuntimeError: process 1 could not join the coordinator 127\.0\.0\.1:{port} "
                     r"within 1 s: .*--coordinator-timeout", done.stderr), done.stderr[-3000:]

"""Runs for tests/test_parallel.py, each in a fresh process (device counts are fixed at start).

    python tests/parallel_runs.py devices OUT     # 4 forced CPU devices: --devices 4 vs 1, ...
    python tests/parallel_runs.py fit N ID PORT OUT  # one process of N (or 1 with N devices)

Each writes a JSON file of what it measured to OUT for the test to compare.
"""

import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # forced CPU devices, also on a GPU host


def _force_cpu_devices(count: int) -> None:
    """`count` CPU devices, keeping the XLA flags this process inherited (tests/conftest.py)."""
    inherited = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{inherited} --xla_force_host_platform_device_count={count}".strip()


def devices_checks(out: str) -> None:
    """Global split over 4 devices vs 1, per-device vs each shard alone, an uneven batch."""
    _force_cpu_devices(4)
    import contextlib
    import io

    import diffrax
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    import node_kit as nk
    from node_kit.experiments import cnf

    assert len(jax.devices()) == 4
    result = {}
    flags = ["--steps", "20", "--batch-size", "16", "--width", "8", "--depth", "1",
             "--eval-batch", "500", "--rtol", "1e-3", "--atol", "1e-3", "--no-progress",
             "--data-dir", os.path.join(out, "tfds")]
    for devices in ("1", "4"):
        folder = os.path.join(out, f"cnf{devices}")
        results = cnf.main(cnf.parse_args([*flags, "--devices", devices, "--out", folder]))
        result[f"cnf{devices}"] = {
            "losses": [row["loss"] for row in nk.read_history(os.path.join(folder, "history.csv"))],
            "test_nll": results["test_nll"], "devices": results["devices"],
            "processes": results["processes"],
        }
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.suppress(SystemExit):
        cnf.COMMAND.run(
            [*flags, "--devices", "4", "--batch-size", "10", "--out", os.path.join(out, "uneven")])
    result["uneven"] = stderr.getvalue()

    # Per device: the loss is the mean over shards, each solved alone with its own steps.
    model = nk.NeuralODE(nk.MLPField(2, 16, 1, activation=jnp.tanh, key=jr.key(0)),
                         adjoint="backsolve",
                         stepsize_controller=diffrax.PIDController(rtol=1e-7, atol=1e-7))
    model = jax.tree.map(lambda x: 3 * x if eqx.is_inexact_array(x) else x, model)
    xs = np.concatenate([np.full((4, 2), 10.0 ** (i - 1)) for i in range(4)]).astype(np.float32)
    ts = jnp.linspace(0.0, 2.0, 3)
    key = jr.key(3)

    def loss(m, batch, k):
        sol = m.solve_batched(ts, batch)
        return jnp.mean(sol.ys[:, -1] ** 2), {"num_steps": sol.stats["num_steps"]}

    parallel = nk.DataParallel(4, per_device=True)
    per_device = eqx.filter_jit(parallel.loss(loss))(parallel.replicate(model), parallel.put_batch(xs), key)
    alone = [eqx.filter_jit(loss)(model, xs[4 * i: 4 * i + 4], jr.fold_in(key, i)) for i in range(4)]
    result["per_device"] = {
        "loss": float(per_device[0]),
        "mean_of_shards": float(jnp.mean(jnp.stack([a[0] for a in alone]))),
        "shard_steps": [int(a[1]["num_steps"]) for a in alone],
        "global_steps": int(eqx.filter_jit(loss)(model, xs, key)[1]["num_steps"]),
    }
    with open(os.path.join(out, "devices.json"), "w") as f:
        json.dump(result, f)


def fit_run(num_processes: int, process_id: int, port: int, out: str) -> None:
    """A few steps of `nk.fit` over 2 devices: 2 processes of 1 device, or 1 process of 2."""
    if num_processes == 1:
        _force_cpu_devices(2)
    import jax

    if num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        import node_kit as nk

        nk.initialize_distributed(f"127.0.0.1:{port}", num_processes, process_id)
    import jax.random as jr
    import numpy as np
    import optax

    import node_kit as nk

    assert len(jax.devices()) == 2, jax.devices()
    model = nk.CNF(nk.ConcatSquashField(2, 8, 1, key=jr.key(0)))
    data = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    parallel = nk.DataParallel()
    rows = parallel.process_rows(16)

    def batch_at(step):
        return data[16 * (step % 4):][:16][rows]  # this process's rows of the global batch

    def loss(m, xs, key):
        return nk.cnf_loss(m, xs, key=key)

    name = f"fit{num_processes}"
    _, history = nk.fit(model, loss, optax.adam(1e-2), batch_at, 4, key=jr.key(1),
                        progress=False, log_every=1, data_parallel=parallel,
                        checkpoint_path=os.path.join(out, f"{name}.eqx"),
                        history_path=os.path.join(out, f"{name}.csv"))
    with open(os.path.join(out, f"{name}-{process_id}.json"), "w") as f:
        json.dump([row["loss"] for row in history], f)


if __name__ == "__main__":
    if sys.argv[1] == "devices":
        devices_checks(sys.argv[2])
    else:
        fit_run(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])

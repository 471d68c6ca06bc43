"""Data parallelism: each global batch split over a 1-D mesh of devices, parameters replicated.

[`node_kit.DataParallel`][] is handed to [`node_kit.fit`][] (`data_parallel=`). It works the
same on the devices of one process (`XLA_FLAGS=--xla_force_host_platform_device_count=4`
on a CPU, or the GPUs of one host) and across processes and hosts started with
`jax.distributed.initialize` (see [`node_kit.initialize_distributed`][]).

Two ways to solve a batch that is split over devices:

- `per_device=False` (default): ONE solve over the global batch. The batch-as-one-ODE
  layout keeps its shared step sizes: XLA turns the adaptive error norm into a reduction
  across devices at every solver step, so the numbers equal one device's up to the
  order of floating-point sums.
- `per_device=True`: `jax.shard_map`: each device solves its shard as its own ODE with
  its own step sizes, with no collective inside the solve; the losses and gradients are
  averaged over devices once per step. The numbers equal solving each shard alone (the
  shard `i` gets the key `jr.fold_in(key, i)`). It needs `adjoint="backsolve"`: the
  checkpointing adjoints' loop (equinox 0.13) cannot be differentiated inside
  `shard_map`, which is reported as a `ValueError` saying so.
"""

import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, PRNGKeyArray, PyTree

from ._checks import check_bool, check_int, is_int, type_name


AXIS = "data"
"""The name of the mesh axis a batch is split along."""


def _devices(devices: Any) -> list:
    available = jax.devices()
    if devices is None:
        return available
    if is_int(devices):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"`devices` must be an int in [1, {len(available)}] (the devices JAX sees: "
                f"{len(available)} {available[0].platform}); got {devices}. On a CPU, "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N (set before JAX is "
                "imported) makes N devices."
            )
        return available[: int(devices)]
    if (
        isinstance(devices, Sequence)
        and devices
        and all(isinstance(d, jax.Device) for d in devices)
    ):
        return list(devices)
    raise ValueError(
        "`devices` must be None (all devices), a number of devices, or a list of "
        f"jax.Device; got {type_name(devices)} {devices!r}."
    )


class DataParallel(eqx.Module):
    """Split every batch along its leading axis over devices; replicate the parameters.

    **Arguments:**

    - `devices`: `None` for every device JAX sees (`jax.devices()`, across all
        processes), an int `n` for the first `n` of them, or a list of `jax.Device`.
    - `per_device`: solve each device's shard as its own ODE (`jax.shard_map`) instead of
        one solve over the global batch (see the module's text).
    """

    mesh: Mesh = eqx.field(static=True)
    per_device: bool = eqx.field(static=True)

    def __init__(
        self,
        # jaxlib ships no type stubs, so to pyright `jax.Device` is a variable of unknown type.
        devices: int | Sequence[jax.Device] | None = None,  # pyright: ignore[reportInvalidTypeForm]
        *,
        per_device: bool = False,
    ):
        self.mesh = Mesh(np.array(_devices(devices)), (AXIS,))
        self.per_device = check_bool("per_device", per_device)

    @property
    def num_devices(self) -> int:
        """Devices in the mesh, over all processes."""
        return self.mesh.devices.size

    @property
    def batch_sharding(self) -> NamedSharding:
        """Leading axis split over the mesh."""
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    @property
    def replicated(self) -> NamedSharding:
        """A full copy on every device."""
        return NamedSharding(self.mesh, PartitionSpec())

    def check_batch_size(self, size: int, name: str = "batch_size") -> None:
        """A global batch of `size` must split evenly: an error lists the nearest sizes."""
        n = self.num_devices
        if size % n:
            below, above = (size // n) * n, (size // n + 1) * n
            nearest = f"{below} or {above}" if below else f"{above}"
            raise ValueError(
                f"`{name}`={size} does not split evenly over {n} devices; pass a multiple "
                f"of {n}, e.g. {nearest}, or use fewer devices."
            )

    def process_rows(self, size: int) -> slice:
        """The rows of a global batch of `size` that this process holds (all of them for one
        process): give them to `datasets.batch_at(..., rows=...)` so that each process
        builds only its slice."""
        self.check_batch_size(size)
        count = jax.process_count()
        per_process = size // count
        start = jax.process_index() * per_process
        return slice(start, start + per_process)

    def put_batch(self, batch: Any) -> Any:
        """Place a batch on the mesh, split along its leading axis.

        With one process `batch` is the global batch; with several it is this process's
        rows (`process_rows`) and the global batch is assembled from all of them.
        """

        def put(x: Any) -> Any:
            if not eqx.is_array(x):  # a Python number or other static leaf: as it is
                return x
            sharding = self.batch_sharding if np.ndim(x) else self.replicated  # a scalar: copied
            if jax.process_count() == 1:
                if np.ndim(x):
                    self.check_batch_size(np.shape(x)[0], "batch")
                return jax.device_put(x, sharding)
            return jax.make_array_from_process_local_data(sharding, np.asarray(x))

        return jax.tree_util.tree_map(put, batch)

    def replicate(self, tree: Any) -> Any:
        """A copy of every array of `tree` on every device of the mesh."""
        arrays, rest = eqx.partition(tree, eqx.is_array)
        if jax.process_count() > 1:  # each process holds the same values; assemble them
            arrays = jax.tree_util.tree_map(
                lambda x: jax.make_array_from_process_local_data(self.replicated, np.asarray(x)),
                arrays,
            )
        else:
            arrays = jax.device_put(arrays, self.replicated)
        return eqx.combine(arrays, rest)

    def loss(self, loss_fn: Callable) -> Callable:
        """The loss to train with: `loss_fn` itself, or its per-device form."""
        return _PerDeviceLoss(loss_fn, self.mesh) if self.per_device else loss_fn


class _PerDeviceLoss(eqx.Module):
    """`loss_fn` on each device's shard (its own solve), averaged over the devices.

    Called, it gives the averaged `(loss, aux)`; `value_and_grad` (what the training step
    uses) differentiates each shard's loss on its own device and averages the gradients
    once, with one all-reduce per step.
    """

    loss_fn: Callable = eqx.field(static=True)
    mesh: Mesh = eqx.field(static=True)

    def __call__(self, model: PyTree, batch: PyTree, key: PRNGKeyArray) -> tuple[Array, PyTree]:
        return self._map(lambda m, b, k: self.loss_fn(m, b, k), model, batch, key)

    def value_and_grad(
        self, model: PyTree, batch: PyTree, key: PRNGKeyArray
    ) -> tuple[tuple[Array, PyTree], PyTree]:
        grad_fn = eqx.filter_value_and_grad(self.loss_fn, has_aux=True)
        try:
            return self._map(grad_fn, model, batch, key)
        except ValueError as error:
            if "Closure-converted function called with different" not in str(error):
                raise
            raise ValueError(
                "`per_device=True` cannot differentiate a solve with a checkpointing "
                "adjoint (adjoint='checkpoint' or 'direct', diffrax.RecursiveCheckpointAdjoint"
                " or DirectAdjoint): equinox's checkpointed loop fails under jax.shard_map. "
                "Use adjoint='backsolve' for per-device training, or per_device=False (one "
                "solve over the global batch, which works with every adjoint)."
            ) from None

    def _map(self, fn: Callable, model: PyTree, batch: PyTree, key: PRNGKeyArray) -> Any:
        params, static = eqx.partition(model, eqx.is_array)

        def local(params: PyTree, batch: PyTree, key: PRNGKeyArray) -> PyTree:
            key = jr.fold_in(key, jax.lax.axis_index(AXIS))
            out = fn(eqx.combine(params, static), batch, key)
            return jax.tree_util.tree_map(
                lambda x: jax.lax.pmean(x, AXIS) if eqx.is_array(x) else x, out
            )

        spec, split = PartitionSpec(), PartitionSpec(AXIS)
        return jax.shard_map(
            local,
            mesh=self.mesh,
            in_specs=(spec, split, spec),
            out_specs=spec,
            check_vma=False,  # equinox's error checks are not typed for varying values
        )(params, batch, key)


def local_value(x: Any) -> Any:
    """A replicated array as a NumPy value on this process (also when it spans processes)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return np.asarray(x)


def is_main_process() -> bool:
    """`True` on the process that writes files (process 0)."""
    return jax.process_index() == 0


def _wait_for(coordinator: str, timeout: int, process_id, num_processes) -> None:
    """Return once a TCP connection to `coordinator` ('host:port') succeeds; raise a
    `RuntimeError` naming it after `timeout` seconds."""
    host, _, port = coordinator.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return
        except (OSError, ValueError):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.25)
    raise RuntimeError(
        f"process {process_id} could not join the coordinator {coordinator} within {timeout} s: "
        f"nothing answered there, or not all {num_processes} processes started. Start process "
        "0 first, check the address and port (and that the port is free and reachable), or "
        "wait longer with --coordinator-timeout (timeout= in initialize_distributed)."
    )


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: int = 120,
) -> None:
    """Join the processes of a multi-host run (`jax.distributed.initialize`).

    Call it first, before anything else uses JAX. With no arguments JAX detects the cluster
    (SLURM, Open MPI, Kubernetes, cloud TPU); otherwise give all three: the coordinator's
    `host:port` (process 0's host), the number of processes and this one's index.

    `timeout` is how many seconds to wait for the coordinator and every process to join;
    after it a `RuntimeError` names the coordinator and the timeout (JAX's own default
    waits 300 s without a word).
    """
    timeout = check_int("timeout", timeout, fix="E.g. timeout=120 (seconds).")
    given = [coordinator, num_processes, process_id]
    if any(v is not None for v in given) and not all(v is not None for v in given):
        raise ValueError(
            "pass all of `coordinator` ('host:port'), `num_processes` and `process_id`, or "
            f"none to let JAX detect the cluster; got coordinator={coordinator!r}, "
            f"num_processes={num_processes!r}, process_id={process_id!r}."
        )
    if coordinator is not None:
        if not (is_int(num_processes) and num_processes >= 1):
            raise ValueError(f"`num_processes` must be a positive int; got {num_processes!r}.")
        if not (is_int(process_id) and 0 <= process_id < num_processes):
            raise ValueError(
                f"`process_id` must be an int in [0, {num_processes - 1}]; got {process_id!r}."
            )
        if not (isinstance(coordinator, str) and ":" in coordinator):
            raise ValueError(
                f"`coordinator` must be 'host:port', e.g. '10.0.0.1:1234'; got {coordinator!r}."
            )
    where = f"the coordinator {coordinator}" if coordinator else "the cluster JAX detects"
    if coordinator is not None and process_id != 0:
        # JAX's client aborts the whole process (a C++ fatal error) when the coordinator does
        # not answer in time; wait for it here, where a clear error can still be raised.
        _wait_for(coordinator, timeout, process_id, num_processes)
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=timeout,
        )
    except (RuntimeError, jax.errors.JaxRuntimeError) as error:
        if "DEADLINE_EXCEEDED" not in str(error) and "timed out" not in str(error).lower():
            raise
        raise RuntimeError(
            f"process {process_id} could not join {where} within {timeout} s ({error}). Check "
            "that all processes started, or wait longer with --coordinator-timeout."
        ) from error

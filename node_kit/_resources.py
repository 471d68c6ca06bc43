"""Memory a computation will need, checked against what the device has, before anything is
allocated: a size that cannot fit is a clear error naming the argument to lower, not an
out-of-memory abort from deep inside XLA."""

import math
import os

import diffrax
import jax


def device_memory_bytes() -> int | None:
    """The memory the default device can still hand out: on an accelerator, JAX's
    `bytes_limit - bytes_in_use`; on the CPU, the host's physical memory. `None` where
    neither is known."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def check_fits(nbytes: int, *, what: str, lower: str) -> None:
    """Raise a `ValueError` if `nbytes` (what `what` needs, at least) exceeds the device's
    memory; `lower` says which argument to lower and how."""
    available = device_memory_bytes()
    if available is not None and nbytes > available:
        raise ValueError(
            f"{what} needs at least {gib(nbytes)} ({nbytes} bytes), more than the "
            f"{gib(available)} the device has ({jax.devices()[0].platform}). {lower}"
        )


def mlp_parameter_bytes(in_size: int, out_size: int, width: int, depth: int, itemsize: int = 4):
    """Bytes of an `eqx.nn.MLP`'s weights and biases."""
    if depth == 0:
        return (in_size + 1) * out_size * itemsize
    count = (in_size + 1) * width + (depth - 1) * (width + 1) * width + (width + 1) * out_size
    return count * itemsize


def state_bytes(y0) -> int:
    """Bytes of one state like `y0` (an array or a tracer)."""
    leaves = jax.tree_util.tree_leaves(y0)
    return sum(math.prod(x.shape) * x.dtype.itemsize for x in leaves if hasattr(x, "dtype"))


def check_stored_steps(adjoint: diffrax.AbstractAdjoint, max_steps: int | None, y0) -> None:
    """The states an adjoint keeps for the backward pass, where the settings fix how many
    (direct: `max_steps`; checkpointed with a count: that count), must fit the device."""
    if max_steps is None:
        return
    if isinstance(adjoint, diffrax.DirectAdjoint):
        stored = max_steps
    elif isinstance(adjoint, diffrax.RecursiveCheckpointAdjoint) and adjoint.checkpoints:
        stored = min(adjoint.checkpoints, max_steps)
    else:  # backsolve, or diffrax's own checkpoint count
        return
    check_fits(
        stored * state_bytes(y0),
        what=f"the adjoint, which keeps {stored} steps of this state ({state_bytes(y0)} bytes) "
        "for the backward pass,",
        lower="Lower `max_steps` (or the checkpoints) to what the solve needs, or use "
        "adjoint='checkpoint' with diffrax's default count, or 'backsolve'.",
    )

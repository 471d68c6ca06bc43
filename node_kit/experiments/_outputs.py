"""What the commands write: results JSON with provenance, CSV tables, history, pictures.

Every file is written atomically (a temporary file and a rename), so an interrupted
run never leaves half a file behind.
"""

import csv
import io
import json
import os
import platform
import shlex
import subprocess
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes


def own_cores() -> list[int]:
    """The CPU cores this process may run on (its affinity, e.g. under `taskset`), in order.

    XLA's CPU compiler splits loops over that many threads, so float32 training gives other
    last bits, and after many steps other metrics, on another count: a result reproduces
    bit for bit on the count it was made on (recorded as `environment.cpu_cores`)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def run_on_cores(argv: list[str], count: int, what: str, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(argv, **kwargs)` with the child on the first `count` of this
    process's cores, so that XLA compiles it for `count` threads.

    The calling thread is pinned while the child starts (the child inherits its affinity)
    and unpinned after; a `preexec_fn` would make CPython run its fork hooks, which JAX
    answers with a warning. Where the platform cannot pin, the child runs on every core.
    `what` names the run in the error when this process has fewer than `count` cores.
    """
    if count < 1:
        raise ValueError(f"the number of cores to run {what} on must be at least 1; got {count}")
    cores = own_cores()
    if count > len(cores):
        raise ValueError(
            f"{what} was made on {count} CPU cores and this process may use {len(cores)} "
            f"({cores}); run it on a machine with at least {count}, or choose another count "
            "(the last bits of float32 training then differ)."
        )
    if not hasattr(os, "sched_setaffinity"):
        return subprocess.run(argv, **kwargs)
    os.sched_setaffinity(0, cores[:count])
    try:
        return subprocess.run(argv, **kwargs)
    finally:
        os.sched_setaffinity(0, cores)


def environment() -> dict[str, Any]:
    """The machine a result was made on: backend, device, cores (`cpu_count` the
    machine's, `cpu_cores` this process's, see [`own_cores`][]), float width."""
    import jax

    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_cores": len(own_cores()),
        "x64": bool(jax.config.read("jax_enable_x64")),
    }


def provenance(*, wall_seconds: float | None = None) -> dict[str, Any]:
    """Where a result came from, for every results JSON.

    `node_kit` (its version), `git_commit` and `git_dirty` (whether `node_kit/` or
    `pyproject.toml` differ from that commit; both `None` outside a git checkout), the
    versions of the libraries that decide the numbers, the device kind, `command` (the
    command line that ran, as `python -m node_kit.experiments.<name> ...` for a command)
    and `wall_seconds` (from the start of the run to this record).
    """
    import diffrax
    import equinox
    import jax
    import lineax
    import optax
    import optimistix

    import node_kit

    commit, dirty = _git_state()
    device = jax.devices()[0]
    return {
        "node_kit": node_kit.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "diffrax": diffrax.__version__,
        "equinox": equinox.__version__,
        "optax": optax.__version__,
        "optimistix": optimistix.__version__,
        "lineax": lineax.__version__,
        "python": platform.python_version(),
        "device": getattr(device, "device_kind", str(device)),
        "command": command_line(),
        "wall_seconds": None if wall_seconds is None else round(float(wall_seconds), 3),
    }


def command_line() -> str:
    """The command line of this process; `python -m <module> ...` when run as a module."""
    import sys

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    args = [shlex.quote(a) for a in sys.argv[1:]]
    if spec is not None and spec.name:
        return " ".join(["python", "-m", spec.name.removesuffix(".__main__"), *args])
    return " ".join(["python", shlex.quote(sys.argv[0]) if sys.argv else "", *args]).strip()


def _git_state() -> tuple[str | None, bool | None]:
    """`(commit, dirty)` of the checkout node_kit is imported from, `(None, None)` if none."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "node_kit",
                "pyproject.toml",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(changed)


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically (NumPy values and paths become JSON)."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
    atomic_write_bytes(path, (text + "\n").encode())


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_csv(path: str | os.PathLike, rows: list[dict], *, lineterminator: str = "\r\n") -> None:
    """Write a list of dicts (same keys) as CSV, atomically. Nothing for no rows."""
    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator=lineterminator)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110, **layout) -> None:
    """Lay out `fig`, write it as PNG atomically (never half a file), and close it.

    `layout` goes to `fig.tight_layout` (e.g. `rect=...`).
    """
    fig.tight_layout(**layout)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plt():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot

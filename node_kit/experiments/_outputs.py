"""What the commands write: results JSON with provenance, CSV tables, history, pictures.

Every file is written atomically (a temporary file and a rename), so an interrupted
run never leaves half a file behind.
"""

import csv
import io
import json
import os
import platform
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes


def environment() -> dict[str, Any]:
    """Versions, backend, device and machine, for every results JSON."""
    import diffrax
    import equinox
    import jax
    import optax

    device = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "equinox": equinox.__version__,
        "diffrax": diffrax.__version__,
        "optax": optax.__version__,
        "node_kit": _version("node_kit"),
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "x64": bool(jax.config.read("jax_enable_x64")),
    }


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

"""Shared plumbing for experiments: environment record, atomic file writes, output dirs."""

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any


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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temporary file and a rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
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


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write a list of dicts (same keys) as CSV, atomically. Nothing for no rows."""
    import csv
    import io

    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def write_history(path: str | os.PathLike, history: list[dict], *, resumed: bool) -> None:
    """Write the training history CSV; a resumed run keeps the rows logged before it."""
    import csv

    path = Path(path)
    earlier: list[dict] = []
    if resumed and path.exists() and history:
        with open(path, newline="") as f:
            earlier = [row for row in csv.DictReader(f) if int(row["step"]) < history[0]["step"]]
    write_csv(path, earlier + history)


def parse_config(config_cls, argv=None, *, description: str, choices: dict | None = None):
    """Build a frozen config dataclass from command-line flags, one flag per field.

    `--field-name value`; booleans are `--flag/--no-flag`; `choices` maps a field
    name to its allowed values (argparse then lists them on a bad value). A field's
    `metadata={"help": ...}` becomes its `--help` text, followed by its default.
    """
    import argparse
    import dataclasses

    choices = choices or {}
    parser = argparse.ArgumentParser(description=description)
    defaults = config_cls()
    for field in dataclasses.fields(config_cls):
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        text = field.metadata.get("help", "")
        text = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        if isinstance(default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=text
            )
        else:
            kind = type(default) if default is not None else str
            parser.add_argument(
                flag, type=kind, default=default, choices=choices.get(field.name), help=text
            )
    return config_cls(**vars(parser.parse_args(argv)))


def run_meta(config, *, ignore=("out", "resume", "progress", "steps", "lr")) -> dict:
    """The part of a config that must match to resume a checkpoint.

    The step count and learning rate may change on resume (to train longer, or to
    recover from a divergence with a smaller rate); the model and data may not.
    """
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(config).items() if k not in ignore}


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110, **layout) -> None:
    """Lay out `fig`, write it as PNG atomically (never half a file), and close it.

    `layout` goes to `fig.tight_layout` (e.g. `rect=...`).
    """
    import io

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


SOLVER_NAMES = ("tsit5", "dopri5", "dopri8", "bosh3", "heun", "midpoint")
"""Solvers with an embedded error estimate, as the experiments' adaptive steps need."""


def solver_from_name(name: str):
    """Map a solver name from the command line to an adaptive diffrax solver."""
    import diffrax

    solvers = {
        "tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8,
        "bosh3": diffrax.Bosh3, "heun": diffrax.Heun, "midpoint": diffrax.Midpoint,
    }
    if name not in solvers:
        raise ValueError(f"unknown solver {name!r}; expected one of {', '.join(SOLVER_NAMES)}.")
    return solvers[name]()

"""Atomic file writes, and the weights file format: equinox's leaves with a JSON sidecar."""

import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

import equinox as eqx

from ._old_formats import split_old_format


class WriteError(OSError):
    """A run's file could not be written (a full disk, a file-size limit, a folder that
    turned read-only); the message names the file and says that it keeps its old contents."""


def write_error(path: str | os.PathLike, error: OSError) -> WriteError:
    """The `WriteError` for `error`, raised writing `path` (same errno)."""
    return WriteError(
        error.errno,
        f"could not write {path}: {error.strerror or error}. The file keeps its previous "
        "contents (nothing is half-written). Free disk space, raise the file-size limit or "
        "make the folder writable, then resume (the commands: --resume).",
    )


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` via a temporary file, `fsync` and a rename.

    The parent directory is created if needed; on any error the temporary file is
    removed and `path` keeps its old contents: it holds the old or the new data at every
    moment. A failed write (`OSError`: disk full, file too large, read-only) is a
    `WriteError` naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise write_error(path, error) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, error) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_temp_files(folder: str | os.PathLike, names: Sequence[str] | None = None) -> None:
    """Remove the temporary files `atomic_write_bytes` left in `folder` (and its subfolders)
    when its process was killed mid-write: those of the files `names`, or all of them.

    Only while this process holds the folder's lock: another writer's temporary file is
    live."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    patterns = [f".{name}.*.tmp" for name in names] if names is not None else [".*.tmp"]
    for pattern in patterns:
        for leftover in folder.glob(pattern) if names is not None else folder.rglob(pattern):
            if leftover.is_file():
                leftover.unlink(missing_ok=True)


def _copy_into_place(source: Path, target: Path) -> None:
    """Make `target` a copy of `source` atomically: a hard link (or a copy where links are
    not supported) under a temporary name, then a rename over `target`."""
    staging = target.with_name(f".{target.name}.staging")
    staging.unlink(missing_ok=True)  # left by a crash between the two steps below
    try:
        os.link(source, staging)
    except OSError:
        shutil.copyfile(source, staging)
    os.replace(staging, target)


# --------------------------------------------------------------------------------- weights files
#
# A weights file (`model.eqx`, `best.eqx`, `checkpoint.eqx` and its `.prev` copy) holds
# exactly what `eqx.tree_serialise_leaves` writes. Its sidecar `<file>.json` holds the format
# and its version, the step, the run's config `meta` and `info`, the byte length and SHA-256
# of the weights, and the SHA-256 of its own fields (`sidecar_sha256`), so that a changed
# step or config is caught too. The weights are written first, then the sidecar, each
# atomically: a missing or mismatched sidecar marks the file as damaged. The formats with
# a header inside the file (_old_formats.py) are still read.

FORMAT = "node_kit weights"
VERSION = 3


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, not a checkpoint, damaged, or from another run.

    The message names the file, what is wrong with it and what to do. `damaged` is `True`
    when the file itself is unusable (so an older copy may serve), `False` when it is
    sound but belongs to another run.
    """

    def __init__(self, message: str, *, damaged: bool = True):
        super().__init__(message)
        self.damaged = damaged


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint before the latest one is kept: `<path>.prev`."""
    path = Path(path)
    return path.with_name(path.name + ".prev")


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar of a weights file: `<path>.json`."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def sidecar_bytes(payload: bytes, *, step: int, meta: dict, info: dict | None) -> bytes:
    """The sidecar of the weights `payload`: format, step, `meta`, `info`, checksums."""
    fields = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "meta": meta,
        "info": info,
        "weights": {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()},
    }
    try:
        fields = json.loads(json.dumps(fields, allow_nan=False))  # as a reader will see them
    except (TypeError, ValueError) as error:
        raise ValueError(
            "`meta` must hold JSON values only (str, int, finite float, bool, None, lists "
            f"and dicts of them), so that a resumed run can compare it; got {error}. Convert "
            "the value, e.g. with str(), or leave it out of `meta`."
        ) from None
    fields["sidecar_sha256"] = _fields_digest(fields)
    return json.dumps(fields, indent=2).encode() + b"\n"


def _fields_digest(fields: dict) -> str:
    """SHA-256 of a sidecar's fields (`sidecar_sha256` left out), in a canonical form."""
    rest = {k: v for k, v in fields.items() if k != "sidecar_sha256"}
    return hashlib.sha256(
        json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def write_checkpoint_bytes(
    path: str | os.PathLike,
    payload: bytes,
    *,
    step: int,
    meta: dict,
    info: dict | None = None,
    keep_previous: bool = True,
) -> None:
    """Write the weights `payload` atomically, then its sidecar.

    With `keep_previous`, the pair it replaces (if sound) is first copied to `<path>.prev`
    and its sidecar, so that a kill at any moment leaves a sound pair: the latest, or
    while the latest is half written, the previous one.
    """
    path = Path(path)
    sidecar = sidecar_bytes(payload, step=step, meta=meta, info=info)
    if keep_previous and _is_sound(path):  # a damaged latest never replaces a sound .prev
        copy_pair(path, previous_path(path))
    atomic_write_bytes(path, payload)
    atomic_write_bytes(sidecar_path(path), sidecar)


def remove_weights(path: str | os.PathLike) -> None:
    """Remove a weights file and then its sidecar (a sidecar alone is ignored)."""
    Path(path).unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)


def _is_sound(path: Path) -> bool:
    try:
        read_checkpoint_bytes(path)
    except CheckpointError:
        return False
    return True


def copy_pair(path: Path, target: Path) -> None:
    """Copy a weights file and its sidecar to `target` and its sidecar (each atomically)."""
    if sidecar_path(path).exists():
        _copy_into_place(sidecar_path(path), sidecar_path(target))
    else:  # an old format, its header inside: a sidecar left at `target` would not match
        sidecar_path(target).unlink(missing_ok=True)
    _copy_into_place(path, target)


def read_checkpoint_bytes(path: str | os.PathLike, *, fix: str | None = None) -> tuple[dict, bytes]:
    """`(header, payload)` of a weights file, checked: a `CheckpointError` says what is wrong.

    `header` is the run's config `meta` with `"step"` and, where written, `"info"`;
    `payload` the file's leaves as `eqx.tree_serialise_leaves` wrote them. `fix` replaces
    the advice that ends each message (by default: how to resume).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint file. Pass the checkpoint file in it "
            f"(e.g. {path / 'checkpoint.eqx'}), or the run folder where a command takes one.",
            damaged=False,
        ) from None
    except FileNotFoundError:
        raise CheckpointError(
            f"no checkpoint at {path}. "
            + (
                fix
                or "Train without resuming to start fresh, or "
                "pass the output folder of the run to continue."
            )
        ) from None
    fix = fix or (
        f"Resume from {previous_path(path).name} (node_kit falls back to it when "
        "resuming) if it exists, or start fresh without resuming."
    )
    old = split_old_format(data)
    if old is not None:
        header, payload, problem = old
        if problem is not None:
            raise CheckpointError(f"checkpoint {path} {problem}. {fix}")
        return {k: v for k, v in header.items() if k != "sha256"}, payload
    fields = _read_sidecar(path, len(data), fix)
    _check_weights(path, data, fields["weights"], fix)
    info = {} if fields["info"] is None else {"info": fields["info"]}
    return {**fields["meta"], "step": fields["step"], **info}, data


def read_or_fall_back(
    path: Path, fallback: Path, *, fix: str | None = None, stacklevel: int = 2
) -> tuple[dict, bytes, Path]:
    """`(header, payload, path read)`: `path`, or where it is damaged (say, a kill between
    its weights and its sidecar) and `fallback` exists, `fallback` with a warning."""
    try:
        return (*read_checkpoint_bytes(path, fix=fix), path)
    except CheckpointError as error:
        if not error.damaged or not fallback.exists():
            raise
        warnings.warn(f"{error} Reading {fallback} instead.", stacklevel=stacklevel + 1)
    return (*read_checkpoint_bytes(fallback, fix=fix), fallback)


def _read_sidecar(path: Path, size: int, fix: str) -> dict:
    """The fields of the sidecar of `path` (a file of `size` bytes), checked."""
    sidecar = sidecar_path(path)
    try:
        fields = json.loads(sidecar.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {path} cannot be read: its sidecar {sidecar.name} is missing (it is "
            "written just after the weights: a write was cut off, or the file was copied "
            f"without it), and the file is in no older node_kit format ({size} bytes). {fix}"
        ) from None
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond reason
        fields = None
    if (  # a newer writer's sidecar, and not a damaged one claiming so (its checksum holds)
        isinstance(fields, dict)
        and type(fields.get("version")) is int
        and fields["version"] > VERSION
        and fields.get("sidecar_sha256") == _fields_digest(fields)
    ):
        raise CheckpointError(
            f"checkpoint {path} was written by a newer node_kit (sidecar version "
            f"{fields['version']}; this one reads up to {VERSION}). Upgrade node_kit to read it.",
            damaged=False,
        )
    if not _well_formed(fields):
        raise CheckpointError(
            f"checkpoint {path} cannot be read: its sidecar {sidecar.name} is not a node_kit "
            f"sidecar (not JSON, or fields missing: damaged, or another program's file). {fix}"
        )
    if fields["sidecar_sha256"] != _fields_digest(fields):
        raise CheckpointError(
            f"checkpoint {path} cannot be read: its sidecar {sidecar.name} is damaged (its "
            f"fields, such as the step or the config, do not match their checksum). {fix}"
        )
    return fields


def _well_formed(fields) -> TypeGuard[dict]:
    """A dict with every field of a sidecar of this version, of the right types."""
    if not (
        isinstance(fields, dict)
        and fields.get("format") == FORMAT
        and fields.get("version") == VERSION
        and isinstance(fields.get("weights"), dict)
    ):
        return False
    weights = fields["weights"]
    return (
        type(fields.get("step")) is int
        and fields["step"] >= 0
        and isinstance(fields.get("meta"), dict)
        and (fields.get("info") is None or isinstance(fields["info"], dict))
        and type(weights.get("bytes")) is int
        and isinstance(weights.get("sha256"), str)
        and isinstance(fields.get("sidecar_sha256"), str)
    )


def _check_weights(path: Path, data: bytes, recorded: dict, fix: str) -> None:
    """The weights are the bytes their sidecar records (length and SHA-256)."""
    sidecar = sidecar_path(path).name
    if len(data) != recorded["bytes"]:
        what = f"it holds {len(data)} bytes where its sidecar {sidecar} records {recorded['bytes']}"
    elif hashlib.sha256(data).hexdigest() != recorded["sha256"]:
        what = f"its contents do not match the checksum in its sidecar {sidecar}"
    else:
        return
    raise CheckpointError(
        f"checkpoint {path} is damaged: {what} (a flipped or lost byte, or a write cut off "
        f"between the weights and their sidecar). {fix}"
    )


def deserialise_leaves(
    payload: bytes, like: Any, *, read_all: bool, filter_spec=eqx.default_deserialise_filter_spec
) -> tuple[Any, str | None]:
    """`(tree, problem)`: `like` with the leaves stored in `payload` (equinox's format) and
    `None`; or `None` and what went wrong, for the caller's error message: the error
    deserialising raised (a tree that does not fit), or, with `read_all`, the bytes left
    unread (the file holds more than `like`)."""
    stream = io.BytesIO(payload)
    try:
        tree = eqx.tree_deserialise_leaves(stream, like, filter_spec=filter_spec)
    except Exception as error:  # equinox/numpy raise many kinds for a mismatched tree
        return None, f"{type(error).__name__}: {error}"
    unread = len(payload) - stream.tell()
    if read_all and unread:
        return None, f"{unread} bytes of it were not read"
    return tree, None

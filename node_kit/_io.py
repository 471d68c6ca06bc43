"""Atomic file writes and the checkpoint file format (header, checksum, previous copy)."""

import io
import os
import shutil
import tempfile
from pathlib import Path

import equinox as eqx


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, *, keep_previous: str | os.PathLike | None = None
) -> None:
    """Write `data` to `path` via a temporary file, `fsync` and a rename.

    The parent directory is created if needed; on any error the temporary file is
    removed and `path` keeps its old contents. With `keep_previous`, an existing `path`
    is first copied there (after the new data is safely on disk), so that `path` exists
    at every moment and a kill leaves either the old or the new file in place.
    """
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
        if keep_previous is not None and path.exists():
            _copy_into_place(path, Path(keep_previous))
        os.replace(tmp, path)  # `path` holds the old or the new data at every moment
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


# ---------------------------------------------------------------------------------- checkpoints
#
# A checkpoint file is MAGIC, an 8-byte little-endian header length, a JSON header (the run's
# config `meta`, the step, the SHA-256 of the payload), then the payload written by
# `eqx.tree_serialise_leaves`. Files written before the magic existed (header length first,
# no checksum) are still read.

MAGIC = b"NODE_KIT_CHECKPOINT\x00v2\n"
_HEADER_LIMIT = 1 << 24  # 16 MiB of JSON is no header node_kit writes


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


def write_checkpoint_bytes(
    path: str | os.PathLike, header: dict, payload: bytes, *, keep_previous: bool = True
) -> None:
    """Write a checkpoint atomically, keeping the one it replaces as `<path>.prev` (unless
    `keep_previous=False`)."""
    import hashlib
    import json

    header = {**header, "sha256": hashlib.sha256(payload).hexdigest()}
    try:
        text = json.dumps(header, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise ValueError(
            "`meta` must hold JSON values only (str, int, finite float, bool, None, lists "
            f"and dicts of them), so that a resumed run can compare it; got {error}. Convert "
            "the value, e.g. with str(), or leave it out of `meta`."
        ) from None
    data = MAGIC + len(text).to_bytes(8, "little") + text + payload
    atomic_write_bytes(path, data, keep_previous=previous_path(path) if keep_previous else None)


def read_checkpoint_bytes(path: str | os.PathLike, *, fix: str | None = None) -> tuple[dict, bytes]:
    """`(header, payload)` of a checkpoint, checked: a `CheckpointError` says what is wrong.

    `fix` replaces the advice that ends each message (by default: how to resume).
    """
    import hashlib
    import json

    path = Path(path)
    previous = previous_path(path).name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(
            f"no checkpoint at {path}. " + (fix or "Train without resuming to start fresh, or "
                                             "pass the output folder of the run to continue.")
        ) from None
    legacy = not data.startswith(MAGIC)
    start = 0 if legacy else len(MAGIC)
    size = int.from_bytes(data[start : start + 8], "little") if len(data) >= start + 8 else -1
    end = start + 8 + size
    if not 0 < size <= _HEADER_LIMIT or end > len(data):
        what = "it is truncated" if not legacy else "it is not a node_kit checkpoint"
        raise CheckpointError(
            f"checkpoint {path} cannot be read: {what} ({len(data)} bytes). " + (
                fix or f"Resume from {previous} if it exists, or start fresh without resuming.")
        )
    try:
        header = json.loads(data[start + 8 : end])
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"checkpoint {path} cannot be read: its header is not valid JSON (not a node_kit "
            "checkpoint, or damaged). " + (fix or "Start fresh without resuming.")
        )
    payload = data[end:]
    digest = header.get("sha256")
    if not legacy and digest != hashlib.sha256(payload).hexdigest():
        raise CheckpointError(
            f"checkpoint {path} is damaged: its contents do not match the checksum in its "
            "header (a flipped or missing byte). " + (
                fix or f"Resume from {previous} (node_kit falls back to it when resuming), "
                "or start fresh.")
        )
    return header, payload


def deserialise_leaves(payload: bytes, like, *, read_all: bool,
                       filter_spec=eqx.default_deserialise_filter_spec):
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

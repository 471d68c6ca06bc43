"""The weights files of node_kit before the sidecar: read, checked, never written any more.

Both put a JSON header inside the file, before the leaves `eqx.tree_serialise_leaves`
wrote (the payload):

- v2: `MAGIC`, an 8-byte little-endian header length, the header (the run's config
    `meta`, `step`, `info`, the SHA-256 of the payload), the payload;
- the first format: the header length, the header (config and step, no checksum), the
    payload.

A file in the current format is the payload alone, which starts with a `.npy` record
(`\\x93NUMPY`) or is empty, so it is never taken for either.
"""

import hashlib
import io
import json

import numpy as np


MAGIC = b"NODE_KIT_CHECKPOINT\x00v2\n"
_HEADER_LIMIT = 1 << 24  # 16 MiB of JSON is no header node_kit wrote


def split_old_format(data: bytes) -> tuple[dict, bytes, str | None] | None:
    """`(header, payload, problem)` of a file in an old format, or `None` for a file in
    neither. `problem` is `None` for a sound file, else what is wrong with it, a phrase
    that follows the file's name ("is damaged: ...", "cannot be read: ...").

    A v2 file's payload is checked against its checksum; a file of the first format has
    none, so its payload is checked to be whole `.npy` records (a cut-off file fails).
    """
    if data.startswith(MAGIC):
        header, payload = _split_header(data, len(MAGIC))
        if header is None:
            return (
                {},
                b"",
                f"cannot be read: it is truncated, or its header is damaged ({len(data)} bytes)",
            )
        if header.get("sha256") != hashlib.sha256(payload).hexdigest():
            return (
                header,
                payload,
                (
                    "is damaged: its contents do not match the checksum in "
                    "its header (a flipped or missing byte)"
                ),
            )
    else:
        header, payload = _split_header(data, 0)
        if header is None:
            return None
        arrays = npy_records(payload)
        if arrays is None or not all(_finite(a) for a in arrays):
            return (
                header,
                payload,
                (
                    "is damaged: its arrays are cut off, garbled or not finite (a file "
                    "of node_kit's first format, which has no checksum)"
                ),
            )
    if type(header.get("step")) is not int or header["step"] < 0:
        return header, payload, "cannot be read: its header records no step (or a negative one)"
    return header, payload, None


def _split_header(data: bytes, start: int) -> tuple[dict | None, bytes]:
    """The JSON object after the 8-byte length at `start`, and the bytes after it; `None`
    where there is no such header."""
    size = int.from_bytes(data[start : start + 8], "little") if len(data) >= start + 8 else -1
    end = start + 8 + size
    if not 0 < size <= _HEADER_LIMIT or end > len(data):
        return None, b""
    try:
        header = json.loads(data[start + 8 : end])
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond reason
        return None, b""
    return (header, data[end:]) if isinstance(header, dict) else (None, b"")


def npy_records(payload: bytes) -> list[np.ndarray] | None:
    """The arrays of an `eqx.tree_serialise_leaves` payload, one `.npy` record per array
    leaf in order (no skeleton needed); `None` if it is not whole `.npy` records."""
    stream, arrays = io.BytesIO(payload), []
    while stream.tell() < len(payload):
        try:
            arrays.append(np.lib.format.read_array(stream, allow_pickle=False))
        except (ValueError, EOFError):  # numpy's errors for a bad or cut-off record
            return None
    return arrays


def _finite(array: np.ndarray) -> bool:
    """No NaN or inf in a floating-point array (a checkpoint only ever holds finite ones)."""
    return not np.issubdtype(array.dtype, np.inexact) or bool(np.all(np.isfinite(array)))

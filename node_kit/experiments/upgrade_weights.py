"""Rewrite the weights files of an older node_kit as plain equinox files with a JSON sidecar.

```bash
python -m node_kit.experiments.upgrade_weights runs/cnf [more folders or files]
```

Every `*.eqx` and `*.eqx.prev` file given or found under a folder given (searched
recursively) whose header is inside the file (node_kit's formats before the sidecar)
becomes its weights alone, the bytes `eqx.tree_serialise_leaves` wrote, and its header
(step, config, command) moves to the sidecar `<file>.json`. Each file is checked before
(its checksum) and after (read back; every array bit for bit the one it held). A file in
the current format is left as it is. `nk.load_run` and `--resume` read the old formats
too: upgrading is for loading the weights with equinox alone.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

from .._io import (
    atomic_write_bytes,
    CheckpointError,
    read_checkpoint_bytes,
    sidecar_bytes,
    sidecar_path,
)
from .._old_formats import npy_records, split_old_format
from ._protocol import exit_on_user_error


def upgrade(path: str | Path) -> bool:
    """Rewrite one weights file in the current format; `False` if it already was one.

    **Raises:**

    [`node_kit.CheckpointError`][] for a damaged file (left as it is), or if the
    rewritten file does not hold the same arrays (never expected).
    """
    path = Path(path)
    header, payload = read_checkpoint_bytes(path, fix="Leave it as it is; it cannot be upgraded.")
    if split_old_format(path.read_bytes()) is None:
        return False
    meta = {k: v for k, v in header.items() if k not in ("step", "info")}
    sidecar = sidecar_bytes(payload, step=header["step"], meta=meta, info=header.get("info"))
    # The sidecar first: while the old file is in place, the header inside it is read.
    atomic_write_bytes(sidecar_path(path), sidecar)
    atomic_write_bytes(path, payload)
    again, stored = read_checkpoint_bytes(path)
    before, after = npy_records(payload), npy_records(stored)
    if again != header or before is None or not same_arrays(before, after):
        raise CheckpointError(
            f"upgrading {path} changed what it holds; restore it from a "
            "copy and report this as a bug.",
            damaged=False,
        )
    return True


def same_arrays(first: Sequence, second: Sequence | None) -> bool:
    """The same number of arrays, each with the same dtype, shape and bytes."""
    return (
        second is not None
        and len(first) == len(second)
        and all(
            a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
            for a, b in zip(first, second)
        )
    )


def weights_files(paths: Sequence[str]) -> list[Path]:
    """The files given and the `*.eqx`, `*.eqx.prev` files under the folders given."""
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(p for pattern in ("*.eqx", "*.eqx.prev") for p in path.rglob(pattern))
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(
                f"`paths`: {name!r} does not exist; pass run folders or weights files."
            )
    return files


def main(paths: Sequence[str]) -> dict:
    """Upgrade every weights file of `paths`; `{path: upgraded}` (False: already current)."""
    done = {}
    for path in weights_files(paths):
        done[str(path)] = upgrade(path)
        print(f"{'upgraded' if done[str(path)] else 'already current'}: {path}", flush=True)
    return done


def parse_args(argv: Sequence[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(
        prog="python -m node_kit.experiments.upgrade_weights",
        description=(__doc__ or "").split("\n")[0],
    )
    parser.add_argument("paths", nargs="+", help="run folders (searched recursively) or files")
    return parser.parse_args(argv).paths


if __name__ == "__main__":
    exit_on_user_error(lambda: main(parse_args()))

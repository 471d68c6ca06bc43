"""The history of a training run: a CSV appended row by row, kept consistent with resumes."""

import contextlib
import csv
import io
import os
from pathlib import Path

from ._checks import type_name
from ._io import atomic_write_bytes, write_error


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a history CSV that [`node_kit.fit`][] appended to (`history_path`).

    **Returns:**

    A list of `{"step": int, "loss": float, **aux, "time": float}`, one per logged step,
    oldest first; empty if the file does not exist. After a resume it holds the rows of
    every run so far, not only those of the last call. A column that only some rows
    have (a validation metric, logged every `evaluate_every` steps) is left out of the
    others.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`path` must be a str or os.PathLike; got {type_name(path)}.")
    path = Path(path)
    if not path.exists():
        return []
    if path.is_dir():
        raise ValueError(
            f"`path` must be a history CSV file; got {str(path)!r}, which is a folder. A "
            f"command's is {str(path / 'history.csv')!r}."
        )
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is not None and not {"step", "loss"} <= set(reader.fieldnames):
            raise ValueError(
                f"`path` {str(path)!r} is not a history CSV of node_kit.fit (its header has no "
                f"'step' and 'loss' columns: {reader.fieldnames[:5]})."
            )
        try:
            return [
                {k: int(v) if k == "step" else float(v) for k, v in row.items() if v != ""}
                for row in reader
            ]
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"`path` {str(path)!r} is a damaged history CSV (a row that is not numbers: "
                f"{error})."
            ) from None


class _HistoryFile:
    """A history CSV appended row by row, each row flushed and synced to disk.

    On resume the rows up to `keep_until` (the checkpoint's step) are kept and later ones,
    which the resumed run computes again, are dropped. A row with a column the file does
    not have yet (a validation metric) widens the file: it is rewritten with the new
    column, blank in the rows before.
    """

    def __init__(self, path: str | os.PathLike, *, keep_until: int):
        self.path = Path(path)
        self.fields: list[str] | None = None
        rows: list[dict] = []
        if keep_until > 0 and self.path.exists():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or []) or None
                rows = [r for r in reader if float(r["step"]) <= keep_until]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict]) -> None:
        buffer = io.StringIO()
        if self.fields:
            writer = csv.DictWriter(buffer, fieldnames=self.fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_bytes(self.path, buffer.getvalue().encode())

    def append(self, record: dict) -> None:
        new = [k for k in record if k not in (self.fields or ())]
        if self.fields is not None and new:
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            self.fields = [*self.fields, *new]
            self._rewrite(rows)
        fields = self.fields or list(record)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields, restval="")
        if self.fields is None:
            writer.writeheader()
        writer.writerow(record)
        size = self.path.stat().st_size if self.path.exists() else 0
        try:
            with open(self.path, "a", newline="") as f:
                f.write(text.getvalue())
                f.flush()
                os.fsync(f.fileno())
        except OSError as error:  # a row cut off by a full disk is taken back
            with contextlib.suppress(OSError):
                os.truncate(self.path, size)
            raise write_error(self.path, error) from None
        self.fields = fields

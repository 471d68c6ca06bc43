"""An advisory lock on a run's files, so that two processes never train into one place.

The lock is `fcntl.flock` on a lock file that holds the holder's pid, host and start time.
The kernel releases it when the holder exits, however it exits (kill -9 included), so a
lock left by a process that is gone never blocks: the next run takes it over and says so.
Where `fcntl` does not exist (Windows) locking is skipped.
"""

import contextlib
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path


try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class RunLocked(RuntimeError):
    """Another process holds the lock on these run files; the message names it."""


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of a checkpoint or other run file: `<path>.lock`."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _holder(fd: int) -> dict:
    """What the lock file open at `fd` says about its holder (`{}` if nothing readable)."""
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        holder = json.loads(os.read(fd, 4096) or b"{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "a process that left no details"
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return f"process {holder.get('pid')} on host {holder.get('host')!r} (since {when})"


def _open(path: Path, what: str) -> int:
    """The lock file opened for reading and writing (created, with its folder, if need be)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise ValueError(
            f"cannot write {what}: creating {path} failed ({error.strerror or error}). "
            "Choose a folder this process can create files in."
        ) from None


@contextlib.contextmanager
def run_lock(path: str | os.PathLike, *, what: str) -> Iterator[Path]:
    """Hold the lock file `path` while the block runs; `what` names the locked files in the
    error (e.g. "the run folder runs/cnf").

    **Raises:** `RunLocked` at once, naming the holder, if another live process holds it.
    """
    path = Path(path)
    if fcntl is None:  # pragma: no cover
        yield path
        return
    while True:
        fd = _open(path, what)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunLocked(
                f"{what} is in use by {_describe(holder)}: two runs writing there at once "
                f"would mix their files. Wait for it to finish, stop it, or choose another "
                f"output. (The lock is {path}; it is released when that process exits.)"
            ) from None
        # The holder before us may have removed the file between our open and our lock.
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        os.close(fd)
    try:
        previous = _holder(fd)
        if previous.get("pid") not in (None, os.getpid()):
            warnings.warn(
                f"{what} was locked by {_describe(previous)}, which is gone (it stopped "
                "without releasing it, e.g. killed); taking it over.",
                stacklevel=3,
            )
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)  # releases the lock, after the file is gone

"""The lock on a run directory: one process trains in it at a time, and ``metarl eval`` never writes
into a run that is training.

``run.lock`` in the run directory is locked with ``flock``: exclusively by the process training there
(:func:`metarl.runs.create`, :func:`metarl.runs.resume`), shared by evaluations writing their file there
(:func:`metarl.runs.evaluate_run`). The kernel releases a dead process's lock, so a lock left by a killed
run never blocks the next one; the file holds the trainer's pid, host, command and start time, for the
refusal message and for the note that a killed run's lock was taken over. ``flock`` locks hold across
hosts on NFS (Linux emulates them with POSIX locks there). Without ``fcntl`` (Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from metarl.errors import UsageError
from metarl.files import FILE_MODE

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "run.lock"
"""The lock file in a run directory."""


class RunLock:
    """The lock on run directory ``run_dir``: :meth:`acquire` it, :meth:`release` it (also when garbage
    collected). ``shared``: an evaluation's lock, which any number of evaluations hold together and a
    trainer's excludes."""

    def __init__(self, run_dir: str | os.PathLike, shared: bool = False) -> None:
        self.path, self.shared = Path(run_dir) / LOCK_NAME, shared
        self.stale: dict | None = None
        """After :meth:`acquire`: what the lock file said about a trainer that died holding it (killed,
        crashed; the kernel released its lock), else None."""
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, doing: str) -> RunLock:
        """Take the lock, or a one-line :class:`UsageError` naming the process that holds it; ``doing``
        says what this process wanted (``"train in"``, ``"write an evaluation into"``)."""
        if self._fd is not None or fcntl is None:
            return self
        for _ in range(100):  # the holder may release (and unlink the file) between our open and flock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            except OSError as e:
                raise UsageError(f"cannot {doing} {self.path.parent}: its lock file {LOCK_NAME} can't be created "
                                 f"({e.strerror})" + ("; give --out FILE to write the evaluation elsewhere"
                                                      if self.shared else "")) from None
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError:
                holder = _describe_holder(fd, self.path)
                os.close(fd)
                elsewhere = "; or give --out FILE to write the evaluation elsewhere" if self.shared else ""
                raise UsageError(f"run directory {self.path.parent} is in use by {holder}: wait for it to finish, "
                                 f"or stop it, before you {doing} it{elsewhere}") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # we locked a file its holder had already unlinked: try the new one
        else:
            raise UsageError(f"could not lock {self.path}: other processes keep taking and releasing it")
        self._fd = fd
        if not self.shared:
            self.stale = _read(fd)
            _write(fd, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])[:160]})
        return self

    def release(self) -> None:
        """Give the lock up; a trainer's (or the last evaluation's) lock file goes with it."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self.shared:  # the file goes only if no one else holds it
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return
            with contextlib.suppress(OSError):
                if _same_file(fd, self.path):
                    self.path.unlink()
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


def describe_stale(stale: dict, run_dir: Path) -> str:
    """The note for a lock taken over from a trainer that died holding it."""
    return (f"{run_dir} was last trained by pid {stale.get('pid', '?')} on host {stale.get('host', '?')} "
            f"(since {stale.get('since', '?')}), which ended without releasing its lock (killed?); taken over")


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except OSError:
        return False


def _read(fd: int) -> dict | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        obj = json.loads(os.read(fd, 65536) or b"null")
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _write(fd: int, obj: dict) -> None:
    with contextlib.suppress(OSError):  # the lock itself is held: its label is a courtesy
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(obj) + "\n").encode(), 0)


def _describe_holder(fd: int, path: Path) -> str:
    """Who holds the lock ``fd`` could not take: evaluations (a shared lock), or the trainer its file names."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted: only evaluations hold it
        fcntl.flock(fd, fcntl.LOCK_UN)
        pids = _flock_holders(fd)
        which = f"pid {', '.join(map(str, pids))}: " if pids else ""
        return f"`metarl eval` ({which}another process evaluating it)"
    except OSError:
        pass
    info = _read(fd) or {}
    if not info:
        return f"another process (see {path})"
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')} (`{info.get('command', '?')}`, since "
            f"{info.get('since', '?')})")


def _flock_holders(fd: int) -> list[int]:
    """The pids holding a ``flock`` on ``fd``'s file, from ``/proc/locks`` (Linux: an evaluation's shared
    lock has no label to read them from); [] where that can't be read."""
    try:
        st = os.fstat(fd)
        text = Path("/proc/locks").read_text()
    except OSError:
        return []
    file = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for fields in map(str.split, text.splitlines()):  # "1: FLOCK  ADVISORY  READ 1234 fe:00:2146404 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == file and fields[4].isdigit():
            pids.append(int(fields[4]))  # a waiter's line has "->" in field 1 instead
    return sorted(set(pids))

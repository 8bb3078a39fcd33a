"""Shared memory and semaphores for the ``shm`` backend that leave nothing in ``/dev/shm`` however the
processes end (a ``kill -9`` of the process group takes multiprocessing's resource tracker, which would
otherwise clean up names, with it): the block has no name, and each semaphore's name is unlinked once the
worker that uses it has opened it."""

from __future__ import annotations

import _multiprocessing
import contextlib
import mmap
import os
from multiprocessing import reduction, resource_tracker
from multiprocessing import synchronize as mp_synchronize
from multiprocessing import util as mp_util
from multiprocessing.shared_memory import SharedMemory
from typing import Any


class Segment:
    """Shared memory without a name: nothing is left behind however the processes end (a ``kill -9`` of
    the process group included), since the memory goes with the last process that maps it.

    Linux: a ``memfd`` (no ``/dev/shm`` entry, and not limited by ``/dev/shm``'s size, 64 MB in Docker);
    elsewhere a POSIX segment whose name is unlinked at once. Workers get the file descriptor itself, passed
    while they start (:meth:`__reduce__`), and map it."""

    name = "(unnamed)"
    """No ``/dev/shm`` name."""

    def __init__(self, size: int) -> None:
        self.size = size
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create("metarl-shm", os.MFD_CLOEXEC)
            os.ftruncate(self.fd, size)
        else:
            named = SharedMemory(create=True, size=size)
            self.fd = os.dup(named._fd)
            named.unlink()
            named.close()
        self.mmap = mmap.mmap(self.fd, size)
        self.buf = memoryview(self.mmap)

    def __reduce__(self) -> tuple:  # to a worker process as it starts: the descriptor travels with it
        return _attach, (reduction.DupFd(self.fd), self.size)

    def close(self) -> None:
        self.buf.release()
        self.mmap.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Mapped:
    """A worker's map of the parent's :class:`Segment`."""

    def __init__(self, fd: int, size: int) -> None:
        self.mmap = mmap.mmap(fd, size)
        os.close(fd)  # the map holds the memory
        self.buf = memoryview(self.mmap)

    def close(self) -> None:
        self.buf.release()
        self.mmap.close()


def _attach(dup: Any, size: int) -> Mapped:
    return Mapped(dup.detach(), size)


def forget_name(sem: Any) -> None:
    """Unlink the name of a semaphore both processes now hold open, so a ``kill -9`` of the process group
    leaves no ``/dev/shm/sem.mp-*`` entry behind (multiprocessing unlinks it only when the object is freed,
    or its resource tracker at exit, and both die with the group). Only where multiprocessing's own
    clean-up of the name is found and cancelled (it would fail on a name already gone)."""
    lock = getattr(sem, "_semlock", None)
    name = getattr(lock, "name", None)
    if name is None:
        return
    cleanups = [f for f in list(mp_util._finalizer_registry.values())
                if getattr(f, "_callback", None) is getattr(mp_synchronize.SemLock, "_cleanup", ())
                and getattr(f, "_args", None) == (name,)]
    if len(cleanups) != 1:
        return
    cleanups[0].cancel()
    with contextlib.suppress(OSError):
        _multiprocessing.sem_unlink(name)
    with contextlib.suppress(Exception):
        resource_tracker.unregister(name, "semaphore")

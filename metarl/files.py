"""Writing files whole or not at all: a reader (``metarl compare``, ``--resume``) never sees half a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _file_mode() -> int:
    """The mode a plain ``open()`` gives a new file (0o666 less the umask), read once: setting the umask to
    read it is process-wide, so not done while other threads may be creating files."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()
"""Mode of the files written through :func:`atomic_write` (``mkstemp`` alone would make them owner-only)."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; when the block ends without an error, flush and
    fsync it and rename it over ``path`` (atomic on POSIX and Windows); otherwise remove it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            os.chmod(tmp, FILE_MODE)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)

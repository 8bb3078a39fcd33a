"""Where a result came from: the command, the commit, the machine and the date, and the one writer of
results JSON.

Every measurement metarl publishes (``metarl bench envs``, the scripts in ``benchmarks/``) is a JSON
object that starts with the same four keys, so a number in the docs can be traced to the code and the
machine that produced it::

    {"command": [...], "git_commit": "...", "machine": {...}, "date_utc": "...", ...the measurement...}

:func:`write_result` adds them and writes the file atomically (a reader never sees half a file, and a run
cut short by a time limit keeps its last complete version).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from metarl.files import atomic_write

VERSIONED = ("numpy", "gymnasium", "mujoco", "metaworld", "torch")
"""Packages whose versions every result records."""


def git_commit(where: Path | None = None) -> str:
    """``$METARL_GIT_COMMIT`` if set (hosts that get a copy without ``.git``), else ``git rev-parse HEAD``
    of the checkout holding ``where`` (default: this file's, i.e. metarl's own), with ``+dirty`` appended
    when tracked files outside ``benchmarks/results/`` differ from it (the numbers came from uncommitted
    code) and ``+unknown`` when git can't tell; ``"unknown"`` outside a checkout. Read-only: git's
    optional index refresh is off, so a benchmark never takes the index lock of a checkout in use."""
    if os.environ.get("METARL_GIT_COMMIT"):
        return os.environ["METARL_GIT_COMMIT"]
    cwd = where or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "--no-optional-locks", *args], cwd=cwd, capture_output=True,
                                  text=True, check=False)
        except OSError:
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if not sha:
        return "unknown"
    top = git("rev-parse", "--show-toplevel")
    changed = git("-C", top, "status", "--porcelain", "--untracked-files=no", "--", ".",
                  ":(exclude)benchmarks/results") if top else None
    return f"{sha}+unknown" if changed is None else f"{sha}+dirty" if changed else sha


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, falling back to ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Platform, CPU and library versions the numbers were measured with."""
    versions = {}
    for pkg in VERSIONED:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"platform": platform.platform(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), **versions}


def now_utc() -> str:
    """The current UTC time, ISO 8601 to the second (the format of ``date_utc``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def command_line() -> list[str]:
    """This process's command as it was typed: ``python benchmarks/x.py ...`` for a script,
    ``python -m metarl ...`` or ``metarl ...`` (program name without its path) for the CLI."""
    program = Path(sys.argv[0])
    if program.name == "__main__.py":  # python -m metarl
        head = ["python", "-m", program.parent.name]
    elif program.suffix == ".py":  # a script, by the path it was given
        head = ["python", sys.argv[0]]
    else:
        head = [program.name]
    return [*head, *sys.argv[1:]]


def provenance(command: list[str] | None = None) -> dict[str, Any]:
    """``command`` (default: :func:`command_line`), commit, machine and UTC date: the first keys of every
    results JSON."""
    return {"command": command_line() if command is None else list(command), "git_commit": git_commit(),
            "machine": machine_info(), "date_utc": now_utc()}


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as indented JSON with a final newline, written atomically
    (:func:`metarl.files.atomic_write`)."""
    path = Path(path)
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=2) + "\n")
    return path


def write_result(path: str | os.PathLike, payload: dict[str, Any], *, command: list[str] | None = None,
                 head: dict[str, Any] | None = None) -> Path:
    """Write a results JSON: provenance first, then ``payload`` (whose keys win, e.g. a ``date_utc`` of
    the end next to a ``started_utc``), atomically.

    Args:
        path: the JSON file; its folder must exist.
        payload: the measurement (JSON-serialisable).
        command: the command to record (default: this process's, :func:`command_line`).
        head: provenance taken earlier with :func:`provenance`, for a script that rewrites its results
            as it goes and should name the commit it started from, not the one checked out at the end.
    """
    return write_json(path, {**(provenance(command) if head is None else head), **payload})

"""Argument helpers the commands share: the parser whose errors are one line, number and path types,
the vector-backend flags, and the writable-path check."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from metarl.errors import UsageError
from metarl.vector import BACKENDS

SEED_MAX = 2**32 - 1
"""Largest seed the CLI takes (torch, NumPy and gymnasium all accept it; far larger ones overflow torch)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's own convention)
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def whole(flag: str, example: int, minimum: int = 1, maximum: int | None = None):
    """argparse type: a whole number >= ``minimum`` and <= ``maximum`` (``_`` separators allowed), else a
    usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number: give e.g. {flag} {example}") from None
        if value < minimum:
            what = "positive" if minimum == 1 else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}: give e.g. {flag} {example}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}: give e.g. {flag} {example}")
        return value
    return parse


def seed_arg(flag: str):
    """argparse type: a seed, 0 to :data:`SEED_MAX`."""
    return whole(flag, 1, minimum=0, maximum=SEED_MAX)


def path_arg(text: str) -> Path:
    """A path flag's value; empty text (``--out ""``) is refused rather than read as the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path: give a directory, e.g. --out runs/my-run")
    return Path(text)


def add_vector_flags(parser: argparse.ArgumentParser, default_note: str = "") -> None:
    """--backend and --num-workers (train and eval)."""
    parser.add_argument("--backend", default=None, choices=BACKENDS,
                        help="vector env backend (auto: the family's batched env if it has one, else sync)"
                             + (default_note or "; default auto"))
    parser.add_argument("--num-workers", type=whole("--num-workers", 8),
                        help="worker processes of --backend shm, actors of --backend ray (default: one per "
                             "core, at most --num-envs)" + default_note)


def add_option_flags(parser: argparse.ArgumentParser, agent_help: str, env_help: str) -> None:
    """--agent-opt and --env-opt, repeatable KEY=VALUE (train and eval)."""
    parser.add_argument("--agent-opt", action="append", default=[], metavar="KEY=VALUE", help=agent_help)
    parser.add_argument("--env-opt", action="append", default=[], metavar="KEY=VALUE", help=env_help)


def check_writable(path: Path, flag: str) -> None:
    """``path`` can be created as a file: a one-line error naming ``flag`` if not."""
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory: give a file path inside it")
    if not path.parent.is_dir():
        what = "is a file, not a folder" if path.parent.exists() else "does not exist"
        raise UsageError(f"{flag} {path}: {path.parent} {what}; create the folder or choose another path")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"{flag} {path}: folder {path.parent} is not writable; choose another path")

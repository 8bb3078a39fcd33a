"""Errors meant for the person at the keyboard."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UsageError(ValueError):
    """Bad input: the message names the problem and the fix in one line.

    The CLI prints it as ``error: <message>`` and exits with code 2, without a traceback.
    """


def exit_code(fn: Callable[[], int | None]) -> int:
    """Run a command's body: its return value (None: 0), or 2 after ``error: <message>`` on a
    :class:`UsageError`, or 130 after Ctrl-C; no traceback either way."""
    try:
        return fn() or 0
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

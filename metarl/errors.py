"""Errors meant for the person at the keyboard."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler preempting the job, ``kill``) raised as an exception where metarl handles it
    (:func:`terminate_raises`), so the work in progress is cleaned up as after Ctrl-C."""


def raise_terminated(signum: int, frame: object) -> None:
    """The SIGTERM handler :func:`terminate_raises` installs."""
    raise Terminated


@contextlib.contextmanager
def terminate_raises() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated`, where its default action (ending the process at
    once) is in place and this is the main thread; the handler is restored after."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class UsageError(ValueError):
    """Bad input: the message names the problem and the fix in one line.

    The CLI prints it as ``error: <message>`` and exits with code 2, without a traceback.
    """


class RunError(RuntimeError):
    """A run that cannot go on for a reason outside the code (env workers that keep dying, a full or
    read-only disk, training that diverged): the message names what happened, what was saved and the way
    on, in one line. The CLI prints it as ``error: <message>`` and exits with code 1, without a traceback."""


def exit_code(fn: Callable[[], int | None]) -> int:
    """Run a command's body: its return value (None: 0), or 2 after ``error: <message>`` on a
    :class:`UsageError` (1 on a :class:`RunError`), or 130 after Ctrl-C (143 after :class:`Terminated`);
    no traceback either way."""
    try:
        return fn() or 0
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

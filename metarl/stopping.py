"""How training stops when it has to, keeping what can be kept and saying so in one line: Ctrl-C and
SIGTERM (stop after the iteration in progress, save), env workers that keep failing (save the last whole
iteration), a full or read-only disk (the last checkpoint is whole), an agent that diverged (its NaN
state is never saved over the last good checkpoint). :class:`metarl.trainer.Trainer` uses these;
``docs/guarantees.md`` lists the guarantees and their tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from metarl import checkpoint
from metarl.errors import RunError, Terminated, raise_terminated
from metarl.seeding import rng_state, set_rng_state

if TYPE_CHECKING:
    from metarl.trainer import Trainer


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM: ``signum``) stopped :meth:`Trainer.train` after a whole iteration; ``env_steps``
    trained, ``saved``: the checkpoint in the run dir holds them (continue with :meth:`Trainer.resume` /
    ``--resume``). The CLI exits with ``128 + signum`` (130, 143)."""

    def __init__(self, env_steps: int, saved: bool, signum: int = signal.SIGINT) -> None:
        by = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        super().__init__(f"training stopped by {by} at {env_steps:,} env steps"
                         + (", checkpoint saved" if saved else ""))
        self.env_steps, self.saved, self.signum = env_steps, saved, int(signum)

    def __reduce__(self) -> tuple:  # picklable, e.g. out of a process pool running a seed sweep
        return TrainingInterrupted, (self.env_steps, self.saved, self.signum)


class SaveFailed(RunError):
    """The checkpoint could not be written (a full disk, a read-only folder) or was refused (a diverged
    agent's state); the previous one is whole."""


@contextlib.contextmanager
def writes(what: str) -> Iterator[None]:
    """An ``OSError`` from writing ``what`` into the run directory (disk full, folder made read-only after
    start-up) becomes a one-line :class:`~metarl.errors.RunError` naming the file."""
    try:
        yield
    except OSError as e:
        where = f" to {e.filename}" if e.filename else ""
        raise RunError(f"could not write {what}{where} ({e.strerror or e})") from e


@contextlib.contextmanager
def noted(note: str) -> Iterator[None]:
    """A :class:`~metarl.errors.RunError` raised in the block gets ``note`` appended to its message."""
    try:
        yield
    except RunError as e:
        e.args = (f"{e.args[0] if e.args else type(e).__name__}; {note}", *e.args[1:])
        raise


@contextlib.contextmanager
def saved_on_failure(trainer: Trainer) -> Iterator[None]:
    """An iteration that a :class:`~metarl.errors.RunError` ends (env workers that keep failing, an env
    that returned NaN) first saves the checkpoint of the last whole iteration, its random state rewound to
    where that iteration ended (a resumed run then equals one that never failed), and says so in the
    error's message. One that fails while the agent's state holds NaN (torch's checks in a diverged policy,
    or the NaN actions it returned) ends in :func:`diverged`'s one line; any other error is raised as it is."""
    iteration, rng = trainer.state.iteration, rng_state(trainer.rng)
    try:
        yield
    except (SaveFailed, KeyboardInterrupt):  # a SaveFailed's message says what the run directory holds
        raise
    except Exception as e:
        where = checkpoint.first_nan(trainer.algorithm.state_dict(), "state_dict()")
        if where is not None:
            cause = (str(e).strip().splitlines() or [""])[0][:120]
            raise diverged(trainer, where, iteration + 1, f"{type(e).__name__}: {cause}") from e
        if not isinstance(e, RunError):  # bad input (UsageError) and plain bugs: as they are
            raise
        if trainer.state.iteration == iteration:  # failed while collecting: nothing of it is kept
            set_rng_state(trainer.rng, rng)
        with noted(save_note(trainer)):
            raise


def save_note(trainer: Trainer) -> str:
    """Save the checkpoint of a run that has to stop; what was saved, for the error message."""
    if trainer.run_dir is None:
        return "no run directory: nothing saved"
    try:
        trainer.save()
    except SaveFailed as e:
        return str(e)
    return (f"checkpoint saved at {trainer.state.env_steps:,} env steps (iteration {trainer.state.iteration}): "
            "--resume continues from there")


def diverged(trainer: Trainer, where: str, iteration: int, cause: str = "") -> SaveFailed:
    """The error for an agent whose state went NaN (``where``: the first key path) by ``iteration``; the
    checkpoint in the run directory is the last state without one."""
    kept = ("no checkpoint was written before" if trainer.run_dir is None or trainer.saved_env_steps is None else
            f"{checkpoint.CHECKPOINT_NAME} keeps the last state without NaN, at {trainer.saved_env_steps:,} env "
            "steps (`metarl eval` evaluates it)")
    return SaveFailed(f"training diverged by iteration {iteration} ({cause + '; ' if cause else ''}"
                      f"the agent's state holds NaN at {where}); {kept}: train again with a smaller learning "
                      "rate (e.g. --agent-opt lr=..., with --force)")


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """While training: the first SIGINT or SIGTERM asks ``trainer`` to stop after the current iteration
    (``trainer.interrupted``, ``trainer.stop_signal``), the second raises KeyboardInterrupt / Terminated
    (see :meth:`Trainer.train`). Only in the main thread, and only for a signal whose handler is Python's
    default (or :func:`metarl.errors.terminate_raises`'): a handler of the caller's own is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = [s for s, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL))
            if signal.getsignal(s) in (default, raise_terminated)]
    then = "saving the checkpoint" if trainer.run_dir is not None else "returning (no run dir: nothing saved)"

    def ask(signum: int, frame: Any) -> None:
        by, again = ("", "Ctrl-C") if signum == signal.SIGINT else ("SIGTERM: ", "SIGTERM")
        if trainer.interrupted:
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated
        trainer.interrupted, trainer.stop_signal = True, signum  # os.write: no lock a progress bar may hold
        os.write(2, f"\n{by}stopping after this iteration (and its periodic evaluation, if one is due), "
                    f"then {then}; {again} again: quit now, unsaved\n".encode())

    previous = {s: signal.signal(s, ask) for s in ours}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

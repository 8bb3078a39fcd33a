"""The ``async`` backend: gymnasium's ``AsyncVectorEnv`` (one worker process per slot) with waits that
notice a worker that died or went silent.

gymnasium's own waits have no timeout by default and read a dead worker's pipe as an ``EOFError`` or
``BrokenPipeError`` deep inside ``step`` (a traceback, or a wait that never ends for a worker that hangs).
Here every wait watches the workers' processes and a ``step_timeout``, and a failure is one
:class:`~metarl.vector.shm.WorkerError` line; the trainer then saves the last whole iteration. The
backend does not restart workers: the ``shm`` backend does. Its workers ignore Ctrl-C and SIGTERM, which
a terminal or a scheduler sends the whole process group: the parent stops cleanly and closes them (a
worker whose parent is killed reads EOF on its pipe and exits).
"""

from __future__ import annotations

import functools
import multiprocessing
import signal
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from typing import Any

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode

from metarl.vector.shm import WorkerError


def _ignoring_signals(env_fn: Callable[[], gym.Env]) -> gym.Env:
    """``env_fn()``; in a worker process, one that leaves Ctrl-C and SIGTERM to its parent (gymnasium also
    calls it in the parent, for the spaces: that one keeps its handlers)."""
    if multiprocessing.parent_process() is not None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    return env_fn()


class CheckedAsyncVectorEnv(AsyncVectorEnv):
    """``AsyncVectorEnv`` (autoreset disabled) whose waits raise :class:`WorkerError` for a worker that
    died or gave no answer within ``step_timeout`` seconds, after stopping every worker."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], step_timeout: float = 60.0,
                 context: str | None = None) -> None:
        self.step_timeout = step_timeout
        super().__init__([functools.partial(_ignoring_signals, fn) for fn in env_fns],
                         autoreset_mode=AutoresetMode.DISABLED, context=context)

    def _poll_pipe_envs(self, timeout: float | None = None) -> bool:
        """Wait until every worker has answered (what gymnasium's waits call before reading the answers);
        a dead or silent worker raises :class:`WorkerError`."""
        self._assert_is_running()
        limit = self.step_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        waiting = dict(enumerate(self.parent_pipes))
        while waiting:
            for i, pipe in list(waiting.items()):
                process = self.processes[i]
                if pipe is None or pipe.closed or not process.is_alive():
                    self._fail(i, f"died (exit code {process.exitcode})")
                if pipe.poll(0):
                    del waiting[i]
            left = deadline - time.monotonic()
            if waiting and left <= 0:
                if timeout is not None:  # the caller's own timeout: gymnasium raises its TimeoutError
                    return False
                self._fail(min(waiting), f"gave no answer within {limit:g} s")
            if waiting:
                wait([*waiting.values(), *(self.processes[i].sentinel for i in waiting)], min(left, 1.0))
        return True

    def _fail(self, slot: int | None, what: str) -> None:
        """Stop every worker and raise the one-line error for ``slot``'s (None: a worker not known)."""
        for process in self.processes:
            if process.is_alive():
                process.kill()
        for process in self.processes:
            process.join(timeout=5)
        for pipe in self.parent_pipes:
            if pipe is not None:
                pipe.close()
        self.closed = True
        worker = "an async env worker" if slot is None else f"async env worker for slot {slot}"
        raise WorkerError(f"{worker} {what}: the async backend does not restart workers "
                          "(the shm backend does: --backend shm); to see an env's own error run it with "
                          "--backend sync")

    def _sent(self, send: Callable[[], Any]) -> Any:
        """``send()``, a call that writes to the workers' pipes; one that finds a worker gone raises
        :class:`WorkerError` instead of ``BrokenPipeError``."""
        try:
            return send()
        except OSError:
            self._poll_pipe_envs()  # names the dead worker
            raise

    def _received(self, receive: Callable[[], Any]) -> Any:
        """``receive()``, a call that reads the workers' answers; a pipe that reached EOF (a worker that died
        after :meth:`_poll_pipe_envs` saw its pipe ready: a closed pipe polls ready too) raises
        :class:`WorkerError` naming the worker, instead of ``EOFError``. An env's own ``EOFError`` or
        ``ConnectionError``, which gymnasium re-raises after setting that worker's pipe to ``None``, is
        raised as it is."""
        try:
            return receive()
        except (EOFError, ConnectionError):
            if any(pipe is None for pipe in self.parent_pipes):  # the env raised it: gymnasium passed it on
                raise
            deadline = time.monotonic() + 5.0  # its pipe closes a moment before the process is reaped
            while time.monotonic() < deadline:
                for i, process in enumerate(self.processes):
                    if not process.is_alive():
                        self._fail(i, f"died (exit code {process.exitcode})")
                wait([process.sentinel for process in self.processes], 0.1)
            self._fail(None, "closed its pipe while still running")

    def step_wait(self, timeout: float | None = None) -> Any:
        return self._received(lambda: super(CheckedAsyncVectorEnv, self).step_wait(timeout))

    def reset_wait(self, timeout: float | None = None) -> Any:
        return self._received(lambda: super(CheckedAsyncVectorEnv, self).reset_wait(timeout))

    def call_wait(self, timeout: float | None = None) -> Any:
        return self._received(lambda: super(CheckedAsyncVectorEnv, self).call_wait(timeout))

    def step_async(self, actions: Any) -> None:
        self._sent(lambda: super(CheckedAsyncVectorEnv, self).step_async(actions))

    def reset_async(self, seed: Any = None, options: dict | None = None) -> None:
        self._sent(lambda: super(CheckedAsyncVectorEnv, self).reset_async(seed=seed, options=options))

    def call_async(self, name: str, *args: Any, **kwargs: Any) -> None:
        self._sent(lambda: super(CheckedAsyncVectorEnv, self).call_async(name, *args, **kwargs))

    def set_attr(self, name: str, values: list[Any] | tuple[Any] | object) -> None:
        """gymnasium's ``set_attr`` with the checked wait between sending and reading the answers."""
        self._assert_is_running()
        values = values if isinstance(values, (list, tuple)) else [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr got {len(values)} values for {self.num_envs} envs")
        self._sent(lambda: [pipe.send(("_setattr", (name, value)))
                            for pipe, value in zip(self.parent_pipes, values, strict=True)])
        self._poll_pipe_envs()
        _, successes = self._received(lambda: zip(*[pipe.recv() for pipe in self.parent_pipes], strict=True))
        self._raise_if_errors(successes)

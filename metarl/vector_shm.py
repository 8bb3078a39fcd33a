"""Shared-memory vector env: worker processes step K slots each, arrays never pickled per step.

Layout: ``num_envs`` slots split over ``num_workers`` processes (contiguous blocks). Observations,
actions, rewards and episode flags live in one shared-memory block; per step the parent writes
actions, sends each worker a one-byte command, and reads the results the workers wrote in place.
``info`` carries only ``"success"`` (what :mod:`metarl.rollout` reads).

Robustness: a worker that dies or doesn't answer within ``step_timeout`` seconds is killed and
restarted with its slots' tasks; its slots come back reset, with ``truncated=True`` and
``info["worker_restarted"]`` set, so the rollout ends those episodes cleanly. More than
``max_restarts`` restarts in total raise :class:`WorkerError` instead of hanging. ``close()``
stops and joins every worker and frees the shared memory (also at interpreter exit).
Autoreset is disabled, as for every metarl vector env.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import sys
import warnings
from collections.abc import Callable, Sequence
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

_FIELDS = (("obs", np.float64, "obs"), ("act", np.float32, "act"), ("rew", np.float64, None),
           ("term", np.bool_, None), ("trunc", np.bool_, None), ("succ", np.float64, None))


class WorkerError(RuntimeError):
    """Worker processes keep failing; the message says which slots and why."""


def _views(buf: memoryview, n: int, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    """Named ``[n, ...]`` arrays over one shared buffer (same layout in parent and workers)."""
    out, offset = {}, 0
    for name, dtype, width in _FIELDS:
        shape = (n, obs_dim) if width == "obs" else (n, act_dim) if width == "act" else (n,)
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        out[name] = np.ndarray(shape, dtype, buffer=buf, offset=offset)
        offset += -(-size // 8) * 8
    return out


def _nbytes(n: int, obs_dim: int, act_dim: int) -> int:
    return sum(-(-(n * (obs_dim if w == "obs" else act_dim if w == "act" else 1) * np.dtype(d).itemsize) // 8) * 8
               for _, d, w in _FIELDS)


def _post(pipe: Any, msg: tuple) -> None:
    """Send, ignoring a dead peer: the following wait for its answer detects it and restarts it."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
        pipe.send(msg)


def _worker(pipe, shm_name: str, dims: tuple[int, int, int], lo: int, hi: int, env_fn: Callable) -> None:
    shm = SharedMemory(name=shm_name)
    arrays = None
    try:
        arrays = _views(shm.buf, *dims)
        envs = [env_fn() for _ in range(lo, hi)]
        pipe.send(("ready", None))
        while True:
            cmd, arg = pipe.recv()
            if cmd == "step":
                for j, env in enumerate(envs):
                    o, r, te, tr, info = env.step(arrays["act"][lo + j])
                    i = lo + j
                    arrays["obs"][i], arrays["rew"][i], arrays["term"][i], arrays["trunc"][i] = o, r, te, tr
                    arrays["succ"][i] = float(info.get("success", 0.0))
            elif cmd == "reset":
                for j, seed in arg:
                    arrays["obs"][lo + j] = envs[j].reset(seed=seed)[0]
            elif cmd == "tasks":
                for env, task in zip(envs, arg, strict=True):
                    env.task = task
            elif cmd == "close":
                break
            pipe.send(("ok", None))
    except Exception as e:  # reported to the parent, which restarts or raises
        pipe.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        del arrays
        shm.close()


class SharedMemoryVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` slots of ``env_fn()`` envs in ``num_workers`` processes, exchanging arrays in shared memory."""

    def __init__(self, env_fn: Callable[[], gym.Env], num_envs: int, num_workers: int | None = None,
                 step_timeout: float = 60.0, max_restarts: int = 3, start_timeout: float = 300.0) -> None:
        probe = env_fn()
        self.single_observation_space, self.single_action_space = probe.observation_space, probe.action_space
        probe.close()
        self.num_envs = num_envs
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.DISABLED}
        self.env_fn, self.step_timeout, self.max_restarts, self.restarts = env_fn, step_timeout, max_restarts, 0
        self.start_timeout = start_timeout
        workers = min(num_envs, num_workers or mp.cpu_count())
        bounds = np.linspace(0, num_envs, workers + 1).astype(int)
        self._blocks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self._dims = (num_envs, int(np.prod(self.single_observation_space.shape)),
                      int(np.prod(self.single_action_space.shape)))
        self._shm = SharedMemory(create=True, size=_nbytes(*self._dims))
        self._arrays = _views(self._shm.buf, *self._dims)
        self._ctx = mp.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")
        self._tasks: list[Any] = [None] * num_envs
        self._procs: list[Any] = [None] * workers
        self._pipes: list[Any] = [None] * workers
        self._closed = False
        for w in range(workers):
            self._start(w)

    @property
    def worker_processes(self) -> list[Any]:
        """The live worker processes (for monitoring, e.g. their memory)."""
        return [p for p in self._procs if p is not None]

    def _start(self, w: int) -> None:
        lo, hi = self._blocks[w]
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker, args=(child, self._shm.name, self._dims, lo, hi, self.env_fn),
                                 daemon=True, name=f"metarl-env-{w}")
        proc.start()
        child.close()
        self._procs[w], self._pipes[w] = proc, parent
        self._expect(w, "start", self.start_timeout)

    def _expect(self, w: int, what: str, timeout: float | None = None) -> bool:
        """Wait for worker ``w``'s answer; False if it died, hung or failed (it is then restarted)."""
        pipe, proc = self._pipes[w], self._procs[w]
        timeout = self.step_timeout if timeout is None else timeout
        problem = None
        try:
            if not pipe.poll(timeout):
                problem = f"no answer to {what} within {timeout:g} s"
            else:
                status, msg = pipe.recv()
                if status == "error":
                    problem = msg
        except (EOFError, ConnectionResetError, BrokenPipeError):
            problem = f"process exited with code {proc.exitcode}"
        if problem is None:
            return True
        self._restart(w, problem)
        return False

    def _restart(self, w: int, problem: str) -> None:
        lo, hi = self._blocks[w]
        self.restarts += 1
        self._kill(w)
        if self.restarts > self.max_restarts:
            self.close()
            raise WorkerError(f"env worker for slots {lo}..{hi - 1} failed ({problem}) after {self.max_restarts} "
                              "restarts: fix the env (run it with backend='sync' to see the traceback)")
        warnings.warn(f"env worker for slots {lo}..{hi - 1} failed ({problem}); restarted", RuntimeWarning, stacklevel=3)
        self._start(w)
        if all(t is not None for t in self._tasks[lo:hi]):
            self._send(w, "tasks", self._tasks[lo:hi])
            self._send(w, "reset", [(j, None) for j in range(hi - lo)])

    def _send(self, w: int, cmd: str, arg: Any = None) -> bool:
        _post(self._pipes[w], (cmd, arg))
        return self._expect(w, cmd)

    def _kill(self, w: int) -> None:
        proc = self._procs[w]
        if proc is not None and proc.is_alive():
            proc.kill()
        if proc is not None:
            proc.join(timeout=5)
        if self._pipes[w] is not None:
            self._pipes[w].close()

    def set_attr(self, name: str, values: Sequence[Any] | Any) -> None:
        """Only ``"task"`` is supported: ``values[i]`` becomes slot i's task."""
        if name != "task":
            raise AttributeError(f"SharedMemoryVectorEnv.set_attr supports only 'task', got {name!r}")
        self._tasks = list(values)
        for w, (lo, hi) in enumerate(self._blocks):
            self._send(w, "tasks", self._tasks[lo:hi])

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None):
        mask = np.ones(self.num_envs, bool) if not options or "reset_mask" not in options else options["reset_mask"]
        seeds = seed if isinstance(seed, (list, tuple)) else [None if seed is None else seed + i
                                                             for i in range(self.num_envs)]
        for w, (lo, hi) in enumerate(self._blocks):
            todo = [(i - lo, seeds[i]) for i in range(lo, hi) if mask[i]]
            if todo:
                self._send(w, "reset", todo)
        return self._arrays["obs"].copy(), {}

    def step(self, actions):
        self._arrays["act"][:] = np.asarray(actions, np.float32).reshape(self.num_envs, -1)
        for pipe in self._pipes:
            _post(pipe, ("step", None))
        restarted = np.zeros(self.num_envs, bool)
        for w, (lo, hi) in enumerate(self._blocks):
            if not self._expect(w, "step"):
                restarted[lo:hi] = True
        a = self._arrays
        trunc = a["trunc"] | restarted
        info = {"success": a["succ"].copy(), "_success": np.ones(self.num_envs, bool)}
        if restarted.any():
            info["worker_restarted"], info["_worker_restarted"] = restarted, restarted
        return a["obs"].copy(), a["rew"].copy(), a["term"] & ~restarted, trunc, info

    def close_extras(self, **kwargs: Any) -> None:
        if self._closed:
            return
        self._closed = True
        for w, pipe in enumerate(self._pipes):
            _post(pipe, ("close", None))
            self._procs[w].join(timeout=5)
            self._kill(w)
        del self._arrays
        self._shm.close()
        self._shm.unlink()

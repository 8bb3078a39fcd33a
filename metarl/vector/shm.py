"""Shared-memory vector env: worker processes step K slots each, arrays never pickled per step.

Layout: ``num_envs`` slots split over ``num_workers`` processes (contiguous blocks). Observations,
actions, rewards and episode flags live in one shared-memory block; per step the parent writes
actions, posts each worker's ``go`` semaphore, and waits on each worker's ``done`` semaphore before
reading the results the workers wrote in place. Both sides first spin for up to ``spin_us``
microseconds on a non-blocking acquire, yielding the core between tries, before they block: a
sleeping process takes tens of microseconds to wake, a large share of a 200-400 µs step. Spinning
is only on by default when every process (workers + this one) has a core of its own, for up to 5 ms
(:data:`DEFAULT_SPIN_US`).
Resets, task changes and errors go through a pipe (pickled; rare): the parent raises the worker's
``ctl`` flag, posts ``go``, then sends, so the worker is already reading (no size limit).
``info`` carries only ``"success"`` (what :mod:`metarl.rollout` reads).

Robustness: a worker that dies or doesn't answer within ``step_timeout`` seconds is killed and
restarted with its slots' tasks; its slots come back reset, and the next ``step`` reports them with
``truncated=True`` and ``info["worker_restarted"]`` (their episodes are lost: :func:`metarl.rollout.collect`
raises :class:`metarl.rollout.WorkerRestarted` and the trainer and evaluator collect that trial again). A
reset asked for while the worker died is sent again with its seeds. More than ``max_restarts`` restarts
within ``restart_window`` seconds (an hour) raise :class:`WorkerError` instead of hanging. An interrupted
call (Ctrl-C) leaves what it started owed: the next call first waits for that step or answer, so no stale
answer is taken for a new one. ``close()`` stops and joins every worker. The shared memory has no name
(:mod:`metarl.vector.shmem`) and the semaphores' names are unlinked once their worker runs, so nothing is left in
``/dev/shm`` however the processes end. Workers also exit by themselves when
the parent dies (killed, crashed): a watchdog thread in each waits for EOF on a "lifeline" pipe whose
only write end the parent holds.
Autoreset is disabled, as for every metarl vector env.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from metarl.errors import RunError, UsageError
from metarl.vector.shmem import Mapped, Segment, forget_name

_FIELDS = (("obs", np.float64, "obs"), ("act", np.float64, "act"), ("rew", np.float64, None),
           ("term", np.bool_, None), ("trunc", np.bool_, None), ("succ", np.float64, None),
           ("ctl", np.int8, None))  # ctl[lo]: 1 = worker of block lo..hi, your next wake-up is a pipe message


_now = time.monotonic
"""The clock of the restart window."""

_RESTART_COUNT = itertools.count(1)
"""Numbers the restart warnings of this process."""

_PARENTS_SIGNALS = {signal.SIGINT, signal.SIGTERM}
"""What a scheduler or Ctrl-C sends the whole process group: workers ignore them, the parent stops cleanly
and closes them (a worker whose parent is killed exits by itself: see the lifeline)."""


class WorkerError(RunError):
    """Worker processes keep failing; the message says which slots and why (one line: the CLI prints it
    without a traceback)."""


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


def _cgroup_cpus(root: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup") -> float | None:
    """CPUs' worth of time the cgroup quotas grant this process (the smallest limit on its cgroup, its
    ancestors and the root, which is a container's own view), or None without a quota. cgroup v2:
    ``cpu.max`` (``"200000 100000"``: 2 CPUs; ``"max 100000"``: no limit); v1: ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` under ``cpu/`` (quota -1: no limit). Containers (Docker ``--cpus``, Kubernetes
    CPU limits) and systemd's ``CPUQuota`` set it while the affinity still lists every core of the host."""
    def read(*parts: str) -> list[str] | None:
        try:
            with open(os.path.join(root, *[q.strip("/") for q in parts if q.strip("/")])) as f:
                return f.read().split()
        except OSError:
            return None

    own: dict[str, str] = {}  # controller ("" for v2) -> this process's cgroup path
    with contextlib.suppress(OSError, ValueError), open(self_cgroup) as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                own[c] = path

    def lineage(path: str) -> list[str]:  # "/a/b" -> ["/a/b", "/a", ""]
        parts = [q for q in path.split("/") if q]
        return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]

    limits = []
    for path in lineage(own.get("", "")):  # v2
        if (v2 := read(path, "cpu.max")) and v2[0] != "max":
            limits.append((v2[0], v2[1] if len(v2) > 1 else "100000"))
    for path in lineage(own.get("cpu", "")):  # v1
        if (q := read("cpu", path, "cpu.cfs_quota_us")) and q[0] != "-1":
            limits.append((q[0], (read("cpu", path, "cpu.cfs_period_us") or ["100000"])[0]))
    cpus = []
    for quota, period in limits:
        with contextlib.suppress(ValueError):
            if int(quota) > 0 and int(period) > 0:
                cpus.append(int(quota) / int(period))
    return min(cpus) if cpus else None


def _cores() -> int:
    """Cores this process may run on: its affinity (cpusets), capped by a cgroup CPU quota rounded down
    (Linux; at least 1): with 1.5 CPUs of quota, two busy processes would exhaust it and be throttled."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_cpus() if sys.platform.startswith("linux") else None
    return n if quota is None else max(1, min(n, int(quota)))


def check_picklable(env_fn: Callable[[], Any]) -> bytes | Callable[[], Any]:
    """What the ``shm`` backend sends its worker processes (started by spawn/forkserver): ``env_fn``
    pickled by value (plain pickle: multiprocessing's own would send tensors as one-use descriptors),
    unpickled by each worker once it ignores Ctrl-C; ``env_fn`` itself where it holds locks, queues or
    ``mp.Value`` s, which pickle only while a process starts. A :class:`UsageError` if it does not
    pickle (a lambda or nested function would fail in the workers, after the run had started)."""
    try:
        return pickle.dumps(env_fn)
    except RuntimeError as e:
        if "inheritance" in str(e):
            return env_fn
        raise _unpicklable(e) from e
    except Exception as e:  # PicklingError, AttributeError ("Can't pickle local object"), TypeError
        raise _unpicklable(e) from e


def _unpicklable(e: Exception) -> UsageError:
    return UsageError(f"the shm backend sends the env factory (a TaskSet's make_env: the TaskSet, its tasks' "
                      f"params included) to worker processes, and it does not pickle ({type(e).__name__}: {e}): "
                      "make TaskSet.env_factory (and vector_factory) a module-level function or a functools.partial "
                      "of one, not a lambda or nested function, and task params picklable; or use the sync or "
                      "async backend")


def start_failure(what: str, problem: str, start_method: str) -> WorkerError:
    """The one-line error for env workers that died or went silent while starting (before they built
    their envs). The usual cause is a script that builds its vector env at its top level: workers
    started by forkserver or spawn import the main script again, and multiprocessing refuses to start
    processes from that import (Stable-Baselines3's SubprocVecEnv asks for the same guard)."""
    return WorkerError(f"{what} failed to start ({problem}): a script that uses worker processes must run its "
                       f"code under `if __name__ == \"__main__\":` (workers start by {start_method} and import "
                       "the main script again); if it does, run the env with backend='sync' to see its error")


def default_start_method() -> str:
    """How metarl starts worker processes: ``"forkserver"`` on Linux, ``"spawn"`` elsewhere (macOS's
    default; Windows has only it). Never ``"fork"``: a forked copy of a parent with threads (torch's)
    can deadlock."""
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


DEFAULT_SPIN_US = 5000.0
"""How long each side spins before it blocks, when every process has a core of its own (µs).

The waits it covers are the parent's time between two steps (policy, ``collect``: ~150-200 µs measured on
2 cores with a random policy; more with a network) and a block's step (``K`` slots x ~0.2-0.4 ms); past
~5 ms a wake-up (tens of µs) costs under 2%. Measured on 2 cores (ML10 slots,
``experiments/shm_backend/shm_variants-dev-2core-yield.json``): one worker x 2 slots steps 26% faster than
with the 100 µs spin used before, which ran out while the worker waited for the parent, so every step
paid a wake-up."""

_yield = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))


def _acquire(sem: Any, spin_s: float, timeout: float | None = None) -> bool:
    """Acquire ``sem``: spin on non-blocking tries for ``spin_s`` seconds, then block up to ``timeout``
    seconds (None: forever). True once acquired, False if ``timeout`` ran out.

    Between tries the spinner yields its core, so a process that needs it runs (3 processes spinning on
    2 cores for 5 ms, 2 workers x 2 ML10 slots: 828 steps/s without yielding, 6,639 with it)."""
    if spin_s > 0:
        deadline = time.perf_counter() + spin_s
        while time.perf_counter() < deadline:
            if sem.acquire(False):
                return True
            _yield()
    return sem.acquire(True, timeout)


class _Block:
    """The envs of slots ``lo:hi`` and their rows of the shared arrays (in a worker, or in the parent)."""

    def __init__(self, arrays: dict[str, np.ndarray], lo: int, hi: int, env_fn: Callable) -> None:
        self.envs = [env_fn() for _ in range(lo, hi)]
        space = self.envs[0].action_space if self.envs else None
        self.act_dtype, self.act_shape = getattr(space, "dtype", None), getattr(space, "shape", None)
        self.obs, self.act, self.rew, self.term, self.trunc, self.succ = (
            arrays[k][lo:hi] for k in ("obs", "act", "rew", "term", "trunc", "succ"))

    def step(self) -> None:
        for j, env in enumerate(self.envs):  # each env gets an action array of its own, in its space's dtype
            o, r, te, tr, info = env.step(self.act[j].astype(self.act_dtype).reshape(self.act_shape))
            self.obs[j], self.rew[j], self.term[j], self.trunc[j] = np.ravel(o), r, te, tr
            self.succ[j] = float(info.get("success", 0.0))

    def command(self, cmd: str, arg: Any) -> None:
        if cmd == "reset":
            for j, seed in arg:
                self.obs[j] = np.ravel(self.envs[j].reset(seed=seed)[0])
        elif cmd == "tasks":
            for env, task in zip(self.envs, arg, strict=True):
                env.task = task

    def close(self) -> None:
        for env in self.envs:
            with contextlib.suppress(Exception):  # closing must not mask the error that ended the worker
                env.close()
        self.obs = self.act = self.rew = self.term = self.trunc = self.succ = None


def _exit_with_parent(lifeline: Any) -> None:
    """Watchdog thread of a worker: the parent never writes to ``lifeline``, so ``recv`` returns only
    with EOF, once every write end is closed: the parent has exited, was killed or crashed (even while
    it is an unreaped zombie). The worker's own parent may be the forkserver, which outlives it."""
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv()
    os._exit(0)


def _worker(pipe, go, done, shm: Mapped, dims: tuple[int, int, int], lo: int, hi: int, env_fn: Callable,
            spin_s: float, lifeline: Any) -> None:
    for signum in _PARENTS_SIGNALS:  # Ctrl-C, SIGTERM: the parent's to handle (it saves, then closes us)
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # blocked by the parent while it started us (see _start)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _PARENTS_SIGNALS)
    if isinstance(env_fn, bytes):  # unpickled only now, with Ctrl-C ignored: it may import the simulator
        env_fn = pickle.loads(env_fn)
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    arrays = block = None
    try:
        arrays = _views(shm.buf, *dims)
        ctl = arrays["ctl"][lo:lo + 1]
        block = _Block(arrays, lo, hi, env_fn)
        pipe.send(("ready", None))
        while True:
            _acquire(go, spin_s)
            if not ctl[0]:  # one step of every slot
                block.step()
                done.release()
                continue
            ctl[0] = 0
            cmd, arg = pipe.recv()  # the parent sends after posting: large messages can't deadlock
            if cmd == "close":
                break
            block.command(cmd, arg)
            pipe.send(("ok", None))
    except (EOFError, BrokenPipeError):  # the parent is gone
        pass
    except Exception as e:  # reported to the parent, which restarts or raises
        _post(pipe, ("error", f"{type(e).__name__}: {e}"))
    finally:
        if block is not None:
            block.close()
        ctl = None
        del arrays
        shm.close()


class SharedMemoryVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` slots of ``env_fn()`` envs in ``num_workers`` processes, exchanging arrays in shared memory."""

    def __init__(self, env_fn: Callable[[], gym.Env], num_envs: int, num_workers: int | None = None,
                 step_timeout: float = 60.0, max_restarts: int = 3, start_timeout: float = 300.0,
                 spin_us: float | None = None, in_parent: bool | None = None,
                 start_method: str | None = None, restart_window: float = 3600.0) -> None:
        """``num_workers`` defaults to the core count (at most ``num_envs``). ``spin_us``: how long each
        side busy-waits for the other before blocking (default: :data:`DEFAULT_SPIN_US` when every worker
        plus this process has a core of its own, else 0: spinning would take a core from a stepping worker).
        ``in_parent``: this process steps the first block itself while the other workers step theirs
        (``num_workers - 1`` processes; no wake-up for that block; its errors raise here, unrestarted).
        Default: on when the workers fill every core, as the parent would otherwise sit idle on a core
        a worker needs (ML10 slots on this 2-core machine, 2 workers x 2 slots: 7,993 env steps/s
        with it vs 6,639 without (both with the 5 ms spin), 4,334 in one process;
        ``experiments/shm_backend/shm_variants-dev-2core-yield.json``).
        ``in_parent=False``: every block isolated in a worker, each restartable. ``start_method``:
        multiprocessing's, default :func:`default_start_method`; ``"fork"`` is refused.
        ``max_restarts`` per ``restart_window`` seconds: more restarts than that within any such window
        raise :class:`WorkerError` (an env that crashes every time), while transient crashes hours apart
        never end a run; every restart is reported (a ``RuntimeWarning`` of its own)."""
        methods = [m for m in mp.get_all_start_methods() if m != "fork"]
        start_method = start_method or default_start_method()
        if start_method not in methods:
            raise ValueError(f"start_method {start_method!r} is not supported here: use one of {', '.join(methods)}")
        workers = min(num_envs, num_workers or _cores())
        if in_parent is None:
            in_parent = workers >= _cores()
        self._payload: Any = env_fn  # what _start sends a worker; a lone in-parent block needs no pickle
        if workers > int(in_parent):
            self._payload = check_picklable(env_fn)  # before the probe env: no env built to be refused
        probe = env_fn()
        self.single_observation_space, self.single_action_space = probe.observation_space, probe.action_space
        probe.close()
        self.num_envs = num_envs
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.DISABLED}
        self.step_timeout, self.max_restarts, self.restarts = step_timeout, max_restarts, 0
        self.restart_window = restart_window
        self._restart_times: list[float] = []  # time.monotonic() of the restarts within the window
        self.start_timeout = start_timeout
        if spin_us is None:  # processes: the workers, plus this one unless it is one of them
            spin_us = DEFAULT_SPIN_US if workers + (not in_parent) <= _cores() else 0.0
        if spin_us < 0:
            raise ValueError(f"spin_us must be >= 0, got {spin_us}")
        self.spin_s = spin_us * 1e-6
        bounds = np.linspace(0, num_envs, workers + 1).astype(int)
        self._blocks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self._dims = (num_envs, int(np.prod(self.single_observation_space.shape)),
                      int(np.prod(self.single_action_space.shape)))
        self._tasks: list[Any] = [None] * num_envs
        self._lost = np.zeros(num_envs, bool)  # slots a restart reset behind the caller's back (next step says so)
        self._owed: list[str | None] = [None] * workers  # "step" / "answer" / "start" an interrupted call left unread
        self._unsent = [False] * workers  # restarted, its slots' tasks not yet given back (an interrupted restart)
        self._procs: list[Any] = [None] * workers
        self._pipes: list[Any] = [None] * workers
        self._go: list[Any] = [None] * workers
        self._done: list[Any] = [None] * workers
        self._closed = False
        self._inline = None
        self._remote = range(1 if in_parent else 0, workers)
        self._lifeline: tuple[Any, ...] = ()
        self._shm = Segment(_nbytes(*self._dims))
        try:  # from here on, whatever fails (a Ctrl-C too) leaves no workers or shared memory behind
            self._arrays = _views(self._shm.buf, *self._dims)
            self._ctx = mp.get_context(start_method)
            self._lifeline = self._ctx.Pipe(duplex=False)  # (read end for the workers, write end kept here)
            self._inline = _Block(self._arrays, *self._blocks[0], env_fn) if in_parent else None
            for w in self._remote:
                self._start(w, first=True)
        except BaseException:
            self.close_extras()
            raise

    @property
    def worker_processes(self) -> list[Any]:
        """The live worker processes (for monitoring, e.g. their memory)."""
        return [p for p in self._procs if p is not None]

    def _start(self, w: int, first: bool = False) -> None:
        """Start block ``w``'s worker and wait until it has built its envs. A restart that fails is restarted
        again (up to ``max_restarts``); a ``first`` start that fails raises :func:`start_failure`'s error."""
        lo, hi = self._blocks[w]
        a = self._arrays  # a dead worker's leftovers: no pending command, no stale results
        a["ctl"][lo], a["rew"][lo:hi], a["succ"][lo:hi], a["term"][lo:hi], a["trunc"][lo:hi] = 0, 0.0, 0.0, False, False
        parent, child = self._ctx.Pipe()
        go, done = self._ctx.Semaphore(0), self._ctx.Semaphore(0)  # fresh: a dead worker's counts are void
        proc = self._ctx.Process(target=_worker, args=(child, go, done, self._shm, self._dims, lo, hi,
                                                       self._payload, self.spin_s, self._lifeline[0]),
                                 daemon=True, name=f"metarl-env-{w}")
        # Ctrl-C and SIGTERM blocked while the worker starts: the child (and a forkserver started now)
        # inherits the mask, so one sent to the process group before the worker ignores it stays pending
        # instead of killing it
        mask = (signal.pthread_sigmask(signal.SIG_BLOCK, _PARENTS_SIGNALS) if hasattr(signal, "pthread_sigmask")
                else None)
        try:
            proc.start()
        finally:
            if mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child.close()
        self._procs[w], self._pipes[w], self._go[w], self._done[w] = proc, parent, go, done
        self._owed[w] = "start"
        if not first:
            self._expect(w, "start", self.start_timeout)
            return
        answer = self._answer(w, self.start_timeout)
        self._owed[w] = None
        if answer is None or answer[0] == "error":
            problem = answer[1] if answer else f"no answer within {self.start_timeout:g} s"
            raise start_failure(f"env worker for slots {lo}..{hi - 1}", problem, self._ctx.get_start_method())
        self._started(w)

    def _started(self, w: int) -> None:
        """Worker ``w`` is up and holds its semaphores open: their names can go."""
        forget_name(self._go[w])
        forget_name(self._done[w])

    def _answer(self, w: int, timeout: float) -> tuple[str, Any] | None:
        """Worker ``w``'s next pipe message within ``timeout`` s (None: none yet); a dead worker's
        closed pipe reads as ``("error", "process exited with code ...")``."""
        try:
            return self._pipes[w].recv() if self._pipes[w].poll(timeout) else None
        except (EOFError, ConnectionResetError, BrokenPipeError):
            self._procs[w].join(timeout=1)  # the pipe closes just before the process is reaped
            return "error", f"process exited with code {self._procs[w].exitcode}"
        except OSError as e:  # our end was closed: a restart interrupted between killing and starting
            return "error", f"its pipe is closed ({e})"

    def _expect(self, w: int, what: str, timeout: float | None = None) -> bool:
        """Wait for worker ``w``'s answer; False if it died, hung or failed (it is then restarted)."""
        timeout = self.step_timeout if timeout is None else timeout
        answer = self._answer(w, timeout)
        self._owed[w] = None  # answered, or restarted below
        if answer is not None and answer[0] != "error":
            if what == "start":
                self._started(w)
            return True
        self._restart(w, answer[1] if answer else f"no answer to {what} within {timeout:g} s")
        return False

    def _restart(self, w: int, problem: str) -> None:
        lo, hi = self._blocks[w]
        self.restarts += 1
        self._lost[lo:hi] = True
        self._kill(w)
        now = _now()
        self._restart_times = [t for t in self._restart_times if now - t < self.restart_window] + [now]
        window = "an hour" if self.restart_window == 3600 else f"{self.restart_window:g} s"
        if len(self._restart_times) > self.max_restarts:
            self.close()
            raise WorkerError(f"env worker for slots {lo}..{hi - 1} failed ({problem}) after {self.max_restarts} "
                              f"restarts within {window}: fix the env (run it with backend='sync' to see the "
                              "traceback)")
        # each report its own text: Python shows a repeated warning only once
        warnings.warn(f"env worker for slots {lo}..{hi - 1} failed ({problem}); restarted (restart "
                      f"{next(_RESTART_COUNT)} in this process; {len(self._restart_times)} of at most "
                      f"{self.max_restarts} within {window})", RuntimeWarning, stacklevel=3)
        self._unsent[w] = True
        self._start(w)
        self._resend(w)

    def _resend(self, w: int) -> None:
        """Give restarted worker ``w`` its slots' tasks and reset them (once, even after an interruption)."""
        lo, hi = self._blocks[w]
        if (self._unsent[w] and all(t is not None for t in self._tasks[lo:hi])
                and not (self._send(w, "tasks", self._tasks[lo:hi])
                         and self._send(w, "reset", [(j, None) for j in range(hi - lo)]))):
            return  # restarted again: that restart gave them
        self._unsent[w] = False

    def _command(self, w: int, cmd: str, arg: Any) -> bool:
        """Run ``cmd`` on block ``w``; False if its worker failed and was restarted instead."""
        if w == 0 and self._inline is not None:
            self._inline.command(cmd, arg)
            return True
        self._settle(w)
        return self._send(w, cmd, arg)

    def _settle(self, w: int) -> None:
        """Take what an interrupted call left owed by worker ``w`` (its step, or a command's answer)."""
        owed = self._owed[w]  # each wait below clears it (answered, or the worker restarted)
        if owed == "step":
            self._wait_step(w)
        elif owed == "answer":
            self._expect(w, "an earlier, interrupted command")
        elif owed == "start":
            self._expect(w, "start", self.start_timeout)
        if self._unsent[w]:
            self._resend(w)

    def _send(self, w: int, cmd: str, arg: Any = None) -> bool:
        self._post_command(w, cmd, arg)
        return self._expect(w, cmd)

    def _post_command(self, w: int, cmd: str, arg: Any) -> None:
        """Flag, wake, then send: the worker reads while we write, so any message size works."""
        self._owed[w] = "answer"
        self._arrays["ctl"][self._blocks[w][0]] = 1
        self._go[w].release()
        _post(self._pipes[w], (cmd, arg))

    def _wait_step(self, w: int) -> bool:
        """Wait for worker ``w``'s step; False if it died, hung or failed (it is then restarted)."""
        done, proc = self._done[w], self._procs[w]
        if _acquire(done, self.spin_s, timeout=0.0):
            self._owed[w] = None
            return True
        deadline = time.monotonic() + self.step_timeout
        while not done.acquire(True, 0.05):  # between slices: an error report, a death, the timeout
            answer = self._answer(w, 0)
            if answer is not None:
                problem = answer[1] if answer[0] == "error" else f"unexpected {answer[0]!r} while stepping"
            elif not proc.is_alive():
                problem = f"process exited with code {proc.exitcode}"
            elif time.monotonic() > deadline:
                problem = f"no answer to step within {self.step_timeout:g} s"
            else:
                continue
            self._owed[w] = None
            self._restart(w, problem)
            return False
        self._owed[w] = None
        return True

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
            self._command(w, "tasks", self._tasks[lo:hi])

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None):
        mask = np.ones(self.num_envs, bool) if not options or "reset_mask" not in options else options["reset_mask"]
        seeds = seed if isinstance(seed, (list, tuple)) else [None if seed is None else seed + i
                                                             for i in range(self.num_envs)]
        mask = np.asarray(mask, bool).reshape(-1)
        if mask.shape != (self.num_envs,) or len(seeds) != self.num_envs:
            raise ValueError(f"reset got {mask.size} mask entries and {len(seeds)} seeds for {self.num_envs} slots: "
                             "give one of each per slot (or an int seed)")
        for w, (lo, hi) in enumerate(self._blocks):
            todo = [(i - lo, seeds[i]) for i in range(lo, hi) if mask[i]]
            while todo and not self._command(w, "reset", todo):  # restarted: its slots reset unseeded; again
                pass
        self._lost &= ~mask
        return self._observations(), {}

    def _observations(self) -> np.ndarray:
        """``[num_envs, *obs_shape]`` copy of the observation rows, in the observation space's dtype."""
        space = self.single_observation_space
        return self._arrays["obs"].reshape(self.num_envs, *space.shape).astype(space.dtype)

    def step(self, actions):
        for w in self._remote:  # an interrupted call's step or answer first
            self._settle(w)
        self._arrays["act"][:] = np.asarray(actions, np.float64).reshape(self.num_envs, -1)
        for w in self._remote:
            self._owed[w] = "step"  # until waited for: an interruption (an error here, Ctrl-C) leaves it owed
            self._go[w].release()
        if self._inline is not None:
            self._inline.step()
        for w in self._remote:
            self._wait_step(w)
        a, restarted = self._arrays, self._lost.copy()  # slots a restart reset (in this step or before)
        self._lost[:] = False
        trunc = a["trunc"] | restarted
        info = {"success": a["succ"].copy(), "_success": np.ones(self.num_envs, bool)}
        if restarted.any():
            info["worker_restarted"], info["_worker_restarted"] = restarted, restarted
        return self._observations(), a["rew"].copy(), a["term"] & ~restarted, trunc, info

    def close_extras(self, **kwargs: Any) -> None:
        if self._closed:
            return
        self._closed = True
        if self._inline is not None:
            self._inline.close()
        started = [w for w in self._remote if self._pipes[w] is not None]  # a failed start leaves None
        for w in started:
            self._post_command(w, "close", None)
        for w in started:
            self._procs[w].join(timeout=5)
            self._kill(w)
        for end in self._lifeline:
            end.close()
        self.__dict__.pop("_arrays", None)  # views into the segment must go before it closes
        self._shm.close()

"""Task-aware vector envs: one slot per task, ``set_tasks`` to switch them.

Autoreset is *disabled* (gymnasium's ``AutoresetMode.DISABLED``): nothing resets on its own, the
rollout code resets finished slots with ``reset(options={"reset_mask": mask})``. That keeps every
episode boundary in one place (:mod:`metarl.rollout`) and gives exact final observations.

Backends: ``"native"`` uses the family's own array-batched vector env (``TaskSet.vector_factory``:
all slots in one process, no per-slot Python); ``"auto"`` (the default) picks ``"native"`` when the
family has one and ``"sync"`` otherwise; ``"sync"`` steps all slots in this process one by one;
``"async"`` runs one worker process per slot (gymnasium's ``AsyncVectorEnv``, started as
:func:`~metarl.vector.shm.default_start_method` says; a worker
that dies or hangs is a one-line error, never restarted: :mod:`metarl.vector.asyncenv`); ``"shm"`` runs
``num_workers`` processes stepping several slots each and exchanges arrays through shared memory
(:mod:`metarl.vector.shm`: crashed or hung workers are restarted, up to ``max_restarts``; a block
the parent steps itself raises instead). Scripts that use worker
processes need an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import atexit
import contextlib
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from metarl.errors import UsageError
from metarl.tasks import TaskDistribution
from metarl.types import Task
from metarl.vector.asyncenv import CheckedAsyncVectorEnv
from metarl.vector.shm import SharedMemoryVectorEnv, check_picklable, default_start_method, start_failure

BACKENDS = ("auto", "native", "sync", "async", "shm", "ray")
"""``"ray"`` is no vector env: the Trainer runs whole trials on Ray actors (:mod:`metarl.distributed`)."""


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about a benchmark's envs.

    Attributes:
        obs_dim: flat observation size.
        act_dim: flat action size.
        action_low, action_high: ``[act_dim]`` float32 bounds.
        horizon: steps per episode.
    """

    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    horizon: int

    @classmethod
    def from_distribution(cls, dist: TaskDistribution) -> EnvSpec:
        """Build one env of ``dist`` and read its spaces (rejects non-Box spaces with a clear error)."""
        env = dist.make_env()
        try:
            obs_space, act_space = env.observation_space, env.action_space
        finally:
            env.close()
        for what, space in (("observation", obs_space), ("action", act_space)):
            if not isinstance(space, gym.spaces.Box):
                raise UsageError(f"{what} space is {type(space).__name__}: metarl agents need a gymnasium Box "
                                 "(flatten it with gymnasium.wrappers.FlattenObservation or similar)")
        if not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
            raise UsageError(f"the action space {act_space} is unbounded: agents squash or scale actions into its "
                             "box, so give it finite low/high (e.g. Box(-1, 1, ...)) and scale inside the env")
        return cls(
            obs_dim=int(np.prod(obs_space.shape)),
            act_dim=int(np.prod(act_space.shape)),
            action_low=np.asarray(act_space.low, dtype=np.float32).reshape(-1),
            action_high=np.asarray(act_space.high, dtype=np.float32).reshape(-1),
            horizon=dist.horizon,
        )


class TaskVectorEnv(gym.vector.VectorWrapper):
    """A gymnasium ``VectorEnv`` of ``num_envs`` task slots with autoreset disabled.

    Call :meth:`set_tasks` (one task per slot) before ``reset``. Observations are
    ``[num_envs, obs_dim]``; ``info["success"]`` is ``[num_envs]``.
    """

    def __init__(self, dist: TaskDistribution, num_envs: int, backend: str = "auto",
                 num_workers: int | None = None, shm_options: dict[str, Any] | None = None) -> None:
        if num_envs < 1:
            raise UsageError(f"--num-envs {num_envs} is not positive: use at least 1")
        backend = check_backend(dist, backend)
        if backend == "ray":
            raise UsageError("backend 'ray' runs whole trials on Ray actors, not a vector env: the Trainer "
                             "(TrainerConfig(backend='ray')) uses it; here use auto, native, sync, async or shm")
        check_num_workers(backend, num_workers)
        fns = [dist.make_env for _ in range(num_envs)]
        if backend == "native":
            env: gym.vector.VectorEnv = dist.vector_factory(num_envs)
            mode = env.metadata.get("autoreset_mode")
            if mode != AutoresetMode.DISABLED:
                raise UsageError(f"the family's vector env has autoreset mode {mode}: metarl needs "
                                 "metadata['autoreset_mode'] = AutoresetMode.DISABLED")
        elif backend == "sync":
            env = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED)
        elif backend == "async":
            env = _async_env(fns)
        else:
            env = SharedMemoryVectorEnv(dist.make_env, num_envs, num_workers, **(shm_options or {}))
        super().__init__(env)
        self.distribution = dist
        self.backend = backend
        self.tasks: list[Task] | None = None
        self._closed = False
        if backend in ("async", "shm"):
            _close_at_exit(self)

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise RuntimeError(f"TaskVectorEnv.{what}() after close(): make a new vector env")

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """Give slot ``i`` task ``tasks[i]``; takes effect at each slot's next reset."""
        self._check_open("set_tasks")
        if len(tasks) != self.num_envs:
            raise ValueError(f"set_tasks got {len(tasks)} tasks for {self.num_envs} slots")
        self.env.set_attr("task", list(tasks))
        self.tasks = list(tasks)

    def reset(self, *, seed=None, options=None):
        self._check_open("reset")
        if self.tasks is None:
            raise RuntimeError("TaskVectorEnv.reset() before set_tasks(): give every slot a task first")
        # a copy: gymnasium's sync/async envs pop reset_mask out of the dict they are given
        return self.env.reset(seed=seed, options=None if options is None else dict(options))

    def step(self, actions):
        self._check_open("step")
        return self.env.step(actions)

    def close(self, **kwargs: Any) -> None:
        self._closed = True
        super().close(**kwargs)


_OPEN_WITH_WORKERS: weakref.WeakSet[TaskVectorEnv] = weakref.WeakSet()
_EXIT_HOOK = False


def _close_at_exit(env: TaskVectorEnv) -> None:
    """Close ``env`` at interpreter exit if its user didn't. Its workers leave SIGTERM to the parent (it
    saves, then closes them), so multiprocessing's own exit handler, which terminates daemonic children
    with SIGTERM and joins them, would wait forever. Registered after the workers started, hence after
    multiprocessing's handler, so it runs first (atexit runs handlers last-in, first-out)."""
    global _EXIT_HOOK
    _OPEN_WITH_WORKERS.add(env)
    if not _EXIT_HOOK:
        atexit.register(_close_open)
        _EXIT_HOOK = True


def _close_open() -> None:
    for env in list(_OPEN_WITH_WORKERS):
        with contextlib.suppress(Exception):  # at exit: close what can be closed
            env.close()


def _async_env(fns: list) -> AsyncVectorEnv:
    """gymnasium's ``AsyncVectorEnv`` over ``fns``, its waits checked (:mod:`metarl.vector.asyncenv`);
    workers that die while starting (their pipes close) raise :func:`~metarl.vector.shm.start_failure`'s
    one-line error."""
    try:
        return CheckedAsyncVectorEnv(fns, context=default_start_method())
    except (EOFError, ConnectionError) as e:
        raise start_failure("async env workers", f"{type(e).__name__}: {e}", default_start_method()) from None


def check_backend(dist: TaskDistribution, backend: str) -> str:
    """The concrete backend ``backend`` means for ``dist`` (``"auto"`` resolved); UsageError if unusable
    (``"shm"`` with an env factory that does not pickle, ``"native"`` without a batched env)."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown vector backend {backend!r}: use one of {', '.join(BACKENDS)}")
    has_native = getattr(dist, "vector_factory", None) is not None
    if backend == "ray":  # here too: the CLI checks before it writes a run directory
        from metarl.distributed import import_ray

        import_ray()
        check_picklable(dist.make_env)
        return backend
    if backend == "auto":
        return "native" if has_native else "sync"
    if backend == "native" and not has_native:
        raise UsageError("backend 'native' needs a family with a batched vector env "
                         "(TaskSet.vector_factory): use --backend auto, sync, async or shm")
    if backend == "shm":  # here too: the CLI checks before it writes a run directory
        check_picklable(dist.make_env)
    return backend


def check_num_workers(backend: str, num_workers: int | None) -> None:
    """UsageError unless ``num_workers`` is None or a positive count for the ``shm`` backend."""
    if num_workers is None:
        return
    if backend not in ("shm", "ray"):
        raise UsageError("--num-workers (num_workers) sets the shm backend's worker processes (ray: actors); "
                         f"the backend here is {backend!r}: add --backend shm (backend='shm') or drop it")
    if num_workers < 1:
        raise UsageError(f"--num-workers {num_workers} is not positive: use at least 1 (or leave it out: one per core)")


def make_vector_env(dist: TaskDistribution, num_envs: int, backend: str = "auto",
                    num_workers: int | None = None, shm_options: dict[str, Any] | None = None) -> TaskVectorEnv:
    """``num_envs`` slots over ``dist``; ``num_workers`` processes for ``"shm"`` (default: one per core, at
    most ``num_envs``; refused with other backends);
    ``shm_options``: more keyword arguments of :class:`~metarl.vector.shm.SharedMemoryVectorEnv`
    (``spin_us``, ``in_parent``, ``step_timeout``, ...).

    ``backend="auto"``: the family's batched vector env when it has one, else ``"sync"``.
    """
    return TaskVectorEnv(dist, num_envs, backend, num_workers, shm_options)

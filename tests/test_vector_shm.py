"""Shared-memory vector backend: same numbers as in-process, crash recovery, clean close."""

import os

import numpy as np
import pytest
import torch

import metarl
from metarl.rollout import collect
from metarl.vector_shm import SharedMemoryVectorEnv, WorkerError

from .conftest import ScriptedEnv


def _rollout(backend, **kw):
    bench = metarl.make_benchmark("Toy", num_tasks=5, horizon=6, seed=2)
    envs = metarl.make_vector_env(bench.train, 5, backend, **kw)
    envs.set_tasks(list(bench.train.tasks))
    torch.manual_seed(0)
    ro = collect(envs, metarl.make_agent("random", bench).make_learner(), episodes=2, seed=[1, 2, 3, 4, 5])
    envs.close()
    return ro


def test_shm_matches_sync_exactly():
    a, b = _rollout("sync"), _rollout("shm", num_workers=2)
    for field in ("obs", "next_obs", "rewards", "terminated", "truncated", "success", "valid"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


class CrashingEnv(ScriptedEnv):
    """Kills its own process on the step named by ``task.params[3]`` (once per process)."""

    def step(self, action):
        if self.t + 1 == self.task.params[3]:
            os._exit(3)
        return super().step(action)


def _crash_env():
    return CrashingEnv()


def test_crashed_worker_is_restarted_and_reported():
    from metarl.types import Task

    envs = SharedMemoryVectorEnv(_crash_env, num_envs=2, num_workers=2)
    procs_before = [p.pid for p in envs._procs]
    envs.set_attr("task", [Task("s", 0, "train", (5, False, -1, 99)), Task("s", 1, "train", (5, False, -1, 2))])
    envs.reset()
    envs.step(np.zeros((2, 1)))
    with pytest.warns(RuntimeWarning, match="slots 1..1 failed"):
        obs, _, term, trunc, info = envs.step(np.zeros((2, 1)))
    assert trunc.tolist() == [False, True] and info["worker_restarted"].tolist() == [False, True]
    assert obs[1, 0] == 0  # slot 1 came back reset
    assert envs._procs[0].pid == procs_before[0] and envs._procs[1].pid != procs_before[1]
    envs.close()


def test_repeated_crashes_raise_instead_of_hanging():
    from metarl.types import Task

    envs = SharedMemoryVectorEnv(_crash_env, num_envs=1, num_workers=1, max_restarts=2)
    envs.set_attr("task", [Task("s", 0, "train", (5, False, -1, 1))])
    envs.reset()
    with pytest.warns(RuntimeWarning), pytest.raises(WorkerError, match="after 2 restarts"):
        for _ in range(5):
            envs.step(np.zeros((1, 1)))
    assert all(not p.is_alive() for p in envs._procs)


def test_close_leaves_no_processes_and_frees_memory():
    envs = SharedMemoryVectorEnv(ScriptedEnv, num_envs=3, num_workers=3)
    procs, name = list(envs._procs), envs._shm.name
    envs.close()
    assert all(not p.is_alive() for p in procs)
    assert not os.path.exists(f"/dev/shm/{name}")


class HangingEnv(ScriptedEnv):
    """Blocks forever on the step named by ``task.params[3]``."""

    def step(self, action):
        if self.t + 1 == self.task.params[3]:
            import threading

            threading.Event().wait()
        return super().step(action)


def _hang_env():
    return HangingEnv()


def test_hung_worker_is_detected():
    from metarl.types import Task

    envs = SharedMemoryVectorEnv(_hang_env, num_envs=1, num_workers=1, step_timeout=1.0, max_restarts=0)
    envs.set_attr("task", [Task("s", 0, "train", (5, False, -1, 1))])
    envs.reset()
    with pytest.raises(WorkerError, match="no answer to step within 1 s"):
        envs.step(np.zeros((1, 1)))
    assert all(not p.is_alive() for p in envs._procs)

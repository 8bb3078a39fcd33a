"""Shared-memory vector backend: same numbers as in-process, crash recovery, clean close."""

import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import metarl
from metarl.rollout import collect
from metarl.vector.shm import SharedMemoryVectorEnv, WorkerError

from .conftest import ScriptedEnv


def _rollout(backend, **kw):
    bench = metarl.make_benchmark("Toy", num_tasks=5, horizon=6, seed=2)
    envs = metarl.make_vector_env(bench.train, 5, backend, **kw)
    envs.set_tasks(list(bench.train.tasks))
    torch.manual_seed(0)
    ro = collect(envs, metarl.make_agent("random", bench).make_learner(), episodes=2, seed=[1, 2, 3, 4, 5])
    envs.close()
    return ro


@pytest.mark.spawn
def test_shm_matches_sync_exactly():
    a, b = _rollout("sync"), _rollout("shm", num_workers=2)
    for field in ("obs", "next_obs", "rewards", "terminated", "truncated", "success", "valid"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


@pytest.mark.parametrize("options", [{"in_parent": True}, {"spin_us": 200.0}, {"spin_us": 0.0},
                                     {"start_method": "spawn"}])  # spawn: macOS's default, tried here
@pytest.mark.spawn
def test_shm_variants_match_sync_exactly(options):
    a, b = _rollout("sync"), _rollout("shm", num_workers=2, shm_options=options)
    for field in ("obs", "next_obs", "rewards", "terminated", "truncated", "success", "valid"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def test_unsupported_start_method_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="start_method 'fork' is not supported here: use one of"):
        SharedMemoryVectorEnv(ScriptedEnv, num_envs=2, num_workers=2, start_method="fork")


@pytest.mark.spawn
def test_parent_steps_a_block_by_default_only_when_the_workers_fill_the_cores():
    from metarl.vector.shm import _cores

    envs = SharedMemoryVectorEnv(ScriptedEnv, num_envs=_cores(), num_workers=_cores())
    assert envs._inline is not None and len(envs.worker_processes) == _cores() - 1
    envs.close()
    if _cores() > 1:
        envs = SharedMemoryVectorEnv(ScriptedEnv, num_envs=2, num_workers=1)
        assert envs._inline is None and len(envs.worker_processes) == 1
        envs.close()


@pytest.mark.spawn
def test_trainer_runs_the_shm_workers_it_is_given():
    bench = metarl.make_benchmark("Toy", num_tasks=4, horizon=4, seed=0)
    trainer = metarl.Trainer(bench, metarl.make_agent("random", bench),
                             metarl.TrainerConfig(num_envs=4, backend="shm", num_workers=2, final_eval=False,
                                                  progress=False, steps=16))
    try:
        trainer.iteration()
        shm = trainer._envs.env
        assert len(shm._blocks) == 2 and [hi - lo for lo, hi in shm._blocks] == [2, 2]  # 2 workers x 2 slots
    finally:
        trainer.close()
    with pytest.raises(metarl.UsageError, match="add --backend shm"):  # other backends have no workers
        metarl.make_vector_env(bench.train, 4, "sync", num_workers=2)


@pytest.mark.spawn
def test_spins_by_default_only_when_every_process_has_a_core(monkeypatch):
    from metarl.vector import shm as vector_shm

    monkeypatch.setattr(vector_shm, "_cores", lambda: 3)
    cases = {(2, False): vector_shm.DEFAULT_SPIN_US * 1e-6,  # 2 workers + this process on 3 cores
             (3, True): vector_shm.DEFAULT_SPIN_US * 1e-6,  # this process steps block 0: 3 processes
             (3, False): 0.0}  # 4 processes on 3 cores: a spinner would take a stepping worker's core
    for (workers, in_parent), spin_s in cases.items():
        envs = SharedMemoryVectorEnv(ScriptedEnv, num_envs=workers, num_workers=workers, in_parent=in_parent)
        try:
            assert envs.spin_s == spin_s, (workers, in_parent)
        finally:
            envs.close()


def test_a_spinning_wait_returns_as_soon_as_the_semaphore_is_posted(monkeypatch):
    import multiprocessing as mp
    import threading

    from metarl.vector import shm as vector_shm
    from metarl.vector.shm import _acquire

    yields = []
    monkeypatch.setattr(vector_shm, "_yield", lambda: yields.append(1))
    sem = mp.get_context("spawn").Semaphore(0)
    start = time.perf_counter()
    assert not _acquire(sem, spin_s=0.002, timeout=0.0)  # nothing posted: spins, then gives up
    assert time.perf_counter() - start >= 0.002 and len(yields) > 1  # it spun the whole 2 ms, yielding between tries
    yields.clear()
    sem.release()
    assert _acquire(sem, spin_s=10.0) and not sem.acquire(False) and not yields  # pre-posted: first try, one post
    assert not _acquire(sem, spin_s=0.0, timeout=0.0) and not yields  # no spin: straight to the blocking wait
    threading.Timer(0.01, sem.release).start()
    assert _acquire(sem, spin_s=0.002, timeout=5.0)  # posted after the spin ran out: the blocking wait gets it


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "200000 100000\n"}, 2.0),  # cgroup v2, the container's view: 2 CPUs
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),  # no quota
    ({"sub/job/cpu.max": "300000 100000\n", "cpu.max": "max 100000\n"}, 3.0),  # v2, this process's own cgroup
    ({"sub/job/cpu.max": "max 100000\n", "cpu.max": "200000 100000\n"}, 2.0),  # no limit of its own, the root's
    ({"sub/cpu.max": "200000 100000\n", "sub/job/cpu.max": "max 100000\n"}, 2.0),  # a parent's (pod, slice)
    ({"sub/job/cpu.max": "800000 100000\n", "cpu.max": "200000 100000\n"}, 2.0),  # the smallest limit wins
    ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu/v1job/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_quota_us": "200000\n"}, 2.0),  # v1, own path, root's limit
    ({"cpu/v1job/cpu.cfs_quota_us": "50000\n", "cpu/v1job/cpu.cfs_period_us": "100000\n"}, 0.5),
    ({}, None),  # no cgroup files at all (not Linux, or not mounted)
])
def test_cgroup_cpu_quota_is_the_smallest_limit_over_the_cgroup_and_its_ancestors(tmp_path, files, expected):
    from metarl.vector.shm import _cgroup_cpus

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "self").write_text("4:cpu,cpuacct:/v1job\n0::/sub/job\n")
    assert _cgroup_cpus(str(tmp_path), str(tmp_path / "self")) == expected


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="affinity: Linux")
@pytest.mark.parametrize("quota, expected", [(None, 8), (2.0, 2), (1.5, 1), (0.5, 1), (64.0, 8)])
def test_a_cgroup_quota_caps_the_core_count_rounded_down(monkeypatch, quota, expected):
    from metarl.vector import shm as vector_shm

    monkeypatch.setattr(vector_shm.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(vector_shm, "_cgroup_cpus", lambda: quota)
    monkeypatch.setattr(vector_shm.sys, "platform", "linux")
    assert vector_shm._cores() == expected


class CrashingEnv(ScriptedEnv):
    """Kills its own process on the step named by ``task.params[3]`` (once per process)."""

    def step(self, action):
        if self.t + 1 == self.task.params[3]:
            os._exit(3)
        return super().step(action)


def _crash_env():
    return CrashingEnv()


@pytest.mark.spawn
def test_crashed_worker_is_restarted_and_reported():
    from metarl.types import Task

    envs = SharedMemoryVectorEnv(_crash_env, num_envs=2, num_workers=2, in_parent=False)
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


@pytest.mark.spawn
def test_repeated_crashes_raise_instead_of_hanging():
    from metarl.types import Task

    envs = SharedMemoryVectorEnv(_crash_env, num_envs=1, num_workers=1, max_restarts=2, in_parent=False)
    envs.set_attr("task", [Task("s", 0, "train", (5, False, -1, 1))])
    envs.reset()
    with pytest.warns(RuntimeWarning), pytest.raises(WorkerError, match="after 2 restarts"):
        for _ in range(5):
            envs.step(np.zeros((1, 1)))
    assert all(not p.is_alive() for p in envs._procs)


@pytest.mark.parametrize(("in_parent", "start_method"), [(False, None), (True, None), (False, "spawn")])
@pytest.mark.spawn
def test_close_leaves_no_processes_and_frees_memory(in_parent, start_method):
    envs = SharedMemoryVectorEnv(ScriptedEnv, num_envs=3, num_workers=3, in_parent=in_parent,
                                 start_method=start_method)
    procs, name = [p for p in envs._procs if p is not None], envs._shm.name
    assert len(procs) == (2 if in_parent else 3)
    envs.close()
    assert all(p.exitcode == 0 for p in procs)  # they obeyed "close" (a kill after the join timeout: -9)
    if os.path.isdir("/dev/shm"):
        assert not os.path.exists(f"/dev/shm/{name}")


class RaisingEnv(ScriptedEnv):
    """Raises a Python exception on the step named by ``task.params[3]``."""

    def step(self, action):
        if self.t + 1 == self.task.params[3]:
            raise ValueError("bad joint angle")
        return super().step(action)


def _raise_env():
    return RaisingEnv()


@pytest.mark.spawn
def test_worker_exception_is_reported_with_its_message_and_the_worker_restarted():
    from metarl.types import Task

    envs = SharedMemoryVectorEnv(_raise_env, num_envs=2, num_workers=2, spin_us=0.0, in_parent=False)
    envs.set_attr("task", [Task("s", 0, "train", (5, False, -1, -1)), Task("s", 1, "train", (5, False, -1, 2))])
    envs.reset()
    envs.step(np.zeros((2, 1)))
    with pytest.warns(RuntimeWarning, match="slots 1..1 failed .ValueError: bad joint angle"):
        _, rew, _, trunc, info = envs.step(np.zeros((2, 1)))
    assert trunc.tolist() == [False, True] and info["worker_restarted"].tolist() == [False, True]
    assert rew[1] == 0.0  # not the dead worker's last reward
    envs.close()


@pytest.mark.spawn
def test_an_error_in_the_parent_block_leaves_the_workers_in_step():
    from metarl.types import Task

    envs = SharedMemoryVectorEnv(_raise_env, num_envs=2, num_workers=2, in_parent=True)
    tasks = [Task("s", 0, "train", (50, False, -1, 2)), Task("s", 1, "train", (50, False, -1, -1))]
    envs.set_attr("task", tasks)
    envs.reset()
    envs.step(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="bad joint angle"):  # slot 0 is stepped here: its error raises here
        envs.step(np.zeros((2, 1)))
    envs.set_attr("task", [Task("s", 0, "train", (50, False, -1, -1)), tasks[1]])
    obs, _ = envs.reset()
    for t in range(1, 4):  # the worker's interrupted step was waited for: every later step is its own
        obs, rew, *_ = envs.step(np.zeros((2, 1)))
        assert obs[:, 0].tolist() == [t, t] and rew[1] == 10 * obs[1, 1] / 100 + t
    envs.close()


class BigTaskEnv(ScriptedEnv):
    """Accepts any task; its step ignores it."""

    def step(self, action):
        self.t += 1
        return self._obs(), float(self.t), False, False, {"success": 0.0}


def _big_task_env():
    return BigTaskEnv()


@pytest.mark.spawn
def test_large_control_messages_do_not_deadlock():
    envs = SharedMemoryVectorEnv(_big_task_env, num_envs=2, num_workers=2, in_parent=False)
    envs.set_attr("task", [np.ones(2_000_000)] * 2)  # 16 MB per worker: far above any socket buffer
    envs.reset()
    assert envs.step(np.zeros((2, 1)))[1].tolist() == [1.0, 1.0]
    envs.close()


@pytest.mark.spawn
def test_workers_exit_when_the_parent_is_killed(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "owner.py"
    script.write_text(
        "import os, signal, metarl\n"
        "from metarl.vector.shm import SharedMemoryVectorEnv\n"
        "if __name__ == '__main__':\n"
        "    bench = metarl.make_benchmark('Toy', num_tasks=2, horizon=5, seed=0)\n"
        "    envs = SharedMemoryVectorEnv(bench.train.make_env, 2, 2, in_parent=False)\n"
        "    print(' '.join(str(p.pid) for p in envs.worker_processes), flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie still answers kill(0): look at its state
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return True

    deadline = time.monotonic() + 30  # the watchdog checks every second
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids), "orphaned env workers kept running"


@pytest.mark.parametrize(("backend", "start_method"), [("shm", "forkserver"), ("shm", "spawn"), ("async", None)])
@pytest.mark.spawn
def test_an_unguarded_script_gets_one_error_naming_the_main_guard(tmp_path, backend, start_method):
    import subprocess
    import sys

    options = f", num_workers=2, shm_options={{'start_method': '{start_method}'}}" if backend == "shm" else ""
    body = ("    bench = metarl.make_benchmark('Toy', num_tasks=2, horizon=5, seed=0)\n"
            f"    envs = metarl.make_vector_env(bench.train, 2, backend='{backend}'{options})\n"
            "    envs.close()\n"
            "    print('closed')\n")
    unguarded = tmp_path / "unguarded.py"
    unguarded.write_text("import metarl\n\n" + body.replace("\n    ", "\n").lstrip())
    guarded = tmp_path / "guarded.py"
    guarded.write_text("import metarl\n\ndef main():\n" + body + "\nif __name__ == '__main__':\n    main()\n")
    bad = subprocess.run([sys.executable, str(unguarded)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "closed" not in bad.stdout
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("metarl.vector.shm.WorkerError: ") and "failed to start" in last, bad.stderr
    assert 'under `if __name__ == "__main__":`' in last
    assert "restarted" not in bad.stderr  # a failed first start is not retried
    good = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0 and good.stdout.strip() == "closed", good.stderr


class HangingEnv(ScriptedEnv):
    """Blocks forever on the step named by ``task.params[3]``."""

    def step(self, action):
        if self.t + 1 == self.task.params[3]:
            import threading

            threading.Event().wait()
        return super().step(action)


def _hang_env():
    return HangingEnv()


@pytest.mark.spawn
def test_hung_worker_is_detected():
    from metarl.types import Task

    envs = SharedMemoryVectorEnv(_hang_env, num_envs=1, num_workers=1, step_timeout=1.0, max_restarts=0,
                                 in_parent=False)
    envs.set_attr("task", [Task("s", 0, "train", (5, False, -1, 1))])
    envs.reset()
    with pytest.raises(WorkerError, match="no answer to step within 1 s"):
        envs.step(np.zeros((1, 1)))
    assert all(not p.is_alive() for p in envs._procs)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc/<pid>/maps (Linux)")
@pytest.mark.spawn
def test_workers_do_not_load_torch():
    """Workers only step envs: importing their env factory must not pull in torch (~120 MiB private each)."""
    bench = metarl.make_benchmark("Toy", num_tasks=4, horizon=5, seed=0)
    envs = metarl.make_vector_env(bench.train, 4, "shm", num_workers=4, shm_options={"in_parent": False})
    try:
        envs.set_tasks(list(bench.train.tasks[:4]))
        envs.reset(seed=0)
        assert "libtorch" in Path("/proc/self/maps").read_text()  # the check can see torch where it is
        for proc in envs.env.worker_processes:
            assert "libtorch" not in Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        envs.close()


def _scripted_with(weights):  # a module-level factory whose argument is a torch tensor
    return ScriptedEnv()


@pytest.mark.spawn
def test_env_factories_holding_tensors_reach_every_worker_and_a_lone_block_needs_no_pickling():
    import functools

    from metarl.types import Task

    envs = SharedMemoryVectorEnv(functools.partial(_scripted_with, torch.ones(3)), num_envs=4, num_workers=2,
                                 in_parent=False)  # the same payload for both workers (and any restart)
    envs.set_attr("task", [Task("a", i, "train", (3, False, -1)) for i in range(4)])
    obs, _ = envs.reset(seed=0)
    assert len(envs.worker_processes) == 2 and obs.shape == (4, 2)
    envs.close()
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    lone = SharedMemoryVectorEnv(lambda: ScriptedEnv(), num_envs=2, num_workers=1, in_parent=True)  # no process
    assert lone.worker_processes == []
    lone.close()
    assert (set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()) == before


class GridEnv(ScriptedEnv):
    """A ``(2, 3)`` float32 observation, a float64 action space, and a reference to its last action kept
    (as envs that remember ``last_action`` do): observation ``[0]`` = t, ``[1]`` = the action before last."""

    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2, 3), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float64)
        self.last = np.zeros(1)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros((2, 3), np.float32), {}

    def step(self, action):
        assert action.dtype == np.float64 and action.shape == (1,)
        obs = np.full((2, 3), self.t + 1, np.float32)
        obs[1] = self.last[0]
        self.t, self.last = self.t + 1, action  # no copy: the env owns the array it was given
        return obs, float(action[0]), False, False, {}


def _grid_env():
    return GridEnv()


@pytest.mark.spawn
def test_shm_gives_envs_their_own_actions_in_the_spaces_dtypes_and_shapes():
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    results = []
    for envs in (SyncVectorEnv([_grid_env] * 3, autoreset_mode=AutoresetMode.DISABLED),
                 SharedMemoryVectorEnv(_grid_env, num_envs=3, num_workers=2, in_parent=True)):
        envs.set_attr("task", [None] * 3)
        out = [envs.reset()[0]]
        for k in range(3):
            obs, rew, *_ = envs.step(np.full((3, 1), 0.1 * (k + 1)))  # 0.1 is not a float32
            out += [obs, rew]
        envs.close()
        results.append(out)
    for sync, shm in zip(*results, strict=True):
        assert sync.dtype == shm.dtype and sync.shape == shm.shape
        np.testing.assert_array_equal(sync, shm)
    assert results[1][-2][0, 1, 0] == np.float32(0.2) and results[1][-1][0] == 0.1 * 3  # float64 exactly


class CrashOnceEnv(ScriptedEnv):
    """Kills its process when reset with seed 999 (``on_step``: at any step) while ``marker`` doesn't
    exist (it creates it first): one crash per test, whichever process. Its first observation is
    ``[seed, episode]``."""

    def __init__(self, marker, on_step=False):
        super().__init__()
        self.marker, self.on_step = marker, on_step

    def _crash_once(self):
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(3)

    def reset(self, *, seed=None, options=None):
        if seed == 999 and not self.on_step:
            self._crash_once()
        obs, info = super().reset(seed=seed)
        return (obs if seed is None else np.array([seed, obs[1]], np.float32)), info

    def step(self, action):
        if self.on_step and self.task.index == 1:
            self._crash_once()
        return super().step(action)


@pytest.mark.spawn
def test_a_restart_during_a_partial_reset_keeps_the_seed_and_reports_the_other_slot(tmp_path):
    import functools

    from metarl.types import Task

    envs = SharedMemoryVectorEnv(functools.partial(CrashOnceEnv, str(tmp_path / "crashed")), num_envs=2,
                                 num_workers=1, in_parent=False)
    envs.set_attr("task", [Task("s", i, "train", (9, False, -1)) for i in range(2)])
    envs.reset()
    envs.step(np.zeros((2, 1)))
    with pytest.warns(RuntimeWarning, match="slots 0..1 failed"):  # slot 0's episode ended; slot 1 runs on
        obs, _ = envs.reset(seed=[999, None], options={"reset_mask": np.array([True, False])})
    assert obs[0, 0] == 999  # the reset asked for happened, with its seed, after the restart
    obs, _, term, trunc, info = envs.step(np.zeros((2, 1)))
    # slot 1 was reset by the restart behind the caller's back: its episode is reported lost
    assert trunc.tolist() == [False, True] and info["worker_restarted"].tolist() == [False, True]
    _, _, _, trunc, info = envs.step(np.zeros((2, 1)))
    assert not trunc.any() and "worker_restarted" not in info  # reported once
    envs.close()


@pytest.mark.spawn
def test_collect_refuses_a_trial_a_restart_broke_and_the_trainer_collects_it_again(tmp_path):
    import functools

    from metarl.rollout import WorkerRestarted
    from metarl.tasks import Benchmark, TaskSet
    from metarl.types import Task

    from .conftest import ConstantLearner

    tasks = tuple(Task("s", i, "train", (3, False, -1)) for i in range(2))
    dist = TaskSet("train", tasks, functools.partial(CrashOnceEnv, str(tmp_path / "crashed"), True), horizon=3)
    envs = metarl.make_vector_env(dist, 2, "shm", num_workers=2, shm_options={"in_parent": False})
    envs.set_tasks(list(tasks))
    with pytest.warns(RuntimeWarning, match="slots 1..1 failed"), pytest.raises(WorkerRestarted, match=r"\[1\]"):
        collect(envs, ConstantLearner(), episodes=2, seed=[0, 7])  # no made-up transition comes back
    ro = collect(envs, ConstantLearner(), episodes=2, seed=[0, 7])  # crashed once: runs now
    assert ro.valid.all() and ro.obs[0, :, 0].tolist() == [0, 7]
    envs.close()
    dist = TaskSet("train", tasks, functools.partial(CrashOnceEnv, str(tmp_path / "crashed-in-step"), True), 3)
    bench = Benchmark("CrashOnce", dist, dist, seed=0)
    agent = metarl.make_agent("random", bench)
    trainer = metarl.Trainer(bench, agent, metarl.TrainerConfig(num_envs=2, backend="shm", num_workers=2, seed=0,
                                                                progress=False))
    trainer._envs = metarl.make_vector_env(dist, 2, "shm", num_workers=2, shm_options={"in_parent": False})
    with pytest.warns(RuntimeWarning) as caught:
        trainer.iteration()
    assert [str(w.message) for w in caught if "collecting the trial again" in str(w.message)] == [
        "training iteration 1: slot(s) [1] lost their episodes to a worker restart; collecting the trial again"]
    trainer.close()
    # one trial's steps counted: the broken one was dropped
    assert trainer.state.env_steps == 2 * 3 * (agent.adapt_episodes + agent.post_episodes)


class SlowResetEnv(ScriptedEnv):
    """Resets slowly; its first observation is ``[seed, episode]``."""

    def reset(self, *, seed=None, options=None):
        time.sleep(0.2)
        obs, info = super().reset(seed=seed)
        return np.array([-1 if seed is None else seed, obs[1]], np.float32), info


def _slow_reset_env():
    return SlowResetEnv()


@pytest.mark.spawn
def test_a_command_left_unanswered_by_an_interruption_is_not_taken_for_the_next_ones_answer():
    from metarl.types import Task

    envs = SharedMemoryVectorEnv(_slow_reset_env, num_envs=1, num_workers=1, in_parent=False)
    envs.set_attr("task", [Task("s", 0, "train", (5, False, -1))])
    envs._post_command(0, "reset", [(0, 5)])  # what a reset interrupted by Ctrl-C leaves: its answer unread
    obs, _ = envs.reset(seed=[42])
    assert obs[0, 0] == 42  # not the seed-5 reset's "ok" taken as this one's while the worker still resets
    obs, *_ = envs.step(np.zeros((1, 1)))
    assert obs[0].tolist() == [1, 100]  # the second reset's episode (5, then 42), stepped once
    envs.close()


@pytest.mark.spawn
def test_a_restart_interrupted_while_the_new_worker_starts_is_finished_by_the_next_call():
    from metarl.types import Task

    envs = SharedMemoryVectorEnv(_slow_reset_env, num_envs=1, num_workers=1, in_parent=False)
    envs.set_attr("task", [Task("s", 0, "train", (5, False, -1))])
    envs.reset(seed=[3])
    expect = envs._expect

    def interrupted(w, what, timeout=None):  # Ctrl-C while the restart waits for its new worker
        envs._expect = expect
        raise KeyboardInterrupt

    envs._expect = interrupted
    with pytest.warns(RuntimeWarning, match="restarted"), pytest.raises(KeyboardInterrupt):
        envs._restart(0, "simulated hang")
    assert envs._owed == ["start"] and envs.restarts == 1
    obs, *_, info = envs.step(np.zeros((1, 1)))  # takes the start, gives the tasks back, steps
    assert envs.restarts == 1 and obs[0, 0] == 1 and info["worker_restarted"].tolist() == [True]
    obs, _ = envs.reset(seed=[7])
    assert obs[0, 0] == 7 and envs.restarts == 1
    envs.close()


@pytest.mark.spawn
@pytest.mark.parametrize("backend", ["shm", "async"])
def test_a_script_that_never_closes_its_vector_env_still_exits(tmp_path, backend):
    # Workers leave SIGTERM to their parent, so multiprocessing's exit handler (SIGTERM, then join) would
    # wait for them forever: metarl.vector closes what is still open at exit, before that handler runs.
    import subprocess
    import sys

    script = tmp_path / "leave_open.py"
    script.write_text(
        "import numpy as np, metarl\n"
        "from metarl.vector import make_vector_env\n"
        "if __name__ == '__main__':\n"
        "    bench = metarl.make_benchmark('Toy', num_tasks=4, horizon=5, seed=0)\n"
        f"    envs = make_vector_env(bench.train, 2, {backend!r}, {2 if backend == 'shm' else None})\n"
        "    envs.set_tasks(bench.train.sample(2, np.random.default_rng(0)))\n"
        "    envs.reset(seed=0)\n"
        "    print('done', flush=True)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout.strip()) == (0, "done"), proc.stderr
    assert "Traceback" not in proc.stderr

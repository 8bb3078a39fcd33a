"""A fault-injection task family and agent for the reliability tests (``tests/test_reliability.py``).

Used only by tests, never shipped: :func:`register` adds them to the registries of this process, and
``python -m tests.faulty ARGS`` runs the ``metarl`` command with them registered (for tests that need a
process of their own: signals, killed workers).

``Faulty`` is the ``Toy`` point-goal family with faults chosen by ``--env-opt``: NaN observations or
rewards, an env process that dies (always, or once), a SIGTERM to this process while evaluating, a
factory that raises. The ``faulty`` agent acts uniformly at random from torch's global generator (so a
replayed trial must rewind it) and holds one weight tensor; ``--agent-opt`` makes it return bad actions,
send itself SIGTERM or diverge (NaN weights) at a given iteration.
"""

from __future__ import annotations

import builtins
import errno
import functools
import io
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.registry import register_agent, register_benchmark
from metarl.tasks import Benchmark, TaskSet
from metarl.types import ActOutput, MetaBatch, Rollout, StepInput, Task
from metarl.vector import EnvSpec

STEPS = {"count": 0}
"""Env steps taken in this process, by every Faulty env (the clock the faults go by)."""


class FaultyEnv(gym.Env):
    """A 2-D point moving towards ``task.params``; ``horizon`` steps per episode. Faults (env steps are
    counted per process, from 1): ``nan_obs_at`` / ``nan_reward_at``: that step returns a NaN observation
    / reward; ``die_at``: every process dies (SIGKILL) at that step of its life; ``die_once``: a path, the
    first process to reach ``die_at`` dies and creates it, later ones live on; ``hang_at``: every env
    worker process stops answering at that step; ``connection_error_at``: that step raises
    ``ConnectionError`` (a simulator behind a socket); ``sigterm_at``: at that
    step of a *test* task this process sends itself SIGTERM (an evaluation interrupted by a scheduler)."""

    def __init__(self, horizon: int = 4, nan_obs_at: int = -1, nan_reward_at: int = -1, die_at: int = -1,
                 die_once: str = "", sigterm_at: int = -1, hang_at: int = -1, connection_error_at: int = -1) -> None:
        self.horizon, self.nan_obs_at, self.nan_reward_at = horizon, nan_obs_at, nan_reward_at
        self.connection_error_at = connection_error_at
        self.die_at, self.die_once, self.sigterm_at, self.hang_at = die_at, die_once, sigterm_at, hang_at
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.task: Task | None = None
        self._pos, self._t = np.zeros(2), 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos, self._t = np.zeros(2), 0
        return self._pos.astype(np.float32), {}

    def step(self, action):
        STEPS["count"] += 1
        now = STEPS["count"]
        in_worker = multiprocessing.parent_process() is not None  # never the process running the test
        if in_worker and now == self.die_at and not (self.die_once and Path(self.die_once).exists()):
            if self.die_once:
                Path(self.die_once).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if in_worker and now == self.hang_at:
            time.sleep(3600)
        if now == self.connection_error_at:
            raise ConnectionError("simulator socket reset")
        if now == self.sigterm_at and self.task is not None and self.task.split == "test":
            os.kill(os.getpid(), signal.SIGTERM)
        self._pos = self._pos + 0.2 * np.clip(np.asarray(action, np.float64), -1, 1)
        self._t += 1
        dist = float(np.linalg.norm(self._pos - np.asarray(self.task.params)))
        obs = self._pos.astype(np.float32)
        if now == self.nan_obs_at:
            obs = np.full(2, np.nan, np.float32)
        reward = np.nan if now == self.nan_reward_at else -dist
        return obs, reward, False, self._t >= self.horizon, {"success": float(dist < 0.2)}


def faulty_family(seed: int = 0, task: str | None = None, num_tasks: int = 4, horizon: int = 4,
                  nan_obs_at: int = -1, nan_reward_at: int = -1, die_at: int = -1, die_once: str = "",
                  sigterm_at: int = -1, factory_raises: bool = False, goal_angle: float = 0.0) -> Benchmark:
    """The ``Faulty`` benchmark: ``num_tasks`` goals per split on the unit circle, one class
    ``faulty-goal``. ``factory_raises``: this factory itself fails (a plug-in's bug at build time).
    ``goal_angle`` turns every goal (another family's tasks, for the foreign-checkpoint tests)."""
    if factory_raises:
        raise RuntimeError("the simulator's licence file is missing")
    rng = np.random.default_rng(seed)
    make = functools.partial(FaultyEnv, horizon=horizon, nan_obs_at=nan_obs_at, nan_reward_at=nan_reward_at,
                             die_at=die_at, die_once=die_once, sigterm_at=sigterm_at)
    sets = {}
    for split in ("train", "test"):
        angles = rng.uniform(0, 2 * np.pi, num_tasks) + goal_angle
        tasks = tuple(Task("faulty-goal", i, split, (float(np.cos(a)), float(np.sin(a))))
                      for i, a in enumerate(angles))
        sets[split] = TaskSet(split, tasks, make, horizon)
    return Benchmark("Faulty", sets["train"], sets["test"], seed=seed)


class FaultyLearner:
    """Uniform actions from torch's global generator, or the bad ones ``actions`` names (``"weights"``: the
    agent's weights as every slot's action, NaN once they are)."""

    def __init__(self, act_dim: int, actions: str, weight: Any = None) -> None:
        self.act_dim, self.actions, self.weight = act_dim, actions, weight

    def reset(self, num_slots: int) -> None:
        pass

    def act(self, step: StepInput, deterministic: bool = False) -> ActOutput:
        import torch

        n = step.obs.shape[0]
        if self.actions == "strings":
            return ActOutput([["left", "up"]] * n, {})
        if self.actions == "ragged":
            return ActOutput([[0.0, 0.0]] * (n - 1) + [[0.0]], {})
        if self.actions == "weights":
            return ActOutput(torch.tanh(self.weight[:self.act_dim]).repeat(n, 1).numpy(), {})
        return ActOutput((2 * torch.rand(n, self.act_dim) - 1).numpy(), {})

    def observe(self, rollout: Rollout) -> None:
        pass

    def adapt(self) -> None:
        pass


class FaultyAgent:
    """Learns nothing; one episode per slot per iteration. ``sigterm_at`` / ``nan_at``: at that iteration's
    meta-update, send this process (``sigterm_group``: its process group) SIGTERM / make the weights NaN
    (a diverged run)."""

    adapt_episodes = 1
    post_episodes = 0

    def __init__(self, spec: EnvSpec, device: str = "cpu", actions: str = "uniform", sigterm_at: int = -1,
                 nan_at: int = -1, sigterm_group: bool = False) -> None:
        import torch  # here, not at the top: env worker processes import this module and need no torch

        self.spec, self.actions, self.sigterm_at, self.nan_at = spec, actions, sigterm_at, nan_at
        self.sigterm_group = sigterm_group
        self.weight = torch.zeros(8)
        self.updates = 0

    def make_learner(self) -> FaultyLearner:
        return FaultyLearner(self.spec.act_dim, self.actions, self.weight)

    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        import torch

        self.updates += 1
        self.weight += torch.randn(8)  # a state that changes every iteration, from torch's generator
        if self.updates == self.sigterm_at:  # to the whole process group, as Slurm does: workers too
            os.killpg(os.getpgid(0), signal.SIGTERM) if self.sigterm_group else os.kill(os.getpid(), signal.SIGTERM)
        if self.updates == self.nan_at:
            self.weight.fill_(float("nan"))
        return {"meta/weight_norm": float(self.weight.norm())}

    def state_dict(self) -> dict[str, Any]:
        return {"weight": self.weight.clone(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weight, self.updates = state["weight"].clone(), int(state["updates"])


def faulty_agent(spec: EnvSpec, device: str = "cpu", **options: Any) -> FaultyAgent:
    return FaultyAgent(spec, device, **options)


def read_only(monkeypatch: Any, root: Path, errno_: int = errno.EROFS) -> None:
    """Make ``root`` and everything under it read-only for this process (a read-only mount, or with
    ``errno.ENOSPC`` a full disk), by failing the calls that create, write, rename or delete files there
    (``chmod`` cannot: the tests may run as root)."""
    root = Path(root).resolve()

    def inside(path: Any) -> bool:
        try:
            return Path(os.fsdecode(path)).resolve().is_relative_to(root)
        except (TypeError, ValueError):  # a file descriptor
            return False

    def refuse(path: Any) -> None:
        raise OSError(errno_, os.strerror(errno_), os.fsdecode(path))

    def guard(real: Any, writes: Any) -> Any:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if inside(path) and writes(*args, **kwargs):
                refuse(path)
            return real(path, *args, **kwargs)
        return call

    writing_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    monkeypatch.setattr(os, "open", guard(os.open, lambda flags, *a, **k: bool(flags & writing_flags)))
    for name in ("mkdir", "unlink", "rmdir", "remove"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), lambda *a, **k: True))
    for name in ("replace", "rename"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda src, dst, *a, _real=real, **k: refuse(dst) if inside(dst) or inside(src)
                            else _real(src, dst, *a, **k))

    def writes_mode(mode: str = "r", *args: Any, **kwargs: Any) -> bool:
        return any(c in kwargs.get("mode", mode) for c in "wax+")

    monkeypatch.setattr(io, "open", guard(io.open, writes_mode))
    monkeypatch.setattr(builtins, "open", guard(builtins.open, writes_mode))


def register() -> None:
    """Add ``Faulty`` and ``faulty`` to this process's registries (again: a no-op)."""
    register_benchmark("Faulty", faulty_family, overwrite=True)
    register_agent("faulty", faulty_agent, overwrite=True)


if __name__ == "__main__":  # python -m tests.faulty train Faulty --agent faulty ...: the CLI with the plug-in
    from metarl.cli import main

    register()
    sys.exit(main(sys.argv[1:]))

"""MuJoCo-free toy task family for fast tests and examples.

``Toy``: 2-D point navigation to a hidden goal on the unit circle (the goal-finding task of
Finn et al. 2017, MAML, section 5.2, with goals on a circle). The agent sees only its position;
the reward ``-||pos - goal||`` reveals the goal through experience, so a learner that adapts
beats one that can't. Train and test goals are drawn from disjoint arcs of the circle
(train: angles in ``[0, 1.5π)``, test: ``[1.5π, 2π)``), so held-out tasks really are new.

``ToySides``: the same point env with the goal on the x-axis, right or left of the start at distance
``d`` in ``[0.5, 1)``: an easier family where adaptation is still necessary. A policy that can't tell
the side from experience can do no better than staying near the start or betting on one side, while
one that uses the first rewards (moving right brings a right goal closer and a left goal farther)
heads straight to the goal. Train and test distances come from interleaved, disjoint bins of width
0.05 (train ``[0.5, 0.55) ∪ [0.6, 0.65) ∪ ...``, test ``[0.55, 0.6) ∪ [0.65, 0.7) ∪ ...``).
"""

from __future__ import annotations

import functools
import math

import gymnasium as gym
import numpy as np

from metarl.errors import UsageError
from metarl.tasks import Benchmark, TaskSet
from metarl.types import Task

STEP_SIZE = 0.2
"""Largest move per step along each axis."""
SUCCESS_RADIUS = 0.2


class PointGoalEnv(gym.Env):
    """Point at the origin, hidden goal ``task.params = (gx, gy)``.

    obs ``[2]`` float32 position; action ``[2]`` in ``[-1, 1]`` scaled by ``STEP_SIZE``; reward
    ``-distance`` after the move; ``info["success"]`` = distance < ``SUCCESS_RADIUS``. Truncates
    after ``horizon`` steps; terminates on success only when ``terminate_on_success``.
    """

    metadata = {"render_modes": []}

    def __init__(self, horizon: int = 20, terminate_on_success: bool = False) -> None:
        self.horizon = horizon
        self.terminate_on_success = terminate_on_success
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.task: Task | None = None
        self._pos = np.zeros(2)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.task is None:
            raise RuntimeError("PointGoalEnv.reset() before a task was set: assign env.task first")
        self._pos = np.zeros(2)
        self._t = 0
        return self._pos.astype(np.float32), {}

    def step(self, action):
        self._pos = self._pos + STEP_SIZE * np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._t += 1
        dist = float(np.linalg.norm(self._pos - np.asarray(self.task.params)))
        success = dist < SUCCESS_RADIUS
        terminated = bool(success and self.terminate_on_success)
        truncated = (not terminated) and self._t >= self.horizon
        return self._pos.astype(np.float32), -dist, terminated, truncated, {"success": float(success)}


def _goals(rng: np.random.Generator, n: int, lo: float, hi: float) -> list[tuple[float, float]]:
    angles = rng.uniform(lo, hi, size=n)  # random order: the first K goals are a fair sample of the arc
    return [(math.cos(a), math.sin(a)) for a in angles]


def toy_goal(seed: int = 0, task: str | None = None, num_tasks: int = 20, horizon: int = 20,
             terminate_on_success: bool = False) -> Benchmark:
    """The ``Toy`` benchmark: ``num_tasks`` train and ``num_tasks`` test goals, one class ``point-goal``."""
    if task is not None:
        raise UsageError(f"Toy has a single task class: drop --task {task}")
    for opt, value, least in (("num_tasks", num_tasks, 1), ("horizon", horizon, 1)):
        if value < least:
            raise UsageError(f"Toy needs {opt} >= {least}, got {value}: pass e.g. {opt}=20")
    rng = np.random.default_rng(seed)
    factory = functools.partial(PointGoalEnv, horizon=horizon, terminate_on_success=terminate_on_success)
    splits = {"train": (0.0, 1.5 * math.pi), "test": (1.5 * math.pi, 2 * math.pi)}
    sets = {
        split: TaskSet(split,
                       tuple(Task("point-goal", i, split, g) for i, g in enumerate(_goals(rng, num_tasks, lo, hi))),
                       factory, horizon)
        for split, (lo, hi) in splits.items()
    }
    return Benchmark("Toy", sets["train"], sets["test"], seed=seed, reward_version=None)


toy_goal.describe = lambda: {  # type: ignore[attr-defined]
    "train": ["point-goal"], "test": ["point-goal"], "tasks_per_class": 20, "eval_tasks_per_class": 20,
    "options": {"num_tasks": "goals per split (20)", "horizon": "episode length (20)",
                "terminate_on_success": "end an episode when the goal is reached (False)"},
}


def _side_goals(rng: np.random.Generator, n: int, split: str) -> list[tuple[float, float]]:
    """``n`` goals on the x-axis, ``n - n // 2`` right of the start and ``n // 2`` left of it, alternating
    right, left, ... (the first K goals of an evaluation cover both sides), in drawn order on each side."""
    bins = np.arange(0 if split == "train" else 1, 10, 2)  # this split's bins of width 0.05 in [0.5, 1)
    sides = []
    for side, k in ((1.0, n - n // 2), (-1.0, n // 2)):
        dist = 0.5 + 0.05 * (rng.choice(bins, size=k, replace=k > len(bins)) + rng.uniform(size=k))
        sides.append([(float(side * d), 0.0) for d in dist])
    right, left = sides
    return [g for pair in zip(right, left, strict=False) for g in pair] + right[len(left):]


def toy_sides(seed: int = 0, task: str | None = None, num_tasks: int = 10, horizon: int = 8) -> Benchmark:
    """The ``ToySides`` benchmark: ``num_tasks`` goals per split, half on each side, class ``point-sides``."""
    if task is not None:
        raise UsageError(f"ToySides has a single task class: drop --task {task}")
    if num_tasks < 2:
        raise UsageError(f"ToySides needs num_tasks >= 2 (one goal per side at least), got {num_tasks}: "
                         "pass e.g. num_tasks=10")
    if horizon < 1:
        raise UsageError(f"ToySides needs horizon >= 1, got {horizon}: pass e.g. horizon=8")
    rng = np.random.default_rng(seed)
    factory = functools.partial(PointGoalEnv, horizon=horizon)
    sets = {split: TaskSet(split,
                           tuple(Task("point-sides", i, split, g)
                                 for i, g in enumerate(_side_goals(rng, num_tasks, split))),
                           factory, horizon)
            for split in ("train", "test")}
    return Benchmark("ToySides", sets["train"], sets["test"], seed=seed, reward_version=None)


toy_sides.describe = lambda: {  # type: ignore[attr-defined]
    "train": ["point-sides"], "test": ["point-sides"], "tasks_per_class": 10, "eval_tasks_per_class": 10,
    "options": {"num_tasks": "goals per split, half on each side (10)", "horizon": "episode length (8)"},
}

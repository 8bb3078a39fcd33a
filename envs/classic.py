"""The classic meta-RL task families: cheetah velocity/direction, ant direction, point navigation.

Every family has one task class, a picklable env factory and options ``horizon`` and (except
``HalfCheetahDir``) ``num_tasks`` / ``num_test_tasks``. The task is hidden: observations are the
plain robot state, so the reward is the only clue. Continuous families draw train and test goals
from disjoint, interleaved bins of the goal range (like ``ToySides``): bins alternate train, test,
train, ...; within a split, bins are used in turn (a seeded permutation) and the goal is uniform in
its bin, so both splits cover the whole range and no test goal is a training goal.

``HalfCheetahVel`` (class ``cheetah-vel``): HalfCheetah-v5 running at a hidden target velocity
``v_goal`` uniform in ``[0, 2]`` m/s, as in Finn et al. 2017, MAML (arXiv:1703.03400), section 5.3
(PEARL, Rakelly et al. 2019, arXiv:1903.08254, uses ``[0, 3]``: option ``max_velocity=3``). Reward
``-|x_velocity - v_goal| - 0.05 |a|^2``: the control weight 0.05 is that of MAML's and PEARL's code
(``half_cheetah_env_rand.py``, ``rlkit/envs/half_cheetah_vel.py``), not gymnasium's 0.1.
20 bins of ``max_velocity / 20`` (0.1 m/s at the default 2).

``HalfCheetahDir`` (class ``cheetah-dir``): run forward (``+1``) or backward (``-1``); reward
``dir * x_velocity - 0.05 |a|^2`` (MAML section 5.3, same control weight). Only two tasks exist, so
**train and test are the same two directions** (as in MAML and PEARL): this family's test split
measures adaptation to a known task, not generalisation to a new one. It is the one family whose
splits overlap.

``AntDir`` (class ``ant-dir``): Ant-v5 walking in a hidden 2-D direction ``θ`` uniform on the
circle; reward ``(x_vel, y_vel)·(cos θ, sin θ) + healthy_reward - 0.5 |a|^2 - contact_cost``, the
reward of ProMP's ``AntRandDirec2DEnv`` (Rothfuss et al. 2019, arXiv:1810.06784) with gymnasium's
Ant-v5 weights (same ctrl 0.5 and contact 5e-4) and healthy range ``0.2 <= z <= 1`` (ProMP: ``z >=
0``). PEARL's ant-dir is the forward/backward variant; the full circle with disjoint 22.5° bins
(16 bins) is our choice. Observations exclude contact forces (27 numbers, Ant-v4's default).
Episodes terminate when the ant is unhealthy (gymnasium's rule).

``PointNav`` (class ``point-nav``): MAML's 2-D navigation (section 5.3; ``point_env_randgoal.py``
in MAML's code): the point starts at the origin, goals are uniform in ``[-0.5, 0.5]^2``, an action
in ``[-1, 1]^2`` moves the point by ``0.1 * action`` (MAML's velocity commands clipped to
``±0.1``), reward ``-distance`` after the move (the code's reward; the paper's text says squared
distance), horizon 100, and the episode terminates when the point is within 0.01 of the goal on
both axes (MAML's code). Bins: a 10 x 10 checkerboard of 0.1 cells (train: even cells).

``PointNavSparse`` (class ``point-nav-sparse``): PEARL's sparse point robot
(``rlkit/envs/point_robot.py``, ``SparsePointEnv``): goals on the upper half of the unit circle,
same moves, horizon 20, reward ``1 - distance`` within 0.2 of the goal and 0 outside (PEARL's
``sparse_reward``; PEARL's env returns the dense reward and sparsifies it for the encoder, here the
env returns the sparse one and puts the dense ``-distance`` in ``info["dense_reward"]``). No
termination. 80 train / 20 test goals by default (PEARL's config); 20 angle bins of 9°.

Success (``info["success"]`` per step; an episode succeeds if any step does):
    cheetah-vel: the mean x-velocity over the last ``SUCCESS_WINDOW`` steps (1 s) is within
        ``VEL_TOLERANCE`` (0.2 m/s, a tenth of the default goal range) of ``v_goal``;
    cheetah-dir: the mean velocity along the direction over the last 1 s is >= 1 m/s;
    ant-dir: the mean velocity along ``θ`` over the last 1 s is >= 0.5 m/s;
    point-nav: distance to the goal < 0.1; point-nav-sparse: inside the 0.2 goal radius.
The window is ``min(SUCCESS_WINDOW, horizon)`` steps and must be full before a step can succeed.
These thresholds are ours (the papers report returns only).

MuJoCo envs are built from gymnasium's classes directly (no ``make``, so no 1000-step TimeLimit)
and truncate exactly at ``horizon`` (``truncated``, never ``terminated``); ``reset(seed=...)``
seeds gymnasium's initial-state noise. Observations and actions are float32 Boxes, identical for
every task; actions are clipped to the action space before the reward is computed.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from importlib.metadata import version
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.errors import UsageError
from metarl.tasks import Benchmark, TaskSet
from metarl.types import Task

MUJOCO_HORIZON = 200
"""MAML's and PEARL's episode length for the locomotion families."""
CHEETAH_CTRL_WEIGHT = 0.05
"""``0.5 * 1e-1`` in MAML's and PEARL's cheetah code."""
SUCCESS_WINDOW = 20
"""Steps (1 s of simulated time at dt = 0.05) averaged by the locomotion success rules."""
VEL_TOLERANCE = 0.2
DIR_SPEED = 1.0
ANT_SPEED = 0.5
POINT_STEP = 0.1
"""Largest move per step along each axis of the point families."""
POINT_SUCCESS_RADIUS = 0.1
POINT_DONE_TOLERANCE = 0.01
SPARSE_GOAL_RADIUS = 0.2


# ---------------------------------------------------------------------------------------------
# MuJoCo locomotion envs


class _LocomotionEnv(gym.Env):
    """A gymnasium MuJoCo env with a hidden goal ``task.params`` (a float), read at each reset.

    Subclasses build the inner env and turn its ``info`` into the task reward and the per-step
    quantity the success rule averages. The inner env is ``self.mujoco_env``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # dt = 0.05 s
    camera_distance = 4.0
    """Metres from the tracked torso of the camera :meth:`render` draws from."""

    def __init__(self, horizon: int, render_mode: str | None = None, width: int = 256, height: int = 256) -> None:
        _check_render_mode(render_mode)
        self.horizon = horizon
        self.render_mode, self.size, self._renderer = render_mode, (width, height), None
        self.mujoco_env = self._make_inner()
        inner_obs, inner_act = self.mujoco_env.observation_space, self.mujoco_env.action_space
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, inner_obs.shape, np.float32)
        self.action_space = gym.spaces.Box(inner_act.low.astype(np.float32), inner_act.high.astype(np.float32),
                                           dtype=np.float32)
        self.task: Task | None = None
        self._goal: float | None = None
        self._t = 0
        self._window: deque[float] = deque(maxlen=min(SUCCESS_WINDOW, horizon))

    def _make_inner(self) -> Any:
        raise NotImplementedError

    def _reward(self, goal: float, info: dict) -> tuple[float, float]:
        """(task reward, quantity averaged for success) from the inner env's info."""
        raise NotImplementedError

    def _succeeded(self, goal: float, mean: float) -> bool:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.task is None:
            raise RuntimeError(f"{type(self).__name__}.reset() before a task was set: assign env.task first")
        self._goal = float(self.task.params)
        self._t = 0
        self._window.clear()
        obs, info = self.mujoco_env.reset(seed=seed)
        return obs.astype(np.float32), info

    def step(self, action):
        if self._goal is None:
            raise RuntimeError(f"{type(self).__name__}.step() before reset(): call reset() first")
        action = np.clip(np.asarray(action, dtype=np.float64), self.action_space.low, self.action_space.high)
        obs, _, terminated, _, info = self.mujoco_env.step(action)
        self._t += 1
        reward, progress = self._reward(self._goal, info)
        self._window.append(progress)
        full = len(self._window) == self._window.maxlen
        info["success"] = float(full and self._succeeded(self._goal, float(np.mean(self._window))))
        terminated = bool(terminated)
        truncated = (not terminated) and self._t >= self.horizon
        return obs.astype(np.float32), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``: a frame ``[height, width, 3]`` uint8 from a camera that follows
        the robot (:mod:`metarl.offscreen`); None otherwise. Drawing never changes the simulation."""
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            from metarl.offscreen import OffscreenRenderer, tracking_camera

            camera = tracking_camera(1, self.camera_distance, elevation=-20.0)  # body 1: the torso
            self._renderer = OffscreenRenderer(self.mujoco_env.model, *self.size, camera=camera)
        return self._renderer.render(self.mujoco_env.data)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.mujoco_env.close()


class CheetahVelEnv(_LocomotionEnv):
    """HalfCheetah-v5, ``task.params`` = target velocity (m/s); reward ``-|v - v_goal| - 0.05|a|^2``."""

    def _make_inner(self) -> Any:
        from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

        return HalfCheetahEnv(ctrl_cost_weight=CHEETAH_CTRL_WEIGHT)

    def _reward(self, goal: float, info: dict) -> tuple[float, float]:
        v = float(info["x_velocity"])
        info["reward_forward"] = -abs(v - goal)
        return info["reward_forward"] + float(info["reward_ctrl"]), v

    def _succeeded(self, goal: float, mean: float) -> bool:
        return abs(mean - goal) < VEL_TOLERANCE


class CheetahDirEnv(CheetahVelEnv):
    """HalfCheetah-v5, ``task.params`` = direction ``+1.0`` or ``-1.0``; reward ``dir * v - 0.05|a|^2``."""

    def _reward(self, goal: float, info: dict) -> tuple[float, float]:
        info["reward_forward"] = goal * float(info["x_velocity"])
        return info["reward_forward"] + float(info["reward_ctrl"]), info["reward_forward"]

    def _succeeded(self, goal: float, mean: float) -> bool:
        return mean >= DIR_SPEED


class AntDirEnv(_LocomotionEnv):
    """Ant-v5 (27-number obs), ``task.params`` = direction angle θ (radians); terminates when unhealthy."""

    camera_distance = 6.0

    def _make_inner(self) -> Any:
        from gymnasium.envs.mujoco.ant_v5 import AntEnv

        return AntEnv(include_cfrc_ext_in_observation=False)

    def _reward(self, goal: float, info: dict) -> tuple[float, float]:
        along = math.cos(goal) * float(info["x_velocity"]) + math.sin(goal) * float(info["y_velocity"])
        info["reward_forward"] = along
        costs = float(info["reward_ctrl"]) + float(info["reward_contact"])  # both <= 0
        return along + float(info["reward_survive"]) + costs, along

    def _succeeded(self, goal: float, mean: float) -> bool:
        return mean >= ANT_SPEED


# ---------------------------------------------------------------------------------------------
# point navigation (no MuJoCo)


class PointNavEnv(gym.Env):
    """Point at the origin, hidden goal ``task.params = (gx, gy)``, read at each reset.

    obs ``[2]`` float32 position; action ``[2]`` in ``[-1, 1]`` moves by ``POINT_STEP * action``.
    Dense (``sparse=False``, MAML): reward ``-distance``, terminates within ``POINT_DONE_TOLERANCE``
    of the goal on both axes, success at distance < ``POINT_SUCCESS_RADIUS``. Sparse (PEARL):
    reward ``1 - distance`` within ``SPARSE_GOAL_RADIUS`` else 0, never terminates, success inside
    the radius. Both truncate after ``horizon`` steps; ``info["dense_reward"]`` is ``-distance``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, horizon: int = 100, sparse: bool = False, render_mode: str | None = None,
                 width: int = 256, height: int = 256) -> None:
        _check_render_mode(render_mode)
        self.horizon = horizon
        self.sparse = sparse
        self.render_mode, self.size = render_mode, (width, height)
        self._trail: list[np.ndarray] = []
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.task: Task | None = None
        self._goal: np.ndarray | None = None
        self._pos = np.zeros(2)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.task is None:
            raise RuntimeError("PointNavEnv.reset() before a task was set: assign env.task first")
        self._goal = np.asarray(self.task.params, dtype=np.float64)
        self._pos = np.zeros(2)
        self._t = 0
        self._trail = [self._pos] if self.render_mode else []
        return self._pos.astype(np.float32), {}

    def step(self, action):
        if self._goal is None:
            raise RuntimeError("PointNavEnv.step() before reset(): call reset() first")
        self._pos = self._pos + POINT_STEP * np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._t += 1
        delta = self._pos - self._goal
        dist = float(np.linalg.norm(delta))
        if self.sparse:
            success = dist <= SPARSE_GOAL_RADIUS
            reward = 1.0 - dist if success else 0.0
            terminated = False
        else:
            success = dist < POINT_SUCCESS_RADIUS
            reward = -dist
            terminated = bool((np.abs(delta) < POINT_DONE_TOLERANCE).all())
        truncated = (not terminated) and self._t >= self.horizon
        if self.render_mode:
            self._trail.append(self._pos)
        info = {"success": float(success), "dense_reward": -dist}
        return self._pos.astype(np.float32), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``: the plane from above, goal, path and point
        (:func:`metarl.envs.frames.draw_point`); None otherwise."""
        if self.render_mode != "rgb_array":
            return None
        if self._goal is None:
            raise RuntimeError("PointNavEnv.render() before reset(): call reset() first")
        from metarl.envs.frames import draw_point

        radius = SPARSE_GOAL_RADIUS if self.sparse else POINT_SUCCESS_RADIUS
        return draw_point(self._pos, self._trail, self._goal, radius, 1.2 if self.sparse else 0.7, *self.size)


# ---------------------------------------------------------------------------------------------
# task generation and factories


def _check_render_mode(render_mode: str | None) -> None:
    if render_mode not in (None, "rgb_array"):
        raise UsageError(f"render_mode {render_mode!r} is not supported: these envs render 'rgb_array' frames")



def _interleaved(rng: np.random.Generator, n: int, lo: float, hi: float, num_bins: int, split: str) -> np.ndarray:
    """``n`` values in ``[lo, hi)``: bins ``0, 2, 4, ...`` (train) or ``1, 3, ...`` (test) of
    ``num_bins`` equal bins, each bin of the split used in turn (seeded order), uniform within it. Kept in
    that order, not sorted: evaluations of the first K tasks (``--eval-tasks K``, periodic ones) then see
    K different bins spread over the range, not its low end."""
    bins = np.arange(0 if split == "train" else 1, num_bins, 2)
    chosen = np.resize(rng.permutation(bins), n)
    return lo + (hi - lo) / num_bins * (chosen + rng.uniform(size=n))


def _checkerboard(rng: np.random.Generator, n: int, lo: float, hi: float, cells: int,
                  split: str) -> list[tuple[float, float]]:
    """``n`` points in ``[lo, hi)^2`` from the split's colour of a ``cells x cells`` checkerboard, cells in
    seeded order (not sorted: the first K tasks are K different cells anywhere on the board)."""
    ij = [(i, j) for i in range(cells) for j in range(cells) if (i + j) % 2 == (0 if split == "train" else 1)]
    chosen = np.resize(rng.permutation(len(ij)), n)
    width = (hi - lo) / cells
    pts = [(lo + width * (ij[c][0] + rng.uniform()), lo + width * (ij[c][1] + rng.uniform())) for c in chosen]
    return [(float(x), float(y)) for x, y in pts]


def _check(name: str, task: str | None, horizon: int, counts: dict[str, int]) -> None:
    if task is not None:
        raise UsageError(f"{name} has a single task class: drop --task {task}")
    if horizon < 1:
        raise UsageError(f"{name} needs horizon >= 1, got {horizon}: pass e.g. horizon=200")
    for opt, n in counts.items():
        if n < 1:
            raise UsageError(f"{name} needs {opt} >= 1, got {n}: pass e.g. {opt}=10")


def _benchmark(name: str, cls: str, seed: int, factory: Any, horizon: int, params: dict[str, list],
               info: dict) -> Benchmark:
    sets = {split: TaskSet(split, tuple(Task(cls, i, split, p) for i, p in enumerate(ps)), factory, horizon)
            for split, ps in params.items()}
    return Benchmark(name, sets["train"], sets["test"], seed=seed, info=info)


def _mujoco_source(env_id: str) -> str:
    return f"gymnasium {version('gymnasium')} {env_id}, mujoco {version('mujoco')}"


def half_cheetah_vel(seed: int = 0, task: str | None = None, num_tasks: int = 40, num_test_tasks: int = 10,
                     horizon: int = MUJOCO_HORIZON, max_velocity: float = 2.0) -> Benchmark:
    """``HalfCheetahVel``: target velocities in ``[0, max_velocity]`` (MAML: 2), disjoint interleaved bins."""
    _check("HalfCheetahVel", task, horizon, {"num_tasks": num_tasks, "num_test_tasks": num_test_tasks})
    if not max_velocity > 0:
        raise UsageError(f"HalfCheetahVel needs max_velocity > 0, got {max_velocity}: pass e.g. max_velocity=2")
    rng = np.random.default_rng(seed)
    params = {split: [float(v) for v in _interleaved(rng, n, 0.0, max_velocity, 20, split)]
              for split, n in (("train", num_tasks), ("test", num_test_tasks))}
    return _benchmark("HalfCheetahVel", "cheetah-vel", seed, functools.partial(CheetahVelEnv, horizon=horizon),
                      horizon, params, {"source": _mujoco_source("HalfCheetah-v5"),
                                        "goal_range": [0.0, float(max_velocity)]})


def half_cheetah_dir(seed: int = 0, task: str | None = None, horizon: int = MUJOCO_HORIZON) -> Benchmark:
    """``HalfCheetahDir``: directions +1 and -1; train and test are the SAME two tasks (by construction)."""
    _check("HalfCheetahDir", task, horizon, {})
    params = {split: [1.0, -1.0] for split in ("train", "test")}
    return _benchmark("HalfCheetahDir", "cheetah-dir", seed, functools.partial(CheetahDirEnv, horizon=horizon),
                      horizon, params, {"source": _mujoco_source("HalfCheetah-v5"),
                                        "note": "train and test are the same two directions (+1, -1)",
                                        "shared_tasks": "only two directions exist (as in MAML and PEARL)"})


def ant_dir(seed: int = 0, task: str | None = None, num_tasks: int = 40, num_test_tasks: int = 10,
            horizon: int = MUJOCO_HORIZON) -> Benchmark:
    """``AntDir``: direction angles on the full circle, disjoint interleaved 22.5° bins."""
    _check("AntDir", task, horizon, {"num_tasks": num_tasks, "num_test_tasks": num_test_tasks})
    rng = np.random.default_rng(seed)
    params = {split: [float(v) for v in _interleaved(rng, n, 0.0, 2 * math.pi, 16, split)]
              for split, n in (("train", num_tasks), ("test", num_test_tasks))}
    return _benchmark("AntDir", "ant-dir", seed, functools.partial(AntDirEnv, horizon=horizon), horizon, params,
                      {"source": _mujoco_source("Ant-v5")})


def point_nav(seed: int = 0, task: str | None = None, num_tasks: int = 40, num_test_tasks: int = 10,
              horizon: int = 100) -> Benchmark:
    """``PointNav``: MAML's dense 2-D navigation, goals in ``[-0.5, 0.5]^2`` from a disjoint checkerboard."""
    _check("PointNav", task, horizon, {"num_tasks": num_tasks, "num_test_tasks": num_test_tasks})
    rng = np.random.default_rng(seed)
    params = {split: _checkerboard(rng, n, -0.5, 0.5, 10, split)
              for split, n in (("train", num_tasks), ("test", num_test_tasks))}
    return _benchmark("PointNav", "point-nav", seed, functools.partial(PointNavEnv, horizon=horizon), horizon,
                      params, {"source": "numpy"})


def point_nav_sparse(seed: int = 0, task: str | None = None, num_tasks: int = 80, num_test_tasks: int = 20,
                     horizon: int = 20) -> Benchmark:
    """``PointNavSparse``: PEARL's sparse point robot, goals on the upper unit half circle."""
    _check("PointNavSparse", task, horizon, {"num_tasks": num_tasks, "num_test_tasks": num_test_tasks})
    rng = np.random.default_rng(seed)
    params = {split: [(math.cos(a), math.sin(a)) for a in _interleaved(rng, n, 0.0, math.pi, 20, split)]
              for split, n in (("train", num_tasks), ("test", num_test_tasks))}
    return _benchmark("PointNavSparse", "point-nav-sparse", seed,
                      functools.partial(PointNavEnv, horizon=horizon, sparse=True), horizon, params,
                      {"source": "numpy"})


def _describe(cls: str, train: int, test: int, options: dict[str, str], **extra: Any):
    return lambda: {"train": [cls], "test": [cls], "tasks_per_class": train, "eval_tasks_per_class": test,
                    "options": options, **extra}


def _count_options(train: int, test: int, horizon: int) -> dict[str, str]:
    return {"num_tasks": f"training tasks ({train})", "num_test_tasks": f"held-out test tasks ({test})",
            "horizon": f"episode length ({horizon})"}


half_cheetah_vel.describe = _describe(  # type: ignore[attr-defined]
    "cheetah-vel", 40, 10, {**_count_options(40, 10, MUJOCO_HORIZON),
                            "max_velocity": "target velocities are uniform in [0, max_velocity] m/s (2; PEARL: 3)"})
half_cheetah_dir.describe = _describe(  # type: ignore[attr-defined]
    "cheetah-dir", 2, 2, {"horizon": f"episode length ({MUJOCO_HORIZON})"},
    note="only two tasks (+1, -1): train and test are the same two directions, as in MAML and PEARL")
ant_dir.describe = _describe("ant-dir", 40, 10, _count_options(40, 10, MUJOCO_HORIZON))  # type: ignore[attr-defined]
point_nav.describe = _describe("point-nav", 40, 10, _count_options(40, 10, 100))  # type: ignore[attr-defined]
point_nav_sparse.describe = _describe(  # type: ignore[attr-defined]
    "point-nav-sparse", 80, 20, _count_options(80, 20, 20))

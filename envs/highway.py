"""``Highway``: scenario adaptation on highway-env's ``highway-v0`` (Leurent 2018, highway-env 1.12.1).

The agent drives one car on a straight multi-lane highway among IDM/MOBIL traffic. Every task is a
*scenario* whose parameters the agent never sees and has to infer by driving (:class:`Scenario`):

* **traffic**: lane count (2-4) and density (upstream's ``vehicles_density``: spawn gaps shrink as
  ``1 / density``); the number of spawned cars follows from them so that the road ahead is filled for the
  whole episode;
* **other drivers**: IDM desired time headway, jam distance and comfortable acceleration; MOBIL
  politeness, lane-change threshold and the largest braking a lane change may impose on the new follower.
  They are set on every other car after each reset (instance attributes shadow upstream's class
  constants, which ``IDMVehicle`` reads as ``self.X``). Upstream's per-car random IDM exponent
  (``randomize_behavior``) is kept. The ego car gets ``target_speed = 30`` m/s, which MOBIL reads when
  other cars weigh merging in front of it (upstream's continuous-action ego car has none, so MOBIL
  takes it for a car that wants to stop and no car ever cuts in ahead of it);
* **preference**: the speed at which the speed reward saturates (``reward_speed_range = [v - 10, v]``)
  and the weight of speed against keeping right (``high_speed_reward = 0.5 w``,
  ``right_lane_reward = 0.5 (1 - w)``; upstream's defaults are ``v = 30``, ``w = 0.8``).

Env (:class:`HighwayTaskEnv`, wrapping ``highway_env.envs.HighwayEnv``), identical for every task:

* observation ``[35]`` float32 in ``[-1, 1]``: upstream's ``Kinematics`` observation of the ego car and
  the 4 nearest cars ahead (or up to 10 m behind), 7 features each (``presence, x, y, vx, vy, cos_h,
  sin_h``), flattened row by row; ego row absolute (its x saturates at 1 past 200 m, as upstream's
  does), other rows relative to the ego; normalised with fixed
  ranges (x ±200 m, y ±16 m, vx and vy ±80 m/s, then clipped) so the lane count changes neither the shape
  nor the scale (upstream scales y by the lane count); missing cars are zero rows;
* action ``[2]`` float32 in ``[-1, 1]``: upstream's ``ContinuousAction``: ``a0`` acceleration
  ``5 a0`` m/s², ``a1`` front-wheel angle ``max_steering · a1`` rad (default ``π/36`` = 5°; upstream's
  ``π/4`` turns a car at 25 m/s off the road within one step). Held for one policy step;
* timing: ``POLICY_FREQUENCY`` = 2 decisions/s, ``SIMULATION_FREQUENCY`` = 10 Hz (5 simulation frames per
  step); ``horizon`` steps (default 40 = 20 s);
* reward: upstream's ``highway-v0`` reward with the task's weights: ``lmap(-1 · crashed + 0.5 w · speed
  term + 0.5 (1 - w) · lane / (lanes - 1), [-1, 0.5] -> [0, 1])``, times 0 while off the road; the
  speed term is the forward speed mapped from ``[v - 10, v]`` to ``[0, 1]`` and clipped;
* ``terminated``: upstream's ``_is_terminated()`` with ``offroad_terminal=True``: the ego car crashed
  or left the road (upstream's default only ends on a crash). ``truncated``: the ``horizon``-th step of
  an episode that did not terminate on it (upstream can report both on the same step; here a crash
  wins). metarl counts steps itself, so no float rounding of upstream's clock can move the boundary;
* ``info["success"]``: 1.0 on the step that truncates the episode (horizon reached without a crash, on
  the road) if the ego car's mean forward speed over the episode was at least ``SUCCESS_MIN_SPEED`` =
  15 m/s (other cars are spawned ahead only, so stopping or reversing would otherwise be a safe
  "success"); 0.0 on every other step. ``info`` also has ``crashed`` and ``speed`` (m/s).

Splits (``num_tasks`` train, ``num_test_tasks`` test scenarios, same seed -> same tasks): density ×
headway is cut into a 4 × 4 checkerboard over ``[0.6, 1.5] × [1.0, 2.0] s``; ``train`` draws from the
even cells and the default ``test="interpolate"`` split from the odd ones, all other parameters from the
same ranges (see ``TRAIN_RANGES``). ``test="extrapolate"``: denser (1.5-2.0) and more aggressive traffic
than any training scenario: shorter headway (0.5-1.0 s) and jam distance (4-7 m), harder acceleration
(4-5 m/s²), less politeness (0-0.25), readier (0-0.1 m/s² gain) and rougher (2.5-4 m/s² imposed
braking) lane changes (``EXTRAPOLATE_RANGES``); lanes, target speed and weight as in training.

``reset(seed=s)`` reseeds upstream's ``np_random``, which places and spawns all traffic: same seed and
task -> same traffic. ``render_mode="rgb_array"`` returns upstream's 600 × 150 frames (offscreen; no
window). Needs ``pip install 'metarl[driving]'`` (highway-env 1.12.1); this module imports without it.

Speed: upstream's simulator is pure Python and quadratic in the number of cars (every IDM car scans
all cars for its neighbours every frame). One env on one core (``OMP_NUM_THREADS=1``, 2-core dev machine,
CPU time of the stepping process; wall clock was 15-40 % lower with a training job beside it): ~40
steps/s in training and interpolation-test scenarios (~22 cars on average, default horizon), ~15 steps/s
in extrapolation-test scenarios (~38 cars); a reset costs less than a step.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.errors import UsageError
from metarl.tasks import Benchmark, TaskSet
from metarl.types import Task

TASK_CLASS = "highway"
POLICY_FREQUENCY = 2
"""Decisions per second (one env step = 1 / POLICY_FREQUENCY s)."""
SIMULATION_FREQUENCY = 10
"""Simulation frames per second; a multiple of POLICY_FREQUENCY (upstream truncates the ratio)."""
HORIZON = 40
MAX_HORIZON = 200
"""Longest episode (100 s); cars to spawn, and so the cost of a step, grow with the horizon."""
OBSERVED_VEHICLES = 5
FEATURES = ("presence", "x", "y", "vx", "vy", "cos_h", "sin_h")
MAX_LANES = 4
LANE_WIDTH = 4.0
FEATURES_RANGE = {"x": [-200.0, 200.0], "y": [-LANE_WIDTH * MAX_LANES, LANE_WIDTH * MAX_LANES],
                  "vx": [-80.0, 80.0], "vy": [-80.0, 80.0]}
"""Upstream's default ranges for 4 lanes, fixed for every lane count."""
MAX_STEERING = math.pi / 36
ACCELERATION_RANGE = (-5.0, 5.0)
SPEED_LIMIT = 30.0
"""Upstream's lane speed limit (m/s): other cars drive at 0.7-0.8 of it and never above it."""
PERCEPTION = 200.0
"""Upstream's perception distance (m)."""
SUCCESS_MIN_SPEED = 15.0
"""Least mean forward speed (m/s) of a successful episode: half the speed limit."""
SPEED_SPAN = 10.0
"""The speed reward rises from 0 at ``target_speed - SPEED_SPAN`` to 1 at ``target_speed`` (m/s)."""
BINS = 4
"""Checkerboard bins per axis (density, headway) for the interpolation split."""

TRAIN_RANGES: dict[str, tuple[float, float]] = {
    "density": (0.6, 1.5),
    "time_wanted": (1.0, 2.0),
    "distance_wanted": (7.0, 13.0),
    "comfort_acc_max": (2.0, 4.0),
    "politeness": (0.25, 0.75),
    "lane_change_min_acc_gain": (0.1, 0.4),
    "lane_change_max_braking_imposed": (1.5, 2.5),
    "target_speed": (25.0, 35.0),
    "speed_weight": (0.5, 1.0),
}
"""Ranges of the training (and interpolation test) scenarios; lanes are drawn from ``LANES``."""
EXTRAPOLATE_RANGES: dict[str, tuple[float, float]] = {
    **TRAIN_RANGES,
    "density": (1.5, 2.0),
    "time_wanted": (0.5, 1.0),
    "distance_wanted": (4.0, 7.0),
    "comfort_acc_max": (4.0, 5.0),
    "politeness": (0.0, 0.25),
    "lane_change_min_acc_gain": (0.0, 0.1),
    "lane_change_max_braking_imposed": (2.5, 4.0),
}
"""Test ranges with ``test="extrapolate"``: traffic parameters beyond training's, toward aggression."""
LANES = (2, 3, 4)
TEST_MODES = ("interpolate", "extrapolate")


@dataclass(frozen=True)
class Scenario:
    """Hidden parameters of one task (``Task.params``); hashable and picklable.

    Attributes:
        lanes: number of lanes (2-4).
        density: upstream's ``vehicles_density`` (spawn gap factor ``1 / density``; 1 = upstream default).
        vehicles: cars spawned besides the ego car (upstream's ``vehicles_count``), derived from
            ``lanes``, ``density`` and the horizon so the road ahead stays populated.
        time_wanted: IDM desired time headway ``TIME_WANTED`` (s; upstream 1.5).
        distance_wanted: IDM jam distance ``DISTANCE_WANTED``, centre to centre (m; upstream 10 = 5 m
            gap + 5 m car length).
        comfort_acc_max: IDM comfortable acceleration ``COMFORT_ACC_MAX`` (m/s²; upstream 3).
        politeness: MOBIL ``POLITENESS`` (0-1; upstream 0).
        lane_change_min_acc_gain: MOBIL threshold ``LANE_CHANGE_MIN_ACC_GAIN`` (m/s²; upstream 0.2).
        lane_change_max_braking_imposed: MOBIL safety limit ``LANE_CHANGE_MAX_BRAKING_IMPOSED``
            (m/s²; upstream 2).
        target_speed: forward speed at which the speed reward saturates (m/s; upstream 30).
        speed_weight: share ``w`` of speed in the positive reward, ``1 - w`` for keeping right
            (upstream 0.8).
    """

    lanes: int
    density: float
    vehicles: int
    time_wanted: float
    distance_wanted: float
    comfort_acc_max: float
    politeness: float
    lane_change_min_acc_gain: float
    lane_change_max_braking_imposed: float
    target_speed: float
    speed_weight: float

    def config(self) -> dict[str, Any]:
        """The upstream ``HighwayEnv`` config entries this scenario sets."""
        return {
            "lanes_count": self.lanes,
            "vehicles_count": self.vehicles,
            "vehicles_density": self.density,
            "reward_speed_range": [self.target_speed - SPEED_SPAN, self.target_speed],
            "high_speed_reward": 0.5 * self.speed_weight,
            "right_lane_reward": 0.5 * (1.0 - self.speed_weight),
            "collision_reward": -1.0,
        }

    def driver(self) -> dict[str, float]:
        """IDM/MOBIL attributes set on every other car (upstream's attribute names)."""
        return {
            "TIME_WANTED": self.time_wanted,
            "DISTANCE_WANTED": self.distance_wanted,
            "COMFORT_ACC_MAX": self.comfort_acc_max,
            "POLITENESS": self.politeness,
            "LANE_CHANGE_MIN_ACC_GAIN": self.lane_change_min_acc_gain,
            "LANE_CHANGE_MAX_BRAKING_IMPOSED": self.lane_change_max_braking_imposed,
        }


def vehicles_for(lanes: int, density: float, horizon: int) -> int:
    """Cars to spawn so traffic covers ``PERCEPTION + 15 m/s · episode`` ahead of the ego car.

    Upstream spawns each car ahead of the previous one, ``(12 + speed) / density · exp(-5 lanes / 40)``
    metres further on average, with speeds 0.7-0.8 of the speed limit (mean 22.5 m/s).
    """
    span = PERCEPTION + 15.0 * horizon / POLICY_FREQUENCY
    gap = (12.0 + 0.75 * SPEED_LIMIT) / density * math.exp(-5.0 * lanes / 40.0)
    return max(1, math.ceil(span / gap))


def _highway() -> Any:
    """The ``highway_env`` package, imported on first use."""
    try:
        import highway_env
        from highway_env.envs.highway_env import HighwayEnv  # noqa: F401
    except ImportError as e:
        raise UsageError(f"the Highway benchmark needs highway-env ({e}): pip install 'metarl[driving]' "
                         "(or pip install highway-env==1.12.1)") from None
    return highway_env


class HighwayTaskEnv(gym.Env):
    """``highway-v0`` with a task-switchable :class:`Scenario`; set ``env.task`` before ``reset()``.

    Spaces, reward, termination and success are described in the module docstring. ``render()``
    (with ``render_mode="rgb_array"``) returns an ``[150, 600, 3]`` uint8 frame.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": POLICY_FREQUENCY}

    def __init__(self, horizon: int = HORIZON, max_steering: float = MAX_STEERING,
                 render_mode: str | None = None) -> None:
        _highway()
        from highway_env.envs.highway_env import HighwayEnv

        if render_mode not in (None, "rgb_array"):
            raise UsageError(f"render_mode {render_mode!r} is not supported: use None or 'rgb_array'")
        self.horizon = horizon
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (OBSERVED_VEHICLES * len(FEATURES),), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.task: Task | None = None
        self._t = 0
        self._x0 = 0.0
        if render_mode is not None:
            _prepare_offscreen_rendering()
        config = {
            "observation": {"type": "Kinematics", "vehicles_count": OBSERVED_VEHICLES,
                            "features": list(FEATURES), "features_range": FEATURES_RANGE,
                            "absolute": False, "normalize": True, "clip": True, "order": "sorted"},
            "action": {"type": "ContinuousAction", "acceleration_range": ACCELERATION_RANGE,
                       "steering_range": (-max_steering, max_steering)},
            "simulation_frequency": SIMULATION_FREQUENCY,
            "policy_frequency": POLICY_FREQUENCY,
            "duration": horizon / POLICY_FREQUENCY,
            "offroad_terminal": True,
            "normalize_reward": True,
            "vehicles_count": 1,  # the constructor's own reset stays cheap; tasks set the real count
        }
        self._env = HighwayEnv(config=config, render_mode=render_mode)

    @property
    def upstream(self) -> Any:
        """The wrapped ``highway_env.envs.HighwayEnv``."""
        return self._env

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.task is None:
            raise RuntimeError("HighwayTaskEnv.reset() before a task was set: assign env.task first")
        scenario = self.task.params
        if not isinstance(scenario, Scenario):
            raise TypeError(f"task {self.task.id} is not a Highway task: its params are "
                            f"{type(scenario).__name__}, expected Scenario")
        from highway_env.vehicle.behavior import IDMVehicle

        self._env.configure(scenario.config())
        obs, _ = self._env.reset(seed=seed)
        ego = self._env.vehicle
        # MOBIL rates the ego car as an IDM driver wanting ``getattr(car, "target_speed", 0)``; the
        # continuous-action ego car (a plain ``Vehicle``) has none, so upstream's other cars would see it
        # as wanting to stop and never merge in front of it. Give it the speed limit, as upstream's
        # default (discrete meta-action) ego car has a target speed.
        ego.target_speed = SPEED_LIMIT
        for v in self._env.road.vehicles:
            if v is not ego and isinstance(v, IDMVehicle):
                for name, value in scenario.driver().items():
                    setattr(v, name, value)
        self._t = 0
        self._x0 = float(ego.position[0])
        return obs.reshape(-1), {}

    def step(self, action):
        obs, reward, terminated, _, _ = self._env.step(np.asarray(action, dtype=np.float32))
        self._t += 1
        ego = self._env.vehicle
        terminated = bool(terminated)
        truncated = (not terminated) and self._t >= self.horizon
        success = (truncated and not ego.crashed and bool(ego.on_road)
                   and (ego.position[0] - self._x0) * POLICY_FREQUENCY / self._t >= SUCCESS_MIN_SPEED)
        info = {"success": float(success), "crashed": bool(ego.crashed), "speed": float(ego.speed)}
        return obs.reshape(-1), float(reward), terminated, truncated, info

    def render(self):
        if self.render_mode is None:
            return None
        frame = self._env.render()
        # upstream would also draw (and drop) every intermediate simulation frame of the next step
        self._env.enable_auto_render = False
        return frame

    def close(self) -> None:
        self._env.close()
        super().close()


def _prepare_offscreen_rendering() -> None:
    """Frames without a window or display server.

    highway-env renders ``rgb_array`` frames on an offscreen pygame surface, but it still initialises
    pygame's display; SDL's ``offscreen`` driver needs no display server. SDL's ``dummy`` driver must be
    avoided: highway-env 1.12.1 skips all drawing under it (``EnvViewer.enabled``), so frames are black.
    """
    if os.environ.get("SDL_VIDEODRIVER") in (None, "", "dummy"):
        os.environ["SDL_VIDEODRIVER"] = "offscreen"


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def _cell_bounds(lo: float, hi: float, i: int) -> tuple[float, float]:
    w = (hi - lo) / BINS
    return lo + i * w, lo + (i + 1) * w


def checkerboard_parity(density: float, time_wanted: float) -> int:
    """0 for a training cell of the density × headway checkerboard, 1 for an interpolation-test cell."""
    cells = []
    for value, key in ((density, "density"), (time_wanted, "time_wanted")):
        lo, hi = TRAIN_RANGES[key]
        cells.append(min(BINS - 1, int((value - lo) / (hi - lo) * BINS)))
    return (cells[0] + cells[1]) % 2


def _scenarios(rng: np.random.Generator, n: int, ranges: dict[str, tuple[float, float]],
               parity: int | None, horizon: int) -> list[Scenario]:
    """``n`` scenarios; with ``parity`` (0 train, 1 test), density and headway come from its cells."""
    cells = [(i, j) for i in range(BINS) for j in range(BINS) if parity is not None and (i + j) % 2 == parity]
    out = []
    for _ in range(n):
        values = {key: _uniform(rng, lo_hi) for key, lo_hi in ranges.items()}
        if parity is not None:
            i, j = cells[int(rng.integers(len(cells)))]
            values["density"] = _uniform(rng, _cell_bounds(*ranges["density"], i))
            values["time_wanted"] = _uniform(rng, _cell_bounds(*ranges["time_wanted"], j))
        lanes = int(rng.choice(LANES))
        out.append(Scenario(lanes=lanes, vehicles=vehicles_for(lanes, values["density"], horizon), **values))
    return out


def highway(seed: int = 0, task: str | None = None, test: str = "interpolate", num_tasks: int = 40,
            num_test_tasks: int = 20, horizon: int = HORIZON, max_steering: float = MAX_STEERING,
            render_mode: str | None = None) -> Benchmark:
    """The ``Highway`` benchmark: ``num_tasks`` train and ``num_test_tasks`` test scenarios, class ``highway``."""
    if task is not None:
        raise UsageError(f"Highway has a single task class: drop --task {task}")
    if test not in TEST_MODES:
        raise UsageError(f"unknown test split {test!r}: use test='interpolate' or test='extrapolate'")
    if not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
               for n in (num_tasks, num_test_tasks)):
        raise UsageError("Highway needs whole numbers num_tasks >= 1 and num_test_tasks >= 1")
    if not isinstance(horizon, numbers.Integral) or not 1 <= horizon <= MAX_HORIZON:
        raise UsageError(f"horizon {horizon!r} is outside 1..{MAX_HORIZON}: give a whole number of steps")
    if not isinstance(max_steering, numbers.Real) or not 0 < max_steering <= math.pi / 4:
        raise UsageError(f"max_steering {max_steering!r} is outside (0, π/4] rad: e.g. 0.087 (5 degrees)")
    if render_mode not in (None, "rgb_array"):
        raise UsageError(f"render_mode {render_mode!r} is not supported: use None or 'rgb_array'")
    hw = _highway()
    rng = np.random.default_rng(seed)
    horizon = int(horizon)
    train = _scenarios(rng, int(num_tasks), TRAIN_RANGES, 0, horizon)
    held_out = (_scenarios(rng, int(num_test_tasks), TRAIN_RANGES, 1, horizon) if test == "interpolate"
                else _scenarios(rng, int(num_test_tasks), EXTRAPOLATE_RANGES, None, horizon))
    factory = functools.partial(HighwayTaskEnv, horizon=horizon, max_steering=float(max_steering),
                                render_mode=render_mode)
    sets = {split: TaskSet(split, tuple(Task(TASK_CLASS, i, split, s) for i, s in enumerate(scenarios)),
                           factory, horizon)
            for split, scenarios in (("train", train), ("test", held_out))}
    return Benchmark("Highway", sets["train"], sets["test"], seed=seed, reward_version=None,
                     info={"source": f"highway-env {hw.__version__}", "test": test})


highway.describe = lambda: {  # type: ignore[attr-defined]
    "train": [TASK_CLASS], "test": [TASK_CLASS], "tasks_per_class": 40, "eval_tasks_per_class": 20,
    "options": {
        "test": "interpolate (default: held-out density/headway cells) or extrapolate (denser, more aggressive)",
        "num_tasks": "training scenarios (40)", "num_test_tasks": "test scenarios (20)",
        "horizon": f"episode length in steps of {1 / POLICY_FREQUENCY:g} s ({HORIZON}, at most {MAX_HORIZON}; "
                   "longer episodes spawn more cars and step slower)",
        "max_steering": "front-wheel angle at action 1, rad (π/36)",
        "render_mode": "None or rgb_array (frames for videos)",
    },
}

"""``Driving``: a fast, array-batched driving family for scenario adaptation (no simulator dependency).

Each slot is one car on a one-lane curvy road, simulated with a kinematic bicycle model in road
(Frenet) coordinates and integrated with explicit Euler steps of ``DT`` seconds. All slots step together
in NumPy (:class:`DrivingVectorEnv`), so the family runs at hundreds of thousands of steps per second per
core while a learner adapts to hidden scenario parameters:

* **vehicle**: tyre grip μ (caps lateral acceleration at μ·g: too fast into a bend and the car slides
  wide), steering gain (steering-ratio multiplier) and steering offset (wheel misalignment: the car drifts
  unless the driver trims it), acceleration at full throttle (power-to-mass);
* **road**: curvature ``κ(s) = amp · sin(2π s / wavelength + phase)``; the car sees the curvature at its
  position and 15 m and 30 m ahead (a driver sees the road), but not the amplitude's cause;
* **driver preference**: the cruising speed ``target_speed`` that the passenger wants. It is shown only
  through the reward, as the target velocity of HalfCheetahVel (Finn et al. 2017) is, so a policy that
  cannot adapt can only drive at one speed for all scenarios.

Episode (``horizon`` steps of ``DT`` s, default 100 = 10 s), starting at about 12 m/s near the lane centre:

* observation ``[6]`` float32: lateral offset ``d / LANE_HALF_WIDTH``, heading error ``ψ / 0.2 rad``,
  speed ``v / 10 - 1.5``, and curvature ``κ / 0.02 1/m`` at the car, 15 m and 30 m ahead;
* action ``[2]`` in ``[-1, 1]``: steering (front-wheel angle ``gain · 0.08 rad · a0 + offset``) and
  throttle/brake (``a1 ≥ 0``: ``a1 · accel`` m/s²; ``a1 < 0``: braking up to ``BRAKE · min(μ, 1)`` m/s²);
* reward per step: ``exp(-(v - target_speed)² / 8) - 0.5 (d / LANE_HALF_WIDTH)² - 0.05 a0²``, and
  ``-10`` when the car leaves the road (``|d| > ROAD_HALF_WIDTH``), which *terminates* the episode;
  reaching the horizon *truncates* it;
* ``info["success"]`` is 1 on the last step of an episode that stayed on the road and whose mean speed
  error ``|v - target_speed|`` over its last 40 % of steps is at most ``SPEED_TOLERANCE`` m/s, else 0.

Splits: ``train`` target speeds come from the even 1 m/s bins of [6, 20) m/s and ``test`` from the odd
ones (held-out scenarios within the training ranges); with ``test="extrapolate"`` the test scenarios are
faster (20–25 m/s), more slippery (μ 0.25–0.4) and twitchier (steering gain 1.4–1.8) than any training
scenario. Curvature amplitudes are capped so that every task's target speed is feasible on its road
(peak lateral acceleration ≤ 0.7 μ g at the target speed). Same seed, same tasks.

Speed (``metarl bench envs``): the batched env steps ~1.4M slot-steps/s with 256 slots and ~0.2M with
10 slots on one core of the dev machine; the single-slot :class:`DrivingEnv` (for ``sync``/``shm``
backends) ~35k steps/s.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from metarl.errors import UsageError
from metarl.tasks import Benchmark, TaskSet
from metarl.types import Task

DT = 0.1
"""Integration step, seconds."""
WHEELBASE = 2.7
"""m (a mid-size car)."""
G = 9.81
LANE_HALF_WIDTH = 1.75
"""m: a 3.5 m lane."""
ROAD_HALF_WIDTH = 2.5
"""m: beyond this lateral offset the car is off the road (episode terminates)."""
MAX_STEER = 0.08
"""rad of front-wheel angle at full steering input and gain 1."""
BRAKE = 6.0
"""m/s² of full braking on grip μ ≥ 1."""
MAX_SPEED = 35.0
SPEED_TOLERANCE = 1.5
"""m/s: success needs a mean speed error at most this over the last 40 % of the episode."""
START_SPEED = 12.0
PREVIEW = (0.0, 15.0, 30.0)
"""m ahead at which the car observes the road curvature."""
_PREVIEW = np.array(PREVIEW)
OFF_ROAD_REWARD = -10.0
CLASS_NAME = "drive"


@dataclass(frozen=True)
class DriveParams:
    """Hidden parameters of one driving scenario (the ``params`` of a ``Driving`` task)."""

    target_speed: float
    """m/s, the passenger's preferred cruising speed (seen only through the reward)."""
    grip: float
    """Tyre-road friction μ: ~1 dry asphalt, ~0.5 wet, ~0.3 snow."""
    steer_gain: float
    """Multiplier on the steering ratio (1: 0.08 rad front-wheel angle at full input)."""
    steer_offset: float
    """rad, constant wheel misalignment added to the steering angle."""
    accel: float
    """m/s² at full throttle (power-to-mass)."""
    curve_amp: float
    """1/m, peak road curvature (0.01 = a 100 m radius bend)."""
    curve_wavelength: float
    """m, length of one left-right bend cycle."""
    curve_phase: float
    """rad, phase of the bends at the start."""


_PARAM_NAMES = tuple(f.name for f in fields(DriveParams))


class DrivingVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` cars stepped together in NumPy; autoreset disabled.

    Give every slot a task with ``set_attr("task", tasks)`` (applied at each slot's next reset), then
    ``reset``. ``reset(options={"reset_mask": mask})`` resets only the slots where ``mask [num_envs]``
    is True. ``step(actions [num_envs, 2])`` returns ``obs [num_envs, 6]`` float32, ``reward
    [num_envs]`` float64, ``terminated``/``truncated`` ``[num_envs]`` bool and ``info["success"]``
    ``[num_envs]`` float64.
    """

    metadata = {"autoreset_mode": AutoresetMode.DISABLED, "render_modes": []}

    def __init__(self, num_envs: int, horizon: int = 100) -> None:
        if num_envs < 1 or horizon < 1:
            raise UsageError("DrivingVectorEnv needs num_envs >= 1 and horizon >= 1")
        self.num_envs = num_envs
        self.horizon = horizon
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        n = num_envs
        self._pending: list[Task | None] = [None] * n
        self._p = np.zeros((len(_PARAM_NAMES), n))  # active params, one row per DriveParams field
        self._s, self._d, self._psi, self._v = (np.zeros(n) for _ in range(4))
        self._t = np.zeros(n, dtype=np.int64)
        self._err_sum = np.zeros(n)  # sum of |v - target| over the scored tail of the episode
        # Start-state noise: a counter-based hash of (slot seed, resets since seeding), vectorised, so a
        # slot's episodes depend only on its own seed. Unseeded slots get fresh entropy.
        self._seed = np.random.SeedSequence().generate_state(n, dtype=np.uint64)
        self._resets = np.zeros(n, dtype=np.uint64)
        self._pending_p = np.zeros((len(_PARAM_NAMES), n))
        self._has_task = np.zeros(n, dtype=bool)
        self._ready = np.zeros(n, dtype=bool)  # slot has been reset since construction
        self._wavenumber = self._brake = self._grip_g = self._kappa = np.zeros(n)
        self._tail_start = int(np.ceil(0.6 * horizon))

    # -- tasks -------------------------------------------------------------------------------
    def set_attr(self, name: str, values: Any) -> None:
        if name != "task":
            raise AttributeError(f"DrivingVectorEnv has no settable attribute {name!r} (only 'task')")
        values = [values] * self.num_envs if isinstance(values, Task) else list(values)
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr('task') got {len(values)} tasks for {self.num_envs} slots")
        for task in values:
            if not isinstance(task.params, DriveParams):
                raise TypeError(f"task {task.id} is not a Driving task (params {type(task.params).__name__})")
        self._pending = values
        self._pending_p = np.array([[getattr(t.params, f) for f in _PARAM_NAMES] for t in values]).T
        self._has_task[:] = True

    def get_attr(self, name: str) -> tuple:
        if name != "task":
            raise AttributeError(f"DrivingVectorEnv has no attribute {name!r} to get (only 'task')")
        return tuple(self._pending)  # what set_attr set, as gymnasium's vector envs answer

    def param(self, name: str) -> np.ndarray:
        """``[num_envs]`` current value of the hidden parameter ``name`` (a :class:`DriveParams` field)."""
        return self._p[_PARAM_NAMES.index(name)]

    def curvature(self, s: np.ndarray) -> np.ndarray:
        """Road curvature (1/m) of each slot's road at arc length ``s`` (``[num_envs]`` or ``[k, num_envs]``)."""
        p = self._p
        return p[5] * np.sin(s * self._wavenumber + p[7])

    # -- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        n = self.num_envs
        mask = np.ones(n, dtype=bool) if not options or "reset_mask" not in options else \
            np.asarray(options["reset_mask"], dtype=bool).reshape(-1)
        if mask.shape != (n,):
            raise ValueError(f"reset_mask has {mask.size} entries for {n} slots: give one bool per slot")
        if seed is not None:
            seeds = [seed + i for i in range(n)] if isinstance(seed, (int, np.integer)) else list(seed)
            if len(seeds) != n:
                raise ValueError(f"reset got {len(seeds)} seeds for {n} slots: give an int or one seed per slot")
            given = mask & np.array([s is not None for s in seeds])  # None: that slot continues its stream
            self._seed[given] = np.asarray([0 if s is None else s for s in seeds],
                                           dtype=np.int64).astype(np.uint64)[given]
            self._resets[given] = 0
        if not self._has_task[mask].all():
            raise RuntimeError("DrivingVectorEnv.reset() before a task was set: call set_attr('task', tasks)")
        self._p[:, mask] = self._pending_p[:, mask]
        self._wavenumber = 2 * np.pi / self._p[6]  # per-slot constants of the step, computed once per reset
        self._brake = BRAKE * np.minimum(self._p[1], 1.0)
        self._grip_g = self._p[1] * G
        noise = _uniform(self._seed[mask], self._resets[mask], 3) * 2.0 - 1.0  # [m, 3] in [-1, 1)
        self._resets[mask] += np.uint64(1)
        self._d[mask], self._psi[mask], self._v[mask] = 0.3 * noise[:, 0], 0.02 * noise[:, 1], START_SPEED + noise[:, 2]
        self._s[mask] = 0.0
        self._ready |= mask
        self._t[mask] = 0
        self._err_sum[mask] = 0.0
        return self._obs(), {}

    def step(self, actions):
        if not self._ready.all():
            raise RuntimeError("DrivingVectorEnv.step() before every slot was reset: "
                               "call reset() after set_attr('task', ...)")
        a = np.clip(np.asarray(actions, dtype=np.float64).reshape(self.num_envs, 2), -1.0, 1.0)
        p = self._p
        target, gain, offset, accel = p[0], p[2], p[3], p[4]
        steer, pedal = a[:, 0], a[:, 1]
        v, d, psi = self._v, self._d, self._psi
        kappa = self._kappa  # at the current position, computed with the last observation
        # Longitudinal: throttle scaled by power-to-mass, braking limited by grip.
        acc = pedal * np.where(pedal >= 0.0, accel, self._brake)
        # Lateral: kinematic bicycle yaw rate, capped where the tyres saturate (|v·r| ≤ μ g).
        yaw_rate = v * np.tan(gain * MAX_STEER * steer + offset) / WHEELBASE
        cap = self._grip_g / np.maximum(v, 1.0)
        yaw_rate = np.clip(yaw_rate, -cap, cap)
        s_dot = v * np.cos(psi) / (1.0 - kappa * d)
        self._s = self._s + s_dot * DT
        self._d = d + v * np.sin(psi) * DT
        self._psi = psi + (yaw_rate - kappa * s_dot) * DT
        self._v = np.clip(v + acc * DT, 0.0, MAX_SPEED)
        self._t += 1
        err = np.abs(self._v - target)
        self._err_sum += np.where(self._t > self._tail_start, err, 0.0)
        off_road = np.abs(self._d) > ROAD_HALF_WIDTH
        reward = np.exp(-0.125 * err**2) - 0.5 * (self._d / LANE_HALF_WIDTH) ** 2 - 0.05 * steer**2
        reward = np.where(off_road, OFF_ROAD_REWARD, reward)
        truncated = (self._t >= self.horizon) & ~off_road
        tail = max(self.horizon - self._tail_start, 1)
        success = truncated & (self._err_sum / tail <= SPEED_TOLERANCE)
        info = {"success": success.astype(np.float64), "_success": np.ones(self.num_envs, dtype=bool)}
        return self._obs(), reward, off_road, truncated, info

    def _obs(self) -> np.ndarray:
        obs = np.empty((self.num_envs, 6), dtype=np.float32)
        obs[:, 0] = self._d / LANE_HALF_WIDTH
        obs[:, 1] = self._psi / 0.2
        obs[:, 2] = self._v / 10.0 - 1.5
        kappa = self.curvature(self._s + _PREVIEW[:, None])  # [3, num_envs]
        self._kappa = kappa[0]
        obs[:, 3:] = (kappa / 0.02).T
        return obs

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the physical state: ``s, d`` (m), ``psi`` (rad), ``v`` (m/s), each ``[num_envs]``."""
        return {"s": self._s.copy(), "d": self._d.copy(), "psi": self._psi.copy(), "v": self._v.copy()}


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _uniform(seed: np.ndarray, counter: np.ndarray, k: int) -> np.ndarray:
    """``[len(seed), k]`` floats in [0, 1), a pure function of (seed, counter, column)."""
    base = _splitmix64(_splitmix64(seed) ^ counter)
    cols = _splitmix64(base[:, None] + np.arange(1, k + 1, dtype=np.uint64)[None, :])
    return (cols >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


class DrivingEnv(gym.Env):
    """One-slot :class:`DrivingVectorEnv` as a plain ``gymnasium.Env`` (for the sync/async/shm backends).

    With ``render_mode="rgb_array"``, :meth:`render` draws a ``width`` x ``height`` top-down frame of the
    car on its road (:mod:`metarl.envs.frames`; ``metarl video``)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": round(1 / DT)}

    def __init__(self, horizon: int = 100, render_mode: str | None = None, width: int = 256,
                 height: int = 256) -> None:
        if render_mode not in (None, "rgb_array"):
            raise UsageError(f"render_mode {render_mode!r} is not supported: Driving renders 'rgb_array' frames")
        self._vec = DrivingVectorEnv(1, horizon)
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self.render_mode, self.size = render_mode, (width, height)

    @property
    def task(self) -> Task | None:
        return self._vec._pending[0]

    @task.setter
    def task(self, task: Task) -> None:
        self._vec.set_attr("task", [task])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if not self._vec._has_task[0]:
            raise RuntimeError("DrivingEnv.reset() before a task was set: assign env.task first")
        obs, _ = self._vec.reset(seed=seed)
        return obs[0], {}

    def step(self, action):
        obs, reward, terminated, truncated, info = self._vec.step(np.asarray(action).reshape(1, 2))
        return obs[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), {"success": float(info["success"][0])}

    def state(self) -> dict[str, float]:
        """The car's ``s, d, psi, v`` (see :meth:`DrivingVectorEnv.state`)."""
        return {k: float(v[0]) for k, v in self._vec.state().items()}

    def render(self) -> np.ndarray | None:
        """The current frame ``[height, width, 3]`` uint8 with ``render_mode="rgb_array"``, else None."""
        if self.render_mode != "rgb_array":
            return None
        if not self._vec._ready[0]:
            raise RuntimeError("DrivingEnv.render() before reset(): reset after assigning env.task")
        from metarl.envs.frames import draw_frame

        params = DriveParams(*map(float, self._vec._p[:, 0]))  # the active scenario (set at the last reset)
        return draw_frame(self.state(), params, *self.size)


# -- task generation ------------------------------------------------------------------------
RANGES = {
    "train": {"speed_bins": (6.0, 20.0, 0), "grip": (0.4, 1.0), "steer_gain": (0.6, 1.4)},
    "interpolate": {"speed_bins": (6.0, 20.0, 1), "grip": (0.4, 1.0), "steer_gain": (0.6, 1.4)},
    "extrapolate": {"speed": (20.0, 25.0), "grip": (0.25, 0.4), "steer_gain": (1.4, 1.8)},
}
"""Per split: target speed (1 m/s bins of [lo, hi) with the given parity, or a plain range), grip and
steering-gain ranges. Shared by all splits: steering offset ±0.01 rad, acceleration 1.5–4 m/s², bend
wavelength 100–300 m, curvature amplitude up to 0.01 1/m (less where the target speed needs it)."""


def _scenarios(rng: np.random.Generator, n: int, ranges: dict) -> list[DriveParams]:
    if "speed_bins" in ranges:
        lo, hi, parity = ranges["speed_bins"]
        bins = np.arange(lo + parity, hi, 2.0)
        speed = rng.choice(bins, size=n) + rng.uniform(0.0, 1.0, size=n)
    else:
        speed = rng.uniform(*ranges["speed"], size=n)
    grip = rng.uniform(*ranges["grip"], size=n)
    gain = rng.uniform(*ranges["steer_gain"], size=n)
    offset = rng.uniform(-0.01, 0.01, size=n)
    accel = rng.uniform(1.5, 4.0, size=n)
    amp = np.minimum(rng.uniform(0.0, 0.01, size=n), 0.7 * grip * G / speed**2)
    wavelength = rng.uniform(100.0, 300.0, size=n)
    phase = rng.uniform(0.0, 2 * np.pi, size=n)
    rows = np.stack([speed, grip, gain, offset, accel, amp, wavelength, phase], axis=1)
    return [DriveParams(*map(float, row)) for row in rows]  # random order: any first-K subset is a fair sample


def _make_vector(num_envs: int, horizon: int) -> DrivingVectorEnv:
    return DrivingVectorEnv(num_envs, horizon)


def driving(seed: int = 0, task: str | None = None, num_tasks: int = 50, horizon: int = 100,
            test: str = "interpolate") -> Benchmark:
    """The ``Driving`` benchmark: ``num_tasks`` train and ``num_tasks`` test scenarios, class ``drive``.

    Args:
        seed: fixes every scenario of both splits.
        task: must be None (one task class).
        num_tasks: scenarios per split (default 50, like ML1's goals).
        horizon: steps of ``DT`` = 0.1 s per episode (default 100 = 10 s).
        test: ``"interpolate"`` (held-out target speeds between the training ones, same vehicle and road
            ranges) or ``"extrapolate"`` (faster, more slippery, twitchier than any training scenario).
    """
    if task is not None:
        raise UsageError(f"Driving has a single task class: drop --task {task}")
    if num_tasks < 1 or horizon < 10:
        raise UsageError("Driving needs num_tasks >= 1 and horizon >= 10")
    if test not in ("interpolate", "extrapolate"):
        raise UsageError(f"Driving option test={test!r} is unknown: use test=interpolate or test=extrapolate")
    rng = np.random.default_rng(seed)
    env_factory = functools.partial(DrivingEnv, horizon=horizon)
    vector_factory = functools.partial(_make_vector, horizon=horizon)
    sets = {}
    for split, key in (("train", "train"), ("test", test)):
        params = _scenarios(rng, num_tasks, RANGES[key])
        sets[split] = TaskSet(split, tuple(Task(CLASS_NAME, i, split, p) for i, p in enumerate(params)),
                              env_factory, horizon, vector_factory=vector_factory)
    return Benchmark("Driving", sets["train"], sets["test"], seed=seed, reward_version=None,
                     info={"test": test})


driving.describe = lambda: {  # type: ignore[attr-defined]
    "train": [CLASS_NAME], "test": [CLASS_NAME], "tasks_per_class": 50, "eval_tasks_per_class": 50,
    "options": {"num_tasks": "scenarios per split (50)", "horizon": "steps of 0.1 s per episode (100)",
                "test": "interpolate (default) or extrapolate (faster, more slippery, twitchier scenarios)"},
}


# -- rendering ------------------------------------------------------------------------------
def _episodes(ro: Any, slot: int = 0) -> list[dict[str, np.ndarray]]:
    """Per finished episode of ``slot``: speed, lateral offset, approx. distance, return, success."""
    out = []
    for k in range(ro.episodes):
        m = ro.valid[:, slot] & (ro.episode[:, slot] == k)
        if not m.any():
            continue
        nxt = ro.next_obs[m, slot]
        v = (nxt[:, 2] + 1.5) * 10.0
        out.append({"v": v, "d": nxt[:, 0] * LANE_HALF_WIDTH, "s": np.cumsum(v) * DT,
                    "return": float(ro.rewards[m, slot].sum()), "success": bool(ro.success[m, slot].any())})
    return out


def render_trial(pre: Any, post: Any, task: Task, path: Any, title: str = "") -> None:
    """Draw one adaptation trial of slot 0 as a PNG strip: speed traces, lane view, per-episode outcome.

    Args:
        pre, post: the adaptation and evaluation :class:`metarl.Rollout` of one trial
            (:func:`metarl.evaluator.run_trial`); task: its Driving task; path: PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = _episodes(pre) + _episodes(post)
    n_pre = len(_episodes(pre))
    p: DriveParams = task.params
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2), gridspec_kw={"width_ratios": [1.3, 1.3, 1]})
    cmap = plt.get_cmap("viridis")
    ax = axes[0]
    for k, ep in enumerate(eps):
        t = np.arange(1, len(ep["v"]) + 1) * DT
        if k < n_pre:
            ax.plot(t, ep["v"], color=cmap(k / max(n_pre - 1, 1)), lw=1, alpha=0.8,
                    label="adaptation ep. 1" if k == 0 else (f"adaptation ep. {n_pre}" if k == n_pre - 1 else None))
        else:
            ax.plot(t, ep["v"], color="crimson", lw=2, label="evaluation eps." if k == n_pre else None)
    ax.axhline(p.target_speed, color="k", ls="--", lw=1, label=f"hidden target {p.target_speed:.1f} m/s")
    ax.axhspan(p.target_speed - SPEED_TOLERANCE, p.target_speed + SPEED_TOLERANCE, color="k", alpha=0.08)
    ax.set(xlabel="time in episode (s)", ylabel="speed (m/s)", title="speed: first episode → adapted")
    ax.legend(fontsize=8, loc="best")
    ax = axes[1]
    for k in (0, len(eps) - 1):
        ep = eps[k]
        ax.plot(ep["s"], ep["d"], color="tab:blue" if k == 0 else "crimson", lw=1.5,
                label=f"episode {k + 1}" + (" (adaptation)" if k < n_pre else " (evaluation)"))
    for y, style in ((LANE_HALF_WIDTH, "-"), (-LANE_HALF_WIDTH, "-"), (ROAD_HALF_WIDTH, ":"), (-ROAD_HALF_WIDTH, ":")):
        ax.axhline(y, color="0.4", ls=style, lw=1)
    ax.set(xlabel="distance along the road (m)", ylabel="lateral offset (m)", ylim=(-3, 3),
           title="lane view (solid: lane, dotted: road edge)")
    ax.legend(fontsize=8)
    ax = axes[2]
    ks = np.arange(1, len(eps) + 1)
    colors = ["tab:green" if ep["success"] else "tab:gray" for ep in eps]
    ax.bar(ks, [ep["return"] for ep in eps], color=colors)
    ax.axvline(n_pre + 0.5, color="k", lw=1)
    ax.set(xlabel="episode (green: success)", ylabel="return", title="adaptation | evaluation", xticks=ks)
    fig.suptitle(f"{title}\nhidden: target {p.target_speed:.1f} m/s, grip {p.grip:.2f}, steering gain "
                 f"{p.steer_gain:.2f}, offset {p.steer_offset * 1000:.1f} mrad, accel {p.accel:.1f} m/s², "
                 f"bends ±{p.curve_amp * 1000:.1f}/km", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


driving.render_trial = render_trial  # type: ignore[attr-defined]

"""Meta-World v3 benchmarks ML1, ML10 and ML45 as metarl task distributions.

Each task is one upstream ``metaworld.Task`` (a class plus a goal/object configuration). One env
slot (:class:`MetaWorldTaskEnv`) can take any task of a split: it keeps one upstream env per task
class, built on first use, and sets the task before every reset, so upstream's
``assert self._last_rand_vec is not None`` can't fire.

Seeding: upstream's ``reset(seed=...)`` ignores its seed and goal sampling depends on the
benchmark object's seed (Meta-World issues #555, #350, #437). Here the benchmark is built with
``seed`` (fixing every goal), tasks are frozen (``set_task`` freezes the random vector) and a seed
passed to ``reset`` is forwarded to upstream's ``env.seed()``; the same seed gives the same tasks
and the same resets, in-process or in worker processes.
"""

from __future__ import annotations

import functools
from importlib.metadata import version
from typing import Any

import gymnasium as gym
import metaworld
import numpy as np
from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML10_V3, ML45_V3

from metarl.envs.metaworld_fast import fast_class
from metarl.errors import UsageError
from metarl.registry import did_you_mean
from metarl.tasks import Benchmark, TaskSet
from metarl.types import Task

HORIZON = 500
"""Meta-World's episode length (``max_path_length``)."""
EVAL_GOALS_PER_CLASS = 40
"""ML10/ML45 held-out evaluation: 40 goals per test class (Meta-World's official protocol)."""
REWARD_VERSIONS = ("v2", "v1")
TASK_NAMES: tuple[str, ...] = tuple(sorted(ALL_V3_ENVIRONMENTS))
"""The 50 Meta-World v3 task classes (ML1 accepts any of them)."""
CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
"""The cameras of Meta-World's scenes (``camera`` of a rendering env)."""
DEFAULT_CAMERA = "corner2"
"""The whole table, the arm and the goal in view."""
UPSIDE_DOWN = frozenset({"corner", "corner2", "corner3", "corner4"})
"""Cameras whose frames MuJoCo draws upside down (their up axis points at the floor): turned by 180°."""


_IDLE: dict[tuple[str, bool, str], list[Any]] = {}
"""This process's idle upstream envs by (class, fast, reward version), shared by all its slots."""


def _build_env(name: str, fast: bool, reward_version: str) -> Any:
    """A new upstream-API env of class ``name`` (~130 ms): metarl's fast class or upstream's."""
    cls = ALL_V3_ENVIRONMENTS[name]
    return (fast_class(cls) if fast else cls)(reward_function_version=reward_version)


def _take_env(name: str, fast: bool, reward_version: str) -> Any:
    """An idle upstream env of class ``name`` from this process's pool, or a new one."""
    idle = _IDLE.get((name, fast, reward_version))
    return idle.pop() if idle else _build_env(name, fast, reward_version)


def clear_pool() -> int:
    """Close and drop this process's idle upstream envs (those no slot holds); returns how many. The pool
    keeps envs of closed slots for the next slots of their classes; call this to give that memory back."""
    envs = [env for idle in _IDLE.values() for env in idle]
    _IDLE.clear()
    for env in envs:
        env.close()
    return len(envs)


class MetaWorldTaskEnv(gym.Env):
    """One env slot that can run any task of a Meta-World split.

    Set ``env.task = task`` (a metarl :class:`~metarl.types.Task` wrapping an upstream task) before
    ``reset()``. Observations are ``[39]`` float64 (goal hidden, as in ML benchmarks); actions are
    ``[4]`` in ``[-1, 1]``. Episodes truncate after ``horizon`` steps and never terminate;
    ``info["success"]`` is 0.0 or 1.0 at every step. ``fast=True`` uses the bit-identical faster
    env classes of :mod:`metarl.envs.metaworld_fast`; ``fast=False`` upstream's own. With
    ``render_mode="rgb_array"``, :meth:`render` draws ``width`` x ``height`` frames from ``camera`` (one of
    :data:`CAMERAS`; ``metarl video``); without it nothing about rendering is built or run.

    Memory: each task class needs its own upstream env (~20 MiB private). A slot holds only the env of
    its current class; switching class (or ``close()``) hands that env to a per-process pool, from which
    any slot of the process takes it again later. A process therefore holds at most, per class, as many
    envs as it ever ran slots of that class at once (ML45 with 10 slots in one process: ~1 GiB after
    every class was seen, against ~9 GiB with one env per class per slot); :func:`clear_pool` frees the
    idle ones. A slot that changes class gives its env back at once and takes one at its next
    ``reset()``, so when a vector env sets every slot's task before resetting, an env freed by one slot
    serves another. An upstream env's past tasks don't affect its next episode after ``task`` +
    ``reset`` (tested), so which pooled env a slot gets changes no number.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}  # 5 MuJoCo steps of 2.5 ms per env step

    def __init__(self, reward_version: str = "v2", horizon: int = HORIZON, fast: bool = True,
                 render_mode: str | None = None, camera: str | None = None, width: int = 256,
                 height: int = 256) -> None:
        _check_options(reward_version, horizon)
        _check_render(render_mode, camera)
        self.reward_version = reward_version
        self.horizon = horizon
        self.fast = fast
        self.render_mode, self.camera, self.size = render_mode, camera or DEFAULT_CAMERA, (width, height)
        self._renderer: Any = None
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (39,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._env: Any = None
        self._task: Task | None = None
        self._t = 0

    @property
    def task(self) -> Task | None:
        """The current task; assigning one switches the slot to it (takes effect at the next reset)."""
        return self._task

    @task.setter
    def task(self, task: Task) -> None:
        if task.name not in ALL_V3_ENVIRONMENTS:
            raise UsageError(f"task {task.id!r} is not of a Meta-World v3 class: `metarl envs` lists the 50 names")
        if self._task is not None and task.name != self._task.name:
            self._release()  # the next reset() takes an env of the new class: after a vector env has set
            # every slot's task, so one that leaves a class frees its env for another that enters it
        self._task = task
        if self._env is not None:
            self._env.set_task(task.params)

    def _release(self) -> None:
        """Hand the current upstream env back to this process's pool."""
        if self._env is not None:
            _IDLE.setdefault((self._task.name, self.fast, self.reward_version), []).append(self._env)
        self._env = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self._task is None:
            raise RuntimeError("MetaWorldTaskEnv.reset() before a task was set: assign env.task first")
        if self._env is None:
            self._env = _take_env(self._task.name, self.fast, self.reward_version)
            self._env.set_task(self._task.params)
        if seed is not None:
            self._env.seed(int(seed))
        self._t = 0
        obs, info = self._env.reset()
        return obs, info

    def step(self, action):
        if self._env is None:
            raise RuntimeError("MetaWorldTaskEnv.step() before reset(): reset after assigning env.task")
        obs, reward, terminated, truncated, info = self._env.step(action)
        self._t += 1
        info["success"] = float(info["success"])
        return obs, float(reward), bool(terminated), bool(truncated or self._t >= self.horizon), info

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``: the current frame ``[height, width, 3]`` uint8 from ``camera``
        (MuJoCo's offscreen renderer, :mod:`metarl.offscreen`); None otherwise. Drawing reads the simulation
        and never changes it, so a rendered episode is the episode an unrendered env steps."""
        if self.render_mode != "rgb_array":
            return None
        if self._env is None:
            raise RuntimeError("MetaWorldTaskEnv.render() before reset(): reset after assigning env.task")
        if self._renderer is None or self._renderer.model is not self._env.model:  # a new task class
            from metarl.offscreen import OffscreenRenderer

            self._close_renderer()
            self._renderer = OffscreenRenderer(self._env.model, *self.size, camera=self.camera,
                                               rotate=self.camera in UPSIDE_DOWN)
        return self._renderer.render(self._env.data)

    def _close_renderer(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def close(self) -> None:
        """Return the upstream env to the process's pool (the next slot of its class reuses it); free the
        renderer's GL context."""
        self._close_renderer()
        self._release()
        self._task = None


def _wrap(tasks: list[Any], split: str) -> tuple[Task, ...]:
    """Upstream tasks -> metarl tasks, numbered within each class in upstream order."""
    counts: dict[str, int] = {}
    out = []
    for t in tasks:
        i = counts.get(t.env_name, 0)
        counts[t.env_name] = i + 1
        out.append(Task(name=t.env_name, index=i, split=split, params=t))
    return tuple(out)


def _check_render(render_mode: str | None, camera: str | None) -> None:
    if render_mode not in (None, "rgb_array"):
        raise UsageError(f"render_mode {render_mode!r} is not supported: Meta-World envs render 'rgb_array' frames")
    if camera is not None and camera not in CAMERAS:
        raise UsageError(f"unknown Meta-World camera {camera!r}: use one of {', '.join(CAMERAS)}")


def _check_options(reward_version: str, horizon: int) -> None:
    if reward_version not in REWARD_VERSIONS:
        raise UsageError(f"unknown reward version {reward_version!r}: use one of {', '.join(REWARD_VERSIONS)}")
    if not 1 <= horizon <= HORIZON:
        raise UsageError(f"horizon {horizon} is outside 1..{HORIZON}: Meta-World episodes last at most 500 steps")


def _benchmark(name: str, upstream: Any, seed: int, reward_version: str, horizon: int, task: str | None,
               eval_per_class: int | None, fast: bool) -> Benchmark:
    factory = functools.partial(MetaWorldTaskEnv, reward_version=reward_version, horizon=horizon, fast=fast)
    train = TaskSet("train", _wrap(upstream.train_tasks, "train"), factory, horizon)
    test = TaskSet("test", _wrap(upstream.test_tasks, "test"), factory, horizon, eval_per_class)
    return Benchmark(name, train, test, seed=seed, reward_version=reward_version, task=task,
                     info={"source": f"metaworld {version('metaworld')}"})


def ml1(seed: int = 0, task: str | None = None, reward_version: str = "v2", horizon: int = HORIZON,
        fast: bool = True) -> Benchmark:
    """ML1: one Meta-World task class, 50 training goals and 50 held-out goals (all evaluated)."""
    if task is None:
        raise UsageError("ML1 needs a task class: add --task NAME (e.g. reach-v3); `metarl envs` lists all 50")
    if task not in ALL_V3_ENVIRONMENTS:
        raise UsageError(f"unknown Meta-World task {task!r}{did_you_mean(task, list(ALL_V3_ENVIRONMENTS))}: "
                         "`metarl envs` lists the 50 v3 task names")
    _check_options(reward_version, horizon)
    return _benchmark("ML1", metaworld.ML1(task, seed=seed), seed, reward_version, horizon, task, None, fast)


def _ml_multi(name: str, upstream_cls: Any, seed: int, task: str | None, reward_version: str,
              horizon: int, fast: bool) -> Benchmark:
    if task is not None:
        raise UsageError(f"{name} has fixed task classes: drop --task {task} (use ML1 for a single task)")
    _check_options(reward_version, horizon)
    return _benchmark(name, upstream_cls(seed=seed), seed, reward_version, horizon, None, EVAL_GOALS_PER_CLASS, fast)


def ml10(seed: int = 0, task: str | None = None, reward_version: str = "v2", horizon: int = HORIZON,
         fast: bool = True) -> Benchmark:
    """ML10: 10 training classes, 5 held-out classes (40 goals each in evaluation)."""
    return _ml_multi("ML10", metaworld.ML10, seed, task, reward_version, horizon, fast)


def ml45(seed: int = 0, task: str | None = None, reward_version: str = "v2", horizon: int = HORIZON,
         fast: bool = True) -> Benchmark:
    """ML45: 45 training classes, 5 held-out classes (40 goals each in evaluation)."""
    return _ml_multi("ML45", metaworld.ML45, seed, task, reward_version, horizon, fast)


_OPTIONS = {"reward_version": "v2 (default) or v1", "horizon": f"episode length, at most {HORIZON}",
            "fast": "True (default): bit-identical faster envs; False: upstream's classes"}
ml1.describe = lambda: {  # type: ignore[attr-defined]
    "train": ["<task>"], "test": ["<task>"], "tasks_per_class": 50, "eval_tasks_per_class": 50,
    "task_choices": list(TASK_NAMES), "options": _OPTIONS,
}
ml10.describe = lambda: {  # type: ignore[attr-defined]
    "train": sorted(ML10_V3["train"]), "test": sorted(ML10_V3["test"]), "tasks_per_class": 50,
    "eval_tasks_per_class": EVAL_GOALS_PER_CLASS, "options": _OPTIONS,
}
ml45.describe = lambda: {  # type: ignore[attr-defined]
    "train": sorted(ML45_V3["train"]), "test": sorted(ML45_V3["test"]), "tasks_per_class": 50,
    "eval_tasks_per_class": EVAL_GOALS_PER_CLASS, "options": _OPTIONS,
}


def make_env(env_name: str, task: Any = None, *, fast: bool = True, seed: int | None = None,
             reward_version: str = "v2") -> Any:
    """One upstream-API Meta-World v3 env with its task set, ready to ``reset()``.

    Args:
        env_name: any of the 50 v3 names, e.g. ``"pick-place-v3"``.
        task: an upstream ``metaworld.Task`` (or a metarl Task wrapping one); default: the first
            training goal of ``metaworld.ML1(env_name, seed=seed or 0)``.
        fast: the bit-identical fast class (:mod:`metarl.envs.metaworld_fast`) or upstream's.
        seed: passed to upstream's ``env.seed()``.
    """
    if env_name not in ALL_V3_ENVIRONMENTS:
        raise UsageError(f"unknown Meta-World task {env_name!r}: `metarl envs` lists the 50 v3 task names")
    env = _build_env(env_name, fast, reward_version)
    if task is None:
        task = metaworld.ML1(env_name, seed=seed or 0).train_tasks[0]
    env.set_task(task.params if isinstance(task, Task) else task)
    if seed is not None:
        env.seed(seed)
    return env


class OfficialEvaluatorAdapter:
    """Runs a metarl :class:`~metarl.learner.Learner` inside ``metaworld.evaluation.metalearning_evaluation``.

    Maps upstream's agent protocol (``init / adapt_action / step / adapt / eval_action / reset``)
    onto the Learner's (``reset / act / observe / adapt``). Limits, from upstream's protocol: during
    evaluation episodes upstream passes no rewards, so ``prev_reward`` is 0 there; the rollout given
    to ``observe`` has no ``success`` flags and approximates each episode's final observation by
    the next observation seen. metarl's own :func:`metarl.evaluate` has neither limit; this adapter
    exists to cross-check it against the official code.
    """

    def __init__(self, learner: Any, num_envs: int, deterministic: bool | None = None) -> None:
        """``deterministic``: the evaluation episodes' actions, mean (True) or sampled (False); None: the
        Learner's own choice (its ``eval_deterministic``, default True), as :func:`metarl.evaluate` makes it
        (MAML and RL² sample)."""
        self.learner, self.n = learner, num_envs
        self.deterministic = (bool(getattr(learner, "eval_deterministic", True)) if deterministic is None
                              else deterministic)
        self.init()

    def init(self) -> None:
        self.learner.reset(self.n)
        self._first = np.ones(self.n, dtype=bool)
        self._prev_reward = np.zeros(self.n, dtype=np.float32)
        self._steps: list[tuple] = []

    def _act(self, obs: np.ndarray, deterministic: bool):
        from metarl.types import StepInput

        return self.learner.act(StepInput(np.asarray(obs, np.float32), self._prev_reward, self._first.copy()),
                                deterministic)

    def adapt_action(self, observations: np.ndarray) -> tuple[np.ndarray, dict]:
        out = self._act(observations, deterministic=False)
        self._pending = (np.asarray(observations, np.float32), self._first.copy(), out.extras)
        return out.actions, {}

    def step(self, timestep: Any) -> None:
        obs, first, extras = self._pending
        ended = np.logical_or(timestep.terminated, timestep.truncated)
        self._steps.append((obs, np.asarray(timestep.action, np.float32), np.asarray(timestep.reward, np.float32),
                            np.asarray(timestep.terminated, bool), np.asarray(timestep.truncated, bool), first, extras))
        self._prev_reward = np.asarray(timestep.reward, np.float32)
        self._first = ended

    def adapt(self) -> None:
        if self._steps:
            self.learner.observe(self._rollout())
        self._steps = []
        self.learner.adapt()

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        out = self._act(observations, deterministic=self.deterministic)
        self._first = np.zeros(self.n, dtype=bool)
        return out.actions

    def reset(self, env_mask: np.ndarray) -> None:
        self._first = self._first | np.asarray(env_mask, bool)
        self._prev_reward = np.where(env_mask, 0.0, self._prev_reward).astype(np.float32)

    def _rollout(self):
        from metarl.types import Rollout

        obs, act, rew, term, trunc, first, extras = zip(*self._steps, strict=True)
        obs_a = np.stack(obs)  # [T, N, obs_dim]
        dones = np.stack(term) | np.stack(trunc)
        episode = np.cumsum(dones, axis=0) - dones
        return Rollout(obs=obs_a, actions=np.stack(act), rewards=np.stack(rew),
                       next_obs=np.concatenate([obs_a[1:], obs_a[-1:]]), terminated=np.stack(term),
                       truncated=np.stack(trunc), first=np.stack(first), success=np.zeros_like(dones),
                       episode=episode, valid=np.ones_like(dones),
                       extras={k: np.stack([e[k] for e in extras]) for k in extras[0]},
                       episodes=int(episode.max()) + 1)

"""metarl task distributions as Stable-Baselines3 environments: a new task every trial.

A *trial* is ``trial_episodes`` consecutive episodes of one task (1 by default: a new task every
episode, multi-task training). SB3 sees a trial as one episode: ``done`` only at its end, so a recurrent
policy (sb3-contrib's ``RecurrentPPO``) keeps its memory across the trial's episodes, as RL² does; the
episode ends inside a trial reset the env without telling SB3 (an episode's time limit inside a trial
is part of the trial's dynamics, RL²'s convention). ``with_reward=True`` appends the previous step's
reward and an episode-start flag to the observation (what a policy needs to adapt from the reward alone;
:class:`metarl.sb3.SB3Learner` builds the same inputs at evaluation).

``info["is_success"]`` (SB3's success-rate log) is the trial's last episode's success, ``info["episode"]``
the trial's return and length (SB3's ``rollout/ep_rew_mean``), ``info["terminal_observation"]`` the true
final observation, ``info["TimeLimit.truncated"]`` whether the trial ended by truncation.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from metarl.errors import UsageError
from metarl.tasks import TaskDistribution
from metarl.vector import make_vector_env


def _obs_space(single: gym.spaces.Space, with_reward: bool) -> gym.spaces.Box:
    if not isinstance(single, gym.spaces.Box) or len(single.shape) != 1:
        raise UsageError(f"observation space {single}: metarl.sb3 takes flat Box observations")
    return gym.spaces.Box(-np.inf, np.inf, (single.shape[0] + 2 * with_reward,), np.float32)


def augment(obs: np.ndarray, prev_reward: np.ndarray, first: np.ndarray, with_reward: bool) -> np.ndarray:
    """``obs [N, d]`` as float32, with ``[prev_reward, first]`` appended when ``with_reward``."""
    obs = np.asarray(obs, np.float32).reshape(len(first), -1)
    if not with_reward:
        return obs
    return np.concatenate([obs, np.asarray(prev_reward, np.float32)[:, None], np.asarray(first, np.float32)[:, None]],
                          axis=1)


def _check_trial(trial_episodes: int) -> None:
    if trial_episodes < 1:
        raise UsageError(f"trial_episodes={trial_episodes}: a trial has at least one episode")


class MetaVecEnv(VecEnv):
    """``num_envs`` slots of a task distribution as an SB3 ``VecEnv``, stepped by a metarl vector backend
    (``backend``: auto, native, sync, async, shm; see :mod:`metarl.vector`). Task draws come from
    ``dist.sample`` with a generator seeded by ``seed``, and the first reset seeds slot ``i``'s env with
    ``seed + i``, as after SB3's ``seed(seed)`` (which, called before a reset, replaces both). Envs not
    closed are closed at exit (:mod:`metarl.vector` does it for backends with workers)."""

    def __init__(self, dist: TaskDistribution, num_envs: int, *, backend: str = "auto", num_workers: int | None = None,
                 seed: int = 0, trial_episodes: int = 1, with_reward: bool = False) -> None:
        _check_trial(trial_episodes)
        self.dist, self.trial_episodes, self.with_reward = dist, trial_episodes, with_reward
        self.envs = make_vector_env(dist, num_envs, backend, num_workers)
        self.rng = np.random.default_rng(seed)
        super().__init__(num_envs, _obs_space(self.envs.single_observation_space, with_reward),
                         self.envs.single_action_space)
        self.seed(seed)  # the first reset's env seeds: seed + i
        n = num_envs
        self.tasks = dist.sample(n, self.rng)
        self._actions: np.ndarray | None = None
        self._episode, self._len = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self._return, self._prev = np.zeros(n), np.zeros(n, np.float32)
        self._success, self._first = np.zeros(n, bool), np.ones(n, bool)
        self._start = np.full(n, time.time())

    def reset(self) -> np.ndarray:
        seeds = None if self._seeds[0] is None else [int(s) for s in self._seeds]
        if seeds is not None:
            self.rng = np.random.default_rng(seeds[0])
        self.tasks = self.dist.sample(self.num_envs, self.rng)
        self.envs.set_tasks(self.tasks)
        obs, _ = self.envs.reset(seed=seeds)
        self._reset_seeds()
        self._episode[:], self._len[:], self._return[:], self._prev[:] = 0, 0, 0.0, 0.0
        self._success[:], self._first[:], self._start[:] = False, True, time.time()
        return augment(obs, self._prev, self._first, self.with_reward)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.envs.step(self._actions.reshape(
            (self.num_envs, *self.action_space.shape)))
        reward = np.asarray(reward, np.float32)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        success = np.asarray(info.get("success", np.zeros(self.num_envs)), np.float64) > 0.5
        self._success |= success & np.asarray(info.get("_success", np.ones(self.num_envs, bool)), bool)
        self._return += reward
        self._len += 1
        ended = terminated | truncated
        self._episode += ended
        done = ended & (self._episode >= self.trial_episodes)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        final = augment(obs, reward, np.zeros(self.num_envs, bool), self.with_reward)
        for i in np.flatnonzero(done):
            infos[i] = {"terminal_observation": final[i], "is_success": bool(self._success[i]),
                        "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                        "episode": {"r": float(self._return[i]), "l": int(self._len[i]),
                                    "t": round(float(time.time() - self._start[i]), 6)}}
        obs = np.array(obs, np.float32).reshape(self.num_envs, -1)
        if ended.any():
            for i in np.flatnonzero(done):
                self.tasks[i] = self.dist.sample(1, self.rng)[0]
            if done.any():
                self.envs.set_tasks(self.tasks)  # takes effect at each slot's next reset: the done ones
            reset_obs, _ = self.envs.reset(options={"reset_mask": ended})
            obs[ended] = np.asarray(reset_obs, np.float32).reshape(self.num_envs, -1)[ended]
        self._success[ended] = False
        self._episode[done], self._len[done], self._return[done], self._start[done] = 0, 0, 0.0, time.time()
        self._prev = np.where(done, 0.0, reward).astype(np.float32)  # 0 at a trial's first step
        self._first = ended
        return augment(obs, self._prev, self._first, self.with_reward), reward, done, infos

    def close(self) -> None:
        self.envs.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None] * len(self._indices(indices))
        raise AttributeError(f"MetaVecEnv has no attribute {attr_name!r} to read from its envs")

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError(f"MetaVecEnv sets no env attributes ({attr_name!r}); tasks come from the distribution")

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list:
        raise AttributeError(f"MetaVecEnv calls no env methods ({method_name!r})")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)


class MultiTaskEnv(gym.Env):
    """One env of a task distribution as a plain gymnasium ``Env`` (what SB3's ``check_env`` takes, and
    what SB3's own ``DummyVecEnv``/``SubprocVecEnv`` can wrap): each trial draws a task with the env's
    ``np_random`` (seeded by ``reset(seed=...)``), trials as in :class:`MetaVecEnv`."""

    def __init__(self, dist: TaskDistribution, trial_episodes: int = 1, with_reward: bool = False) -> None:
        _check_trial(trial_episodes)
        self.dist, self.trial_episodes, self.with_reward = dist, trial_episodes, with_reward
        self.env = dist.make_env()
        self.observation_space = _obs_space(self.env.observation_space, with_reward)
        self.action_space = self.env.action_space
        self._episode = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.env.task = self.dist.sample(1, self.np_random)[0]
        obs, info = self.env.reset(seed=int(self.np_random.integers(2**31 - 1)))
        self._episode = 0
        return augment(obs, np.zeros(1), np.ones(1, bool), self.with_reward)[0], info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "is_success": float(info.get("success", 0.0)) > 0.5}
        if terminated or truncated:
            self._episode += 1
            if self._episode < self.trial_episodes:  # the trial goes on: the next episode of the same task
                obs, _ = self.env.reset()
                return augment(obs, np.array([reward]), np.ones(1, bool), self.with_reward)[0], \
                    float(reward), False, False, info
        return augment(obs, np.array([reward]), np.zeros(1, bool), self.with_reward)[0], float(reward), \
            bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.env.close()


def make_vec_env(dist: TaskDistribution, num_envs: int = 8, *, backend: str = "auto", num_workers: int | None = None,
                 seed: int = 0, trial_episodes: int = 1, with_reward: bool = False) -> MetaVecEnv:
    """An SB3 ``VecEnv`` of ``num_envs`` slots over ``dist`` (e.g. ``metarl.make_benchmark("ML1",
    task="reach-v3").train``) drawing a new task every trial; see :class:`MetaVecEnv`. Scripts with
    ``backend="async"`` or ``"shm"`` need an ``if __name__ == "__main__":`` guard."""
    return MetaVecEnv(dist, num_envs, backend=backend, num_workers=num_workers, seed=seed,
                      trial_episodes=trial_episodes, with_reward=with_reward)


def make_env(dist: TaskDistribution, *, trial_episodes: int = 1, with_reward: bool = False) -> MultiTaskEnv:
    """One gymnasium env over ``dist`` drawing a new task every trial (see :class:`MultiTaskEnv`)."""
    return MultiTaskEnv(dist, trial_episodes, with_reward)

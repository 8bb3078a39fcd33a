"""Core data types: tasks, per-step agent inputs, rollouts and meta-batches.

Array shapes use ``T`` for time steps, ``N`` for env slots (one task per slot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


@dataclass(frozen=True)
class Task:
    """One task of a task family: a class (``name``) and a concrete variant (``index``, ``params``).

    Attributes:
        name: task class, e.g. ``"reach-v3"``; sorted class names define a benchmark's classes.
        index: variant number within the class and split (e.g. goal 17 of 50); stable for a seed.
        split: ``"train"`` or ``"test"``.
        params: opaque payload the family's env understands (must pickle). The core never reads
            it; it only compares train and test params by value, to warn when the splits share tasks.
    """

    name: str
    index: int
    split: str
    params: Any = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        """Unique, human-readable id within a benchmark, e.g. ``"test/reach-v3/17"``."""
        return f"{self.split}/{self.name}/{self.index}"


class StepInput(NamedTuple):
    """What a Learner sees before acting, for all N slots at once.

    Attributes:
        obs: ``[N, obs_dim]`` float32 observation.
        prev_reward: ``[N]`` float32 reward of the slot's previous step: at an episode's first step, the
            previous episode's last reward (0 at a trial's first step; ``collect(prev_reward=...)``).
        first: ``[N]`` bool, True where ``obs`` is the first observation of an episode.
        active: ``[N]`` bool, False where the slot has finished its episodes and only steps because
            slower slots haven't (padding: its step is discarded; a Learner with memory should leave
            that slot's state as it is, so a later ``collect`` continues the trial from its last
            real step); None: every slot is active.
        noise: per-slot random streams (:class:`metarl.seeding.SlotNoise`, one per slot) that a Learner
            should draw its random numbers from when given (action noise, latent samples), so a slot's
            draws don't depend on the other slots; None: draw from torch's global generator. The
            evaluator and the Trainer pass them (:mod:`metarl.trials`).
    """

    obs: np.ndarray
    prev_reward: np.ndarray
    first: np.ndarray
    active: np.ndarray | None = None
    noise: Any = None


class ActOutput(NamedTuple):
    """A Learner's answer: actions plus named per-slot extras (log-probs, values, ...).

    Attributes:
        actions: ``[N, act_dim]`` float32, within the action space.
        extras: name -> ``[N, ...]`` array; the rollout stacks each into ``[T, N, ...]``.
    """

    actions: np.ndarray
    extras: dict[str, np.ndarray]


@dataclass
class Rollout:
    """Transitions of N slots over T steps, ``k`` episodes per slot; built only by ``metarl.rollout``.

    Every array is ``[T, N, ...]``. ``valid`` marks steps inside a slot's first ``k`` episodes:
    slots whose episodes end early keep stepping (vector envs step all slots together) and those
    extra steps are invalid and must be ignored by losses and metrics.

    Attributes:
        obs: ``[T, N, obs_dim]`` observation the action was taken in.
        actions: ``[T, N, act_dim]``.
        rewards: ``[T, N]`` float32.
        next_obs: ``[T, N, obs_dim]`` observation after the step; on an episode's last step this is
            the true final observation (before any reset), which truncation bootstraps from.
        terminated: ``[T, N]`` bool, the MDP ended (no bootstrap).
        truncated: ``[T, N]`` bool, cut by the time limit (bootstrap from ``next_obs``).
        first: ``[T, N]`` bool, ``obs`` is the first of an episode.
        success: ``[T, N]`` bool, ``info["success"]`` at this step.
        episode: ``[T, N]`` int, episode number within the rollout (0..k-1; k on invalid steps).
        valid: ``[T, N]`` bool.
        extras: name -> ``[T, N, ...]`` arrays from ``ActOutput.extras``.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    first: np.ndarray
    success: np.ndarray
    episode: np.ndarray
    valid: np.ndarray
    extras: dict[str, np.ndarray]
    episodes: int

    @property
    def dones(self) -> np.ndarray:
        """``[T, N]`` bool: the episode ended at this step (terminated or truncated)."""
        return self.terminated | self.truncated

    def last_rewards(self) -> np.ndarray:
        """``[N]`` reward of each slot's last valid step (what the next step of its trial follows)."""
        last = self.valid.sum(axis=0) - 1  # [N]
        return self.rewards[np.maximum(last, 0), np.arange(self.rewards.shape[1])]

    @property
    def num_steps(self) -> int:
        """Valid env steps in the rollout (what the step budget counts)."""
        return int(self.valid.sum())

    def episode_returns(self) -> np.ndarray:
        """``[k, N]`` undiscounted return of each episode, summed in float64 slot by slot (a slot's
        sums don't depend on the other slots: summing ``[T, N]`` along T would round differently
        for one slot than for several)."""
        out = np.zeros((self.episodes, self.rewards.shape[1]), dtype=np.float64)
        for k in range(self.episodes):
            per_slot = np.where(self.episode == k, self.rewards, 0.0).T.astype(np.float64, order="C")  # [N, T]
            out[k] = per_slot.sum(axis=1)
        return out

    def episode_successes(self) -> np.ndarray:
        """``[k, N]`` bool: ``info["success"]`` was 1 at any step of the episode (Meta-World's rule)."""
        out = np.zeros((self.episodes, self.rewards.shape[1]), dtype=bool)
        for k in range(self.episodes):
            out[k] = (self.success & (self.episode == k)).any(axis=0)
        return out


@dataclass
class MetaBatch:
    """One meta-training iteration's data: a task per slot, the rollouts before and after adapting.

    Attributes:
        tasks: the N tasks, slot order.
        pre: rollout collected before ``Learner.adapt()`` (RL²: the whole trial).
        post: rollout after ``adapt()``; None for agents with ``post_episodes == 0``.
    """

    tasks: list[Task]
    pre: Rollout
    post: Rollout | None = None

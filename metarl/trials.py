"""Trials, the unit of work the Trainer and the Evaluator hand out, and the runner that runs them here.

A trial is a Learner's whole encounter with the tasks in its slots: a fresh Learner state,
``adapt_episodes`` episodes, ``observe`` + ``adapt``, then ``post_episodes`` episodes that continue it.
The Trainer (meta-training batches) and the Evaluator (held-out tasks) describe trials as
:class:`TrialBatch` es (tasks, reset seeds, noise-stream seeds per slot) and a :class:`TrialPlan`, and hand
them to a *trial runner*: :class:`LocalTrials` runs them on a vector env in this process (any backend),
:class:`metarl.distributed.RayTrials` on Ray actors.

Where a trial runs cannot change it: each slot resets with its own seed, its Learner draws from its
own noise stream (:class:`metarl.seeding.SlotNoise`), and the post-adaptation episodes start with a
reset seeded from the slot's seed (:func:`metarl.seeding.phase_seeds`). So a slot's trial depends on its
task, its seeds and the weights only, not on the other slots nor on how slots are grouped (up to the
last bits of batched matrix products).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from metarl.learner import Learner
from metarl.rollout import collect, retry_trial
from metarl.seeding import SlotNoise, phase_seeds
from metarl.types import Rollout, Task

Seed = int | tuple[int, ...]


@dataclass(frozen=True)
class TrialPlan:
    """What a trial collects."""

    adapt_episodes: int
    """Episodes per slot before ``observe`` + ``adapt``."""
    post_episodes: int
    """Episodes per slot after ``adapt`` (0: none; the trial's second rollout is None)."""
    deterministic: bool | None = False
    """Post-adaptation actions: mean (True) or sampled (False); None asks the Learner
    (``eval_deterministic``, default True), as the evaluator does."""


@dataclass(frozen=True)
class TrialBatch:
    """Trials for some slots: one task, one reset seed and one noise-stream seed per slot."""

    tasks: list[Task]
    seeds: list[int]
    noise: list[Seed]


TrialResult = tuple[Rollout, Rollout | None]


class TrialRunner(Protocol):
    """Runs trial batches for a Learner source (a :class:`~metarl.learner.MetaAlgorithm`, or a Learner
    where the runner allows) and returns their rollouts in the order given."""

    num_slots: int
    """Slots per batch: each batch has exactly this many tasks (the callers pad)."""

    def run_trials(self, source: Any, batches: Sequence[TrialBatch], plan: TrialPlan,
                   what: str = "trial") -> list[TrialResult]:
        ...


def post_deterministic(learner: Learner, plan: TrialPlan) -> bool:
    """Whether post-adaptation episodes take mean actions (``plan.deterministic``, else the Learner's)."""
    if plan.deterministic is not None:
        return plan.deterministic
    return bool(getattr(learner, "eval_deterministic", True))


def trial(envs, learner: Learner, plan: TrialPlan, seeds: list[int] | int | None,
          noise: SlotNoise | None) -> TrialResult:
    """One trial on the tasks already set in ``envs`` (see the module docstring). ``noise`` must be fresh."""
    learner.reset(envs.num_envs)
    pre = collect(envs, learner, plan.adapt_episodes, seed=seeds, noise=noise)
    learner.observe(pre)
    learner.adapt()
    post = None
    if plan.post_episodes:
        post = collect(envs, learner, plan.post_episodes, deterministic=post_deterministic(learner, plan),
                       seed=phase_seeds(seeds, envs.num_envs), prev_reward=pre.last_rewards(), noise=noise)
    return pre, post


def learner_of(source: Any) -> Learner:
    """A Learner from ``source``: a MetaAlgorithm's ``make_learner()``, or ``source`` itself."""
    make = getattr(source, "make_learner", None)
    return make() if callable(make) else source


def run_batch(envs, source: Any, batch: TrialBatch, plan: TrialPlan, what: str) -> TrialResult:
    """``batch``'s trials on ``envs`` (its tasks set here), collected again from the start with fresh
    streams if a worker restart interrupts them (:func:`metarl.rollout.retry_trial`)."""
    envs.set_tasks(batch.tasks)
    learner = learner_of(source)

    def attempt() -> TrialResult:
        return trial(envs, learner, plan, list(batch.seeds), SlotNoise(batch.noise))

    return retry_trial(attempt, what)


class LocalTrials:
    """Trials on one vector env in this process (any local backend), one batch after another."""

    def __init__(self, envs) -> None:
        self.envs = envs
        self.num_slots = envs.num_envs

    def run_trials(self, source: Any, batches: Sequence[TrialBatch], plan: TrialPlan,
                   what: str = "trial") -> list[TrialResult]:
        return [run_batch(self.envs, source, b, plan, what) for b in batches]


def split_batch(batch: TrialBatch, sizes: Sequence[int]) -> list[TrialBatch]:
    """``batch`` cut into consecutive pieces of ``sizes`` slots."""
    out, start = [], 0
    for k in sizes:
        out.append(TrialBatch(batch.tasks[start:start + k], batch.seeds[start:start + k],
                              batch.noise[start:start + k]))
        start += k
    return out


def block_sizes(num_slots: int, parts: int) -> list[int]:
    """``num_slots`` in ``min(parts, num_slots)`` contiguous blocks differing by at most one (as shm's)."""
    parts = max(1, min(parts, num_slots))
    edges = np.linspace(0, num_slots, parts + 1).round().astype(int)
    return [int(b - a) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def merge_rollouts(parts: Sequence[Rollout]) -> Rollout:
    """Rollouts of disjoint slots (in slot order) as one ``[T, N, ...]`` rollout, ``T`` the longest.

    A part shorter than ``T`` is padded with its own last step marked invalid (``valid`` False,
    ``episode`` = k, no reward, no flags), as a slot that finished early steps on in :func:`collect`:
    losses and metrics ignore invalid steps, so the merge equals one collect over all the slots. The
    arrays are new and writable (Ray hands out read-only views of its object store)."""
    t = max(p.valid.shape[0] for p in parts)
    zeroed = {"rewards", "terminated", "truncated", "first", "success", "valid"}

    def padded(p: Rollout, name: str, a: np.ndarray) -> np.ndarray:
        extra = t - a.shape[0]
        if extra == 0:
            return a
        fill = np.repeat(a[-1:], extra, axis=0)
        if name in zeroed:
            fill = np.zeros_like(fill)
        elif name == "episode":
            fill = np.full_like(fill, p.episodes)
        return np.concatenate([a, fill])

    fields = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "first", "success",
              "episode", "valid")
    arrays = {f: np.concatenate([padded(p, f, getattr(p, f)) for p in parts], axis=1) for f in fields}
    extras = {k: np.concatenate([padded(p, k, p.extras[k]) for p in parts], axis=1) for k in parts[0].extras}
    return Rollout(**arrays, extras=extras, episodes=parts[0].episodes)


def merge_results(parts: Sequence[TrialResult]) -> TrialResult:
    """The pieces of one batch's trials (slot order) as one result."""
    pre = merge_rollouts([p[0] for p in parts])
    post = None if parts[0][1] is None else merge_rollouts([p[1] for p in parts])  # type: ignore[misc]
    return pre, post

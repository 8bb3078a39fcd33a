"""Task distributions and benchmarks: the protocol every task family implements.

A *benchmark* (ML1, ML10, your own family) has a ``train`` and a ``test`` :class:`TaskDistribution`.
A distribution knows its tasks, how to sample a meta-batch of them, the episode horizon and how to
build an env that can be switched to any of its tasks (``env.task = task``, then ``env.reset()``).
Benchmark facts (class names, split, horizon, evaluation set) live here, never in agent or
trainer code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import gymnasium as gym
import numpy as np

from metarl.errors import UsageError
from metarl.types import Task

T = TypeVar("T")


@runtime_checkable
class TaskDistribution(Protocol):
    """A split of a benchmark: its tasks, a sampler and an env factory."""

    split: str
    task_names: tuple[str, ...]
    tasks: tuple[Task, ...]
    horizon: int

    def sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        """``n`` tasks for one meta-batch, drawn with ``rng`` only (same rng state -> same tasks)."""
        ...

    def evaluation_tasks(self) -> list[Task]:
        """The fixed task list of the official held-out evaluation, in a stable order."""
        ...

    def make_env(self) -> gym.Env:
        """A fresh env that accepts any task of this distribution through its ``task`` attribute."""
        ...


def interleave(groups: Sequence[Sequence[T]]) -> list[T]:
    """Round-robin over ``groups``: the first item of each group in turn, then the second, ...
    (``[[a1, a2, a3], [b1]] -> [a1, b1, a2, a3]``)."""
    return [g[r] for r in range(max(map(len, groups), default=0)) for g in groups if r < len(g)]


@dataclass(frozen=True)
class TaskSet:
    """The standard :class:`TaskDistribution`: a fixed list of tasks plus a picklable env factory.

    Attributes:
        split: ``"train"`` or ``"test"``.
        tasks: every task of the split; sorted by (name, index) on construction.
        env_factory: picklable zero-argument callable returning a task-switchable env
            (``functools.partial`` of a module-level function works with worker processes).
        horizon: steps per episode (the env truncates there).
        eval_tasks_per_class: how many tasks per class the official evaluation uses
            (None: all of them).
        vector_factory: optional picklable ``num_envs -> gymnasium VectorEnv`` for families that step
            all slots at once in one process (array-batched simulators). The vector env must have
            autoreset disabled, accept ``set_attr("task", tasks)`` and ``reset(options={"reset_mask":
            mask})``, and report ``info["success"]`` as ``[num_envs]``. The ``"auto"`` backend uses it.
    """

    split: str
    tasks: tuple[Task, ...]
    env_factory: Callable[[], gym.Env] = field(repr=False)
    horizon: int
    eval_tasks_per_class: int | None = None
    vector_factory: Callable[[int], gym.vector.VectorEnv] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise UsageError(f"the {self.split!r} split has no tasks: give it at least one Task")
        object.__setattr__(self, "tasks", tuple(sorted(self.tasks, key=lambda t: (t.name, t.index))))

    @property
    def task_names(self) -> tuple[str, ...]:
        """Sorted task-class names."""
        return tuple(sorted({t.name for t in self.tasks}))

    def by_class(self) -> dict[str, list[Task]]:
        """Class name -> its tasks in index order (classes sorted)."""
        out: dict[str, list[Task]] = {name: [] for name in self.task_names}
        for t in self.tasks:
            out[t.name].append(t)
        return out

    def sample(self, n: int, rng: np.random.Generator) -> list[Task]:
        """Balanced meta-batch: classes in turn from a random offset, variants without replacement.

        With ``n`` a multiple of the class count every class gets ``n / classes`` slots (Meta-World's
        ML10 convention). Within a class, variants are drawn without replacement; past the class's
        variant count, in whole shuffled rounds (HalfCheetahDir's 2 directions in 10 slots: 5 each).

        Order: classes interleave (one task of each drawn class in sorted class order, then the next
        round), so consecutive slots (the ones one worker process steps) run different classes: a
        vector step waits for its slowest worker, and a worker holding only a slow class would pace
        every step (16 workers × 5 ML10 slots: 94% of the ideal instead of ~66% with each class's
        slots side by side; ``experiments/shm_backend/class_mix.py``). With ``n`` a multiple of the class count,
        slot ``i`` runs the same class in every meta-batch.
        """
        if n < 1:
            raise UsageError(f"cannot sample {n} tasks: ask for at least one")
        groups = self.by_class()
        names = list(groups)
        offset = int(rng.integers(len(names)))
        counts = {name: 0 for name in names}
        for i in range(n):
            counts[names[(offset + i) % len(names)]] += 1
        drawn: list[list[Task]] = []
        for name in names:
            pool, k = groups[name], counts[name]
            if k:  # whole shuffled rounds of the pool, then a part of one: every variant within one of the others
                rounds = [rng.permutation(len(pool)) for _ in range(k // len(pool))]
                idx = np.concatenate([*rounds, rng.choice(len(pool), size=k % len(pool), replace=False)])
                drawn.append([pool[j] for j in idx])
        return interleave(drawn)

    def evaluation_tasks(self) -> list[Task]:
        """First ``eval_tasks_per_class`` tasks of each class (all when None), classes sorted."""
        k = self.eval_tasks_per_class
        return [t for group in self.by_class().values() for t in (group if k is None else group[:k])]

    def make_env(self) -> gym.Env:
        """A new env for this split; set ``env.task`` before ``reset()``."""
        return self.env_factory()


@dataclass(frozen=True)
class Benchmark:
    """A named pair of train and test task distributions.

    Attributes:
        name: e.g. ``"ML1"``; ``task`` names the ML1 task class where there is one.
        train, test: the splits. Their observation and action spaces must match.
        seed: the seed the tasks were generated with.
        reward_version: the reward function in use (Meta-World: ``"v1"`` or ``"v2"``), or None.
        task: the single task class for ML1-style benchmarks, else None.
        info: extra facts shown by ``metarl envs`` (free-form, JSON-able).
    """

    name: str
    train: TaskDistribution
    test: TaskDistribution
    seed: int
    reward_version: str | None = None
    task: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``"ML1/reach-v3"`` or ``"ML10"``."""
        return f"{self.name}/{self.task}" if self.task else self.name


def tasks_overlap(a: Sequence[Task], b: Sequence[Task]) -> list[str]:
    """Ids of tasks of ``b`` also in ``a``: the same class and equal params (compared by value, see
    :func:`_param_key`)."""
    keys_a = {(t.name, _param_key(t.params)) for t in a}
    return sorted(t.id for t in b if (t.name, _param_key(t.params)) in keys_a)


def _param_key(params: Any) -> Any:
    """A hashable key equal for equal task params: arrays by dtype, shape and bytes; dicts by their
    items in key order; lists, tuples and dataclasses element by element; other unhashable payloads
    by their pickle."""
    import dataclasses
    import pickle

    if isinstance(params, np.ndarray):
        return ("ndarray", params.dtype.str, params.shape, params.tobytes())
    if isinstance(params, dict):
        return ("dict", tuple(sorted(((repr(k), _param_key(v)) for k, v in params.items()), key=lambda kv: kv[0])))
    if isinstance(params, (list, tuple)):
        return (type(params).__name__, tuple(_param_key(v) for v in params))
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return (type(params).__qualname__,
                tuple(_param_key(getattr(params, f.name)) for f in dataclasses.fields(params)))
    try:
        hash(params)
    except TypeError:
        return ("pickle", pickle.dumps(params))
    return params

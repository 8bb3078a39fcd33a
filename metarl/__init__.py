"""metarl: meta-reinforcement learning on Meta-World and your own task families, in PyTorch.

Quick use::

    import metarl
    bench = metarl.make_benchmark("ML1", task="reach-v3", seed=0)
    agent = metarl.make_agent("zero-shot", bench)
    trainer = metarl.Trainer(bench, agent, metarl.TrainerConfig(steps=20_000))
    result = trainer.train()            # ends with the official held-out evaluation
    print(result.success_rate, result.per_task)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Only torch-free modules here: env worker processes unpickle their env factories through this package,
# and a worker that imported torch would carry ~150 MiB of it per process for nothing.
from metarl.errors import UsageError
from metarl.learner import Learner, MetaAlgorithm
from metarl.registry import (
    agent_factory,
    agent_names,
    benchmark_factory,
    benchmark_names,
    register_agent,
    register_benchmark,
)
from metarl.tasks import Benchmark, TaskDistribution, TaskSet
from metarl.types import ActOutput, MetaBatch, Rollout, StepInput, Task
from metarl.vector import EnvSpec, TaskVectorEnv, make_vector_env

if TYPE_CHECKING:
    from metarl.evaluator import EvalConfig, EvalResult, evaluate
    from metarl.rollout import collect
    from metarl.trainer import Trainer, TrainerConfig

__version__ = "0.1.0"

# Names that need torch, imported on first use (PEP 562).
_LAZY = {"EvalConfig": "metarl.evaluator", "EvalResult": "metarl.evaluator", "evaluate": "metarl.evaluator",
         "collect": "metarl.rollout", "Trainer": "metarl.trainer", "TrainerConfig": "metarl.trainer",
         "seed_everything": "metarl.seeding"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'metarl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def make_benchmark(name: str, task: str | None = None, seed: int = 0, **options: Any) -> Benchmark:
    """Build a registered benchmark (``"ML1"``, ``"ML10"``, ``"ML45"``, ``"Toy"``, or your own).

    Args:
        name: registered benchmark name (``metarl envs`` lists them).
        task: task class for single-task benchmarks such as ML1 (e.g. ``"reach-v3"``).
        seed: fixes the generated tasks (goals) of both splits.
        **options: family options, e.g. ``reward_version="v1"`` or ``horizon=200`` for Meta-World.
    """
    factory = benchmark_factory(name)
    if task is not None:
        options["task"] = task
    check_options(f"benchmark {name!r}", factory, options)
    try:
        bench = factory(seed=seed, **options)
    except TypeError as e:
        raise UsageError(f"benchmark {name!r} rejected its options ({e}): check `metarl envs` for its options") from e
    return validate_benchmark(name, bench)


_FLAGS = {"task": "--task", "reward_version": "--reward-version"}  # options the CLI passes under flags of their own


def check_options(owner: str, factory: Any, options: dict[str, Any]) -> None:
    """Check ``options`` against ``factory``'s signature before calling it: an option it doesn't take,
    or a value of another kind than its default (text for a number, a float for a count), is a
    one-line :class:`UsageError` naming the option and the ones it takes. Factories taking ``**kwargs``
    are only type-checked."""
    import inspect

    from metarl.config import check_option

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: let the factory judge
        return
    named = {k: p for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in options:
            if key in named:
                continue
            takes = ", ".join(k for k in named if k not in ("seed", "task")) or "none"
            if key == "task":
                raise UsageError(f"{owner} has a single task class: drop --task")
            raise UsageError(f"{owner} takes no option {_FLAGS.get(key, key)} (its options: {takes}; "
                             "`metarl envs` describes them)")
    for key, value in options.items():
        default = named[key].default if key in named else None
        if isinstance(default, (bool, int, float, str)):
            check_option(owner, key, value, default, ranges=False)


def validate_benchmark(name: str, bench: Any) -> Benchmark:
    """Check what a factory returned: both splits present and task distributions."""
    for split in ("train", "test"):
        dist = getattr(bench, split, None)
        if dist is None:
            raise UsageError(f"benchmark {name!r} has no {split!r} split: its factory must return train and test")
        if not isinstance(dist, TaskDistribution):
            raise UsageError(f"benchmark {name!r}: {split} is a {type(dist).__name__}, not a TaskDistribution "
                             "(use metarl.TaskSet)")
    return bench


def make_agent(name: str, benchmark: Benchmark, device: str = "cpu", **options: Any) -> MetaAlgorithm:
    """Build a registered agent for ``benchmark``'s spaces (``metarl envs`` lists agents too)."""
    factory = agent_factory(name)
    spec = EnvSpec.from_distribution(benchmark.train)
    test_spec = EnvSpec.from_distribution(benchmark.test)
    if (spec.obs_dim, spec.act_dim) != (test_spec.obs_dim, test_spec.act_dim):
        raise UsageError(f"benchmark {benchmark.label}: train and test spaces differ "
                         f"(obs {spec.obs_dim} vs {test_spec.obs_dim}, act {spec.act_dim} vs {test_spec.act_dim})")
    try:
        return factory(spec, device, **options)
    except TypeError as e:
        raise UsageError(f"agent {name!r}: {e}") from e


__all__ = [
    "ActOutput", "Benchmark", "EnvSpec", "EvalConfig", "EvalResult", "Learner", "MetaAlgorithm", "MetaBatch",
    "Rollout", "StepInput", "Task", "TaskDistribution", "TaskSet", "TaskVectorEnv", "Trainer", "TrainerConfig",
    "UsageError", "agent_names", "benchmark_names", "collect", "evaluate", "make_agent", "make_benchmark",
    "make_vector_env", "register_agent", "register_benchmark",
]

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
from metarl.factory import check_agent, check_options, make_agent, make_benchmark, validate_benchmark
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


__all__ = [
    "ActOutput", "Benchmark", "EnvSpec", "EvalConfig", "EvalResult", "Learner", "MetaAlgorithm", "MetaBatch",
    "Rollout", "StepInput", "Task", "TaskDistribution", "TaskSet", "TaskVectorEnv", "Trainer",
    "TrainerConfig", "UsageError", "agent_factory", "agent_names", "benchmark_factory", "benchmark_names",
    "check_agent", "check_options", "collect", "evaluate", "make_agent", "make_benchmark", "make_vector_env",
    "register_agent", "register_benchmark", "validate_benchmark",
]

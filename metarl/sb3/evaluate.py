"""``metarl eval BENCHMARK --sb3 model.zip``: a saved SB3 model through the official held-out protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metarl.tasks import Benchmark


def sb3_agent(bench: Benchmark, path: str | Path, algo: str | None = None, device: str = "cpu") -> tuple[Any, dict]:
    """The model saved at ``path`` as an evaluable agent for ``bench``
    (:class:`~metarl.sb3.policy.SB3Agent`), and what the evaluation file records of it:
    ``{"model", "algo", "with_reward", "num_timesteps"}`` (the env steps SB3 trained it for)."""
    from metarl.sb3.policy import SB3Agent, detect_algo, load_model
    from metarl.vector import EnvSpec

    path = Path(path)
    algo = algo or detect_algo(path)
    model = load_model(path, algo, device)
    agent = SB3Agent(model, EnvSpec.from_distribution(bench.test), algo)
    return agent, {"model": str(path), "algo": algo, "with_reward": agent.with_reward,
                   "num_timesteps": int(model.num_timesteps)}


def evaluate_model(bench: Benchmark, path: str | Path, *, algo: str | None = None, eval_seed: int = 0,
                   seed: int | None = None, num_envs: int = 10, backend: str = "auto", num_workers: int | None = None,
                   eval_tasks: int | None = None, actions: str = "auto", device: str = "cpu") -> tuple[Any, dict]:
    """Evaluate the SB3 model saved at ``path`` on ``bench``'s held-out tasks, as ``metarl eval BENCHMARK
    --sb3 PATH`` does (``seed``: the seed that made ``bench``, recorded in the summary; default
    ``eval_seed``). Returns the :class:`~metarl.evaluator.EvalResult` and the evaluation JSON object
    (``metarl eval --json``'s fields plus ``sb3``); write it with :func:`metarl.files.atomic_write`."""
    from metarl.runs import evaluate_agent
    from metarl.trainer import eval_summary

    agent, info = sb3_agent(bench, path, algo, device)
    result = evaluate_agent(bench, agent, eval_seed=eval_seed, num_envs=num_envs, backend=backend,
                            num_workers=num_workers, threads=1, eval_tasks=eval_tasks, actions=actions)
    return result, {**eval_summary(result, bench, eval_seed if seed is None else seed, eval_seed), "sb3": info}

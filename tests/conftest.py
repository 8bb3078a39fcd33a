"""Shared test helpers (an env with injected dynamics, small benchmarks) and the test tiers.

Tiers: plain ``pytest`` runs the fast tier, deselecting tests marked ``learning``, ``spawn`` or
``metaworld`` (pyproject.toml describes the markers); ``pytest --full`` runs every test, as CI does;
``pytest -m EXPR`` selects by markers itself (e.g. ``-m learning`` runs only the learning tests).
With pytest-xdist (``-n 2 --dist loadfile``, as CI runs), each test file runs in one process (the Ray
tests share one cluster per file), and each process gets its share of the cores for torch's threads.
"""

from __future__ import annotations

import functools
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import metarl
from metarl.tasks import Benchmark, TaskSet
from metarl.types import ActOutput, Task


class ScriptedEnv(gym.Env):
    """Deterministic env whose episode length and ending come from the task.

    ``task.params = (length, terminates, success_step)``: the episode ends after ``length`` steps,
    by termination if ``terminates`` else by truncation. obs = ``[t, 100 * episode]`` with t the
    step count in the episode; reward = 10 * episode + t (after the step); ``success`` is 1 exactly
    at step ``success_step`` (1-based, -1 never).
    """

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.task: Task | None = None
        self.episode = -1
        self.t = 0

    def reset(self, *, seed=None, options=None):
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.t, 100 * self.episode], dtype=np.float32)

    def step(self, action):
        length, terminates, success_step = self.task.params[:3]
        self.t += 1
        end = self.t >= length
        info = {"success": float(self.t == success_step)}
        return self._obs(), float(10 * self.episode + self.t), end and terminates, end and not terminates, info


def scripted_benchmark(params: list[tuple]) -> Benchmark:
    tasks = tuple(Task("scripted", i, "train", p) for i, p in enumerate(params))
    dist = TaskSet("train", tasks, ScriptedEnv, horizon=max(p[0] for p in params))
    return Benchmark("Scripted", dist, dist, seed=0)


class ConstantLearner:
    """Acts ``value`` in every dimension; records every StepInput it saw."""

    def __init__(self, act_dim: int = 1, value: float = 0.0) -> None:
        self.act_dim, self.value, self.seen = act_dim, value, []

    def reset(self, num_slots):
        self.seen.clear()

    def act(self, step, deterministic=False):
        self.seen.append(step)
        n = step.obs.shape[0]
        return ActOutput(np.full((n, self.act_dim), self.value, np.float32), {"tag": np.arange(n)})

    def observe(self, rollout):
        pass

    def adapt(self):
        pass


def state_tensors(algo) -> list[torch.Tensor]:
    """Every tensor of ``algo.state_dict()`` (parameters, optimiser moments, replay), in a fixed order."""
    def walk(obj):
        if isinstance(obj, torch.Tensor):
            yield obj
        elif isinstance(obj, dict):
            for k in sorted(obj, key=str):
                yield from walk(obj[k])
    return list(walk(algo.state_dict()))


LEARNING_SEEDS = (0, 1, 2)
"""Training seeds of every learning test: its thresholds hold for each of them with a margin, so that no
threshold rests on one seed that happened to pass."""


def learning_table(runs: dict) -> str:
    """``{seed: (untrained, trained)}`` of EvalResults as one line per seed, for assertion messages."""
    return "\n".join(f"seed {seed}: untrained post {u.mean_return:.2f}; trained pre {t.pre_return:.2f}, "
                     f"post {t.mean_return:.2f}, success {t.success_rate:.3f}" for seed, (u, t) in runs.items())


def toy_sides_before_after(agent: str, steps: int, seed: int = 0, **options):
    """Train ``agent`` (training seed ``seed``: initial weights and the trainer's streams) on ToySides for
    ``steps`` env steps with 10 slots; the official held-out evaluation (10 adaptation + 3 evaluation
    episodes, evaluation seed 0, the same tasks for every seed) before and after: ``(untrained, trained)``."""
    from metarl.evaluator import EvalConfig, evaluate
    from metarl.vector import make_vector_env

    bench = metarl.make_benchmark("ToySides", seed=0)
    torch.manual_seed(seed)
    algo = metarl.make_agent(agent, bench, **options)
    envs = make_vector_env(bench.test, 10)
    try:
        untrained = evaluate(bench.test, algo.make_learner(), envs, EvalConfig(), seed=0)
        trainer = metarl.Trainer(bench, algo, metarl.TrainerConfig(steps=steps, num_envs=10, seed=seed,
                                                                   final_eval=False, progress=False))
        trainer.train()
        return untrained, evaluate(bench.test, algo.make_learner(), envs, EvalConfig(), seed=0)
    finally:
        envs.close()


SLOW_MARKERS = ("learning", "spawn", "metaworld")
"""Markers of the tests that plain ``pytest`` leaves out: they train agents, start processes or step
MuJoCo, and make up most of the suite's time."""


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help=f"run every test tier (plain pytest leaves out tests marked {', '.join(SLOW_MARKERS)})")


def _tier(config) -> str:
    """``"full"``, ``"marker"`` (the user's ``-m`` selects) or ``"fast"``."""
    if config.getoption("--full"):
        return "full"
    return "marker" if config.option.markexpr else "fast"


def pytest_report_header(config):
    return {"full": "tier: full (every test)",
            "marker": f"tier: chosen by -m {config.option.markexpr!r}",
            "fast": f"tier: fast (tests marked {', '.join(SLOW_MARKERS)} deselected; --full runs every test)",
            }[_tier(config)]


def pytest_configure(config):
    """Under pytest-xdist, each test process takes its share of the cores for torch's threads (the
    processes would otherwise each use them all, and slow each other down)."""
    from metarl.sweep import threads_per_job

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        torch.set_num_threads(threads_per_job(workers))


def pytest_collection_modifyitems(config, items):
    """The fast tier: deselect slow-marked tests unless --full or -m was given."""
    if _tier(config) != "fast":
        return
    slow = [item for item in items if any(item.get_closest_marker(m) for m in SLOW_MARKERS)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        slow_ids = {id(item) for item in slow}
        items[:] = [item for item in items if id(item) not in slow_ids]


def pytest_terminal_summary(terminalreporter, config):
    """One line under the results (the header is hidden by -q) saying what the fast tier left out."""
    if _tier(config) == "fast":
        terminalreporter.write_line(f"fast tier: tests marked {', '.join(SLOW_MARKERS)} were deselected; "
                                    "pytest --full runs every test")


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch thread (then restore the count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def toy():
    return metarl.make_benchmark("Toy", seed=0)


@pytest.fixture
def toy_small():
    return functools.partial(metarl.make_benchmark, "Toy", num_tasks=6, horizon=5)

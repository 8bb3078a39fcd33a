"""One env in one process: upstream Meta-World vs metarl's fast classes, the MuJoCo ceiling, and the batched
``Driving`` family (sections ``single`` and ``driving`` of ``metarl bench envs``)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np

SPEED_ENVS = ("reach-v3", "pick-place-v3", "door-open-v3")
"""The classes measured first (then the 15 ML10 classes)."""


def make_upstream_env(env_cls: type, task: Any, seed: int) -> gym.Env:
    """One upstream env as training builds it: task set before any reset, then seeded (picklable via
    partial)."""
    env = env_cls()
    env.set_task(task)
    env.seed(seed)
    return env


def time_env(env: gym.Env, steps: int, warmup: int = 200, seed: int = 0) -> dict[str, float]:
    """Steps/s of ``env`` under uniform random actions, resets after each episode end included."""
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    env.reset()

    def run(n: int) -> None:
        for _ in range(n):
            _, _, terminated, truncated, _ = env.step(rng.uniform(low, high).astype(np.float32))
            if terminated or truncated:
                env.reset()

    run(warmup)
    start = time.perf_counter()
    run(steps)
    seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds}


def time_physics(env: gym.Env, at_rest_env: Any, steps: int) -> dict[str, float]:
    """Two MuJoCo ceilings, in env steps/s: what a step would cost if it were physics only.

    ``at_rest``: ``frame_skip`` × ``mj_step`` on ``at_rest_env`` (an upstream env of the same class: the
    same MuJoCo model) from the reset state with no control (the arm idles, few contacts).
    ``in_workload``: the time spent inside ``mj_step``, ``mj_forward`` and ``mj_rnePostConstraint`` while
    ``env`` runs the same random actions as the speed measurement (moving arm, contacts): the honest
    ceiling for that workload.
    """
    import mujoco

    model, data, frame_skip = at_rest_env.model, at_rest_env.data, at_rest_env.frame_skip
    at_rest_env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        for _ in range(frame_skip):
            mujoco.mj_step(model, data)
    at_rest = steps / (time.perf_counter() - start)
    spent = [0.0]
    originals = {k: getattr(mujoco, k) for k in ("mj_step", "mj_forward", "mj_rnePostConstraint")}

    def timed(fn):
        def call(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t
        return call

    for k, fn in originals.items():
        setattr(mujoco, k, timed(fn))
    try:
        time_env(env, steps, warmup=0)
    finally:
        for k, fn in originals.items():
            setattr(mujoco, k, fn)
    return {"at_rest": at_rest, "in_workload": steps / spent[0]}


def metaworld_env(name: str, fast: bool, seed: int = 0) -> gym.Env:
    """A Meta-World env slot of class ``name`` from the registry (``ML1`` with ``fast``: metarl's fast class
    or upstream's), on the first training goal of ``metaworld.ML1(name, seed)``, seeded, reset."""
    import metarl

    bench = metarl.make_benchmark("ML1", task=name, seed=seed, fast=fast)
    env = bench.train.make_env()
    env.task = bench.train.tasks[0]
    env.reset(seed=seed)
    return env


def upstream_env(name: str, seed: int = 0) -> Any:
    """Upstream's own env of class ``name`` (upstream ``metaworld`` package) on the same goal as
    :func:`metaworld_env`."""
    import metaworld
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return make_upstream_env(ALL_V3_ENVIRONMENTS[name], metaworld.ML1(name, seed=seed).train_tasks[0], seed)


def single_env(names: list[str], steps: int, repeats: int) -> dict[str, dict[str, float]]:
    """Per class: upstream, fast and physics-ceiling steps/s (best of ``repeats``, alternating)."""
    rows = {}
    for name in names:
        best = {"upstream": 0.0, "fast": 0.0}
        for _ in range(repeats):
            for key in best:
                env = metaworld_env(name, fast=key == "fast")
                best[key] = max(best[key], time_env(env, steps)["steps_per_s"])
                env.close()
        env, at_rest_env = metaworld_env(name, fast=True), upstream_env(name)
        ceiling = time_physics(env, at_rest_env, steps)
        env.close()
        at_rest_env.close()
        rows[name] = {**best, "physics_ceiling": ceiling["in_workload"],
                      "physics_at_rest": ceiling["at_rest"],
                      "speedup": best["fast"] / best["upstream"],
                      "fast_pct_of_ceiling": 100 * best["fast"] / ceiling["in_workload"]}
    return rows



def single_section(names: list[str], ml10: list[str], steps: int, repeats: int) -> dict[str, Any]:
    """:func:`single_env` for each of ``names``, printed as a table row as it is measured, and the mean over
    those of ``ml10``: the report's ``single`` section."""
    print(f"{'single env (1 core)':32s} {'upstream':>9s} {'fast':>9s} {'speed-up':>9s} {'physics':>9s} "
          f"{'% of physics':>13s}   steps/s")
    rows = {}
    for name in names:
        rows.update(single_env([name], steps, repeats))
        r = rows[name]
        print(f"{name:32s} {r['upstream']:9,.0f} {r['fast']:9,.0f} {r['speedup']:8.2f}x "
              f"{r['physics_ceiling']:9,.0f} "
              f"{r['fast_pct_of_ceiling']:12.0f}%", flush=True)
    ml10_rows = [rows[n] for n in ml10 if n in rows]
    keys = ("upstream", "fast", "speedup", "physics_ceiling", "physics_at_rest")
    summary = {k: statistics.fmean(r[k] for r in ml10_rows) for k in keys} if ml10_rows else {}
    if summary:
        print(f"{'ML10 mean':32s} {summary['upstream']:9,.0f} {summary['fast']:9,.0f} "
              f"{summary['speedup']:8.2f}x "
              f"{summary['physics_ceiling']:9,.0f}")
    return {"rows": rows, "ml10_mean": summary}

def driving(slot_counts: tuple[int, ...] = (1, 10, 256), seconds: float = 1.0) -> dict[int, float]:
    """Slot-steps/s of the batched ``Driving`` family in this process, random actions, ended slots reset."""
    import metarl

    train = metarl.make_benchmark("Driving", seed=0).train  # its batched env: TaskSet.vector_factory
    tasks = train.tasks
    out = {}
    for n in slot_counts:
        env = train.vector_factory(n)
        env.set_attr("task", [tasks[i % len(tasks)] for i in range(n)])
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, size=(100, n, 2))
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:  # as collect() does: reset slots whose episode ended
            for a in actions:
                _, _, terminated, truncated, _ = env.step(a)
                ended = terminated | truncated
                if ended.any():
                    env.reset(options={"reset_mask": ended})
            steps += 100 * n
        out[n] = steps / (time.perf_counter() - start)
    return out

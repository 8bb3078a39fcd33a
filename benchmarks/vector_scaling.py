"""Vector-env throughput vs worker count: upstream Meta-World + gymnasium vs metarl's task vector envs.

For W = 1, 2, 4, ... up to ``--max-workers`` (one env slot per worker process), on ML10 training
classes (slot i runs class i mod 10), random actions, 500-step episodes with resets:

- ``upstream-async``: gymnasium ``AsyncVectorEnv`` of upstream env classes (same-step autoreset);
- ``metarl-async``: :class:`metarl.vector.TaskVectorEnv` (``backend="async"``) with the fast,
  bit-identical env classes, stepped through :func:`metarl.collect` (so the rollout code is timed);
- ``metarl-shm``: :mod:`metarl.vector_shm` with W workers stepping 2 slots each (2W slots),
  arrays exchanged in shared memory;
- ``metarl-sync``: W slots in one process, for reference.

Also reports the resident memory (RSS) per worker process. Run from the repository root::

    python benchmarks/vector_scaling.py --max-workers 16   # writes benchmarks/results/vector_scaling-<host>.json
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import socket
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from env_speed import git_commit, machine_info, make_upstream_env

import metarl

HERE = Path(__file__).resolve().parent


def time_upstream(bench, workers: int, steps: int) -> dict:
    classes = sorted(bench.train.task_names)
    tasks = [next(t for t in bench.train.tasks if t.name == classes[i % len(classes)]) for i in range(workers)]
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    fns = [functools.partial(make_upstream_env, ALL_V3_ENVIRONMENTS[t.name], t.params, i) for i, t in enumerate(tasks)]
    envs = gym.vector.AsyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, context="forkserver")
    envs.reset()
    rng = np.random.default_rng(0)
    n = max(1, steps // workers)
    start = time.perf_counter()
    for _ in range(n):
        envs.step(rng.uniform(-1, 1, (workers, 4)).astype(np.float32))
    dt = time.perf_counter() - start
    rss = _rss_mb([p.pid for p in envs.processes])
    envs.close()
    return {"steps_per_s": n * workers / dt, "rss_mb_per_slot": rss}


def time_metarl(bench, workers: int, backend: str, horizon_steps: int, slots_per_worker: int = 1) -> dict:
    classes = sorted(bench.train.task_names)
    by_class = bench.train.by_class()
    slots = workers * slots_per_worker
    tasks = [by_class[classes[i % len(classes)]][i // len(classes)] for i in range(slots)]
    envs = metarl.make_vector_env(bench.train, slots, backend, num_workers=workers if backend == "shm" else None)
    envs.set_tasks(tasks)
    learner = metarl.make_agent("random", bench).make_learner()
    metarl.collect(envs, learner, episodes=1, seed=list(range(slots)))  # warm-up: workers up, classes built
    start = time.perf_counter()
    ro = metarl.collect(envs, learner, episodes=horizon_steps)
    dt = time.perf_counter() - start
    procs = {"async": lambda: envs.env.processes, "shm": lambda: envs.env._procs}.get(backend)
    rss = _rss_mb([p.pid for p in procs()]) / slots_per_worker if procs else None
    envs.close()
    return {"steps_per_s": ro.num_steps / dt, "rss_mb_per_slot": rss}


def _rss_mb(pids: list[int]) -> float:
    vals = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                vals.append(int(line.split()[1]) / 1024)
    return float(np.mean(vals)) if vals else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--steps", type=int, default=20000, help="upstream steps per measurement")
    p.add_argument("--episodes", type=int, default=2, help="metarl episodes (x500 steps) per slot per measurement")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.manual_seed(0)
    bench = metarl.make_benchmark("ML10", seed=0)
    counts = sorted({w for w in (1, 2, 4, 8, 16, 32) if w <= args.max_workers} | {args.max_workers})
    rows = []
    print(f"{'workers':>7s} {'upstream-async':>15s} {'metarl-async':>13s} {'metarl-shm':>11s} {'metarl-sync':>12s} "
          f"{'RSS MB/slot':>12s}")
    for w in counts:
        row = {"workers": w, "upstream_async": time_upstream(bench, w, args.steps),
               "metarl_async": time_metarl(bench, w, "async", args.episodes),
               "metarl_shm": time_metarl(bench, w, "shm", args.episodes, slots_per_worker=2),
               "metarl_sync": time_metarl(bench, w, "sync", args.episodes)}
        rows.append(row)
        print(f"{w:7d} {row['upstream_async']['steps_per_s']:15.0f} {row['metarl_async']['steps_per_s']:13.0f} "
              f"{row['metarl_shm']['steps_per_s']:11.0f} {row['metarl_sync']['steps_per_s']:12.0f} "
              f"{row['metarl_shm']['rss_mb_per_slot']:12.0f}", flush=True)
    out = args.out or HERE / "results" / f"vector_scaling-{socket.gethostname()[:20]}.json"
    out.write_text(json.dumps({
        "command": ["python", *sys.argv], "git_commit": git_commit(), "machine": machine_info(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "reward_function_version": "v2", "benchmark": "ML10 train classes, random actions", "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

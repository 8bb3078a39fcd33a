"""The ``shm`` backend's own cost as workers are added, on any machine: env slots that *sleep* instead of computing.

Each slot-step sleeps ``--step-us`` µs (default 350, about a fast ML10 step on the H200 host's cores),
so 16 workers fit on 2 cores: what is measured is the vector machinery (semaphore wake-ups, shared
arrays, the parent's ``collect`` and policy) at 1..16 workers, not the envs. Each row steps
``--slots-per-worker`` slots per worker through :func:`metarl.collect` (one 500-step episode per slot
after a warm-up episode, best of ``--repeats``) and reports slot-steps/s against the ideal
``workers x slots_per_worker / (slots_per_worker x sleep)`` with the sleep's real duration measured
here. Spinning is off (``spin_us=0``: 16 spinning workers would take the 2 cores), every block is
in a worker (``in_parent=False``). Sleep-based, hence a benchmark, never a test::

    python experiments/shm_backend/shm_emulated.py    # writes shm_emulated.json here
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import metarl
from metarl.errors import UsageError, exit_code
from metarl.provenance import write_result
from metarl.vector.shm import SharedMemoryVectorEnv

HERE = Path(__file__).resolve().parent


class SleepEnv(gym.Env):
    """ML10-shaped slot (39-d observation, 4-d action) whose step sleeps ``step_us`` and truncates at 500."""

    def __init__(self, step_us: float, horizon: int = 500) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (39,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.step_s, self.horizon, self.t, self.task = step_us * 1e-6, horizon, 0, None
        self._obs = np.zeros(39)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self._obs, {}

    def step(self, action):
        time.sleep(self.step_s)
        self.t += 1
        return self._obs, 0.0, False, self.t >= self.horizon, {"success": 0.0}


def sleep_seconds(step_us: float, n: int = 2000) -> float:
    """What ``time.sleep(step_us µs)`` really takes here (the OS rounds it up)."""
    env = SleepEnv(step_us)
    start = time.perf_counter()
    for _ in range(n):
        env.step(None)
    return (time.perf_counter() - start) / n


def run_row(bench, agent: str, workers: int, per_worker: int, step_us: float, repeats: int) -> float:
    slots = workers * per_worker
    envs = SharedMemoryVectorEnv(functools.partial(SleepEnv, step_us), slots, workers, in_parent=False, spin_us=0.0)
    try:
        envs.set_attr("task", [None] * slots)
        learner = metarl.make_agent(agent, bench).make_learner()
        learner.reset(slots)
        metarl.collect(envs, learner, 1, seed=list(range(slots)))
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            ro = metarl.collect(envs, learner, 1)
            best = max(best, ro.num_steps / (time.perf_counter() - start))
        return best
    finally:
        envs.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--slots-per-worker", type=int, nargs="+", default=[2, 5])
    p.add_argument("--step-us", type=float, default=350.0)
    p.add_argument("--agents", nargs="+", default=["random", "maml"], help="policies the parent runs (registry names)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--tag", default="")
    args = p.parse_args()
    if min(args.workers) < 1 or min(args.slots_per_worker) < 1 or args.step_us <= 0 or args.repeats < 1:
        raise UsageError("--workers, --slots-per-worker, --step-us and --repeats must be positive")
    unknown = sorted(set(args.agents) - set(metarl.agent_names()))
    if unknown:
        raise UsageError(f"unknown agent(s) {', '.join(unknown)}: use some of {', '.join(metarl.agent_names())}")
    torch.set_num_threads(1)
    bench = metarl.make_benchmark("ML10", seed=0)
    slept = sleep_seconds(args.step_us)
    print(f"sleep({args.step_us:g} us) takes {slept * 1e6:.0f} us here")
    rows = []
    for agent in args.agents:
        for k in args.slots_per_worker:
            for w in args.workers:
                sps = run_row(bench, agent, w, k, args.step_us, args.repeats)
                ideal = w / slept
                rows.append({"agent": agent, "workers": w, "slots_per_worker": k, "slot_steps_per_s": sps,
                             "ideal": ideal, "efficiency": sps / ideal,
                             "overhead_us_per_vector_step": (k * w / sps - k * slept) * 1e6})
                r = rows[-1]
                print(f"{agent:8s} {w:3d} workers x {k} slots: {sps:9,.0f} slot-steps/s, ideal {ideal:9,.0f} "
                      f"({r['efficiency']:.0%}), overhead {r['overhead_us_per_vector_step']:5.0f} us per vector step",
                      flush=True)
    out = HERE / f"shm_emulated{'-' + args.tag if args.tag else ''}.json"
    write_result(out, {"sleep_us_measured": slept * 1e6, "shm_options": {"in_parent": False, "spin_us": 0.0},
                       "torch_threads": 1, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

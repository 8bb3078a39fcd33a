"""The parent's serial work per vector step: each agent's ``act`` and ``collect``'s bookkeeping.

While workers step env slots, the training process waits; between two vector steps it runs the policy
for all slots (``Learner.act``) and :func:`metarl.collect`'s bookkeeping while the workers wait. That
serial time adds to every vector step, so on many cores it bounds the speed-up of the ``shm`` backend
(with ``K`` slots per worker taking ``t`` seconds each, a vector step takes at least ``K * t`` plus this).

Measured here, one torch thread (as training acts, ``TrainerConfig.collect_threads = 1``), CPU:

- ``act``: µs per call on ML10-shaped inputs (39-d observations, 4-d actions), stochastic actions, best
  of ``--repeats`` means over ``--calls`` calls; ``maml-adapted`` acts with per-slot adapted parameters
  (what :meth:`MAMLLearner.adapt` leaves; here the shared parameters plus noise);
- ``collect``: µs per vector step of ``collect`` with the ``random`` agent over an in-process vector env
  that does no work (returns preallocated arrays, 500-step episodes).

::

    python experiments/shm_backend/parent_cost.py                    # writes parent_cost.json here
    python experiments/shm_backend/parent_cost.py --slots 32 --tag x # ... parent_cost-x.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

import metarl
from metarl.errors import UsageError, exit_code
from metarl.provenance import write_result

HERE = Path(__file__).resolve().parent
AGENTS = ("random", "zero-shot", "maml", "maml-adapted", "rl2", "pearl")


class NullVectorEnv(gym.vector.VectorEnv):
    """``n`` ML10-shaped slots that do no work: zero observations and rewards, truncation at ``horizon``."""

    def __init__(self, n: int, obs_dim: int = 39, act_dim: int = 4, horizon: int = 500) -> None:
        self.num_envs, self.horizon, self.t = n, horizon, 0
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
        self.metadata = {"autoreset_mode": AutoresetMode.DISABLED}
        self._obs = np.zeros((n, obs_dim))
        self._info = {"success": np.zeros(n), "_success": np.ones(n, bool)}

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self._obs.copy(), {}

    def step(self, actions):
        self.t += 1
        n = self.num_envs
        return self._obs.copy(), np.zeros(n), np.zeros(n, bool), np.full(n, self.t >= self.horizon), self._info


def _best_mean_us(fn, calls: int, repeats: int) -> float:
    for _ in range(min(100, calls)):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def act_us(bench, agent: str, slots: int, calls: int, repeats: int) -> float:
    torch.manual_seed(0)
    algo = metarl.make_agent("maml" if agent == "maml-adapted" else agent, bench)
    learner = algo.make_learner()
    learner.reset(slots)
    if agent == "maml-adapted":  # the shape adapt() leaves: each parameter stacked per slot, [N, *shape]
        learner.adapted = {k: torch.stack([p.detach() + 0.01 * torch.randn_like(p) for _ in range(slots)])
                           for k, p in algo.policy.named_parameters()}
    obs_dim = metarl.EnvSpec.from_distribution(bench.train).obs_dim
    rng = np.random.default_rng(0)
    step = metarl.StepInput(rng.standard_normal((slots, obs_dim)).astype(np.float32),
                            np.zeros(slots, np.float32), np.zeros(slots, bool))
    return _best_mean_us(lambda: learner.act(step), calls, repeats)


def collect_us(bench, slots: int, repeats: int) -> float:
    envs = NullVectorEnv(slots)
    learner = metarl.make_agent("random", bench).make_learner()
    learner.reset(slots)
    metarl.collect(envs, learner, 1)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ro = metarl.collect(envs, learner, 2)
        best = min(best, (time.perf_counter() - start) / ro.rewards.shape[0] * 1e6)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slots", type=int, nargs="+", default=[10, 32, 64])
    p.add_argument("--agents", nargs="+", default=list(AGENTS), help=f"of {', '.join(AGENTS)}")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tag", default="")
    p.add_argument("--note", default="", help="stored in the JSON (e.g. how an older commit was measured)")
    args = p.parse_args()
    if min(args.slots) < 1 or args.calls < 1 or args.repeats < 1:
        raise UsageError("--slots, --calls and --repeats must be positive")
    unknown = sorted(set(args.agents) - set(AGENTS))
    if unknown:
        raise UsageError(f"unknown agent(s) {', '.join(unknown)}: use some of {', '.join(AGENTS)}")
    torch.set_num_threads(1)
    bench = metarl.make_benchmark("ML10", seed=0)
    rows = []
    print(f"{'':16s}" + "".join(f"{n:>10d} slots" for n in args.slots))
    for agent in args.agents:
        us = [act_us(bench, agent, n, args.calls, args.repeats) for n in args.slots]
        rows += [{"what": "act", "agent": agent, "slots": n, "us_per_call": u}
                 for n, u in zip(args.slots, us, strict=True)]
        print(f"act {agent:12s}" + "".join(f"{u:13.0f} us" for u in us), flush=True)
    us = [collect_us(bench, n, args.repeats) for n in args.slots]
    rows += [{"what": "collect, random agent, env that does no work", "slots": n, "us_per_vector_step": u}
             for n, u in zip(args.slots, us, strict=True)]
    print(f"{'collect':16s}" + "".join(f"{u:13.0f} us" for u in us))
    out = HERE / f"parent_cost{'-' + args.tag if args.tag else ''}.json"
    write_result(out, {"torch_threads": 1, "device": "cpu", **({"note": args.note} if args.note else {}),
                       "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

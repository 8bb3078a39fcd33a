"""Where a Meta-World env's step time goes: cProfile over random steps on each of ML10's 15 classes.

The profile behind each fast-env round (``envs/metaworld_fast.py``; docs/performance.md)::

    python experiments/fast_env_profile/profile_fast_env.py                 # fast envs, 1,000 steps per class
    python experiments/fast_env_profile/profile_fast_env.py --upstream      # upstream envs
    python experiments/fast_env_profile/profile_fast_env.py --envs reach-v3,pick-place-v3 --steps 3000

Prints the functions with the most time of their own (resets included, v2 rewards, seed 0).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import numpy as np
from metaworld.env_dict import ML10_V3

from metarl.envs.metaworld import make_env
from metarl.errors import UsageError, exit_code


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--envs", default=None, help="comma-separated v3 task names (default: ML10's 15 classes)")
    p.add_argument("--steps", type=int, default=1000, help="random steps per env")
    p.add_argument("--upstream", action="store_true", help="profile upstream's classes instead of the fast ones")
    p.add_argument("--top", type=int, default=30, help="rows to print")
    args = p.parse_args()
    if args.steps < 1 or args.top < 1:
        raise UsageError("--steps and --top must be >= 1")
    names = args.envs.split(",") if args.envs else [*ML10_V3["train"], *ML10_V3["test"]]
    envs = [make_env(name, fast=not args.upstream, seed=0) for name in names]
    actions = np.random.default_rng(0).uniform(-1, 1, (args.steps, 4)).astype(np.float32)

    def run() -> None:
        for env in envs:
            env.reset()
            for action in actions:
                if env.step(action)[3]:
                    env.reset()

    profile = cProfile.Profile()
    profile.runcall(run)
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

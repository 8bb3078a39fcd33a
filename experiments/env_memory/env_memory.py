"""Memory of Meta-World slots whose task class changes between meta-batches, as in training.

``--slots`` slots in this process (the ``sync`` backend; an shm worker holds its slots the same way)
get a new meta-batch of training tasks (:meth:`metarl.TaskSet.sample`, the trainer's draw) and a reset,
``--rounds`` times. After each round it records this process's private memory (MiB, pages no other
process shares) and how many upstream Meta-World envs exist. With fewer slots than classes (ML45 with
10 slots) every slot runs many classes over time, and each class needs its own upstream env::

    python experiments/env_memory/env_memory.py ML45 --slots 10 --rounds 40   # writes env_memory-ML45.json here
"""

from __future__ import annotations

import argparse
import gc
import os
from pathlib import Path

import numpy as np

import metarl
from metarl.envbench import private_mb
from metarl.errors import UsageError, exit_code
from metarl.provenance import write_result

HERE = Path(__file__).resolve().parent


def upstream_envs() -> int:
    """Live upstream Meta-World env objects in this process."""
    from metaworld.sawyer_xyz_env import SawyerXYZEnv

    return sum(isinstance(o, SawyerXYZEnv) for o in gc.get_objects())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("benchmark", choices=("ML10", "ML45"))
    p.add_argument("--slots", type=int, default=10)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--tag", default="")
    p.add_argument("--note", default="", help="stored in the JSON (e.g. which commit's env code ran)")
    args = p.parse_args()
    if args.slots < 1 or args.rounds < 1:
        raise UsageError("--slots and --rounds must be positive")
    bench = metarl.make_benchmark(args.benchmark, seed=0)
    envs = metarl.make_vector_env(bench.train, args.slots, "sync")
    rng = np.random.default_rng(0)
    start = private_mb(os.getpid())
    rows = []
    print(f"{'round':>5s} {'upstream envs':>13s} {'private MiB':>11s}   "
          f"({args.benchmark}, {args.slots} slots, one process)")
    for r in range(1, args.rounds + 1):
        envs.set_tasks(bench.train.sample(args.slots, rng))
        envs.reset(seed=r)
        rows.append({"round": r, "upstream_envs": upstream_envs(), "private_mb": private_mb(os.getpid())})
        if r in (1, 5, 10, 20) or r == args.rounds:
            print(f"{r:5d} {rows[-1]['upstream_envs']:13d} {rows[-1]['private_mb']:11.0f}", flush=True)
    envs.close()
    out = HERE / f"env_memory-{args.benchmark}{'-' + args.tag if args.tag else ''}.json"
    write_result(out, {"slots": args.slots, "classes": len(bench.train.task_names),
                       "private_mb_before_first_round": start, **({"note": args.note} if args.note else {}),
                       "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

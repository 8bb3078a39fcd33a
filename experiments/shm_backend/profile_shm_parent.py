"""cProfile of the training process while the ``shm`` backend steps ML10 slots with the random agent.

Shows how a vector step's time splits between waiting on the workers (semaphore ``acquire``) and the
parent's own serial work (the policy, :func:`metarl.collect`, the shm exchange)::

    python experiments/shm_backend/profile_shm_parent.py 1 5     # workers, slots per worker
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time

import metarl
from metarl.envbench.vector import _ml10_slot_tasks
from metarl.errors import UsageError, exit_code


def main() -> None:
    try:
        workers, spw = (int(a) for a in sys.argv[1:3])
    except ValueError:
        raise UsageError("usage: python experiments/shm_backend/profile_shm_parent.py "
                         "WORKERS SLOTS_PER_WORKER") from None
    if workers < 1 or spw < 1:
        raise UsageError("WORKERS and SLOTS_PER_WORKER must be positive")
    bench = metarl.make_benchmark("ML10", seed=0)
    envs = metarl.make_vector_env(bench.train, workers * spw, "shm", num_workers=workers)
    try:
        envs.set_tasks(_ml10_slot_tasks(bench, workers * spw))
        learner = metarl.make_agent("random", bench).make_learner()
        metarl.collect(envs, learner, episodes=1, seed=list(range(workers * spw)))  # warm-up
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        ro = metarl.collect(envs, learner, episodes=2)
        profile.disable()
        seconds = time.perf_counter() - start
    finally:
        envs.close()
    print(f"{ro.num_steps / seconds:,.0f} slot-steps/s (profiled), {ro.num_steps // (workers * spw)} vector steps")
    pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

"""Where one RL² training iteration on ML10 spends its time (issue 26: is RL²'s per-step cost the limit?).

Runs one warm-up iteration, then profiles one more with cProfile and splits its wall time into:
env stepping (Meta-World's step/reset under the vector env), acting (the policy's forward passes in
``Learner.act``), the rollout's own bookkeeping (``metarl.rollout.collect`` minus the two above) and the
meta-update (PPO over whole trials: BPTT replay, backward, optimiser)::

    OMP_NUM_THREADS=1 taskset -c 0 python experiments/rl2_profile/profile_rl2_ml10.py --out experiments/rl2_profile/ML10.json
"""  # noqa: E501 (the --help description: the command stays one line, to copy)

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

import torch

import metarl
from metarl.provenance import write_result
from metarl.trainer import Trainer, TrainerConfig


def cumulative(stats: pstats.Stats, where: str, name: str) -> float:
    """Cumulative seconds of the functions named ``name`` in files whose path contains ``where``."""
    return sum(v[3] for (path, _, fn), v in stats.stats.items() if where in path and fn == name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    bench = metarl.make_benchmark("ML10", seed=0)
    trainer = Trainer(bench, metarl.make_agent("rl2", bench), TrainerConfig(num_envs=args.num_envs, backend="sync"))
    trainer.iteration()  # warm-up: env construction, first allocations
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    metrics = trainer.iteration()
    prof.disable()
    wall = time.perf_counter() - start
    trainer.close()
    stats = pstats.Stats(prof)
    steps = args.num_envs * 13 * 500
    env = cumulative(stats, "metarl/vector", "step") + cumulative(stats, "metarl/vector", "reset")
    act = cumulative(stats, "agents/rl2", "act")
    collect = metrics["time/collect_s"]
    update = metrics["time/update_s"]
    split = {"env_step_s": env, "act_s": act, "rollout_bookkeeping_s": collect - env - act, "meta_update_s": update}
    rows = {k: {"seconds": round(v, 2), "share": round(v / wall, 3)} for k, v in split.items()}
    write_result(args.out, {"benchmark": "ML10", "agent": "rl2", "num_envs": args.num_envs, "env_steps": steps,
                            "wall_s_profiled": round(wall, 2), "steps_per_s_profiled": round(steps / wall, 1),
                            "split": rows,
                            "note": "cProfile adds overhead to every Python call; shares are indicative"})
    for k, v in rows.items():
        print(f"{k:24s} {v['seconds']:8.2f} s  {100 * v['share']:5.1f}%")
    pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()

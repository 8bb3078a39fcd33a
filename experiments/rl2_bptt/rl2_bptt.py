"""Does RL² learn to carry task knowledge across episodes when no gradient crosses an episode boundary?

RL² replays each trial in truncated-BPTT chunks started from stored, detached hidden states. When the
chunk length divides the episode length and the grid starts at step 0 (Meta-World: ``bptt_len`` 250,
500-step episodes), every episode starts a chunk, so nothing the loss of episode k+1 wants can reach
what the GRU wrote during episode k. This trains RL² on ``ToySides`` (the goal is left or right;
only experience of the task tells which; 8-step episodes) with chunks aligned to episodes, with the
grid shifted half a chunk (``bptt_offset``), and with whole-trial chunks, for a few seeds each, then
runs the official held-out evaluation (10 adaptation + 3 evaluation episodes). Prints a table and
writes JSON with command, commit, machine and date::

    python experiments/rl2_bptt/rl2_bptt.py --seeds 0 1 2 3 4 --steps 150000

One torch thread per process (small GRU ops run faster that way and the numbers don't depend on the
core count).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import metarl
from metarl.errors import UsageError, exit_code
from metarl.evaluator import EvalConfig, evaluate
from metarl.provenance import provenance, write_result
from metarl.vector import make_vector_env

HERE = Path(__file__).resolve().parent
HORIZON = 8  # ToySides' default episode length
TRIAL = 10 * HORIZON  # steps per trial (trial_episodes=10)
ARMS = {  # name -> RL² options on top of BASE; every arm takes 8 trials per minibatch (2 minibatches of 16)
    "aligned": {"bptt_len": HORIZON, "bptt_offset": 0, "minibatch_chunks": 8 * (TRIAL // HORIZON)},
    # the shifted grid cuts a trial into one more chunk: a half chunk first, a half chunk last
    "offset": {"bptt_len": HORIZON, "bptt_offset": HORIZON // 2, "minibatch_chunks": 8 * (TRIAL // HORIZON + 1)},
    "whole-trial": {"bptt_len": 250},  # longer than the trial: one chunk per slot, 8 per minibatch
}
BASE = {"hidden": 128, "lr": 3e-3, "minibatch_chunks": 8, "epochs": 4, "trial_episodes": 10}  # the RL² test's


def run_arm(options: dict, seed: int, steps: int, num_envs: int) -> dict:
    """Train RL² on ToySides with ``options``, evaluate on the held-out goals -> one result row."""
    metarl.seed_everything(seed)
    bench = metarl.make_benchmark("ToySides", seed=seed)
    algo = metarl.make_agent("rl2", bench, **{**BASE, **options})
    start = time.perf_counter()
    metarl.Trainer(bench, algo, metarl.TrainerConfig(steps=steps, num_envs=num_envs, seed=seed, final_eval=False,
                                                     progress=False)).train()
    envs = make_vector_env(bench.test, len(bench.test.tasks))
    try:
        result = evaluate(bench.test, algo.make_learner(), envs, EvalConfig(), seed=seed)
    finally:
        envs.close()
    return {"seed": seed, "success_rate": result.success_rate, "pre_success_rate": result.pre_success_rate,
            "return": result.mean_return, "pre_return": result.pre_return,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=150_000, help="env steps per run (default 150000)")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--arms", nargs="+", default=list(ARMS), help=f"any of {', '.join(ARMS)}")
    p.add_argument("--out", type=Path, help="results JSON (default: rl2_bptt-ToySides"
                   "[-<arms>].json, the arms named unless all ran)")
    args = p.parse_args()
    if args.out is None:
        label = "" if sorted(args.arms) == sorted(ARMS) else "-" + "-".join(args.arms)
        args.out = HERE / f"rl2_bptt-ToySides{label}.json"
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown:
        raise UsageError(f"unknown arm {', '.join(unknown)}: choose from {', '.join(ARMS)}")
    if args.steps < 1 or args.num_envs < 1 or min(args.seeds) < 0:
        raise UsageError("--steps and --num-envs must be >= 1 and seeds >= 0")
    torch.set_num_threads(1)
    started = provenance()  # the commit it ran, not HEAD at the end
    rows = {}
    for arm in args.arms:
        rows[arm] = [run_arm(ARMS[arm], seed, args.steps, args.num_envs) for seed in args.seeds]
        for r in rows[arm]:
            print(f"{arm:12s} seed {r['seed']}: success {r['success_rate']:.3f} (1st episode "
                  f"{r['pre_success_rate']:.3f}), return {r['return']:.2f} ({r['pre_return']:.2f}), {r['seconds']} s",
                  flush=True)
    summary = {arm: {k: round(statistics.fmean(r[k] for r in rs), 4) for k in
                     ("success_rate", "pre_success_rate", "return", "pre_return")} for arm, rs in rows.items()}
    print(f"\nRL² on ToySides, {args.steps:,} steps, seeds {args.seeds}; "
          "held-out, official protocol (means over seeds)")
    print(f"{'arm':12s} {'options':55s} {'success':>8s} {'1st ep':>7s} {'return':>8s} {'1st ep':>8s}")
    for arm, s in summary.items():
        opts = ",".join(f"{k}={v}" for k, v in ARMS[arm].items())
        print(f"{arm:12s} {opts:55s} {s['success_rate']:8.3f} {s['pre_success_rate']:7.3f} {s['return']:8.2f} "
              f"{s['pre_return']:8.2f}")
    obj = {"family": "ToySides", "horizon": HORIZON, "base_options": BASE, "arms": ARMS, "steps": args.steps,
           "num_envs": args.num_envs, "summary": summary, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, obj, head=started)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

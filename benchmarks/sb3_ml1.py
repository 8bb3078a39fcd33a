"""Stable-Baselines3 baselines on ML1 by metarl's held-out protocol: PPO (zero-shot) and sb3-contrib's
RecurrentPPO (an RL²-style adapter) trained on a task class's 50 training goals for a fixed budget, then
evaluated on its 50 held-out goals (10 adaptation + 3 evaluation episodes each), into evaluation files that
``metarl compare`` and ``metarl report`` take next to metarl's agents. Needs ``pip install -e .[sb3]``::

    python benchmarks/sb3_ml1.py --steps 2000000 --results benchmarks/results/sb3-ML1-reach-v3.json

Training: :func:`metarl.sb3.make_vec_env` over the training goals, a new goal every trial. PPO's trial is
one episode; RecurrentPPO's is the protocol's 13 episodes on one goal with the previous reward and an
episode-start flag in its observations, so its LSTM can adapt across episodes as RL² does. Writes
``OUT/<algo>.zip``, ``OUT/<algo>-eval*.json`` and ``OUT/summary.json`` (a row per algorithm; also to
``--results``). A smoke run: ``--steps 1000 --horizon 20 --eval-tasks 2``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from metarl.errors import UsageError, exit_code
from metarl.evaluator import EvalConfig
from metarl.files import atomic_write
from metarl.provenance import write_result

ALGOS = ("PPO", "RecurrentPPO")
TRIAL = EvalConfig.adapt_episodes + EvalConfig.eval_episodes
"""Episodes per RecurrentPPO training trial: the evaluation's trial (10 + 3)."""


def make_model(algo: str, venv, seed: int, horizon: int):
    """PPO or RecurrentPPO with one episode (or ``horizon`` steps) per env per update."""
    common = {"n_steps": horizon, "batch_size": min(1000, horizon * venv.num_envs), "n_epochs": 10,
              "gamma": 0.99, "seed": seed, "device": "cpu", "verbose": 0}
    if algo == "PPO":
        from stable_baselines3 import PPO

        return PPO("MlpPolicy", venv, policy_kwargs={"net_arch": [128, 128]}, **common)
    from sb3_contrib import RecurrentPPO

    return RecurrentPPO("MlpLstmPolicy", venv, policy_kwargs={"lstm_hidden_size": 128, "net_arch": [128]}, **common)


def run(algo: str, args: argparse.Namespace, bench, out: Path) -> dict:
    """Train ``algo`` for ``args.steps``, save it, evaluate it on the held-out goals; the results row."""
    from metarl.sb3 import evaluate_model, make_vec_env

    recurrent = algo == "RecurrentPPO"
    venv = make_vec_env(bench.train, args.num_envs, backend=args.backend, seed=args.seed,
                        trial_episodes=TRIAL if recurrent else 1, with_reward=recurrent)
    try:
        model = make_model(algo, venv, args.seed, bench.train.horizon)
        start = time.perf_counter()
        model.learn(args.steps)
        seconds = time.perf_counter() - start
    finally:
        venv.close()
    model.save(out / f"{algo}.zip")
    result, summary = evaluate_model(bench, out / f"{algo}.zip", algo=algo, eval_seed=args.seed,
                                     num_envs=args.num_envs, eval_tasks=args.eval_tasks)
    name = f"{algo}-eval" + (f"-first{args.eval_tasks}" if args.eval_tasks else "") + ".json"
    with atomic_write(out / name) as f:
        f.write(json.dumps({**summary, "trained_env_steps": model.num_timesteps}, indent=2) + "\n")
    print(f"{algo:13s} success {result.success_rate:6.1%} (pre {result.pre_success_rate:6.1%}), return "
          f"{result.mean_return:7.1f}, {model.num_timesteps:,} steps in {seconds / 60:.1f} min -> {out / name}")
    return {"algo": algo, "trained_env_steps": model.num_timesteps, "train_seconds": round(seconds, 1),
            "eval_file": str(out / name), **{k: summary[k] for k in (
                "success_rate", "success_rate_se", "pre_success_rate", "return", "pre_return", "protocol")}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", default="reach-v3", help="ML1 task class (default reach-v3)")
    p.add_argument("--steps", type=int, default=2_000_000, help="training env steps per algorithm")
    p.add_argument("--seed", type=int, default=0, help="benchmark, training and evaluation seed")
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--backend", default="auto", help="metarl vector backend (auto, sync, shm, ...)")
    p.add_argument("--horizon", type=int, default=500, help="episode length (500: Meta-World's; less: smoke runs)")
    p.add_argument("--eval-tasks", type=int, help="evaluate only the first K held-out goals (default: all 50)")
    p.add_argument("--algos", default=",".join(ALGOS), help="comma-separated, of PPO and RecurrentPPO")
    p.add_argument("--out", type=Path, help="folder for models and evaluation files "
                                            "(default runs/sb3-ML1-<task>-s<seed>)")
    p.add_argument("--results", type=Path, help="also write the summary here (e.g. benchmarks/results/...)")
    args = p.parse_args()
    algos = args.algos.split(",")
    if args.steps < 1 or args.num_envs < 1 or not set(algos) <= set(ALGOS):
        raise UsageError(f"--steps and --num-envs must be >= 1 and --algos among {', '.join(ALGOS)}")
    from metarl.factory import make_benchmark

    bench = make_benchmark("ML1", task=args.task, seed=args.seed, horizon=args.horizon)
    out = args.out or Path("runs") / f"sb3-ML1-{args.task}-s{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    rows = [run(algo, args, bench, out) for algo in algos]
    payload = {"benchmark": bench.label, "reward_version": bench.reward_version, "seed": args.seed,
               "steps": args.steps, "horizon": args.horizon, "num_envs": args.num_envs, "rows": rows}
    for path in [out / "summary.json", *([args.results] if args.results else [])]:
        write_result(path, payload)
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

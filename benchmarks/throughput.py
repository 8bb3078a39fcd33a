"""Training throughput (env steps/s including learning): metarl agents next to Stable-Baselines3 PPO.

Same task (ML1 reach-v3 training goals, fast env classes, v2 rewards), same number of envs (10,
in-process), same step budget, one run. SB3 PPO collects 500 steps per env per update (one
episode, like metarl's zero-shot agent) with 10 epochs of 1,000-sample minibatches; RL² collects
10-episode trials (50,000 steps per update). Needs ``pip install -e .[bench]``::

    python benchmarks/throughput.py --steps 100000     # writes benchmarks/results/throughput.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import metarl
from metarl.errors import exit_code
from metarl.provenance import write_result

HERE = Path(__file__).resolve().parent


def _task_env(dist, task):
    env = dist.make_env()
    env.task = task
    return env


def time_sb3(bench, num_envs: int, steps: int) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    tasks = bench.train.sample(num_envs, __import__("numpy").random.default_rng(0))
    venv = DummyVecEnv([lambda t=t: _task_env(bench.train, t) for t in tasks])
    model = PPO("MlpPolicy", venv, n_steps=500, batch_size=1000, n_epochs=10, seed=0, device="cpu", verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    dt = time.perf_counter() - start
    venv.close()
    return model.num_timesteps / dt


def time_metarl(bench, agent: str, num_envs: int, steps: int) -> float:
    algo = metarl.make_agent(agent, bench)
    trainer = metarl.Trainer(bench, algo, metarl.TrainerConfig(steps=steps, num_envs=num_envs, final_eval=False,
                                                               progress=False))
    # its envs built before the clock starts, as SB3's are (DummyVecEnv above)
    trainer._envs = metarl.make_vector_env(bench.train, num_envs, trainer.config.backend, trainer.config.num_workers)
    start = time.perf_counter()
    trainer.train()
    return trainer.state.env_steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--out", type=Path, default=HERE / "results" / "throughput.json")
    args = p.parse_args()
    if args.steps < 1 or args.num_envs < 1:
        print("error: --steps and --num-envs must be >= 1: give e.g. --steps 100000", file=sys.stderr)
        raise SystemExit(2)
    torch.manual_seed(0)
    bench = metarl.make_benchmark("ML1", task="reach-v3", seed=0)
    rows = {"sb3-ppo": time_sb3(bench, args.num_envs, args.steps)}
    for agent in ("zero-shot", "rl2"):
        rows[f"metarl-{agent}"] = time_metarl(bench, agent, args.num_envs, args.steps)
    for name, sps in rows.items():
        print(f"{name:18s} {sps:8.0f} env steps/s (incl. learning)")
    write_result(args.out, {
        "reward_function_version": "v2", "task": "ML1 reach-v3 (fast envs)", "num_envs": args.num_envs,
        "steps": args.steps, "torch_threads": torch.get_num_threads(), "steps_per_s": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

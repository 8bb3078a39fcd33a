"""Training throughput of one agent under several trainer settings, measured side by side in one run.

Each variant builds a fresh agent and trainer (same seed), runs ``--iterations`` meta-training iterations
after one warm-up iteration, and reports env steps/s of the whole iteration, the seconds spent in the
meta-update, and steps/s of collection alone (iteration minus meta-update). Variants are trainer
settings (``backend``, ``collect_threads``, ``num_workers``), the ``shm`` backend's default spin (``spin_us``)
and family options (``fast``)::

    python benchmarks/train_speed.py ML1 --task reach-v3 --agent maml --num-envs 10 --iterations 3 \\
        --variant backend=sync --variant backend=shm --variant backend=shm,collect_threads=1

Writes ``benchmarks/results/train_speed-<agent>-<task or benchmark>[-<tag>].json`` with command,
commit, machine and date. Run it on an otherwise idle machine: the variants share its cores in turn.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import metarl
from metarl.errors import UsageError, exit_code
from metarl.provenance import provenance, write_result
from metarl.runs import parse_options

HERE = Path(__file__).resolve().parent
TRAINER_KEYS = ("backend", "collect_threads", "num_workers")
SHM_KEYS = ("spin_us",)  # the shm backend's default spin (metarl.vector.shm.DEFAULT_SPIN_US) for this variant


def parse_variant(text: str) -> tuple[dict, dict, dict]:
    """``"backend=shm,spin_us=100,fast=False"`` -> (trainer settings, shm settings, family options)."""
    opts = parse_options([p for p in text.split(",") if p], "--variant", "backend=shm")
    trainer = {k: v for k, v in opts.items() if k in TRAINER_KEYS}
    shm = {k: v for k, v in opts.items() if k in SHM_KEYS}
    if shm and trainer.get("backend") != "shm":
        raise UsageError(f"--variant {text!r}: {', '.join(shm)} applies to the shm backend only: add backend=shm")
    return trainer, shm, {k: v for k, v in opts.items() if k not in TRAINER_KEYS + SHM_KEYS}


def run_variant(args: argparse.Namespace, text: str, write: Callable[[dict], None]) -> dict:
    """One variant's measurement; ``write(partial)`` is called after every measured iteration (a run cut
    short by a time limit keeps what it measured)."""
    from metarl.vector import shm as vector_shm

    trainer_opts, shm_opts, env_opts = parse_variant(text)
    default_spin = vector_shm.DEFAULT_SPIN_US
    vector_shm.DEFAULT_SPIN_US = float(shm_opts.get("spin_us", default_spin))
    try:
        return _measure(args, text, trainer_opts, shm_opts, env_opts, write)
    finally:
        vector_shm.DEFAULT_SPIN_US = default_spin


def _summary(text: str, trainer_opts: dict, shm_opts: dict, env_opts: dict, rows: list[dict]) -> dict:
    steps = sum(r["steps"] for r in rows)
    wall, upd = sum(r["seconds"] for r in rows), sum(r["update_seconds"] for r in rows)
    return {"variant": text, "trainer": trainer_opts, "shm": shm_opts, "env_options": env_opts, "iterations": rows,
            "steps_per_s": steps / max(wall, 1e-9), "collect_steps_per_s": steps / max(wall - upd, 1e-9),
            "update_seconds_per_iteration": upd / max(len(rows), 1)}


def _measure(args: argparse.Namespace, text: str, trainer_opts: dict, shm_opts: dict, env_opts: dict,
             write: Callable[[dict], None]) -> dict:
    from metarl.seeding import seed_everything  # imports torch: not at the top, which shm workers import too

    bench = metarl.make_benchmark(args.benchmark, task=args.task, seed=args.seed, **{**args.env_options, **env_opts})
    seed_everything(args.seed)
    agent = metarl.make_agent(args.agent, bench, device=args.device, **args.agent_options)
    cfg = replace(metarl.TrainerConfig(num_envs=args.num_envs, seed=args.seed, final_eval=False, progress=False),
                  **trainer_opts)
    trainer = metarl.Trainer(bench, agent, cfg)
    update_s = [0.0]
    meta_update = agent.meta_update

    def timed_update(batch):
        start = time.perf_counter()
        try:
            return meta_update(batch)
        finally:
            update_s[0] += time.perf_counter() - start

    agent.meta_update = timed_update
    rows: list[dict] = []
    try:
        for i in range(args.iterations + 1):
            steps0, update_s[0] = trainer.state.env_steps, 0.0
            start = time.perf_counter()
            trainer.iteration()
            wall = time.perf_counter() - start
            steps = trainer.state.env_steps - steps0
            if not i and trainer.config.backend == "shm":  # the spin the workers actually use (0 when cores are short)
                shm_opts = {**shm_opts, "actual_spin_us": round(trainer._envs.env.spin_s * 1e6, 3)}
            if i:  # iteration 0 warms up (worker start, first allocations)
                rows.append({"steps": steps, "seconds": wall, "update_seconds": update_s[0]})
                write(_summary(text, trainer_opts, shm_opts, env_opts, rows))
    finally:
        trainer.close()
    return _summary(text, trainer_opts, shm_opts, env_opts, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("benchmark")
    p.add_argument("--task")
    p.add_argument("--agent", required=True)
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--iterations", type=int, default=3, help="measured iterations per variant (after 1 warm-up)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", action="append", required=True,
                   help="comma-separated KEY=VALUE: trainer backend/collect_threads/num_workers, the shm spin_us, "
                        "or a family option")
    p.add_argument("--env-opt", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--agent-opt", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--tag", default="")
    p.add_argument("--device", default="cpu", help="where the agent acts and learns: cpu or cuda")
    p.add_argument("--out", type=Path,
                   help="results JSON (default: benchmarks/results/train_speed-<agent>-<label>[-<tag>].json)")
    args = p.parse_args()
    if args.iterations < 1:
        raise UsageError(f"--iterations must be >= 1, got {args.iterations}: give e.g. --iterations 3")
    args.env_options = parse_options(args.env_opt, "--env-opt", "horizon=200")
    args.agent_options = parse_options(args.agent_opt, "--agent-opt", "hidden=128")
    for text in args.variant:
        parse_variant(text)  # refuse a bad variant before measuring any
    import torch

    label = args.task or args.benchmark
    out = args.out or HERE / "results" / f"train_speed-{args.agent}-{label}{'-' + args.tag if args.tag else ''}.json"
    head = {**provenance(), "torch_threads": torch.get_num_threads(), "num_envs": args.num_envs,
            "device": args.device,
            "reward_version": metarl.make_benchmark(args.benchmark, task=args.task, **args.env_options).reward_version}
    rows: list[dict] = []

    def write(partial: dict | None = None) -> None:  # atomic: a time limit never leaves half a file
        write_result(out, {"variants": rows + ([partial] if partial else [])}, head=head)

    write()  # provenance first: a run killed in its warm-up still says what it was
    for text in args.variant:
        rows.append(run_variant(args, text, write))
        write()
        r = rows[-1]
        print(f"{text:40s} {r['steps_per_s']:8.0f} steps/s  collect {r['collect_steps_per_s']:8.0f} steps/s  "
              f"update {r['update_seconds_per_iteration']:6.2f} s/iteration", flush=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

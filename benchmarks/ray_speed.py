"""Training throughput of ``--backend ray`` against ``shm`` at equal cores, with the time split.

For each backend: a fresh agent and trainer (same seed), one warm-up iteration (actors and workers
start, envs build), then ``--iterations`` measured ones. Reported per backend: env steps/s of whole
iterations; seconds in collection (``time/collect_s``) and in the meta-update (``time/update_s``); for
``ray`` also how much of collection the busiest actor spent running trials, the rest being transfer
(weights out, rollouts back, merge) and scheduling::

    python benchmarks/ray_speed.py ML10 --agent maml --workers 2 --num-envs 10 --iterations 3

Writes ``benchmarks/results/ray_speed-<agent>-<benchmark>[-<tag>].json`` with command, commit, machine and
date. Run it on an otherwise idle machine: both backends get the same ``--workers`` cores in turn.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from metarl.errors import exit_code
from metarl.provenance import provenance, write_result
from metarl.runs import parse_options

HERE = Path(__file__).resolve().parent


def measure(args: argparse.Namespace, backend: str) -> dict:
    from metarl.factory import make_agent, make_benchmark
    from metarl.seeding import seed_everything
    from metarl.trainer import Trainer, TrainerConfig

    bench = make_benchmark(args.benchmark, task=args.task, seed=0,
                           **parse_options(args.env_opt, "--env-opt", "horizon=50"))
    seed_everything(0)
    agent = make_agent(args.agent, bench, **parse_options(args.agent_opt, "--agent-opt", "hidden=64"))
    cfg = TrainerConfig(steps=10**12, num_envs=args.num_envs, seed=0, backend=backend, num_workers=args.workers,
                        progress=False, final_eval=False)
    trainer = Trainer(bench, agent, cfg)
    rows = []
    try:
        trainer.iteration()  # warm-up: workers / actors start
        for _ in range(args.iterations):
            before, start = trainer.state.env_steps, time.perf_counter()
            m = trainer.iteration()
            row = {"steps": trainer.state.env_steps - before, "seconds": time.perf_counter() - start,
                   "collect_s": m["time/collect_s"], "update_s": m["time/update_s"]}
            if trainer._ray is not None:
                row["actor_max_s"] = trainer._ray.timing["actor_max_s"]
                row["transfer_s"] = max(0.0, row["collect_s"] - row["actor_max_s"])
            rows.append(row)
    finally:
        trainer.close()
    total = {k: sum(r.get(k, 0.0) for r in rows) for k in ("steps", "seconds", "collect_s", "update_s",
                                                             "actor_max_s", "transfer_s")}
    return {"backend": backend, "workers": args.workers, "steps_per_s": total["steps"] / total["seconds"],
            **{k: v for k, v in total.items() if v or k in ("steps", "seconds")}, "iterations": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("benchmark")
    p.add_argument("--task")
    p.add_argument("--agent", default="maml")
    p.add_argument("--workers", type=int, default=2, help="shm workers = ray actors (cores for each backend)")
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--agent-opt", action="append", default=[])
    p.add_argument("--env-opt", action="append", default=[])
    p.add_argument("--tag", default="")
    args = p.parse_args(argv)
    head = provenance()
    rows = [measure(args, backend) for backend in ("shm", "ray")]
    ratio = rows[1]["steps_per_s"] / rows[0]["steps_per_s"]
    name = f"ray_speed-{args.agent}-{args.task or args.benchmark}{'-' + args.tag if args.tag else ''}.json"
    path = write_result(HERE / "results" / name, {"rows": rows, "ray_over_shm": ratio}, head=head)
    for r in rows:
        print(f"{r['backend']:>4}: {r['steps_per_s']:,.0f} steps/s  collect {r['collect_s']:.1f}s  "
              f"update {r['update_s']:.1f}s" + (f"  transfer {r['transfer_s']:.1f}s" if "transfer_s" in r else ""))
    print(f"ray / shm = {ratio:.2f}; written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

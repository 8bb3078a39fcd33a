"""Training throughput of ``--backend ray`` against ``shm`` at equal cores, with the time split.

For each backend: a fresh agent and trainer (same seed), one warm-up iteration (actors and workers
start, envs build), then ``--iterations`` measured ones. Reported per backend: env steps/s of whole
iterations; seconds in collection (``time/collect_s``) and in the meta-update (``time/update_s``); for
``ray`` also how much of collection the busiest actor spent running trials, the rest being transfer
(weights out, rollouts back, merge) and scheduling::

    python benchmarks/ray_speed.py ML10 --agent maml --workers 2 --num-envs 20 --agent-opt inner_steps=1

Writes ``benchmarks/results/ray_speed-<agent>-<benchmark>[-<tag>].json`` (or ``--out``) with command, commit,
machine and date. Run it on an otherwise idle machine: both backends get the same ``--workers`` cores in turn.

The JSON also projects both backends to ``--project`` cores from the measured per-iteration costs (a
projection, not a measurement): ``ray`` collects on that many actors (the busiest actor's trial time
shrinks with their number, transfer and the meta-update stay as measured), ``shm`` cannot collect faster
than its parent's ceiling (``--shm-ceiling`` env steps/s: 5,744 measured at 16 workers on a 16-core host,
``bench_envs-h200-host.json``) and then runs the same meta-update.
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


def project(rows: list[dict], cores: int, shm_ceiling: float) -> dict:
    """Env steps/s at ``cores`` workers from one measured iteration's costs (see the module docstring)."""
    shm, ray = rows
    n = len(ray["iterations"])
    steps = ray["steps"] / n
    update_s = ray["update_s"] / n
    per_core = ray["steps"] / (ray["actor_max_s"] * ray["workers"])  # trial env steps/s of one busy actor
    ray_collect = steps / (per_core * cores) + ray["transfer_s"] / n
    shm_collect = max(steps / shm_ceiling, shm["collect_s"] / len(shm["iterations"]) * shm["workers"] / cores)
    out = {"cores": cores, "steps_per_iteration": steps, "update_s": update_s,
           "actor_trial_steps_per_s_per_core": per_core, "shm_ceiling_steps_per_s": shm_ceiling,
           "ray_collect_s": ray_collect, "shm_collect_s": shm_collect,
           "ray_steps_per_s": steps / (ray_collect + update_s), "shm_steps_per_s": steps / (shm_collect + update_s)}
    out["ray_over_shm"] = out["ray_steps_per_s"] / out["shm_steps_per_s"]
    out["ray_collection_only_over_shm"] = shm_collect / ray_collect
    return out


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
    p.add_argument("--project", type=int, default=16, help="cores to project both backends to (default 16)")
    p.add_argument("--shm-ceiling", type=float, default=5744.0,
                   help="shm's measured collection ceiling in env steps/s at --project workers")
    p.add_argument("--out", type=Path, help="the JSON's path (default benchmarks/results/ray_speed-...)")
    args = p.parse_args(argv)
    head = provenance()
    rows = [measure(args, backend) for backend in ("shm", "ray")]
    ratio = rows[1]["steps_per_s"] / rows[0]["steps_per_s"]
    name = f"ray_speed-{args.agent}-{args.task or args.benchmark}{'-' + args.tag if args.tag else ''}.json"
    projection = project(rows, args.project, args.shm_ceiling)
    path = write_result(args.out or HERE / "results" / name, {"rows": rows, "ray_over_shm": ratio,
                                                               "projection": projection}, head=head)
    for r in rows:
        print(f"{r['backend']:>4}: {r['steps_per_s']:,.0f} steps/s  collect {r['collect_s']:.1f}s  "
              f"update {r['update_s']:.1f}s" + (f"  transfer {r['transfer_s']:.1f}s" if "transfer_s" in r else ""))
    print(f"ray / shm = {ratio:.2f}; projected to {args.project} cores (not measured): ray "
          f"{projection['ray_steps_per_s']:,.0f}, shm {projection['shm_steps_per_s']:,.0f} steps/s "
          f"({projection['ray_over_shm']:.2f}x); written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

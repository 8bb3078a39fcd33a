"""Learning benchmark: train a preset for a budget on N seeds, then the official held-out evaluation.

Writes ``benchmarks/results/<benchmark>[-<task>]-<agent>.json`` with held-out success before and
after adaptation per seed, env steps, wall time, steps/s, machine, commit and command. Run dirs
(checkpoints, progress.csv, TensorBoard) go to ``runs/learning/`` (never committed)::

    python benchmarks/learning.py ML1 --task reach-v3 --agent rl2 --steps 5000000 --max-minutes 80
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import metarl
from metarl.config import agent_config
from metarl.errors import UsageError, exit_code
from metarl.provenance import now_utc, provenance, write_result
from metarl.runs import RunConfig, agent_as_saved, max_seconds, parse_options

# torch-importing modules are imported where used: shm env workers re-import this script as their main
# module, and torch would cost each of them ~120 MiB.

HERE = Path(__file__).resolve().parent


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    """Train (or with ``--evaluate-only``, evaluate) one seed's run dir. Training goes through
    :func:`metarl.runs.create`, as `metarl train` does, so `metarl eval/render/plot/train --resume RUN_DIR`
    and `from_run.py` accept these runs."""
    from metarl import runs
    from metarl.seeding import resolve_device, seed_everything

    run_dir = _run_dir(args, seed)
    if args.evaluate_only:
        bench = metarl.make_benchmark(args.benchmark, task=args.task, seed=seed, **args.env_options)
        device = resolve_device(args.device)
        seed_everything(seed)
        return evaluate_checkpoint(args, bench, run_dir, seed, str(device))
    cfg = metarl.TrainerConfig(steps=args.steps, num_envs=args.num_envs, seed=seed, backend=args.backend,
                               eval_every=args.eval_every, final_eval=True, progress=False,
                               max_seconds=max_seconds(args.max_minutes),
                               final_eval_tasks_per_class=args.eval_tasks)
    config = RunConfig(benchmark=args.benchmark, agent=args.agent, task=args.task, trainer=cfg, device=args.device,
                       agent_options=args.agent_options, env_options=args.env_options)
    # force: check_args refused run dirs holding training; one holding only a config.json is replaced
    run = runs.create(config, run_dir, force=True)
    start = time.perf_counter()
    result = run.train()
    wall = time.perf_counter() - start
    state = run.trainer.state
    return _row(seed, run.device, run_dir, state.env_steps, state.elapsed, run.benchmark, result,
                wall_seconds=wall, agent_config=agent_config(run.agent))


def _run_dir(args: argparse.Namespace, seed: int) -> Path:
    label = f"{args.benchmark}-{args.task}" if args.task else args.benchmark  # the benchmark's label, / as -
    return Path("runs/learning") / f"{label}-{args.agent}{args.tag}-s{seed}"


def check_args(args: argparse.Namespace, out: Path) -> None:
    """One-line errors before anything runs: bad numbers, a run dir that training would append to, a
    results file holding other seeds (it would be overwritten after hours of training)."""
    if args.steps < 1 or args.num_envs < 1 or args.eval_every < 0:
        raise UsageError("--steps and --num-envs must be >= 1 and --eval-every >= 0: give e.g. --steps 1000000")
    max_seconds(args.max_minutes)  # `metarl train`'s own check of --max-minutes
    if args.eval_tasks is not None and args.eval_tasks < 1:
        raise UsageError(f"--eval-tasks must be >= 1, got {args.eval_tasks}: leave it out for the official protocol")
    if min(args.seeds) < 0 or len(set(args.seeds)) < len(args.seeds):
        raise UsageError(f"--seeds must be distinct and >= 0, got {args.seeds}: give e.g. --seeds 0 1 2")
    for seed in args.seeds:
        run_dir = _run_dir(args, seed)
        held = (run_dir / "progress.csv").exists() or (run_dir / "checkpoint.pt").exists()
        if not args.evaluate_only and held:
            raise UsageError(f"{run_dir} already holds a run (training would append to its progress.csv): remove it, "
                             "or give --tag for new run dirs (or --evaluate-only to evaluate it)")
        if args.evaluate_only and not (run_dir / "checkpoint.pt").exists():
            raise UsageError(f"{run_dir / 'checkpoint.pt'} does not exist: --evaluate-only needs every seed's run "
                             "trained (drop the seeds that aren't, or train them first)")
    if out.exists() and args.out is None:
        try:
            before = json.loads(out.read_text()).get("settings", {}).get("seeds")
        except (OSError, ValueError, AttributeError):
            before = None
        if sorted(before or []) != sorted(args.seeds):
            suggested = out.with_name(out.stem + "-s" + "-".join(map(str, args.seeds)) + ".json")
            raise UsageError(f"{out} holds the results of --seeds {' '.join(map(str, before or ['?']))}; this run has "
                             f"--seeds {' '.join(map(str, args.seeds))}: give --out for another file "
                             f"(e.g. --out {suggested})")


def evaluate_checkpoint(args, bench, run_dir: Path, seed: int, device: str) -> dict:
    """Official held-out evaluation of the run's last checkpoint (training numbers from the checkpoint),
    with the agent options it was trained with (:func:`metarl.runs.agent_as_saved`)."""
    from metarl import checkpoint

    path = run_dir / checkpoint.CHECKPOINT_NAME
    if not path.exists():
        raise UsageError(f"{path} does not exist: train this run first (drop --evaluate-only)")
    state = checkpoint.load(path)
    agent = agent_as_saved(args.agent, bench, device, args.agent_options, state["algorithm"])
    agent.load_state_dict(state["algorithm"])
    envs = metarl.make_vector_env(bench.test, args.num_envs)
    result = metarl.evaluate(bench.test, agent.make_learner(), envs,
                             metarl.EvalConfig(max_tasks_per_class=args.eval_tasks), seed)
    envs.close()
    return _row(seed, device, run_dir, state["trainer"]["env_steps"], state["trainer"]["elapsed"], bench, result)


def _row(seed, device, run_dir, steps, elapsed, bench, result, **extra) -> dict:
    """One seed's JSON row: training budget used, then the held-out evaluation."""
    return {"seed": seed, "device": device, "run_dir": str(run_dir), "env_steps": steps, "train_seconds": elapsed,
            "train_steps_per_s": steps / max(elapsed, 1e-9), **extra, "reward_version": bench.reward_version,
            "success_rate": result.success_rate, "pre_success_rate": result.pre_success_rate,
            **result.standard_errors(),
            "return": result.mean_return, "pre_return": result.pre_return, "per_task": result.per_task,
            "eval_tasks": sum(r["num_tasks"] for r in result.per_task.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("benchmark")
    p.add_argument("--task")
    p.add_argument("--agent", required=True)
    p.add_argument("--steps", type=int, required=True, help="env-step budget per seed")
    p.add_argument("--max-minutes", type=float, help="wall-clock training budget per seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--num-envs", type=int, default=10)
    p.add_argument("--backend", default="auto")
    p.add_argument("--env-opt", action="append", default=[], metavar="KEY=VALUE", help="family option (repeatable)")
    p.add_argument("--agent-opt", action="append", default=[], metavar="KEY=VALUE", help="agent option (repeatable)")
    p.add_argument("--device", default="auto")
    p.add_argument("--eval-every", type=int, default=500_000)
    p.add_argument("--eval-tasks", type=int, default=None,
                   help="final eval: first K tasks per class (default: official)")
    p.add_argument("--evaluate-only", action="store_true",
                   help="skip training: evaluate the last checkpoint of each seed's run dir")
    p.add_argument("--tag", default="", help="suffix for the run dirs and the results file, e.g. --tag=-trial13")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    args.env_options = parse_options(args.env_opt, "--env-opt", "horizon=200")
    args.agent_options = parse_options(args.agent_opt, "--agent-opt", "hidden=128")
    label = f"{args.benchmark}-{args.task}" if args.task else args.benchmark
    out = args.out or HERE / "results" / f"{label}-{args.agent}{args.tag}.json"
    check_args(args, out)
    head = provenance()  # the commit the runs start from (it may move while they train)
    earlier = _earlier_rows(out) if args.evaluate_only else {}
    rows: list[dict] = []
    for s in args.seeds:  # the file is rewritten after each seed: a later seed's failure keeps the earlier ones
        row = run_seed(args, s)
        rows.append({**{k: v for k, v in earlier.get((s, row["run_dir"]), {}).items() if k not in row}, **row})
        done = {r["seed"] for r in rows}  # --evaluate-only: seeds not re-evaluated yet keep their earlier rows
        rows_out = rows + [r for (seed, _), r in earlier.items() if seed not in done and seed in args.seeds]
        summary = {k: sum(r[k] for r in rows_out) / len(rows_out)
                   for k in ("success_rate", "pre_success_rate", "env_steps", "train_steps_per_s")}
        write_result(out, {
            "started_utc": head["date_utc"], "date_utc": now_utc(),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "seeds_done": [r["seed"] for r in rows], "summary": summary, "seeds": rows_out}, head=head)
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")


def _earlier_rows(out: Path) -> dict:
    """``(seed, run_dir) -> row`` of ``out``'s training run: ``--evaluate-only`` keeps what only training
    measured (wall time, the agent's whole config) in the rows it rewrites."""
    try:
        return {(r["seed"], r["run_dir"]): r for r in json.loads(out.read_text()).get("seeds", [])}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return {}


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

"""``metarl render RUN``: draw one held-out adaptation trial of a trained run (families with a renderer)."""

from __future__ import annotations

import argparse
from pathlib import Path

from metarl.cli._args import check_writable
from metarl.errors import UsageError
from metarl.registry import benchmark_factory
from metarl.rundir import load_config, load_trained
from metarl.vector import make_vector_env


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("render", help="draw one held-out adaptation trial of a trained run (Driving)")
    r.add_argument("run_dir", type=Path, help="a run directory written by `metarl train`")
    r.add_argument("--task", type=int, default=0, help="index into the held-out evaluation tasks (default 0)")
    r.add_argument("--out", type=Path, help="PNG path (default RUN_DIR/trial-test-<task>.png)")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda")


def run(args: argparse.Namespace) -> int:
    from metarl.evaluator import EvalConfig, run_trial
    from metarl.seeding import SlotNoise, seed_everything

    if not args.run_dir.is_dir():
        raise UsageError(f"{args.run_dir} is not a directory: pass a run directory written by `metarl train`")
    cfg = load_config(args.run_dir)
    renderer = getattr(benchmark_factory(cfg.benchmark), "render_trial", None)
    if renderer is None:
        raise UsageError(f"benchmark {cfg.benchmark!r} has no trial renderer (families opt in with a "
                         "`render_trial` attribute on their factory; Driving has one)")
    out = args.out or args.run_dir / f"trial-test-{args.task}.png"
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: render writes a PNG image; give a path ending in .png")
    check_writable(out, "--out")
    cfg, bench, agent, _ = load_trained(args.run_dir, args.device)
    tasks = bench.test.evaluation_tasks()
    if not 0 <= args.task < len(tasks):
        raise UsageError(f"--task {args.task} is out of range: {bench.label} has {len(tasks)} evaluation "
                         f"tasks (0..{len(tasks) - 1})")
    seed_everything(cfg.trainer.seed)
    envs = make_vector_env(bench.test, 1)
    try:
        envs.set_tasks([tasks[args.task]])
        # the reset seed and noise stream the evaluation gives this task: the trial it scored
        pre, post = run_trial(envs, agent.make_learner(), EvalConfig(), seed=[cfg.trainer.seed + args.task],
                              noise=SlotNoise([(cfg.trainer.seed, args.task)]))
    finally:
        envs.close()
    try:
        renderer(pre, post, tasks[args.task], out,
                 title=f"{cfg.agent} on {bench.label}, held-out {tasks[args.task].id}")
    except OSError as e:
        raise UsageError(f"cannot write --out {out} ({e.strerror or e}): choose a writable path") from None
    print(f"wrote {out}")
    return 0

"""``metarl eval``: held-out evaluation of a run directory (written to its eval*.json) or of an untrained
agent on a benchmark."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from metarl import runs
from metarl.cli._args import add_option_flags, add_vector_flags, check_writable, path_arg, seed_arg, whole
from metarl.errors import UsageError, terminate_raises
from metarl.factory import make_agent, make_benchmark
from metarl.files import atomic_write
from metarl.tasks import Benchmark
from metarl.vector import check_backend, check_num_workers

if TYPE_CHECKING:
    from metarl.evaluator import EvalResult

SB3_ALGOS = ("PPO", "A2C", "SAC", "TD3", "RecurrentPPO")
"""``--sb3-algo`` choices (metarl.sb3.policy.ALGOS; named here so ``--help`` needs no SB3 import)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("eval", help="held-out evaluation of a run directory or of an untrained agent")
    v.add_argument("target", help="a run directory, or a benchmark name")
    v.add_argument("--task", help="task class for ML1")
    v.add_argument("--agent", help="agent name (with a benchmark name)")
    v.add_argument("--sb3", type=path_arg, metavar="MODEL.zip",
                   help="a saved Stable-Baselines3 model to evaluate on the benchmark, in place of --agent "
                        "(writes MODEL-eval*.json beside it unless --out; docs/sb3.md)")
    v.add_argument("--sb3-algo", choices=SB3_ALGOS,
                   help="the algorithm that saved --sb3 (default: read from the file); RecurrentPPO keeps its "
                        "LSTM state across a trial's episodes, the others are zero-shot")
    v.add_argument("--seed", type=seed_arg("--seed"),
                   help="benchmark seed (with a benchmark name; default 0)")
    v.add_argument("--reward-version",
                   help="Meta-World reward function (with a benchmark name): v2 (default) or v1")
    v.add_argument("--num-envs", type=whole("--num-envs", 10), help="env slots used for evaluation")
    v.add_argument("--eval-seed", type=seed_arg("--eval-seed"),
                   help="seed of the evaluation's env resets and sampled actions (default: the run's or "
                        "--seed); the held-out tasks stay the same: re-evaluate with a few to see how much "
                        "a number moves with the draws alone")
    v.add_argument("--eval-tasks", type=whole("--eval-tasks", 10), help="only the first K tasks per class")
    v.add_argument("--split", choices=("test", "train"), default="test",
                   help="a run directory's tasks to evaluate: test (held out, default) or train (the same "
                        "protocol on the training tasks; written to eval-...-split=train.json)")
    add_vector_flags(v, " (default for a run directory: the run's)")
    v.add_argument("--device", default="auto", help="auto, cpu or cuda")
    v.add_argument("--actions", choices=("auto", "mean", "sampled"), default="auto",
                   help="evaluation-episode actions (auto: the agent's choice; rl2, maml and random sample)")
    add_option_flags(v, "override an agent option for this evaluation (repeatable), e.g. inner_lr=0 "
                        "(an ablation)",
                     "family option (repeatable); for a run directory it overrides the saved one, e.g. "
                     "--env-opt test=extrapolate (Driving, Highway: the other held-out split)")
    v.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    v.add_argument("--out", type=path_arg, metavar="FILE",
                   help="write the evaluation JSON to FILE (default: into the run directory, named after the "
                        "protocol; nothing for a benchmark name): for a read-only run directory, or one "
                        "still training")


def run(args: argparse.Namespace) -> int:
    with terminate_raises():  # SIGTERM: workers closed, the lock released, exit 143 without a traceback
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    target = Path(args.target)
    options = runs.parse_options(args.agent_opt, "--agent-opt", "inner_lr=0")
    env_options = runs.parse_options(args.env_opt, "--env-opt", "test=extrapolate")
    if args.sb3_algo is not None and args.sb3 is None:
        raise UsageError("--sb3-algo names the algorithm of an SB3 model: add --sb3 MODEL.zip or drop it")
    if args.sb3 is not None and args.out is None and not target.is_dir():
        args.out = _sb3_out(args)
    if args.out is not None:
        check_writable(args.out, "--out")
        _check_replaceable(args.out)
    if target.is_dir():  # the run's backend and workers unless given
        given = [flag for flag, value in (("--agent", args.agent), ("--sb3", args.sb3), ("--task", args.task),
                                          ("--seed", args.seed), ("--reward-version", args.reward_version))
                 if value is not None]
        if given:
            one = len(given) == 1
            raise UsageError(f"{', '.join(given)} {'applies' if one else 'apply'} to a benchmark name; "
                             f"{target} is a run directory, evaluated with its own agent, task, seed and "
                             f"rewards: drop {'it' if one else 'them'}")
        done = runs.evaluate_run(target, eval_tasks=args.eval_tasks, actions=args.actions,
                                 eval_seed=args.eval_seed, num_envs=args.num_envs, backend=args.backend,
                                 num_workers=args.num_workers, device=args.device, agent_overrides=options,
                                 env_overrides=env_options, out=args.out, split=args.split)
        result, bench, seed, eval_seed, summary = (done.result, done.benchmark, done.seed, done.eval_seed,
                                                   done.summary)
    else:
        if args.split != "test":
            raise UsageError("--split train evaluates a run directory on its training tasks; with a benchmark "
                             "name drop it")
        result, bench, seed, eval_seed, summary = _evaluate_untrained(args, options, env_options)
        if args.out is not None:
            with atomic_write(args.out) as f:
                f.write(json.dumps(summary, indent=2) + "\n")
            if args.sb3 is not None:
                print(f"held-out evaluation: {args.out}", file=sys.stderr)
    if args.json:  # the file's fields
        print(json.dumps(summary, indent=2))
    else:
        print_table(result, bench, seed, eval_seed)
    return 0


def _check_replaceable(out: Path) -> None:
    """A one-line error unless ``--out`` is new or an evaluation file (written again): a run's
    checkpoint.pt, config.json or progress.csv, an SB3 model, a file of the user's would be replaced."""
    if not out.is_file():
        return
    try:
        with open(out, "rb") as f:
            looks_like_json = f.read(64).lstrip().startswith(b"{")
        if looks_like_json:  # only then read it whole (a checkpoint may be gigabytes)
            runs.read_eval(out)
            return
    except (OSError, UsageError):
        pass
    raise UsageError(f"--out {out} exists and is not an evaluation file, which it would replace: choose another "
                     "path (an eval*.json file is written again)")


def _evaluate_untrained(args: argparse.Namespace, options: dict, env_options: dict) -> tuple:
    """``metarl eval BENCHMARK --agent NAME`` (the agent as initialised) or ``--sb3 MODEL.zip`` (a saved SB3
    model, :mod:`metarl.sb3`)."""
    from metarl.seeding import resolve_device, seed_everything
    from metarl.trainer import TrainerConfig, eval_summary

    if os.sep in args.target or args.target.startswith("."):
        raise UsageError(f"{args.target} is not a directory: pass a run directory written by `metarl train`, "
                         "or a benchmark name with --agent")
    if args.sb3 is not None and (args.agent is not None or options):
        raise UsageError("--sb3 evaluates a saved SB3 model: drop --agent and --agent-opt")
    if args.agent is None and args.sb3 is None:
        raise UsageError(f"{args.target!r} is not a run directory; to evaluate an untrained agent on a "
                         "benchmark add --agent NAME (e.g. --agent random)")
    seed = 0 if args.seed is None else args.seed
    rewards = {} if args.reward_version is None else {"reward_version": args.reward_version}
    bench = make_benchmark(args.target, task=args.task, seed=seed, **env_options, **rewards)
    backend, workers = args.backend or "auto", args.num_workers
    check_num_workers(check_backend(bench.test, backend), workers)
    seed_everything(seed)
    sb3 = None
    if args.sb3 is not None:
        from metarl.sb3.evaluate import sb3_agent

        agent, sb3 = sb3_agent(bench, args.sb3, args.sb3_algo, str(resolve_device(args.device)))
    else:
        agent = make_agent(args.agent, bench, device=str(resolve_device(args.device)), **options)
    eval_seed = seed if args.eval_seed is None else args.eval_seed
    result = runs.evaluate_agent(bench, agent, eval_seed=eval_seed, num_envs=args.num_envs or 10,
                                 backend=backend, num_workers=workers, threads=TrainerConfig.collect_threads,
                                 eval_tasks=args.eval_tasks, actions=args.actions)
    extra = {**({"sb3": sb3} if sb3 else {}), **({"agent_overrides": options} if options else {}),
             **({"env_overrides": env_options} if env_options else {})}
    return result, bench, seed, eval_seed, {**eval_summary(result, bench, seed, eval_seed), **extra}


def _sb3_out(args: argparse.Namespace) -> Path:
    """Where ``--sb3 MODEL.zip`` writes without ``--out``: ``MODEL-eval.json`` beside it, named after what
    differs from the official protocol (``-first5``, ``-sampled``, ``-eval_seed=1``)."""
    parts = ([f"first{args.eval_tasks}"] if args.eval_tasks else []) + \
        ([args.actions] if args.actions != "auto" else []) + \
        ([f"eval_seed={args.eval_seed}"] if args.eval_seed is not None else [])
    return args.sb3.with_name(f"{args.sb3.stem}-{'-'.join(['eval', *parts])}.json")


def print_table(result: EvalResult, bench: Benchmark, seed: int, eval_seed: int | None = None) -> None:
    """The evaluation as a table on stdout: per task class, then the mean, with standard errors."""
    from rich.console import Console
    from rich.table import Table

    seeds = f"seed {seed}" + ("" if eval_seed in (None, seed) else f" (evaluation seed {eval_seed})")
    official = result.protocol in ("official", "")
    table = Table(title=f"held-out evaluation: {bench.label}, rewards {bench.reward_version or 'n/a'}, "
                  f"{seeds}, {result.eval_actions} actions after adaptation"
                  + ("" if official else f"; {result.protocol}, not the official protocol"))
    table.add_column("task", no_wrap=True, min_width=max(map(len, result.per_task), default=4))  # never cut
    for col in ("tasks", "success (post)", "success (pre)", "return (post)", "return (pre)"):
        table.add_column(col, justify="right")
    for name, row in result.per_task.items():
        table.add_row(name, str(row["num_tasks"]), f"{row['success_rate']:.1%}",
                      f"{row['pre_success_rate']:.1%}", f"{row['return']:.1f}", f"{row['pre_return']:.1f}")
    table.add_row("[bold]mean[/bold]", "", f"[bold]{result.success_rate:.1%}[/bold]",
                  f"{result.pre_success_rate:.1%}", f"{result.mean_return:.1f}", f"{result.pre_return:.1f}")
    if math.isfinite(result.success_rate_se):
        table.caption = (f"standard error over tasks: ±{result.success_rate_se:.1%} (post), "
                         f"±{result.pre_success_rate_se:.1%} (pre)")
    Console().print(table)

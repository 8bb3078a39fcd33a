"""``metarl train ... --seeds 0-4 [--jobs J]``: the seed sweep of :mod:`metarl.sweep` from `train`'s flags,
ending with `metarl report` over the finished seeds in ``OUT/report/``."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from metarl import sweep
from metarl.errors import UsageError

NOT_FORWARDED = {"command", "benchmark", "seed", "out", "resume", "force", "seeds", "jobs"}
"""`train` arguments the sweep sets per seed itself (or that aren't flags)."""


def train_flags(args: argparse.Namespace) -> list[str]:
    """The configuration's ``metarl train`` flags as given (every flag's name is ``--`` + its dest), so each
    seed's process gets them all, including flags added to `train` later."""
    flags = [args.benchmark]
    for dest, value in vars(args).items():
        if dest in NOT_FORWARDED or value is None or value is False or value == []:
            continue
        flag = "--" + dest.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif isinstance(value, list):
            flags += [f"{flag}={v}" for v in value]
        else:
            flags.append(f"{flag}={value}")
    return flags


def check(args: argparse.Namespace) -> None:
    """One-line errors for flags that don't go with ``--seeds``."""
    if args.seeds is None:
        if args.jobs is not None:
            raise UsageError("--jobs runs seeds of a sweep at once: give --seeds too, e.g. --seeds 0-4 --jobs 2")
        return
    if args.seed is not None:
        raise UsageError("--seed trains one seed and --seeds several: give one of them")
    if args.resume:
        raise UsageError("--seeds resumes each seed of its --out by itself: drop --resume (run the same command "
                         "again)")


def expected(args: argparse.Namespace) -> dict:
    """The configuration the command gives, as :func:`metarl.runs.resume` checks it (``expect``, no seed)."""
    from metarl.runs import parse_options

    return {"benchmark": args.benchmark, "agent": args.agent, "task": args.task, "num_envs": args.num_envs,
            "reward_version": args.reward_version,
            "agent_options": parse_options(args.agent_opt, "--agent-opt", "hidden=128"),
            "env_options": parse_options(args.env_opt, "--env-opt", "horizon=200")}


def run_sweep(args: argparse.Namespace) -> int:
    """Plan, train and report the sweep; the exit code: 0, 1 (a seed failed), 2 (usage) or 130/143."""
    from metarl.registry import agent_factory, benchmark_factory

    seeds = sweep.parse_seeds(args.seeds)
    benchmark_factory(args.benchmark)  # unknown names: one line now, not one per seed
    agent_factory(args.agent)
    label = f"{args.benchmark}-{args.task}" if args.task else args.benchmark
    out = args.out or Path("runs") / f"{label}-{args.agent}-sweep"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a folder for the seeds' run directories")
    todo = sweep.plan(out, seeds, force=args.force, steps=args.steps, max_minutes=args.max_minutes,
                      final_eval=not args.no_final_eval, eval_tasks=args.eval_tasks, expect=expected(args))
    counts = {a: sum(j.action == a for j in todo) for a in ("start", "resume", "restart", "skip")}
    jobs = max(1, min(args.jobs or 1, len(seeds) - counts["skip"]))
    threads = sweep.threads_per_job(jobs)
    cores = sweep.cores()
    if jobs > cores:
        print(f"warning: --jobs {jobs} runs more seeds at once than the {cores} core{'s' if cores > 1 else ''} this "
              f"process may use: they share cores and each takes longer (a --max-minutes budget then buys fewer "
              f"steps); give --jobs {cores} or less", file=sys.stderr)
    print(f"sweep of seeds {args.seeds} into {out}: " + ", ".join(f"{n} to {a}" for a, n in counts.items() if n)
          + (f"; {jobs} at a time with {threads} torch thread{'s' if threads > 1 else ''} each" if jobs > 1 else
             "; one after the other"), file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    result = sweep.run(train_flags(args), todo, jobs, log=lambda m: print(m, file=sys.stderr))
    again = "run the same command again to resume the sweep (finished seeds are skipped)"
    if result.stopped:
        print(f"sweep stopped: {len(result.finished)} of {len(seeds)} seeds finished; {again}", file=sys.stderr)
        return 143 if result.stopped == signal.SIGTERM else 130
    _report(out, [j for j in todo if j.seed in result.finished], args)
    failed = sorted(s for s, c in result.codes.items() if c != 0)
    if failed:
        where = "above" if jobs == 1 else f"in {out / 'logs'}"
        unstarted = [j.seed for j in todo if j.seed not in result.codes]  # after a usage error: not started
        later = f"; seeds {', '.join(map(str, unstarted))} were not started" if unstarted else ""
        print(f"seeds {', '.join(map(str, failed))} failed (their output is {where}){later}; {again}",
              file=sys.stderr)
        return 2 if all(result.codes[s] == 2 for s in failed) else 1
    return 0


def _report(out: Path, done: list[sweep.SeedJob], args: argparse.Namespace) -> None:
    """`metarl report` over the finished seeds into ``OUT/report``, its table printed."""
    from metarl.report import write_report
    from metarl.report.write import summary_table

    if args.no_final_eval or not done:
        return
    try:
        report = write_report([j.out for j in done], out / "report")
    except UsageError as e:
        print(f"note: no report: {e}", file=sys.stderr)
        return
    for ts in report.summary["task_sets"]:
        print(f"\n{ts['benchmark']}, {sum(ts['classes'].values())} held-out tasks: success (%), IQM [95% CI]")
        print("\n".join(summary_table(ts)))
    print(f"report: {report.markdown} ({len(report.images)} PNGs, {report.json.name})", file=sys.stderr)

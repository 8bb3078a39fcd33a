"""``metarl train``: meta-train an agent in a run directory (new, or ``--resume``), then evaluate it."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys

from metarl import runs
from metarl.cli import _sweep
from metarl.cli._args import add_option_flags, add_vector_flags, path_arg, seed_arg, whole
from metarl.errors import RunError, Terminated, UsageError, terminate_raises
from metarl.runlock import describe_stale


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="meta-train an agent, then run the held-out evaluation")
    t.add_argument("benchmark", help="benchmark name, e.g. ML1, ML10, ML45, Toy")
    t.add_argument("--task", help="task class for ML1, e.g. reach-v3")
    t.add_argument("--agent", required=True, help="agent name (see `metarl envs`)")
    t.add_argument("--steps", type=whole("--steps", 20000),
                   help="env-step budget (default 100000; with --resume: the new total)")
    t.add_argument("--max-minutes", type=float,
                   help="also stop training after this much wall-clock training time "
                        "(with --resume: the new total)")
    t.add_argument("--seed", type=seed_arg("--seed"), help="seed for tasks, resets and torch (default 0)")
    t.add_argument("--out", type=path_arg,
                   help="run directory (default runs/<benchmark>-<task>-<agent>-s<seed>)")
    t.add_argument("--num-envs", type=whole("--num-envs", 10), help="env slots = tasks per meta-batch")
    t.add_argument("--device", help="auto (CUDA when present; the default), cpu or cuda")
    add_vector_flags(t)
    t.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT|local",
                   help="with --backend ray: join this Ray cluster (default, or local: start a local Ray, stop it "
                        "at the end)")
    t.add_argument("--reward-version", help="Meta-World reward function: v2 (default) or v1")
    t.add_argument("--eval-every", type=whole("--eval-every", 50000, minimum=0),
                   help="also a quick held-out evaluation (5 tasks per class) every N env steps "
                        "(default 0: only the final one)")
    t.add_argument("--video-every", type=whole("--video-every", 50000),
                   help="also record held-out task 0's trial every N env steps into RUN_DIR/videos and "
                        "TensorBoard (families that render: Meta-World, Driving, the classic ones)")
    t.add_argument("--eval-tasks", type=whole("--eval-tasks", 10),
                   help="final evaluation on only the first K tasks per class (default: official set)")
    t.add_argument("--checkpoint-every", type=whole("--checkpoint-every", 10), help="iterations (default 10)")
    t.add_argument("--no-final-eval", action="store_true", help="skip the held-out evaluation at the end")
    add_option_flags(t, "agent option, repeatable, e.g. --agent-opt hidden=128 --agent-opt first_order=True",
                     "task-family option, repeatable (`metarl envs` lists them), "
                     "e.g. --env-opt test=extrapolate")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (new --steps, --max-minutes, "
                        "--eval-every, --eval-tasks, --checkpoint-every, --no-final-eval, --device, "
                        "--num-workers apply; other flags must match)")
    t.add_argument("--force", action="store_true", help="replace an existing run directory")
    t.add_argument("--seeds", help="a seed sweep: this configuration for each seed (e.g. 0-4 or 0,2,5) in "
                                   "OUT/seed-S/, then `metarl report` over them in OUT/report/; the same command "
                                   "again resumes it (default --out runs/<benchmark>-<task>-<agent>-sweep)")
    t.add_argument("--jobs", type=whole("--jobs", 2),
                   help="with --seeds: seeds trained at once, as processes with cores // J torch threads each "
                        "(default 1: one after the other)")


def run(args: argparse.Namespace) -> int:
    _sweep.check(args)
    if args.seeds is not None:  # one `metarl train` process per seed (metarl.sweep)
        return _sweep.run_sweep(args)
    with terminate_raises():  # SIGTERM before or after training: cleaned up, exit 143 (the Trainer saves first)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from metarl.trainer import TrainingInterrupted

    job = _resume(args) if args.resume else _create(args)
    if args.video_every:
        from metarl.video import PeriodicVideo

        try:
            job.trainer.logger.writers.append(PeriodicVideo(job, args.video_every))
        except UsageError as e:
            job.trainer.logger.close()
            job.lock.release()
            again = "" if args.resume else f" (with --force: {job.out} holds only its config so far)"
            raise UsageError(f"--video-every: {e}; drop --video-every and train again{again}") from None
    cfg, bench, trainer, out = job.config, job.benchmark, job.trainer, job.out
    if job.lock.stale:
        print(f"note: {describe_stale(job.lock.stale, out)}", file=sys.stderr)
    if job.done:
        note = (f"; {trainer.final_eval_path()} already evaluates these weights "
                f"(`{shlex.join([*metarl_command(), 'eval', str(out)])}` repeats it)" if job.evaluated
                else "; running the final evaluation" if cfg.trainer.final_eval else "")
        at_budget = trainer.state.env_steps >= cfg.trainer.steps
        why = (f"at or past --steps {cfg.trainer.steps:,}" if at_budget else
               f"in {trainer.state.elapsed / 60:.1f} of its {cfg.trainer.max_seconds / 60:g} minutes "
               "(--max-minutes counts the whole run: give a larger one to go on)")
        print(f"{out} has trained {trainer.state.env_steps:,} env steps, {why}: nothing to train{note}",
              file=sys.stderr)
    else:
        print(f"training {cfg.agent} on {bench.label} (rewards {bench.reward_version or 'n/a'}) for "
              f"{cfg.trainer.steps:,}+ env steps (whole meta-batches: the last one may run past) with "
              f"{cfg.trainer.num_envs} slots on {job.device}; run dir {out}", file=sys.stderr)
    resume = " ".join(shlex.quote(a) for a in [
        *metarl_command(), "train", cfg.benchmark, *(["--task", cfg.task] if cfg.task else []), "--agent", cfg.agent,
        "--out", str(out), "--resume", *([] if cfg.trainer.final_eval else ["--no-final-eval"])])
    stop: KeyboardInterrupt | None = None
    try:
        result = job.train()
    except RunError as e:  # env workers that keep failing, ...: the trainer saved what it could
        if "--resume continues" in str(e):
            e.args = (f"{e}: `{resume}`",)
        raise
    except KeyboardInterrupt as e:  # Ctrl-C after a saved iteration, or during the final evaluation
        if job.learning_curve is None:  # any other: not stopped cleanly
            raise
        stop = e
    print(f"learning curve: {job.learning_curve}", file=sys.stderr)
    if isinstance(stop, TrainingInterrupted):
        print(f"{_how(stop)}: {out} checkpointed at {stop.env_steps:,} env steps, no final evaluation; "
              f"continue with `{resume}` (add --steps / --max-minutes to change the budget)", file=sys.stderr)
        return 128 + stop.signum
    if stop is not None:
        print(f"{_how(stop)} during the final evaluation: {out}/checkpoint.pt holds the trained weights; "
              f"`{shlex.join([*metarl_command(), 'eval', str(out)])}` evaluates them", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    if result is not None:
        from metarl.cli.evaluate import print_table

        print(f"held-out evaluation: {trainer.final_eval_path()}", file=sys.stderr)
        print_table(result, bench, cfg.trainer.seed)
    return 0


def metarl_command() -> list[str]:
    """How to run metarl again from a shell, for the commands messages print: ``metarl`` where that is
    this installation's command on PATH, else this interpreter with ``-m metarl`` (a virtual environment
    that isn't activated, or another metarl first on PATH)."""
    found = shutil.which("metarl")
    if found and os.path.dirname(os.path.abspath(found)) == os.path.dirname(os.path.abspath(sys.executable)):
        return ["metarl"]
    return [sys.executable, "-m", "metarl"]


def _how(stop: KeyboardInterrupt) -> str:
    """How training was stopped, for the message: by Ctrl-C or by SIGTERM (a scheduler, ``kill``)."""
    return ("terminated (SIGTERM)" if isinstance(stop, Terminated) or getattr(stop, "signum", 2) == signal.SIGTERM
            else "interrupted")


def _option_flags(args: argparse.Namespace) -> dict[str, dict]:
    """``--agent-opt`` / ``--env-opt``, parsed: ``{"agent_options": ..., "env_options": ...}``."""
    return {"agent_options": runs.parse_options(args.agent_opt, "--agent-opt", "hidden=128"),
            "env_options": runs.parse_options(args.env_opt, "--env-opt", "horizon=200")}


def _create(args: argparse.Namespace) -> runs.Run:
    from metarl.trainer import TrainerConfig

    trainer = TrainerConfig(
        steps=args.steps or 100_000, num_envs=args.num_envs or 10, seed=args.seed or 0,
        backend=args.backend or "auto", num_workers=args.num_workers, ray_address=args.ray_address,
        max_seconds=runs.max_seconds(args.max_minutes),
        eval_every=args.eval_every or 0, final_eval=not args.no_final_eval,
        final_eval_tasks_per_class=args.eval_tasks, checkpoint_every=args.checkpoint_every or 10,
        progress=sys.stderr.isatty(),
    )
    config = runs.RunConfig(benchmark=args.benchmark, agent=args.agent, task=args.task,
                            reward_version=args.reward_version, trainer=trainer, device=args.device or "auto",
                            **_option_flags(args))
    return runs.create(config, args.out, force=args.force, fit_num_envs=args.num_envs is None)


def _resume(args: argparse.Namespace) -> runs.Run:
    if args.force:
        raise UsageError("--resume continues a run and --force replaces it: give one of them")
    if args.out is None:
        raise UsageError("--resume needs --out RUN_DIR: the run directory to continue")
    expect = {"benchmark": args.benchmark, "agent": args.agent, "task": args.task, "seed": args.seed,
              "num_envs": args.num_envs, "reward_version": args.reward_version,
              **_option_flags(args)}
    return runs.resume(args.out, device=args.device, final_eval=not args.no_final_eval, expect=expect,
                       steps=args.steps, max_seconds=runs.max_seconds(args.max_minutes),
                       eval_every=args.eval_every, final_eval_tasks_per_class=args.eval_tasks,
                       checkpoint_every=args.checkpoint_every, num_workers=args.num_workers,
                       backend=args.backend, ray_address=args.ray_address)

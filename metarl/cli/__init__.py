"""The ``metarl`` command line: ``envs``, ``train``, ``eval``, ``compare``, ``plot``, ``render`` and ``bench``.

Bad input (unknown names, impossible numbers, unusable paths) prints one ``error:`` line naming
the problem and the fix and exits with code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import shlex
import shutil
import sys
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import metarl
from metarl.config import agent_config, option_defaults
from metarl.errors import UsageError, exit_code
from metarl.files import atomic_write
from metarl.plot import plot_run
from metarl.registry import agent_factory, benchmark_factory
from metarl.tasks import Benchmark
from metarl.vector import BACKENDS, check_backend, check_num_workers, make_vector_env

# Modules that import torch are imported inside the commands that use them: env worker processes
# started from the `metarl` console script re-import it as their main module, and torch would cost each
# worker ~120 MiB of private memory (and `metarl --help` a second).
if TYPE_CHECKING:
    from metarl.evaluator import EvalResult
    from metarl.trainer import TrainerConfig


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run directory."""

    benchmark: str
    agent: str
    task: str | None = None
    reward_version: str | None = None
    trainer: TrainerConfig = field(default_factory=lambda: _trainer_config())
    device: str = "auto"
    agent_options: dict = field(default_factory=dict)
    env_options: dict = field(default_factory=dict)

    def make_benchmark(self) -> Benchmark:
        options = {"reward_version": self.reward_version} if self.reward_version else {}
        return metarl.make_benchmark(self.benchmark, task=self.task, seed=self.trainer.seed,
                                     **{**self.env_options, **options})

    @classmethod
    def from_json(cls, obj: dict) -> RunConfig:
        return cls(**{**obj, "trainer": _trainer_config(**obj["trainer"])})


def _trainer_config(**fields_: Any) -> TrainerConfig:
    from metarl.trainer import TrainerConfig

    return TrainerConfig(**fields_)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's own convention)
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _add_vector_flags(parser: argparse.ArgumentParser, default_note: str = "") -> None:
    """--backend and --num-workers (train and eval)."""
    parser.add_argument("--backend", default=None, choices=BACKENDS,
                        help="vector env backend (auto: the family's batched env if it has one, else sync)"
                             + (default_note or "; default auto"))
    parser.add_argument("--num-workers", type=_whole("--num-workers", 8),
                        help="worker processes of --backend shm (default: one per core, at most --num-envs)"
                             + default_note)


SEED_MAX = 2**32 - 1
"""Largest seed the CLI takes (torch, NumPy and gymnasium all accept it; far larger ones overflow torch)."""


def _whole(flag: str, example: int, minimum: int = 1, maximum: int | None = None):
    """argparse type: a whole number >= ``minimum`` and <= ``maximum`` (``_`` separators allowed), else a
    usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: give e.g. {flag} {example}") from None
        if value < minimum:
            what = "positive" if minimum == 1 else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}: give e.g. {flag} {example}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum}, got {value}: give e.g. {flag} {example}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="metarl", description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("--version", action="version", version=f"metarl {metarl.__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    e = sub.add_parser("envs", help="list benchmarks, task classes, splits, agents and their options")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    t = sub.add_parser("train", help="meta-train an agent, then run the held-out evaluation")
    t.add_argument("benchmark", help="benchmark name, e.g. ML1, ML10, ML45, Toy")
    t.add_argument("--task", help="task class for ML1, e.g. reach-v3")
    t.add_argument("--agent", required=True, help="agent name (see `metarl envs`)")
    t.add_argument("--steps", type=_whole("--steps", 20000), help="env-step budget (default 100000; with --resume: the new total)")
    t.add_argument("--max-minutes", type=float, help="also stop training after this much wall-clock training time (with --resume: the new total)")
    t.add_argument("--seed", type=_whole("--seed", 1, minimum=0, maximum=SEED_MAX), help="seed for tasks, resets and torch (default 0)")
    t.add_argument("--out", type=_path_arg, help="run directory (default runs/<benchmark>-<task>-<agent>-s<seed>)")
    t.add_argument("--num-envs", type=_whole("--num-envs", 10), help="env slots = tasks per meta-batch")
    t.add_argument("--device", help="auto (CUDA when present; the default), cpu or cuda")
    _add_vector_flags(t)
    t.add_argument("--reward-version", help="Meta-World reward function: v2 (default) or v1")
    t.add_argument("--eval-every", type=_whole("--eval-every", 50000, minimum=0), help="also a quick held-out evaluation (5 tasks per class) every N env steps (default 0: only the final one)")
    t.add_argument("--eval-tasks", type=_whole("--eval-tasks", 10),
                   help="final evaluation on only the first K tasks per class (default: official set)")
    t.add_argument("--checkpoint-every", type=_whole("--checkpoint-every", 10), help="iterations (default 10)")
    t.add_argument("--no-final-eval", action="store_true", help="skip the held-out evaluation at the end")
    t.add_argument("--agent-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="agent option, repeatable, e.g. --agent-opt hidden=128 --agent-opt first_order=True")
    t.add_argument("--env-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="task-family option, repeatable (`metarl envs` lists them), e.g. --env-opt test=extrapolate")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (new --steps, --max-minutes, --eval-every, "
                        "--eval-tasks, --checkpoint-every, --no-final-eval, --device, --num-workers apply; other flags must match)")
    t.add_argument("--force", action="store_true", help="replace an existing run directory")
    g = sub.add_parser("plot", help="write learning_curve.png for a run directory")
    g.add_argument("run_dir", type=Path, help="a run directory written by `metarl train`")
    v = sub.add_parser("eval", help="held-out evaluation of a run directory or of an untrained agent")
    v.add_argument("target", help="a run directory, or a benchmark name")
    v.add_argument("--task", help="task class for ML1")
    v.add_argument("--agent", help="agent name (with a benchmark name)")
    v.add_argument("--seed", type=_whole("--seed", 1, minimum=0, maximum=SEED_MAX), help="benchmark seed (with a benchmark name; default 0)")
    v.add_argument("--reward-version", help="Meta-World reward function (with a benchmark name): v2 (default) or v1")
    v.add_argument("--num-envs", type=_whole("--num-envs", 10), help="env slots used for evaluation")
    v.add_argument("--eval-seed", type=_whole("--eval-seed", 1, minimum=0, maximum=SEED_MAX),
                   help="seed of the evaluation's env resets and sampled actions (default: the run's or --seed); "
                        "the held-out tasks stay the same: re-evaluate with a few to see how much a number "
                        "moves with the draws alone")
    v.add_argument("--eval-tasks", type=_whole("--eval-tasks", 10), help="only the first K tasks per class")
    _add_vector_flags(v, " (default for a run directory: the run's)")
    v.add_argument("--device", default="auto", help="auto, cpu or cuda")
    v.add_argument("--actions", choices=("auto", "mean", "sampled"), default="auto",
                   help="evaluation-episode actions (auto: the agent's choice; rl2, maml and random sample)")
    v.add_argument("--agent-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override an agent option for this evaluation (repeatable), e.g. inner_lr=0 (an ablation)")
    v.add_argument("--env-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="family option (repeatable); for a run directory it overrides the saved one, e.g. "
                        "--env-opt test=extrapolate (Driving, Highway: the other held-out split)")
    v.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    c = sub.add_parser("compare", help="paired comparison of two evaluations of the same held-out tasks")
    c.add_argument("a", type=Path, help="an evaluation JSON (eval*.json), or a run directory (its eval.json)")
    c.add_argument("b", type=Path, help="the same for the other evaluation; differences are B - A")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    r = sub.add_parser("render", help="draw one held-out adaptation trial of a trained run (Driving)")
    r.add_argument("run_dir", type=Path, help="a run directory written by `metarl train`")
    r.add_argument("--task", type=int, default=0, help="index into the held-out evaluation tasks (default 0)")
    r.add_argument("--out", type=Path, help="PNG path (default RUN_DIR/trial-test-<task>.png)")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda")
    b = sub.add_parser("bench", help="measure env throughput (`metarl bench envs`)")
    b.add_argument("what", choices=("envs",), help="envs: single-env, vector and driving steps/s, memory")
    b.add_argument("--json", nargs="?", const="auto", type=str, metavar="PATH",
                   help="also write the report as JSON (default path: benchmarks/results/bench_envs-<host>.json "
                        "inside a metarl checkout, else ./bench_envs-<host>.json)")
    b.add_argument("--quick", action="store_true", help="a smoke run of under a minute")
    b.add_argument("--max-workers", type=_whole("--max-workers", 4), help="largest worker count (default: cores)")
    b.add_argument("--steps", type=_whole("--steps", 3000), default=3000, help="timed steps per single-env measurement")
    b.add_argument("--repeats", type=_whole("--repeats", 2), default=2,
                   help="alternating measurements per env (single) and per worker count (vector); the best is kept")
    b.add_argument("--slots-per-worker", type=_whole("--slots-per-worker", 2), default=2,
                   help="env slots per shm worker process")
    b.add_argument("--worker-counts", metavar="N,N,...",
                   help="the vector section's worker counts (default 1, 2, 4, ... up to --max-workers)")
    b.add_argument("--rss-steps", type=int, default=0, help="also step this many slot-steps and sample worker RSS")
    b.add_argument("--sections", default="single,vector,driving",
                   help="comma-separated subset of single,vector,driving")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``metarl`` command; returns the exit code."""
    def run() -> int:
        args = build_parser().parse_args(argv)
        return {"envs": cmd_envs, "train": cmd_train, "eval": cmd_eval, "plot": cmd_plot,
                "bench": cmd_bench, "render": cmd_render, "compare": cmd_compare}[args.command](args)

    return exit_code(run)


def cmd_bench(args: argparse.Namespace) -> int:
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = set(sections) - {"single", "vector", "driving"}
    if unknown or not sections:
        raise UsageError(f"--sections {args.sections!r}: choose from single, vector, driving (comma-separated)")
    if args.rss_steps < 0:
        raise UsageError(f"--rss-steps must be >= 0, got {args.rss_steps}: give e.g. --rss-steps 1000000 (0: no RSS run)")
    worker_counts = None
    if args.worker_counts is not None:
        try:
            worker_counts = [int(w) for w in args.worker_counts.split(",")]
        except ValueError:
            worker_counts = []
        if not worker_counts or min(worker_counts) < 1:
            raise UsageError(f"--worker-counts {args.worker_counts!r}: give positive integers, comma-separated, "
                             "e.g. --worker-counts 1,16")
    out = None
    if args.json is not None:
        out = _bench_json_path(args.json)
        _check_writable(out, "--json")
    from metarl.envs import bench  # lazy: the core does not import the task families

    def write(report: dict) -> None:  # after every section, atomically: a cut-short run keeps its numbers
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(out)

    bench.run(quick=args.quick, max_workers=args.max_workers, steps=args.steps, repeats=args.repeats,
              slots_per_worker=args.slots_per_worker, rss_steps=args.rss_steps, sections=sections,
              worker_counts=worker_counts,
              on_section=None if out is None else write)
    if out is not None:
        print(f"wrote {out}")
    return 0


def _bench_json_path(text: str) -> Path:
    if text != "auto":
        return Path(text)
    import socket

    name = f"bench_envs-{socket.gethostname()[:20]}.json"
    results = Path("benchmarks") / "results"
    return results / name if results.is_dir() else Path(name)


def _check_writable(path: Path, flag: str) -> None:
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory: give a file path inside it")
    if not path.parent.is_dir():
        what = "is a file, not a folder" if path.parent.exists() else "does not exist"
        raise UsageError(f"{flag} {path}: {path.parent} {what}; create the folder or choose another path")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"{flag} {path}: folder {path.parent} is not writable; choose another path")


def cmd_envs(args: argparse.Namespace) -> int:
    rows: dict[str, dict] = {}
    for name in metarl.benchmark_names():
        try:  # one broken plug-in must not hide the other families
            factory = benchmark_factory(name)
            describe = getattr(factory, "describe", None)
            rows[name] = describe() if describe else _describe_by_building(name)
        except Exception as e:
            rows[name] = {"error": str(e) if isinstance(e, UsageError) else f"{type(e).__name__}: {e}"}
    broken_agents = {}
    for name in metarl.agent_names():
        try:
            agent_factory(name)
        except UsageError as e:
            broken_agents[name] = str(e)
    agents = [n for n in metarl.agent_names() if n not in broken_agents]
    options = {n: option_defaults(agent_factory(n)) for n in agents}
    if args.json:
        print(json.dumps({"benchmarks": rows, "agents": agents, "unavailable_agents": broken_agents,
                          "agent_options": options}, indent=2, default=str))
        return 0
    for name, d in rows.items():
        if "error" in d:
            print(f"{name}: unavailable: {d['error']}")
            continue
        print(f"{name}: {len(d['train'])} train / {len(d['test'])} test classes, "
              f"{d.get('tasks_per_class', '?')} tasks per class, {d.get('eval_tasks_per_class', '?')} evaluated per test class")
        if "task_choices" in d:
            print(f"  --task (one of {len(d['task_choices'])}): {' '.join(d['task_choices'])}")
        else:
            print(f"  train: {' '.join(d['train'])}\n  test:  {' '.join(d['test'])}")
        for opt, text in d.get("options", {}).items():
            flag = _RESERVED["--env-opt"].get(opt)
            print(f"  option {opt}: {text}" + (f" (give it as {flag}, not --env-opt)" if flag else ""))
        if "note" in d:
            print(f"  note: {d['note']}")
    print(f"agents: {' '.join(agents)}")
    for name in agents:  # --agent-opt KEY=VALUE; lists as 128,128 (one layer: 128)
        if options[name]:
            shown = (f"{k}={','.join(map(str, v)) if isinstance(v, (tuple, list)) else v}" for k, v in options[name].items())
            print(f"  {name} options (--agent-opt, defaults): {' '.join(shown)}")
    for name, err in broken_agents.items():
        print(f"agent {name}: unavailable: {err}")
    print("Meta-World rewards: v2 (default) or v1, chosen with --reward-version")
    return 0


def _describe_by_building(name: str) -> dict:
    bench = metarl.make_benchmark(name)
    return {"train": list(bench.train.task_names), "test": list(bench.test.task_names),
            "tasks_per_class": len(bench.train.tasks) // len(bench.train.task_names),
            "eval_tasks_per_class": len(bench.test.evaluation_tasks()) // len(bench.test.task_names)}


def _num_envs(bench: Benchmark, requested: int | None) -> int:
    """Slots must be a multiple of the training classes, so every meta-batch is balanced."""
    return _fit_num_envs(len(bench.train.task_names), bench.label, requested)


def _fit_num_envs(classes: int, label: str, requested: int | None) -> int:
    if requested is None:
        return classes * max(1, -(-10 // classes))
    if requested % classes:
        raise UsageError(f"--num-envs {requested} doesn't fit {label}: use a multiple of its {classes} "
                         f"training classes (e.g. {classes * max(1, round(requested / classes))})")
    return requested


def _check_num_envs_early(name: str, requested: int | None) -> None:
    """The --num-envs check from the family's ``describe()``, before building it (ML45 takes ~40 s)."""
    if requested is None:
        return
    describe = getattr(metarl.benchmark_factory(name), "describe", None)
    train = describe().get("train") if describe else None
    if isinstance(train, list) and train:
        _fit_num_envs(len(train), name, requested)


def max_seconds(args: argparse.Namespace) -> float | None:
    """``--max-minutes`` in seconds (None: no limit); a one-line error unless a positive finite number."""
    if args.max_minutes is not None and not (0 < args.max_minutes < math.inf):
        raise UsageError(f"--max-minutes must be a positive number of minutes, got {args.max_minutes}: give e.g. "
                         "--max-minutes 30 (or leave it out for no time limit)")
    return None if args.max_minutes is None else 60 * args.max_minutes


def _path_arg(text: str) -> Path:
    """A path flag's value; empty text (``--out ""``) is refused rather than read as the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path: give a directory, e.g. --out runs/my-run")
    return Path(text)


def _option_flags(args: argparse.Namespace) -> dict[str, dict]:
    """``--agent-opt`` / ``--env-opt`` of `train`, parsed: ``{"agent_options": ..., "env_options": ...}``."""
    return {"agent_options": parse_options(args.agent_opt, "--agent-opt", "hidden=128"),
            "env_options": parse_options(args.env_opt, "--env-opt", "horizon=200")}


def _run_config(args: argparse.Namespace) -> RunConfig:
    trainer = _trainer_config(
        steps=args.steps or 100_000, num_envs=1, seed=args.seed or 0, backend=args.backend or "auto",
        num_workers=args.num_workers,
        max_seconds=max_seconds(args),
        eval_every=args.eval_every or 0, final_eval=not args.no_final_eval,
        final_eval_tasks_per_class=args.eval_tasks, checkpoint_every=args.checkpoint_every or 10,
        progress=sys.stderr.isatty(),
    )
    return RunConfig(benchmark=args.benchmark, agent=args.agent, task=args.task,
                     reward_version=args.reward_version, trainer=trainer, device=args.device or "auto",
                     **_option_flags(args))


_RESERVED = {"--env-opt": {"seed": "--seed", "task": "--task", "reward_version": "--reward-version"},
             "--agent-opt": {"device": "--device"}}


_JSON_WORDS = {"true": True, "false": False, "null": None}


def parse_options(pairs: list[str], flag: str, example: str) -> dict:
    """``["hidden=128", "first_order=True"]`` -> ``{"hidden": 128, "first_order": True}``.

    Values are Python literals or JSON's ``true``/``false``/``null`` (strings otherwise); tuples become
    lists, as they would after a round trip through ``config.json``; values JSON can't hold (sets, bytes,
    complex) are rejected.
    """
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {pair!r} is not KEY=VALUE: give e.g. {flag} {example}")
        if key in out:
            raise UsageError(f"{flag} {key}= is given twice ({out[key]!r}, then {text!r}): give it once")
        if key in _RESERVED.get(flag, {}):
            raise UsageError(f"{flag} {key}=... is not a family/agent option: use {_RESERVED[flag][key]}")
        try:
            value = _JSON_WORDS[text.strip()] if text.strip() in _JSON_WORDS else ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        value = _jsonable(value)
        if value is None and text.strip() not in ("None", "null", ""):
            raise UsageError(f"{flag} {pair!r}: the value must be a number, bool, None, string, list or dict")
        out[key] = value
    return out


def _jsonable(value: Any) -> Any:
    """``value`` with tuples as lists if JSON can hold it, else None."""
    if isinstance(value, tuple):
        value = list(value)
    try:
        return json.loads(json.dumps(value)) if not isinstance(value, float) else value
    except (TypeError, ValueError):
        return None

def _prepare_out(out: Path, force: bool) -> None:
    """Refuse to clobber a run (unless --force on a run directory), then check the path is writable."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a directory path")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UsageError(f"run directory {out} already exists: add --resume to continue it or --force to replace it")
        if _run_config_json(out / "config.json") is None:  # missing, unreadable or someone else's
            raise UsageError(f"--force refuses to delete {out}: it is not a metarl run directory (no config.json "
                             "written by `metarl train`); choose another --out")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to --out {out} ({e.strerror}): choose a writable directory") from None


def _resumed_config(args: argparse.Namespace, cfg: RunConfig) -> RunConfig:
    """The saved config with this invocation's new limits; flags that contradict the saved run refuse."""
    t = cfg.trainer
    agent_opts, env_opts = _option_flags(args).values()
    conflicts = [flag for flag, clash in (
        ("BENCHMARK", args.benchmark != cfg.benchmark), ("--agent", args.agent != cfg.agent),
        ("--task", args.task is not None and args.task != cfg.task),
        ("--seed", args.seed is not None and args.seed != t.seed),
        ("--num-envs", args.num_envs is not None and args.num_envs != t.num_envs),
        ("--backend", args.backend is not None and args.backend != t.backend),
        ("--reward-version", args.reward_version is not None and args.reward_version != (cfg.reward_version or "v2")),
        ("--agent-opt", any(_differs_from_saved(k, v, cfg.agent_options, args.out) for k, v in agent_opts.items())),
        ("--env-opt", any(cfg.env_options.get(k, object()) != v for k, v in env_opts.items()))) if clash]
    if args.num_workers is not None and not conflicts and t.backend != "shm":
        raise UsageError(f"--num-workers sets the shm backend's worker processes; {args.out} was trained with backend "
                         f"{t.backend!r}, which --resume keeps: drop --num-workers")
    if conflicts:
        raise UsageError(f"--resume continues {args.out} as saved in its config.json ({cfg.benchmark}"
                         f"{'/' + cfg.task if cfg.task else ''}, {cfg.agent}, seed {t.seed}); {', '.join(conflicts)} "
                         f"differ{'s' if len(conflicts) == 1 else ''} from it: give the saved values (or leave the "
                         "flags out), or start a new run with --force")
    new = {"steps": args.steps, "max_seconds": max_seconds(args),
           "eval_every": args.eval_every,
           "final_eval_tasks_per_class": args.eval_tasks, "checkpoint_every": args.checkpoint_every,
           "num_workers": args.num_workers}
    new = {k: v for k, v in new.items() if v is not None}
    new["final_eval"] = not args.no_final_eval  # this invocation's, like the other limits (not sticky)
    device = args.device or cfg.device
    return RunConfig(**{**asdict(cfg), "device": device, "trainer": _trainer_config(**{**asdict(t), **new})})


def cmd_train(args: argparse.Namespace) -> int:
    from metarl import checkpoint
    from metarl.logging import Logger
    from metarl.seeding import resolve_device, seed_everything
    from metarl.trainer import Trainer, TrainingInterrupted

    if args.resume:
        if args.force:
            raise UsageError("--resume continues a run and --force replaces it: give one of them")
        if args.out is None:
            raise UsageError("--resume needs --out RUN_DIR: the run directory to continue")
        cfg = _load_run_config(args.out)
        if not (args.out / checkpoint.CHECKPOINT_NAME).exists():
            raise UsageError(f"{args.out} has no {checkpoint.CHECKPOINT_NAME} to resume from: start it again with --force")
        cfg = _resumed_config(args, cfg)
    else:
        cfg = _run_config(args)
        _check_num_envs_early(cfg.benchmark, args.num_envs)
    bench = cfg.make_benchmark()
    cfg = RunConfig(**{**asdict(cfg), "trainer": _trainer_config(
        **{**asdict(cfg.trainer), "num_envs": _num_envs(bench, args.num_envs if not args.resume else cfg.trainer.num_envs)})})
    device = resolve_device(cfg.device)
    for dist in (bench.train, bench.test):
        check_num_workers(check_backend(dist, cfg.trainer.backend), cfg.trainer.num_workers)
    seed_everything(cfg.trainer.seed)  # agent init is seeded too
    if args.resume:
        saved = checkpoint.load(args.out / checkpoint.CHECKPOINT_NAME).get("algorithm", {})
        agent = agent_as_saved(cfg.agent, bench, str(device), cfg.agent_options, saved)
    else:
        agent = metarl.make_agent(cfg.agent, bench, device=str(device), **cfg.agent_options)
    checkpoint.check_state_dict(agent)  # before a run dir is replaced or written: checkpoints must hold it
    out = args.out or Path("runs") / f"{bench.label.replace('/', '-')}-{cfg.agent}-s{cfg.trainer.seed}"
    if not args.resume:
        from metarl.envs.bench import git_commit

        config_text = json.dumps({**asdict(cfg), "resolved": {"device": str(device), "reward_version": bench.reward_version,
                                                              "metarl": metarl.__version__, "git_commit": git_commit(),
                                                              "agent_config": agent_config(agent)}}, indent=2) + "\n"
        _prepare_out(out, args.force)
        (out / "config.json").write_text(config_text)
    trainer = Trainer(bench, agent, cfg.trainer, run_dir=out, logger=Logger.for_run(out))
    if args.resume:
        trainer.resume(out / checkpoint.CHECKPOINT_NAME)
        trainer.logger.rewind(trainer.state.env_steps)  # rows logged after the checkpoint are logged again
        at_budget, out_of_time = trainer.state.env_steps >= cfg.trainer.steps, trainer.out_of_time()
        if at_budget or out_of_time:
            done = _already_evaluated(trainer.final_eval_path(), trainer.state.env_steps, trainer.final_tasks_digest())
            if done:  # the same weights: evaluating again would repeat it and log it twice
                trainer.config = replace(trainer.config, final_eval=False)
            note = (f"; {trainer.final_eval_path()} already evaluates these weights (`metarl eval {out}` repeats it)"
                    if done else "; running the final evaluation" if cfg.trainer.final_eval else "")
            why = (f"at or past --steps {cfg.trainer.steps:,}" if at_budget else
                   f"in {trainer.state.elapsed / 60:.1f} of its {cfg.trainer.max_seconds / 60:g} minutes "
                   "(--max-minutes counts the whole run: give a larger one to go on)")
            print(f"{out} has trained {trainer.state.env_steps:,} env steps, {why}: nothing to train{note}",
                  file=sys.stderr)
        else:
            _record_resume(out / "config.json", trainer.state.env_steps)
    if not (args.resume and (at_budget or out_of_time)):
        print(f"training {cfg.agent} on {bench.label} (rewards {bench.reward_version or 'n/a'}) for "
              f"{cfg.trainer.steps:,}+ env steps (whole meta-batches: the last one may run past) with "
              f"{cfg.trainer.num_envs} slots on {device}; run dir {out}", file=sys.stderr)
    resume = " ".join(shlex.quote(a) for a in ["metarl", "train", cfg.benchmark, *(["--task", cfg.task] if cfg.task else []),
                                                 "--agent", cfg.agent, "--out", str(out), "--resume",
                                                 *([] if cfg.trainer.final_eval else ["--no-final-eval"])])
    stop: KeyboardInterrupt | None = None
    try:
        result = trainer.train()
    except KeyboardInterrupt as e:  # Ctrl-C after a saved iteration, or during the final evaluation
        if not isinstance(e, TrainingInterrupted) and not trainer.final_evaluation_running:
            raise
        stop = e
    trainer.logger.close()
    print(f"learning curve: {plot_run(out)}", file=sys.stderr)
    if isinstance(stop, TrainingInterrupted):
        print(f"interrupted: {out} checkpointed at {stop.env_steps:,} env steps, no final evaluation; continue "
              f"with `{resume}` (add --steps / --max-minutes to change the budget)", file=sys.stderr)
        return 130
    if stop is not None:
        print(f"interrupted during the final evaluation: {out}/checkpoint.pt holds the trained weights; "
              f"`metarl eval {shlex.quote(str(out))}` evaluates them", file=sys.stderr)
        return 130
    if result is not None:
        print(f"held-out evaluation: {trainer.final_eval_path()}", file=sys.stderr)
        _print_table(result, bench, cfg.trainer.seed)
    return 0


def _record_resume(path: Path, env_steps: int) -> None:
    """Append this resume's code commit and starting env step to ``resolved.resumes`` in the run's
    ``config.json`` (written atomically), so a run trained by more than one commit says which did what."""
    from metarl.envs.bench import git_commit

    obj = json.loads(path.read_text())
    resumes = obj.setdefault("resolved", {}).setdefault("resumes", [])
    if resumes and resumes[-1]["env_steps"] == env_steps:  # that resume stopped before its first iteration
        resumes.pop()
    resumes.append({"env_steps": env_steps, "git_commit": git_commit()})
    with atomic_write(path) as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def _differs_from_saved(key: str, value: Any, saved: dict[str, Any], out: Path) -> bool:
    """Whether ``--agent-opt key=value`` contradicts the run in ``out``: its saved option, or, where it was
    left at its default, the agent's resolved config in ``config.json`` (so repeating a default is fine)."""
    def same(a: Any, b: Any) -> bool:  # hidden=16 and hidden=16, (or [16] in JSON) build the same layers
        a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
        if isinstance(a, list) != isinstance(b, list):
            a, b = (a if isinstance(a, list) else [a]), (b if isinstance(b, list) else [b])
        return a == b

    if key in saved:
        return not same(saved[key], value)
    try:
        resolved = json.loads((out / "config.json").read_text())["resolved"]["agent_config"]
        return key not in resolved or not same(resolved[key], value)
    except (OSError, ValueError, KeyError, TypeError):
        return True


def _already_evaluated(path: Path, env_steps: int, digest: str) -> bool:
    """``path`` holds a final evaluation written after ``env_steps`` of training, on the held-out tasks
    whose :func:`metarl.evaluator.tasks_digest` is ``digest``."""
    try:
        obj = json.loads(path.read_text())
        return obj.get("trained_env_steps") == env_steps and obj.get("tasks_digest") == digest
    except (OSError, ValueError, AttributeError):
        return False


def cmd_plot(args: argparse.Namespace) -> int:
    if not (args.run_dir / "progress.csv").exists():
        raise UsageError(f"{args.run_dir} has no progress.csv: pass a run directory written by `metarl train`")
    from metarl.plot import CURVES, read_progress

    path = args.run_dir / "progress.csv"
    try:
        series = read_progress(path)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError):
        raise UsageError(f"{path} is not a metarl progress.csv (step,key,value rows): pass a run directory "
                         "written by `metarl train`") from None
    if not any(key in series for _, keys in CURVES for key in keys):
        raise UsageError(f"{path} has no training or evaluation metrics yet: plot after the first iteration")
    print(plot_run(args.run_dir))
    return 0


def _load_run_config(run_dir: Path) -> RunConfig:
    path = run_dir / "config.json"
    if not path.exists():
        raise UsageError(f"{run_dir} is not a metarl run directory (no config.json): pass one written by `metarl train`")
    obj = _run_config_json(path)
    if obj is None:
        raise UsageError(f"{path} is not a metarl run config (unreadable, or not what `metarl train` writes): "
                         "pass a run directory written by `metarl train`")
    obj.pop("resolved", None)
    try:
        return RunConfig.from_json(obj)
    except TypeError as e:
        raise UsageError(f"{path} doesn't fit this metarl version's run config ({e}): retrain, or use the "
                         "metarl version that wrote it") from None


def _run_config_json(path: Path) -> dict | None:
    """``config.json`` as written by `metarl train`, or None if it isn't one (unparsable, other keys)."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    ok = isinstance(obj, dict) and isinstance(obj.get("trainer"), dict) and {"benchmark", "agent"} <= set(obj)
    return obj if ok else None


def agent_as_saved(name: str, bench: Benchmark, device: str, options: dict, saved_state: dict) -> Any:
    """The agent with ``options``, and for every other option the value its checkpoint was trained with.

    config.json keeps only the options given on the command line; agents also save their whole config
    in the checkpoint (``saved_state["config"]``). Options left at their default take the saved value,
    so a run is resumed and evaluated as it was trained even after a default has changed (e.g. MAML's
    ``inner_steps``). Options the agent no longer has are ignored.
    """
    agent = metarl.make_agent(name, bench, device=device, **options)
    saved, current = saved_state.get("config") if isinstance(saved_state, dict) else None, getattr(agent, "cfg", None)
    if not isinstance(saved, dict) or not is_dataclass(current):
        return agent
    known = {f.name for f in fields(current)}
    pinned = {k: v for k, v in saved.items() if k in known and k not in options and getattr(current, k) != v}
    return metarl.make_agent(name, bench, device=device, **pinned, **options) if pinned else agent


def _load_trained(run_dir: Path, device: str, overrides: dict | None = None,
                  env_overrides: dict | None = None) -> tuple[RunConfig, Benchmark, Any, int | None]:
    """Config, benchmark, agent (weights from the checkpoint) and the env steps those weights trained
    for (None if the checkpoint doesn't say) of a run directory; ``overrides``
    replace saved agent options (e.g. ``inner_lr=0`` for an ablation), ``env_overrides`` saved family
    options (e.g. ``test=extrapolate``: another held-out split)."""
    from metarl import checkpoint
    from metarl.seeding import resolve_device

    cfg = _load_run_config(run_dir)
    if env_overrides:
        cfg = RunConfig(**{**asdict(cfg), "trainer": cfg.trainer, "env_options": {**cfg.env_options, **env_overrides}})
    bench = cfg.make_benchmark()
    ckpt = run_dir / checkpoint.CHECKPOINT_NAME
    if not ckpt.exists():
        raise UsageError(f"{run_dir} has no {checkpoint.CHECKPOINT_NAME}: the run never checkpointed; train it first")
    saved = checkpoint.load(ckpt)
    state = saved.get("algorithm", {})
    trained = saved.get("trainer", {}).get("env_steps") if isinstance(saved.get("trainer"), dict) else None
    agent = agent_as_saved(cfg.agent, bench, str(resolve_device(device)), {**cfg.agent_options, **(overrides or {})},
                            state)
    try:
        agent.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as e:
        hint = ("drop the --agent-opt or --env-opt that changes the network's shape" if overrides or env_overrides
                else "the checkpoint was written by a different agent version; retrain with --force")
        detail = str(e).strip().splitlines()
        raise UsageError(f"{ckpt} does not fit the {cfg.agent} agent built from config.json "
                         f"({detail[-1].strip() if detail else type(e).__name__}): {hint}") from None
    return cfg, bench, agent, trained if isinstance(trained, int) else None


def cmd_render(args: argparse.Namespace) -> int:
    from metarl.evaluator import EvalConfig, run_trial
    from metarl.seeding import SlotNoise, seed_everything

    if not args.run_dir.is_dir():
        raise UsageError(f"{args.run_dir} is not a directory: pass a run directory written by `metarl train`")
    cfg = _load_run_config(args.run_dir)
    renderer = getattr(benchmark_factory(cfg.benchmark), "render_trial", None)
    if renderer is None:
        raise UsageError(f"benchmark {cfg.benchmark!r} has no trial renderer (families opt in with a "
                         "`render_trial` attribute on their factory; Driving has one)")
    out = args.out or args.run_dir / f"trial-test-{args.task}.png"
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out}: render writes a PNG image; give a path ending in .png")
    _check_writable(out, "--out")
    cfg, bench, agent, _ = _load_trained(args.run_dir, args.device)
    tasks = bench.test.evaluation_tasks()
    if not 0 <= args.task < len(tasks):
        raise UsageError(f"--task {args.task} is out of range: {bench.label} has {len(tasks)} evaluation tasks (0..{len(tasks) - 1})")
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
        renderer(pre, post, tasks[args.task], out, title=f"{cfg.agent} on {bench.label}, held-out {tasks[args.task].id}")
    except OSError as e:
        raise UsageError(f"cannot write --out {out} ({e.strerror or e}): choose a writable path") from None
    print(f"wrote {out}")
    return 0


def _read_eval(path: Path) -> dict:
    """An evaluation JSON object from ``path``: a file, or a run directory's ``eval.json``."""
    if path.is_dir():
        if not (path / "eval.json").is_file() and not (path / "config.json").is_file():
            raise UsageError(f"{path} is not a run directory (no config.json): give an eval*.json file or a run "
                             "directory written by `metarl train`")
        if not (path / "eval.json").is_file():
            others = sorted(p.name for p in path.glob("eval*.json"))
            raise UsageError(f"{path} has no eval.json (the official evaluation)"
                             + (f"; give one of its files instead: {', '.join(others)}" if others else
                                f": run `metarl eval {path}` first"))
        path = path / "eval.json"
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist: give an eval*.json file or a run directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path} is not an evaluation JSON ({e}): give an eval*.json file or a run directory") from None
    if not isinstance(obj, dict) or "per_goal" not in obj or "per_task" not in obj:
        raise UsageError(f"{path} is not an evaluation JSON (no per_goal/per_task): give an eval*.json file "
                         "written by `metarl eval` or `metarl train`")
    return obj


def cmd_compare(args: argparse.Namespace) -> int:
    from metarl.evaluator import compare

    result = compare(_read_eval(args.a), _read_eval(args.b))
    if args.json:
        def finite(x):
            return {k: finite(v) for k, v in x.items()} if isinstance(x, dict) else (
                None if isinstance(x, float) and not math.isfinite(x) else x)
        print(json.dumps({"a": str(args.a), "b": str(args.b), **finite(result)}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"B - A: {result['benchmark']}, rewards {result['reward_version'] or 'n/a'}, "
                        f"{result['num_tasks']} held-out tasks")
    table.add_column("task", no_wrap=True)
    for col in ("A", "B", "B - A"):
        table.add_column(col, justify="right")
    for name, row in result["per_task"].items():
        table.add_row(name, f"{row['a']:.1%}", f"{row['b']:.1%}", f"{row['diff']:+.1%}")

    def pm(row: dict, fmt: str) -> str:
        se = row["paired_se"]
        return fmt.format(row["diff"]) + ("" if not math.isfinite(se) else " ± " + fmt.format(se).lstrip("+"))

    for key, label, fmt in (("success_rate", "success (post)", "{:+.1%}"), ("pre_success_rate", "success (pre)", "{:+.1%}"),
                            ("return", "return (post)", "{:+.1f}"), ("pre_return", "return (pre)", "{:+.1f}")):
        row = result[key]
        a, b = (f"{row[k]:.1%}" if "success" in key else f"{row[k]:.1f}" for k in ("a", "b"))
        table.add_row(f"[bold]{label}[/bold]", a, b, f"[bold]{pm(row, fmt)}[/bold]")
    s = result["success_rate"]
    table.caption = ("± paired standard error over tasks" + (f" (unpaired: ±{s['unpaired_se']:.1%})"
                                                          if math.isfinite(s["unpaired_se"]) else "")
                     + ("; both drew with the same evaluation seed from per-task streams" if result["common_noise"]
                        else "; the evaluations did not share their draws (other seeds, or written before per-task streams)"))
    console = Console()
    console.print(f"A: {args.a}\nB: {args.b}", soft_wrap=True, highlight=False)
    console.print(table)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from metarl.evaluator import EvalConfig, eval_slots, evaluate
    from metarl.rollout import torch_threads
    from metarl.seeding import resolve_device, seed_everything
    from metarl.trainer import TrainerConfig, eval_file_name, eval_summary, write_eval_json

    target = Path(args.target)
    options = parse_options(args.agent_opt, "--agent-opt", "inner_lr=0")
    env_options = parse_options(args.env_opt, "--env-opt", "test=extrapolate")
    if target.is_dir():  # the run's backend and workers unless given
        given = [flag for flag, value in (("--agent", args.agent), ("--task", args.task), ("--seed", args.seed),
                                          ("--reward-version", args.reward_version)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to a benchmark name; "
                             f"{target} is a run directory, evaluated with its own agent, task, seed and rewards: "
                             f"drop {'it' if len(given) == 1 else 'them'}")
        cfg, bench, agent, trained = _load_trained(target, args.device, options, env_options)
        seed, num_envs = cfg.trainer.seed, args.num_envs or cfg.trainer.num_envs
        threads = cfg.trainer.collect_threads
        backend = args.backend or cfg.trainer.backend
        workers = args.num_workers if args.num_workers or backend != cfg.trainer.backend else cfg.trainer.num_workers
        check_num_workers(check_backend(bench.test, backend), workers)
    else:
        if os.sep in args.target or args.target.startswith("."):
            raise UsageError(f"{args.target} is not a directory: pass a run directory written by `metarl train`, "
                             "or a benchmark name with --agent")
        if args.agent is None:
            raise UsageError(f"{args.target!r} is not a run directory; to evaluate an untrained agent on a "
                             "benchmark add --agent NAME (e.g. --agent random)")
        seed = 0 if args.seed is None else args.seed
        rewards = {} if args.reward_version is None else {"reward_version": args.reward_version}
        bench = metarl.make_benchmark(args.target, task=args.task, seed=seed, **env_options, **rewards)
        backend, workers = args.backend or "auto", args.num_workers
        check_num_workers(check_backend(bench.test, backend), workers)
        seed_everything(seed)
        agent = metarl.make_agent(args.agent, bench, device=str(resolve_device(args.device)), **options)
        num_envs, threads = args.num_envs or 10, TrainerConfig.collect_threads
        trained = None  # untrained weights
    det = {"auto": None, "mean": True, "sampled": False}[args.actions]
    config = EvalConfig(max_tasks_per_class=args.eval_tasks, deterministic=det)
    eval_seed = seed if args.eval_seed is None else args.eval_seed
    envs = make_vector_env(bench.test, eval_slots(bench.test, config, num_envs), backend, workers)
    try:
        with torch_threads(threads):
            result = evaluate(bench.test, agent.make_learner(), envs, config, eval_seed)
    finally:
        envs.close()
    extra = {**({"trained_env_steps": trained} if trained is not None else {}),  # as training writes it
             **({"agent_overrides": options} if options else {}),
             **({"env_overrides": env_options} if env_options else {})}
    if target.is_dir():  # a partial or non-default evaluation never replaces the official one
        other_seed = {} if eval_seed == seed else {"eval_seed": eval_seed}
        path = target / eval_file_name(bench.test, args.eval_tasks, args.actions,
                                       {**env_options, **options, **other_seed})
        write_eval_json(path, result, bench, seed, eval_seed, **extra)
    if args.json:  # the file's fields
        print(json.dumps({**eval_summary(result, bench, seed, eval_seed), **extra}, indent=2))
    else:
        _print_table(result, bench, seed, eval_seed)
    return 0


def _print_table(result: EvalResult, bench: Benchmark, seed: int, eval_seed: int | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    seeds = f"seed {seed}" + ("" if eval_seed in (None, seed) else f" (evaluation seed {eval_seed})")
    table = Table(title=f"held-out evaluation: {bench.label}, rewards {bench.reward_version or 'n/a'}, {seeds}, "
                  f"{result.eval_actions} actions after adaptation"
                  + ("" if result.protocol in ("official", "") else f"; {result.protocol}, not the official protocol"))
    table.add_column("task", no_wrap=True, min_width=max(map(len, result.per_task), default=4))  # never cut
    for col in ("tasks", "success (post)", "success (pre)", "return (post)", "return (pre)"):
        table.add_column(col, justify="right")
    for name, row in result.per_task.items():
        table.add_row(name, str(row["num_tasks"]), f"{row['success_rate']:.1%}", f"{row['pre_success_rate']:.1%}",
                      f"{row['return']:.1f}", f"{row['pre_return']:.1f}")
    table.add_row("[bold]mean[/bold]", "", f"[bold]{result.success_rate:.1%}[/bold]", f"{result.pre_success_rate:.1%}",
                  f"{result.mean_return:.1f}", f"{result.pre_return:.1f}")
    if math.isfinite(result.success_rate_se):
        table.caption = (f"standard error over tasks: ±{result.success_rate_se:.1%} (post), "
                         f"±{result.pre_success_rate_se:.1%} (pre)")
    Console().print(table)

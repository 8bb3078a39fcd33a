"""Runs: create a run directory and train in it, resume it, evaluate it. The CLI, the benchmark scripts
and Python users share this module, so a run started from Python is a full run that ``metarl eval RUN``
evaluates and ``metarl train --resume`` continues (and the other way round)::

    from metarl import runs
    from metarl.trainer import TrainerConfig

    config = runs.RunConfig("Toy", "rl2", trainer=TrainerConfig(steps=20_000, num_envs=10))
    result = runs.create(config, "runs/toy-rl2").train()   # ends with the held-out evaluation (eval.json)
    runs.resume("runs/toy-rl2", steps=40_000).train()       # on to 40,000 env steps in all
    again = runs.evaluate_run("runs/toy-rl2", eval_seed=1)  # eval-eval_seed=1.json: other draws, same tasks

What a run directory holds, and the lower-level helpers, are in :mod:`metarl.rundir`; the names
scripts use are re-exported here. Modules that import torch are imported inside the functions that
need them: the CLI imports this module, and env worker processes re-import the CLI as their main module.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from metarl.errors import RunError, UsageError
from metarl.factory import make_agent
from metarl.files import atomic_write
from metarl.plot import plot_run
from metarl.registry import benchmark_factory
from metarl.rundir import (
    CONFIG_NAME,
    RunConfig,
    Trained,
    agent_as_saved,
    already_evaluated,
    check_checkpoint,
    config_text,
    default_out,
    load_config,
    load_trained,
    max_seconds,
    parse_options,
    prepare_dir,
    read_eval,
    record_resume,
    unwritable,
    write_config,
)
from metarl.runlock import RunLock
from metarl.tasks import Benchmark
from metarl.vector import check_backend, check_num_workers, make_vector_env

if TYPE_CHECKING:
    from metarl.evaluator import EvalResult
    from metarl.learner import MetaAlgorithm

__all__ = ["CONFIG_NAME", "Run", "RunConfig", "RunEvaluation", "Trained", "agent_as_saved",
           "already_evaluated", "config_text", "create", "default_out", "evaluate_agent", "evaluate_run",
           "load_config", "load_trained", "max_seconds", "num_envs_for", "parse_options", "prepare_dir",
           "read_eval", "record_resume", "resume", "write_config"]


def num_envs_for(bench: Benchmark, requested: int | None) -> int:
    """Env slots for ``bench``: ``requested`` if a multiple of the training classes (so every meta-batch is
    balanced), else a one-line error; None: the smallest such multiple >= 10."""
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
    describe = getattr(benchmark_factory(name), "describe", None)
    train = describe().get("train") if describe else None
    if isinstance(train, list) and train:
        _fit_num_envs(len(train), name, requested)


class Run:
    """A run directory with its benchmark, agent and :class:`~metarl.trainer.Trainer`, ready to
    :meth:`train`; made by :func:`create` or :func:`resume`."""

    def __init__(self, out: Path, config: RunConfig, benchmark: Benchmark, agent: MetaAlgorithm,
                 device: str, lock: RunLock | None = None) -> None:
        from metarl.logging import Logger
        from metarl.trainer import Trainer

        self.out, self.config, self.benchmark, self.agent, self.device = out, config, benchmark, agent, device
        self.lock = lock or RunLock(out)
        """The run directory's lock, held from :func:`create` / :func:`resume` until :meth:`train` returns
        (or :meth:`close`): no other process trains in it, or writes an evaluation into it, meanwhile."""
        self.trainer = Trainer(benchmark, agent, config.trainer, run_dir=out, logger=Logger.for_run(out))
        self.trainer.origin["agent"] = config.agent  # its registry name, as config.json has it
        self.done = False
        """A resumed run already at its ``steps`` or ``max_seconds``: :meth:`train` trains nothing (it may
        still run the final evaluation)."""
        self.evaluated = False
        """With ``done``: the final evaluation file already evaluates these weights, so it isn't repeated."""
        self.learning_curve: Path | None = None
        """``learning_curve.png``, once :meth:`train` has drawn it."""

    def train(self) -> EvalResult | None:
        """Train to the budget, checkpointing as it goes, then run the final held-out evaluation (unless
        ``config.trainer.final_eval`` is off); close the logs and draw ``learning_curve.png``. Returns the
        final evaluation (None without one).

        A Ctrl-C stops at the next saved iteration (:class:`~metarl.trainer.TrainingInterrupted`) or ends
        the final evaluation; either is raised again after the logs are closed and the curve drawn.
        """
        from metarl.trainer import TrainingInterrupted

        self.lock.acquire("train in")
        try:
            stop: KeyboardInterrupt | None = None
            try:
                result = self.trainer.train()
            except KeyboardInterrupt as e:  # Ctrl-C after a saved iteration, or during the final evaluation
                if not isinstance(e, TrainingInterrupted) and not self.trainer.final_evaluation_running:
                    raise
                stop = e
            try:
                self.trainer.logger.close()
                self.learning_curve = plot_run(self.out)
            except OSError as e:  # a full disk: what training wrote is whole
                raise RunError(f"could not write {e.filename or 'the logs'} ({e.strerror or e}); the checkpoint "
                               f"and evaluation are whole: `metarl plot {self.out}` draws the curve again") from e
        finally:
            self.close()
        if stop is not None:
            raise stop
        return result

    def close(self) -> None:
        """Release the run directory (:meth:`train` does, when it returns or raises)."""
        self.lock.release()


def create(config: RunConfig, out: str | Path | None = None, *, force: bool = False,
           fit_num_envs: bool = False) -> Run:
    """A new run: build ``config``'s benchmark and agent (seeded by ``config.trainer.seed``), then make
    ``out`` (default :func:`default_out`) a run directory holding ``config.json``. Every check runs
    before anything is written.

    Args:
        out: the run directory; it must be empty or absent, unless ``force``.
        force: replace ``out`` if it holds a metarl run (anything else is refused).
        fit_num_envs: take the smallest multiple of the family's training classes >= 10 as
            ``trainer.num_envs`` (`metarl train` without ``--num-envs``); otherwise ``trainer.num_envs``
            must be such a multiple (every meta-batch balanced).
    """
    _check_num_envs_early(config.benchmark, None if fit_num_envs else config.trainer.num_envs)
    bench = config.make_benchmark()
    num_envs = num_envs_for(bench, None if fit_num_envs else config.trainer.num_envs)
    config = replace(config, trainer=replace(config.trainer, num_envs=num_envs))
    device, agent = _build(config, bench)
    out = Path(out) if out is not None else default_out(bench.label, config.agent, config.trainer.seed)
    text = config_text(config, bench, agent, device)
    lock = RunLock(out)
    prepare_dir(out, force, lock)
    with _released_on_error(lock):
        with atomic_write(out / CONFIG_NAME) as f:
            f.write(text)
        return Run(out, config, bench, agent, device, lock)


@contextlib.contextmanager
def _released_on_error(lock: RunLock) -> Iterator[None]:
    """Release ``lock`` if the block raises (a run that failed to start holds nothing)."""
    try:
        yield
    except BaseException:
        lock.release()
        raise


def _build(config: RunConfig, bench: Benchmark, saved_state: dict | None = None) -> tuple[str, MetaAlgorithm]:
    """The resolved device and the seeded agent (with the options ``saved_state`` was trained with, when
    given); the backend, workers and the agent's ``state_dict`` checked first."""
    from metarl import checkpoint
    from metarl.seeding import resolve_device, seed_everything

    device = str(resolve_device(config.device))
    for dist in (bench.train, bench.test):
        check_num_workers(check_backend(dist, config.trainer.backend), config.trainer.num_workers)
    if config.trainer.ray_address is not None:
        from metarl.distributed import check_ray_address

        check_ray_address(config.trainer.backend, config.trainer.ray_address)
    seed_everything(config.trainer.seed)  # agent init is seeded too
    if saved_state is not None:
        agent = agent_as_saved(config.agent, bench, device, config.agent_options, saved_state)
    else:
        agent = make_agent(config.agent, bench, device=device, **config.agent_options)
    checkpoint.check_state_dict(agent)  # before a run dir is replaced or written: checkpoints must hold it
    return device, agent


_LIMITS = ("steps", "max_seconds", "eval_every", "final_eval_tasks_per_class", "checkpoint_every",
           "num_workers", "backend", "ray_address")
"""Trainer settings a resume may change (None: keep the saved one)."""


def resume(out: str | Path, *, device: str | None = None, final_eval: bool = True,
           expect: dict[str, Any] | None = None, **limits: Any) -> Run:
    """The run in ``out``, continued from its checkpoint as saved in its ``config.json``: counters, random
    state, weights; ``progress.csv`` rows logged after the checkpoint are dropped (they are logged again).

    Args:
        device: where to train now (None: the saved one).
        final_eval: end with the held-out evaluation (this resume's choice, not saved).
        expect: what the caller believes the run is (`train`'s flags), each refused if it differs from
            the saved run: ``benchmark``, ``agent``, ``task``, ``seed``, ``num_envs``, ``backend``,
            ``reward_version``, ``agent_options``, ``env_options`` (None values: not given).
        **limits: new values (None: keep) of ``steps`` (the new total), ``max_seconds`` (the whole run's
            training seconds), ``eval_every``, ``final_eval_tasks_per_class``, ``checkpoint_every``,
            ``num_workers``.
    """
    from metarl import checkpoint

    out = Path(out)
    unknown = set(limits) - set(_LIMITS)
    if unknown:
        raise TypeError(f"resume() got unexpected keyword arguments {sorted(unknown)}: it takes "
                        f"{', '.join(_LIMITS)}")
    config = load_config(out)
    if not (out / checkpoint.CHECKPOINT_NAME).exists():
        raise UsageError(f"{out} has no {checkpoint.CHECKPOINT_NAME} to resume from: start it again "
                         "with --force")
    problem = unwritable(out)
    if problem:
        raise UsageError(f"cannot resume training in {out} ({problem}): a run directory must be writable to "
                         "go on (copy it somewhere writable and --resume there)")
    lock = RunLock(out).acquire("resume training in")
    with _released_on_error(lock):
        return _resume_locked(out, config, lock, expect or {}, device, final_eval, limits)


def _resume_locked(out: Path, config: RunConfig, lock: RunLock, expect: dict[str, Any], device: str | None,
                   final_eval: bool, limits: dict[str, Any]) -> Run:
    from metarl import checkpoint

    config = _resumed_config(config, out, expect, device, final_eval, limits)
    bench = config.make_benchmark()
    num_envs = num_envs_for(bench, config.trainer.num_envs)
    config = replace(config, trainer=replace(config.trainer, num_envs=num_envs))
    saved = checkpoint.load(out / checkpoint.CHECKPOINT_NAME)
    check_checkpoint(saved, config, bench, out / checkpoint.CHECKPOINT_NAME)
    device, agent = _build(config, bench, saved.get("algorithm", {}))
    run = Run(out, config, bench, agent, device, lock)
    trainer = run.trainer
    trainer.resume(out / checkpoint.CHECKPOINT_NAME)
    trainer.logger.rewind(trainer.state.env_steps)  # rows logged after the checkpoint are logged again
    run.done = trainer.state.env_steps >= config.trainer.steps or trainer.out_of_time()
    if run.done:
        run.evaluated = already_evaluated(trainer.final_eval_path(), trainer.state.env_steps,
                                          trainer.final_tasks_digest())
        if run.evaluated:  # the same weights: evaluating again would repeat it and log it twice
            trainer.config = replace(trainer.config, final_eval=False)
    else:
        record_resume(out / CONFIG_NAME, trainer.state.env_steps)
    return run


def _resumed_config(cfg: RunConfig, out: Path, expect: dict[str, Any], device: str | None, final_eval: bool,
                    limits: dict[str, Any]) -> RunConfig:
    """The saved config with this resume's new limits; expectations that contradict the saved run refuse."""
    t = cfg.trainer
    given = {k: v for k, v in expect.items() if v is not None}
    rewards = cfg.reward_version or "v2"
    conflicts = [flag for flag, clash in (
        ("BENCHMARK", given.get("benchmark", cfg.benchmark) != cfg.benchmark),
        ("--agent", given.get("agent", cfg.agent) != cfg.agent),
        ("--task", given.get("task", cfg.task) != cfg.task),
        ("--seed", given.get("seed", t.seed) != t.seed),
        ("--num-envs", given.get("num_envs", t.num_envs) != t.num_envs),
        ("--reward-version", given.get("reward_version", rewards) != rewards),
        ("--agent-opt", any(_differs_from_saved(k, v, cfg.agent_options, out)
                            for k, v in given.get("agent_options", {}).items())),
        ("--env-opt", any(cfg.env_options.get(k, object()) != v
                          for k, v in given.get("env_options", {}).items())))
        if clash]
    backend = limits.get("backend") or t.backend  # a resume may change it: trials don't depend on it
    if limits.get("num_workers") is not None and not conflicts and backend not in ("shm", "ray"):
        kept = (f"was trained with backend {backend!r}, which --resume keeps" if backend == t.backend
                else f"resumes with backend {backend!r}")
        raise UsageError(f"--num-workers sets the shm backend's worker processes (or Ray's actors); {out} {kept}: "
                         "drop --num-workers")
    if conflicts:
        verb = "differs" if len(conflicts) == 1 else "differ"
        raise UsageError(f"--resume continues {out} as saved in its config.json ({cfg.benchmark}"
                         f"{'/' + cfg.task if cfg.task else ''}, {cfg.agent}, seed {t.seed}); "
                         f"{', '.join(conflicts)} {verb} from it: give the saved values (or leave the flags "
                         "out), or start a new run with --force")
    new = {k: v for k, v in limits.items() if v is not None}
    if backend != t.backend and backend not in ("shm", "ray"):
        new["num_workers"] = None  # the saved count was the other backend's workers
    if backend != "ray" and limits.get("ray_address") is None:
        new["ray_address"] = None  # a cluster a ray run joined means nothing to a local backend
    new["final_eval"] = final_eval  # this invocation's, like the other limits (not sticky)
    return replace(cfg, device=device or cfg.device, trainer=replace(t, **new))


def _differs_from_saved(key: str, value: Any, saved: dict[str, Any], out: Path) -> bool:
    """Whether agent option ``key=value`` contradicts the run in ``out``: its saved option, or, where it was
    left at its default, the agent's resolved config in ``config.json`` (so repeating a default is fine)."""
    def same(a: Any, b: Any) -> bool:  # hidden=16 and hidden=16, (or [16] in JSON) build the same layers
        a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
        if isinstance(a, list) != isinstance(b, list):
            a, b = (a if isinstance(a, list) else [a]), (b if isinstance(b, list) else [b])
        return a == b

    if key in saved:
        return not same(saved[key], value)
    try:
        resolved = json.loads((out / CONFIG_NAME).read_text())["resolved"]["agent_config"]
        return key not in resolved or not same(resolved[key], value)
    except (OSError, ValueError, KeyError, TypeError):
        return True


class RunEvaluation(NamedTuple):
    """What :func:`evaluate_run` measured and wrote."""

    result: EvalResult
    benchmark: Benchmark
    seed: int
    """The run's seed: it fixed the benchmark's tasks."""
    eval_seed: int
    """The evaluation's env resets and sampled actions."""
    path: Path
    """The evaluation file written in the run directory (:func:`metarl.trainer.eval_file_name`)."""
    summary: dict
    """That file's JSON object (what ``metarl eval --json`` prints)."""


def evaluate_run(run_dir: str | Path, *, eval_tasks: int | None = None, actions: str = "auto",
                 eval_seed: int | None = None, num_envs: int | None = None, backend: str | None = None,
                 num_workers: int | None = None, device: str = "auto", agent_overrides: dict | None = None,
                 env_overrides: dict | None = None, out: str | Path | None = None,
                 split: str = "test") -> RunEvaluation:
    """Held-out evaluation of a run's checkpoint (what ``metarl eval RUN`` does), written to the run
    directory: ``eval.json`` for the official protocol, else a file named after what differs, so a partial
    or non-default evaluation never replaces the official one. Where the file can't be written, a one-line
    error says so before the evaluation runs.

    Args:
        eval_tasks: only the first K tasks per class (None: the official set).
        actions: evaluation-episode actions: ``"auto"`` (the agent's choice), ``"mean"`` or ``"sampled"``.
        eval_seed: seed of the env resets and sampled actions (None: the run's seed); the tasks stay.
        num_envs, backend, num_workers: env slots and vector backend (None: the run's; workers are the
            run's only on the run's backend).
        agent_overrides, env_overrides: replace saved agent / family options (an ablation, another split).
        out: write the evaluation file here instead (a file path; ``metarl eval --out``): for a run
            directory that is read-only, or that another process is training in.
        split: ``"test"`` (the held-out tasks) or ``"train"``: the same protocol on the training tasks, to
            see what adaptation does where the agent was trained (``eval-...-split=train.json``, with
            ``"split": "train"`` and the training tasks' digest, so it is never pooled with held-out ones).
    """
    from metarl.trainer import eval_file_name, write_eval_json

    if split not in ("test", "train"):
        raise UsageError(f"split {split!r} is not a split: give test (the held-out tasks) or train")
    on_train = {"split": split} if split == "train" else {}  # named in the file and its name
    run_dir, agent_overrides, env_overrides = Path(run_dir), agent_overrides or {}, env_overrides or {}
    load_config(run_dir)  # a run directory, before its lock file is made
    problem = unwritable(run_dir) if out is None else None
    if problem:
        raise UsageError(f"cannot write the evaluation into {run_dir} ({problem}): give --out FILE to write it "
                         "elsewhere")
    lock = RunLock(run_dir, shared=True)
    if out is None:  # never into a run that is training (its checkpoint may be read: it is replaced whole)
        lock.acquire("write an evaluation into")
    with lock:
        cfg, bench, agent, trained = load_trained(run_dir, device, agent_overrides, env_overrides)
        if on_train:  # the Evaluator runs bench.test: point it at the training tasks
            bench = replace(bench, test=bench.train)
        t = cfg.trainer
        backend_ = backend or (t.backend if t.backend != "ray" else "auto")  # a ray run evaluates here
        workers = num_workers if num_workers or backend_ != t.backend else t.num_workers
        check_num_workers(check_backend(bench.test, backend_), workers)
        eval_seed = t.seed if eval_seed is None else eval_seed
        result = evaluate_agent(bench, agent, eval_seed=eval_seed, num_envs=num_envs or t.num_envs,
                                backend=backend_, num_workers=workers, threads=t.collect_threads,
                                eval_tasks=eval_tasks, actions=actions)
        extra = {**({"trained_env_steps": trained} if trained is not None else {}),  # as training writes it
                 **({"agent_overrides": agent_overrides} if agent_overrides else {}),
                 **({"env_overrides": env_overrides} if env_overrides else {}), **on_train}
        other_seed = {} if eval_seed == t.seed else {"eval_seed": eval_seed}
        name = eval_file_name(bench.test, eval_tasks, actions, {**env_overrides, **agent_overrides, **other_seed,
                                                                 **on_train})
        path = run_dir / name if out is None else Path(out)
        summary = write_eval_json(path, result, bench, t.seed, eval_seed, **extra)
    return RunEvaluation(result, bench, t.seed, eval_seed, path, summary)


def evaluate_agent(bench: Benchmark, agent: MetaAlgorithm, *, eval_seed: int, num_envs: int = 10,
                   backend: str = "auto", num_workers: int | None = None, threads: int | None = 1,
                   eval_tasks: int | None = None, actions: str = "auto") -> EvalResult:
    """Held-out evaluation of ``agent`` on ``bench.test`` in at most ``num_envs`` slots (no more than there
    are tasks), with ``threads`` torch threads (None: torch's setting); see :func:`evaluate_run`."""
    from metarl.evaluator import EvalConfig, eval_slots, evaluate
    from metarl.rollout import torch_threads

    det = {"auto": None, "mean": True, "sampled": False}[actions]
    config = EvalConfig(max_tasks_per_class=eval_tasks, deterministic=det)
    envs = make_vector_env(bench.test, eval_slots(bench.test, config, num_envs), backend, num_workers)
    try:
        with torch_threads(threads):
            return evaluate(bench.test, agent.make_learner(), envs, config, eval_seed)
    finally:
        envs.close()

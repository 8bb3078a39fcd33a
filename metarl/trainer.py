"""The one meta-training loop every agent plugs into.

Each iteration: sample a meta-batch of training tasks -> collect ``adapt_episodes`` per slot ->
``observe`` + ``adapt`` -> collect ``post_episodes`` -> ``meta_update`` -> log; every
``eval_every`` env steps a held-out evaluation; every ``checkpoint_every`` iterations an atomic
checkpoint. The x-axis of every metric is env steps.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
)
from rich.text import Text

from metarl import checkpoint
from metarl.errors import UsageError, terminate_raises
from metarl.evaluator import (
    EvalConfig,
    EvalResult,
    eval_slots,
    evaluate,
    is_partial,
    select_tasks,
    tasks_digest,
)
from metarl.files import atomic_write
from metarl.learner import MetaAlgorithm
from metarl.logging import STDERR, Logger
from metarl.rollout import torch_threads
from metarl.seeding import rng_state, seed_everything, set_rng_state
from metarl.stopping import (
    SaveFailed,
    TrainingInterrupted,
    diverged,
    noted,
    saved_on_failure,
    stop_on_signals,
    writes,
)
from metarl.tasks import Benchmark, TaskDistribution
from metarl.trials import LocalTrials, TrialBatch, TrialPlan
from metarl.types import MetaBatch, Rollout
from metarl.vector import make_vector_env


@dataclass(frozen=True)
class TrainerConfig:
    """Settings of the meta-training loop."""

    steps: int = 100_000
    """Env-step budget (training steps only; evaluation steps are not counted)."""
    max_seconds: float | None = None
    """Wall-clock budget for training iterations (None: none); whichever budget ends first stops."""
    num_envs: int = 10
    """Env slots = tasks per meta-batch."""
    seed: int = 0
    """Seeds task sampling, env resets and torch."""
    backend: str = "auto"
    """Vector env backend (:data:`metarl.vector.BACKENDS`): auto (the family's batched env if any, else
    sync), native, sync (in-process), async (one process per slot) or shm (shared-memory workers); or
    ``"ray"``: whole trials on Ray actors (:mod:`metarl.distributed`, docs/ray.md)."""
    num_workers: int | None = None
    """Worker processes of the ``shm`` backend (None: one per core, at most ``num_envs``); each steps a
    contiguous block of ``num_envs / num_workers`` slots (rounded: 10 slots on 4 workers are 2, 3, 2, 3).
    Only with ``backend="shm"`` or ``"ray"`` (there: the actors, each running a block of slots' trials).
    On many cores give each worker a few slots: the parent's time per step
    is paid once per vector step (docs/performance.md)."""
    ray_address: str | None = None
    """With ``backend="ray"``: the cluster to join (``"auto"``, ``"HOST:PORT"``); None (or ``"local"``)
    starts a local Ray sized by ``num_workers`` and shuts it down at the end. A process already connected
    to Ray (``ray.init``) uses that one."""
    eval_every: int = 0
    """Held-out evaluation every this many env steps (0: only the final one)."""
    eval_tasks_per_class: int | None = 5
    """Tasks per class in periodic evaluations (None: the full official set)."""
    final_eval: bool = True
    """Run the held-out evaluation at the end and write it to the run directory (``eval.json``, or
    ``eval-firstK.json`` with ``final_eval_tasks_per_class=K``: see :func:`eval_file_name`)."""
    final_eval_tasks_per_class: int | None = None
    """Tasks per class in the final evaluation (None: the full official set)."""
    checkpoint_every: int = 10
    """Checkpoint every this many iterations (and always at the end)."""
    progress: bool = True
    """Show a progress bar with steps/s and ETA (only on a terminal)."""
    collect_threads: int | None = 1
    """Torch intra-op threads while collecting rollouts (and the learner's adaptation between them) and
    while evaluating (None: torch's setting throughout);
    the meta-update runs with torch's setting either way. Acting is a stream of tiny forward passes
    whose extra threads compete with env stepping: on 2 cores, MAML ML1 collection ran at 4,082 vs
    3,688 env steps/s (sync) and 3,887 vs 3,488 (shm) with 1 thread vs torch's 2
    (``benchmarks/results/train_speed-maml-reach-v3-dev-2core.json``)."""


@dataclass
class TrainState:
    """What a checkpoint restores besides the algorithm."""

    iteration: int = 0
    env_steps: int = 0
    elapsed: float = 0.0


class Trainer:
    """Drives ``algorithm`` on ``benchmark`` for ``config.steps`` env steps."""

    def __init__(self, benchmark: Benchmark, algorithm: MetaAlgorithm, config: TrainerConfig,
                 run_dir: Path | None = None, logger: Logger | None = None) -> None:
        self.benchmark, self.algorithm, self.config, self.run_dir = benchmark, algorithm, config, run_dir
        if run_dir is not None:  # checkpoints go there: find a state_dict they can't hold now, not after training
            checkpoint.check_state_dict(algorithm)
            Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.logger = logger or Logger([])
        self.rng = seed_everything(config.seed)
        self.state = TrainState()
        self.interrupted = self.final_evaluation_running = False
        """``interrupted``: a Ctrl-C or SIGTERM asked :meth:`train` to stop (see there)."""
        self.stop_signal: int | None = None
        """The signal that asked it to stop."""
        self.origin = {"benchmark": benchmark.label, "agent": type(algorithm).__name__}
        """What trained: saved in checkpoints, so one copied into another run is named as such (a run
        directory's Trainer has the agent's registry name)."""
        self.saved_env_steps: int | None = None
        """Env steps of the last checkpoint this Trainer wrote or resumed from."""
        self._envs = self._eval_envs = self._ray = None

    def iteration(self) -> dict[str, float]:
        """One meta-batch: sample, collect, adapt, collect, meta-update. Returns metrics."""
        algo, n = self.algorithm, self.config.num_envs
        tasks = self.benchmark.train.sample(n, self.rng)
        seeds = [int(s) for s in self.rng.integers(2**31 - 1, size=n)]
        # slot i's noise stream is seeded by its reset seed: its trial depends on seed and weights alone,
        # so it is the same wherever it runs (metarl.trials)
        batch, plan = TrialBatch(tasks, seeds, seeds), TrialPlan(algo.adapt_episodes, algo.post_episodes)
        start = time.perf_counter()
        with torch_threads(self.config.collect_threads):
            [(pre, post)] = self._trials("train", n).run_trials(algo, [batch], plan,
                                                                f"training iteration {self.state.iteration + 1}")
        collected = time.perf_counter()
        metrics = algo.meta_update(MetaBatch(tasks, pre, post))
        if not isinstance(metrics, dict):
            raise UsageError(f"{type(algo).__name__}.meta_update returned a {type(metrics).__name__}: return a dict "
                             "of metric name -> number (an empty dict is fine)")
        self.state.iteration += 1
        self.state.env_steps += pre.num_steps + (post.num_steps if post else 0)
        # where an iteration's time goes: env-bound (more workers help) or update-bound (a GPU helps)
        timing = {"time/collect_s": collected - start, "time/update_s": time.perf_counter() - collected}
        return {**metrics, **_rollout_metrics(pre, post, getattr(algo, "adapts_while_acting", False)), **timing}

    def train(self) -> EvalResult | None:
        """Run to the step budget (continuing a resumed state); return the final evaluation, if any.

        Ctrl-C (SIGINT, where Python's default handler is in place, in the main thread) or SIGTERM (a
        scheduler's preemption; where its default action is in place, or
        :func:`metarl.errors.terminate_raises`') stops after the
        iteration in progress and its periodic evaluation if one is due, saves the checkpoint (with a run
        dir), skips the final evaluation and raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``:
        scripts and notebooks stop as before); a second one raises ``KeyboardInterrupt`` (SIGTERM:
        :class:`~metarl.errors.Terminated`) at once, unsaved. SIGTERM during the final evaluation raises
        :class:`~metarl.errors.Terminated`. :attr:`final_evaluation_running` tells a caller that catches
        either whether training had finished."""
        cfg = self.config
        self.interrupted = self.final_evaluation_running = False
        self.stop_signal = None
        try:
            with _progress(cfg) as bar, stop_on_signals(self):
                task = bar.add_task("train", total=cfg.steps, completed=self.state.env_steps, deadline=self._deadline())
                while self.state.env_steps < cfg.steps and not self.out_of_time() and not self.interrupted:
                    with saved_on_failure(self):
                        self._train_iteration()
                        if self.state.iteration % cfg.checkpoint_every == 0:
                            self.save()
                    bar.update(task, completed=min(self.state.env_steps, cfg.steps), deadline=self._deadline())
                self.save()  # still under the signal handlers: a Ctrl-C here waits for the write
            if self.interrupted:
                raise TrainingInterrupted(self.state.env_steps, saved=self.run_dir is not None,
                                          signum=self.stop_signal or signal.SIGINT)
            self.final_evaluation_running = cfg.final_eval
            final = EvalConfig(max_tasks_per_class=cfg.final_eval_tasks_per_class)
            with terminate_raises(), noted(f"training finished and was saved at {self.state.env_steps:,} env steps; "
                                            "`metarl eval RUN_DIR` runs the final evaluation again"):
                result = self.evaluate(final) if cfg.final_eval else None
            self.final_evaluation_running = False
        finally:
            self.close()
        if result is not None:
            with noted("training finished and was saved; `metarl eval RUN_DIR` writes the final evaluation "
                        "again"), writes("the final evaluation"):
                self.logger.log(self.state.env_steps, result.metrics())
                if self.run_dir is not None:
                    write_eval_json(self.final_eval_path(), result, self.benchmark, cfg.seed,
                                    trained_env_steps=self.state.env_steps)
        return result

    def _train_iteration(self) -> None:
        """One iteration with its timing metrics, its periodic evaluation if one is due, and its log row."""
        cfg = self.config
        start = time.perf_counter()
        steps_before = self.state.env_steps
        metrics = self.iteration()
        dt = time.perf_counter() - start
        self.state.elapsed += dt
        metrics["time/steps_per_s"] = (self.state.env_steps - steps_before) / dt
        metrics["time/elapsed_s"] = self.state.elapsed
        metrics["train/iteration"] = self.state.iteration
        # once per multiple of eval_every crossed by this batch (a resumed run may have a new one),
        # except on the last batch when the final evaluation follows at the same step
        last = (self.state.env_steps >= cfg.steps or self.out_of_time()) and cfg.final_eval
        if (cfg.eval_every and not last
                and steps_before // cfg.eval_every < self.state.env_steps // cfg.eval_every):
            metrics.update(self.evaluate(EvalConfig(max_tasks_per_class=cfg.eval_tasks_per_class)).metrics())
        with writes("the metrics"):
            self.logger.log(self.state.env_steps, metrics)

    def final_eval_path(self) -> Path:
        """Where :meth:`train` writes the final evaluation (``eval.json`` or ``eval-firstK.json``)."""
        assert self.run_dir is not None
        return self.run_dir / eval_file_name(self.benchmark.test, self.config.final_eval_tasks_per_class)

    def _deadline(self) -> float | None:
        """When --max-minutes runs out on ``time.monotonic()``'s clock (only training time counts)."""
        limit = self.config.max_seconds
        return None if limit is None else time.monotonic() + limit - self.state.elapsed

    def out_of_time(self) -> bool:
        """The run has used its ``max_seconds`` of training (counted across resumes)."""
        return self.config.max_seconds is not None and self.state.elapsed >= self.config.max_seconds

    def _trials(self, split: str, n: int):
        """The trial runner for ``n`` slots of ``split``: Ray actors, or this process's vector env."""
        if self.config.backend == "ray":
            if self._ray is None:
                from metarl.distributed import RayPool

                self._ray = RayPool(self.benchmark, self.algorithm, self.config.num_workers, self.config.ray_address)
            return self._ray.trials(split, n)
        if split == "train":
            if self._envs is None:
                self._envs = make_vector_env(self.benchmark.train, n, self.config.backend, self.config.num_workers)
            return LocalTrials(self._envs)
        if self._eval_envs is not None and self._eval_envs.num_envs != n:
            self._eval_envs.close()  # the final evaluation may cover more tasks than the periodic ones
            self._eval_envs = None
        if self._eval_envs is None:
            self._eval_envs = make_vector_env(self.benchmark.test, n, self.config.backend,
                                              self.config.num_workers)  # shm caps workers at slots
        return LocalTrials(self._eval_envs)

    def evaluate(self, config: EvalConfig) -> EvalResult:
        """Held-out evaluation of the current algorithm on the benchmark's test split."""
        n = eval_slots(self.benchmark.test, config, self.config.num_envs)
        trials = self._trials("test", n)
        with torch_threads(self.config.collect_threads):
            return evaluate(self.benchmark.test, self.algorithm, trials, config, self.config.seed)

    def final_tasks_digest(self) -> str:
        """:func:`metarl.evaluator.tasks_digest` of the tasks the final evaluation runs."""
        k = self.config.final_eval_tasks_per_class
        return tasks_digest(select_tasks(self.benchmark.test.evaluation_tasks(), k))

    @functools.cached_property
    def _tasks_digests(self) -> dict[str, str]:  # the benchmark's tasks don't change: once per Trainer
        return {"train": tasks_digest(list(self.benchmark.train.tasks)),
                "test": tasks_digest(self.benchmark.test.evaluation_tasks())}

    def save(self) -> None:
        """Atomically write ``checkpoint.pt`` in the run directory (no-op without one), with the digests
        of the benchmark's tasks (a resume on other tasks is refused)."""
        if self.run_dir is None:
            return
        state = {"trainer": asdict(self.state), "rng": rng_state(self.rng), "algorithm": self.algorithm.state_dict(),
                 "tasks": self._tasks_digests, "origin": self.origin}
        where = checkpoint.first_nan(state["algorithm"], "state_dict()")
        if where is not None:  # never replace the last good checkpoint with a diverged one
            raise diverged(self, where, self.state.iteration)
        path = self.run_dir / checkpoint.CHECKPOINT_NAME
        try:
            checkpoint.save(path, state)
        except OSError as e:  # a full disk, a folder made read-only: the previous checkpoint is still whole
            kept = (f"{path.name} still holds the last one written whole, at {self.saved_env_steps:,} env steps"
                    if self.saved_env_steps is not None else "no checkpoint was written before")
            raise SaveFailed(f"could not write {path} at {self.state.env_steps:,} env steps ({e.strerror or e}); "
                             f"{kept}: free space (or make the folder writable), then --resume continues from "
                             "it") from e
        self.saved_env_steps = self.state.env_steps

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint written by :meth:`save`: the same tasks (by digest), then its counters,
        random state and the algorithm's state."""
        state = checkpoint.load(path)
        missing = [k for k in ("trainer", "rng", "algorithm", "tasks") if k not in state]
        if missing:
            raise UsageError(f"{path} is not a metarl training checkpoint (no {', '.join(missing)}): pass the "
                             "checkpoint.pt that `metarl train` wrote")
        now = self._tasks_digests
        for split, digest in state["tasks"].items():
            if now.get(split, digest) != digest:
                raise UsageError(f"{path} was trained on other {split} tasks than {self.benchmark.label} gives now "
                                 f"(tasks digest {digest} vs {now[split]}): another run's checkpoint, or the task "
                                 "family's code or data changed; put the run's own checkpoint back, or resume with "
                                 "the version that wrote it (config.json's resolved.git_commit)")
        self.state = TrainState(**state["trainer"])
        self.saved_env_steps = self.state.env_steps
        set_rng_state(self.rng, state["rng"])
        try:
            self.algorithm.load_state_dict(state["algorithm"])
        except (RuntimeError, KeyError, ValueError) as e:
            detail = str(e).strip().splitlines()
            raise UsageError(f"{path} does not fit the agent's load_state_dict ({type(e).__name__}: "
                             f"{detail[-1].strip() if detail else ''}): resume with the code and options that wrote "
                             "it; if those are unchanged, load_state_dict itself fails on its own state_dict()") from e

    def close(self) -> None:
        for envs in (self._envs, self._eval_envs, self._ray):
            if envs is not None:
                envs.close()
        self._envs = self._eval_envs = self._ray = None


def _rollout_metrics(pre: Rollout, post: Rollout | None, adapts_while_acting: bool = False) -> dict[str, float]:
    """Training metrics of an iteration's rollouts. ``adapt/later_success_rate`` (episodes after the
    first) only for agents that adapt while acting: MAML's pre-adaptation episodes all come from the
    same unadapted policy, so theirs would be noise, not adaptation."""
    ret, succ = pre.episode_returns(), pre.episode_successes()  # [k, N]
    out = {"train/return": float(ret.mean()), "train/success_rate": float(succ.mean()),
           "adapt/pre_return": float(ret[0].mean()), "adapt/pre_success_rate": float(succ[0].mean())}
    if adapts_while_acting and len(succ) > 1:
        out["adapt/later_success_rate"] = float(succ[1:].mean())
    if post is not None:
        out["adapt/post_return"] = float(post.episode_returns().mean())
        out["adapt/post_success_rate"] = float(post.episode_successes().mean())
    return out


def eval_file_name(dist: TaskDistribution, max_tasks_per_class: int | None = None, actions: str = "auto",
                   overrides: dict[str, Any] | None = None) -> str:
    """A run directory's evaluation file: ``eval.json`` for the official protocol only; a partial or
    non-default evaluation says what differs (``eval-first10.json``, ``eval-sampled.json``,
    ``eval-inner_lr=0.json``) and so never replaces the official one. A ``max_tasks_per_class`` that
    covers every evaluation task of ``dist`` is the official set."""
    partial = is_partial(dist, max_tasks_per_class)
    name = "eval" + (f"-first{max_tasks_per_class}" if partial else "")
    name += "" if actions == "auto" else f"-{actions}"
    name += "".join(f"-{k}={v}" for k, v in (overrides or {}).items())
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", name) + ".json"


def write_eval_json(path: Path, result: EvalResult, benchmark: Benchmark, seed: int, eval_seed: int | None = None,
                    **extra: Any) -> dict:
    """Write (and return) the evaluation as one JSON object (``extra``: more top-level keys)."""
    obj = {**eval_summary(result, benchmark, seed, eval_seed), **extra}
    with atomic_write(path) as f:  # whole or not at all: `metarl compare` and a resumed run read it
        f.write(json.dumps(obj, indent=2) + "\n")
    return obj


def eval_summary(result: EvalResult, benchmark: Benchmark, seed: int, eval_seed: int | None = None) -> dict:
    """The JSON shape of ``metarl eval --json``: ``seed`` made the benchmark (its tasks), ``eval_seed``
    (default ``seed``) the evaluation's resets and draws."""
    return {"benchmark": benchmark.label, "reward_version": benchmark.reward_version, "seed": seed,
            "eval_seed": seed if eval_seed is None else eval_seed,
            "success_rate": result.success_rate, "pre_success_rate": result.pre_success_rate,
            **result.standard_errors(),
            "return": result.mean_return, "pre_return": result.pre_return, "env_steps": result.env_steps,
            "eval_actions": result.eval_actions, "protocol": result.protocol, "tasks_digest": result.tasks_digest,
            "per_task": result.per_task, "per_goal": result.per_goal}


class _StepsPerSecond(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f} steps/s" if task.speed else "")


def _progress(cfg: TrainerConfig) -> Progress:
    """A progress bar with env steps, steps/s and ETA; off when disabled or not on a terminal."""
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    _StepsPerSecond(), _TimeLeft(), console=STDERR, disable=not cfg.progress, transient=True)


class _TimeLeft(ProgressColumn):
    """Time to the step budget at the current speed, or to the --max-minutes limit if that comes first."""

    def render(self, task) -> Text:
        left = task.time_remaining
        if task.fields.get("deadline") is not None:
            until = max(0.0, task.fields["deadline"] - time.monotonic())
            left = until if left is None else min(left, until)
        if left is None:
            return Text("-:--:--", style="progress.remaining")
        minutes, seconds = divmod(int(left), 60)
        return Text(f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}", style="progress.remaining")

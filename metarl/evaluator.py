"""Held-out evaluation by Meta-World's official meta-test protocol.

For every evaluation task of a distribution: a fresh Learner state, ``adapt_episodes`` (10)
episodes of experience, ``observe`` + ``adapt``, then ``eval_episodes`` (3) evaluation episodes
(deterministic actions unless the Learner sets ``eval_deterministic = False``). An episode
succeeds if ``info["success"]`` was 1 at any step.
Success rate per task class = mean over its tasks and evaluation episodes; the overall rate is
the mean over classes (as in ``metaworld.evaluation``). *Pre-adaptation* numbers come from the
first adaptation episode, before the Learner saw any experience of the task.

Unlike upstream's evaluator, evaluation episodes are not cut at success, so returns are full-length
returns; success rates are identical (the parity test checks this against
``metaworld.evaluation.metalearning_evaluation``).
"""

from __future__ import annotations

import hashlib
import math
import pickle
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

import numpy as np

from metarl.errors import UsageError
from metarl.learner import Learner
from metarl.rollout import retry_trial
from metarl.seeding import SlotNoise, slot_noise, torch_rng_seeded
from metarl.tasks import TaskDistribution, interleave
from metarl.trials import LocalTrials, TrialBatch, TrialPlan, learner_of, trial
from metarl.types import Rollout, Task


@dataclass(frozen=True)
class EvalConfig:
    """Meta-test protocol settings (defaults: Meta-World's official protocol)."""

    adapt_episodes: int = 10
    """Adaptation episodes per task before ``adapt()``."""
    eval_episodes: int = 3
    """Evaluation episodes per task after ``adapt()``."""
    max_tasks_per_class: int | None = None
    """Evaluate only the first K tasks of each class (None: the official set). Quick checks only."""
    deterministic: bool | None = None
    """Evaluation-episode actions: deterministic (the policy's mean) or sampled; None asks the Learner
    (its ``eval_deterministic`` attribute, default True)."""


@dataclass
class EvalResult:
    """Outcome of one evaluation. Rates in [0, 1]; returns are undiscounted episode sums."""

    success_rate: float
    pre_success_rate: float
    mean_return: float
    pre_return: float
    per_task: dict[str, dict[str, float]]
    per_goal: list[dict] = field(default_factory=list)
    env_steps: int = 0
    eval_actions: str = ""
    """How evaluation episodes acted: ``"mean"`` (deterministic) or ``"sampled"``."""
    protocol: str = ""
    """``"official"`` (every evaluation task, 10 + 3 episodes) or what differs, e.g. ``"first 10 tasks per class"``."""
    tasks_digest: str = ""
    """Fingerprint of the evaluated tasks (ids and parameters, :func:`tasks_digest`): two evaluations
    with equal digests ran the same held-out tasks."""
    success_rate_se: float = float("nan")
    """Standard error of ``success_rate`` over the evaluated tasks (classes weighted as in the mean:
    ``sqrt(sum_c var_c / n_c) / C``, ``var_c`` the sample variance of class ``c``'s per-task success):
    it holds the tasks' differences as well as the draws', so it bounds from above how far a re-evaluation
    with other random streams (the same tasks) is likely to land. NaN with one task per class."""
    pre_success_rate_se: float = float("nan")
    """The same for ``pre_success_rate``."""

    def standard_errors(self) -> dict[str, float | None]:
        """``success_rate_se`` and ``pre_success_rate_se`` for a JSON file (None where undefined: JSON has no NaN)."""
        return {k: v if math.isfinite(v) else None for k, v in
                (("success_rate_se", self.success_rate_se), ("pre_success_rate_se", self.pre_success_rate_se))}

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        """Flat ``eval/*`` metrics for the logger, incl. ``eval/<task>/success_rate``."""
        out = {f"{prefix}/success_rate": self.success_rate, f"{prefix}/pre_success_rate": self.pre_success_rate,
               f"{prefix}/return": self.mean_return, f"{prefix}/pre_return": self.pre_return}
        out.update({f"{prefix}/{k}": v for k, v in self.standard_errors().items() if v is not None})
        for name, row in self.per_task.items():
            out[f"{prefix}/{name}/success_rate"] = row["success_rate"]
        return out


def evaluate(dist: TaskDistribution, learner: Learner, envs, config: EvalConfig = EvalConfig(),
             seed: int = 0) -> EvalResult:
    """Run the protocol on every evaluation task of ``dist``, ``envs.num_envs`` tasks at a time.

    ``envs`` must be a task vector env over ``dist`` (see :mod:`metarl.vector`), or a trial runner over
    its tasks (:mod:`metarl.trials`; ``learner`` may then be the MetaAlgorithm). Batches take the
    classes in turn (as training's meta-batches do: a vector step waits for the slowest worker, and a
    worker holding one slow class would pace every step); task ``p`` of the evaluation list resets with
    seed ``seed + p`` whichever batch and slot it lands in. A final partial batch is padded by repeating
    its last task; padded slots are ignored. ``per_goal`` lists the tasks in evaluation-list order.
    Task ``p``'s random draws (sampled actions, latent samples) come from its own stream, seeded with
    ``(seed, p)`` (:class:`metarl.seeding.SlotNoise`), so its result depends on the seed and the
    weights alone, not on the slot count or the batch it lands in (``metarl eval RUN_DIR`` repeats
    training's final evaluation exactly; with another ``--num-envs``, up to the last bits of batched
    matrix products, which an env's dynamics can grow; two checkpoints meet the same noise per task).
    Torch's global generators are seeded with ``seed`` for the evaluation and restored afterwards (for
    Learners that ignore the streams), so evaluating mid-training leaves training's random stream
    untouched.
    """
    with torch_rng_seeded(seed):
        return _evaluate(dist, learner, envs, config, seed)


def _evaluate(dist: TaskDistribution, learner: Learner, envs, config: EvalConfig, seed: int) -> EvalResult:
    tasks = select_tasks(dist.evaluation_tasks(), config.max_tasks_per_class)
    config = replace(config, deterministic=eval_deterministic(learner_of(learner), config))
    runner = envs if hasattr(envs, "run_trials") else LocalTrials(envs)
    n = runner.num_slots
    by_class: dict[str, list[int]] = {}
    for p, task in enumerate(tasks):
        by_class.setdefault(task.name, []).append(p)
    order = interleave(list(by_class.values()))
    chunks = [order[start:start + n] for start in range(0, len(order), n)]
    batches = []
    for chunk in chunks:
        pad = n - len(chunk)
        positions = chunk + [len(tasks) + j for j in range(pad)]
        batches.append(TrialBatch([tasks[p] for p in chunk] + [tasks[chunk[-1]]] * pad,
                                  [seed + p for p in positions], [(seed, p) for p in positions]))
    plan = TrialPlan(config.adapt_episodes, config.eval_episodes, config.deterministic)
    results = runner.run_trials(learner, batches, plan, "evaluation trial")
    goals: dict[int, dict] = {}
    steps = 0
    for chunk, (pre, post) in zip(chunks, results, strict=True):
        real = len(chunk)  # padded slots' steps are not the evaluation's
        steps += int(pre.valid[:, :real].sum()) + int(post.valid[:, :real].sum())
        pre_s, pre_r = pre.episode_successes(), pre.episode_returns()  # [k, N]
        post_s, post_r = post.episode_successes(), post.episode_returns()
        for i, p in enumerate(chunk):
            goals[p] = {"task": tasks[p].name, "index": tasks[p].index, "pre_success": float(pre_s[0, i]),
                        "success": float(post_s[:, i].mean()), "pre_return": float(pre_r[0, i]),
                        "return": float(post_r[:, i].mean())}
    result = _aggregate([goals[p] for p in range(len(tasks))], steps)
    result.eval_actions = "mean" if config.deterministic else "sampled"
    result.protocol = protocol(config, partial=is_partial(dist, config.max_tasks_per_class))
    result.tasks_digest = tasks_digest(tasks)
    return result


def tasks_digest(tasks: list[Task]) -> str:
    """12 hex digits identifying ``tasks`` by id and parameter values: another split, benchmark seed or
    family option gives another digest even where task ids coincide. Parameters are hashed as values
    (:func:`_canonical`), not as pickles, so the digest survives library upgrades that move classes."""
    h = hashlib.sha1()
    for t in tasks:
        h.update(repr((t.id, _canonical(t.params))).encode())
    return h.hexdigest()[:12]


def _canonical(x: Any) -> Any:
    """``x`` as nested tuples of plain values: arrays by dtype, shape and bytes (hex), floats by ``repr``,
    dataclasses and named tuples by field, classes by name, mappings sorted by key; bytes that unpickle (Meta-World's
    task data, from the benchmark itself) by what they hold; anything else by ``repr``."""
    if isinstance(x, type):  # a class by name, not by the module that holds it
        return ("class", x.__qualname__)
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, x.tobytes().hex())
    if isinstance(x, np.generic):
        return _canonical(x.item())
    if x is None or isinstance(x, (bool, int, float, str)):
        return repr(x)
    if isinstance(x, bytes):
        try:
            return ("pickled", _canonical(pickle.loads(x)))
        except Exception:  # not a pickle: its bytes
            return ("bytes", x.hex())
    if is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__, tuple((f.name, _canonical(getattr(x, f.name))) for f in fields(x)))
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return (type(x).__name__, tuple((k, _canonical(v)) for k, v in zip(x._fields, x, strict=True)))
    if isinstance(x, dict):
        return ("dict", tuple(sorted((repr(k), _canonical(v)) for k, v in x.items())))
    if isinstance(x, (list, tuple)):
        return tuple(_canonical(v) for v in x)
    return repr(x)


def is_partial(dist: TaskDistribution, max_tasks_per_class: int | None) -> bool:
    """Whether ``max_tasks_per_class`` leaves out some of ``dist``'s evaluation tasks."""
    every = dist.evaluation_tasks()
    return len(select_tasks(every, max_tasks_per_class)) < len(every)


def protocol(config: EvalConfig, partial: bool) -> str:
    """``"official"``, or how ``config`` departs from the official protocol (``partial``: a task subset)."""
    k = config.max_tasks_per_class
    parts = [f"first {k} task{'s' if k != 1 else ''} per class"] if partial else []
    if (config.adapt_episodes, config.eval_episodes) != (EvalConfig.adapt_episodes, EvalConfig.eval_episodes):
        parts.append(f"{config.adapt_episodes} + {config.eval_episodes} episodes")
    return ", ".join(parts) or "official"


def eval_slots(dist: TaskDistribution, config: EvalConfig, num_envs: int) -> int:
    """Slots worth stepping for ``config`` on ``dist``: ``num_envs``, capped at the number of tasks
    evaluated (a quick ``max_tasks_per_class=1`` check on ML1 would otherwise step 9 padded slots of 10).
    The Trainer and ``metarl eval`` both size their vector envs with it, so a re-evaluation repeats
    training's final one exactly."""
    return max(1, min(num_envs, len(select_tasks(dist.evaluation_tasks(), config.max_tasks_per_class))))


def run_trial(envs, learner: Learner, config: EvalConfig = EvalConfig(),
              seed: list[int] | int | None = None, noise: SlotNoise | None = None) -> tuple[Rollout, Rollout]:
    """One meta-test trial on the tasks already set in ``envs``: a fresh Learner state,
    ``adapt_episodes`` episodes, ``observe`` + ``adapt``, then ``eval_episodes`` episodes that continue
    the trial. Returns the adaptation and evaluation rollouts (``[T, N, ...]`` each).

    The Learner draws from the per-slot streams ``noise`` (:class:`metarl.seeding.SlotNoise`), by
    default seeded with each slot's reset seed (``seed``: one per slot, or ``s`` for ``s + i``),
    continued across both collects: a slot's trial depends on its task, its seeds and the weights, not on
    the other slots. The evaluation episodes start with a reset seeded from each slot's seed
    (:func:`metarl.seeding.phase_seeds`): a slot that finished its adaptation episodes early kept
    stepping as padding, which would otherwise carry into its env's random stream. Without ``seed``,
    envs continue their streams and the Learner draws from torch's global generator. ``noise`` must be
    fresh (nothing drawn yet): a trial that a worker restart interrupts is collected again from the start,
    with new streams from the same seeds."""
    given = noise
    plan = TrialPlan(config.adapt_episodes, config.eval_episodes, config.deterministic)

    def attempt() -> tuple[Rollout, Rollout]:
        # a retried trial (a worker restart) starts its streams afresh, as the first try did
        noise = slot_noise(seed, envs.num_envs) if given is None else SlotNoise(given.seeds, given.block)
        return trial(envs, learner, plan, seed, noise)  # type: ignore[return-value]

    return retry_trial(attempt, "evaluation trial")


def eval_deterministic(learner: Learner, config: EvalConfig) -> bool:
    """Whether evaluation episodes take mean actions: ``config.deterministic``, else the Learner's
    ``eval_deterministic`` attribute (default True)."""
    if config.deterministic is not None:
        return config.deterministic
    return bool(getattr(learner, "eval_deterministic", True))


def select_tasks(tasks: list[Task], k: int | None) -> list[Task]:
    """The first ``k`` tasks of each class, in ``tasks``' order (None: all): what an evaluation with
    ``max_tasks_per_class=k`` runs."""
    if k is None:
        return tasks
    seen: dict[str, int] = {}
    out = []
    for t in tasks:
        if seen.get(t.name, 0) < k:
            seen[t.name] = seen.get(t.name, 0) + 1
            out.append(t)
    return out


def _aggregate(goals: list[dict], steps: int) -> EvalResult:
    by_class = {name: [g for g in goals if g["task"] == name] for name in sorted({g["task"] for g in goals})}
    per_task: dict[str, dict[str, float]] = {}
    for name, rows in by_class.items():
        per_task[name] = {
            "success_rate": float(np.mean([g["success"] for g in rows])),
            "pre_success_rate": float(np.mean([g["pre_success"] for g in rows])),
            "return": float(np.mean([g["return"] for g in rows])),
            "pre_return": float(np.mean([g["pre_return"] for g in rows])),
            "num_tasks": len(rows),
        }

    def mean(key: str) -> float:
        return float(np.mean([row[key] for row in per_task.values()]))

    def se(key: str) -> float:
        return standard_error([[g[key] for g in rows] for rows in by_class.values()])

    return EvalResult(mean("success_rate"), mean("pre_success_rate"), mean("return"), mean("pre_return"),
                      per_task, goals, steps, success_rate_se=se("success"), pre_success_rate_se=se("pre_success"))


def standard_error(groups: list[list[float]]) -> float:
    """Standard error of the mean of group means (``groups``: per-task values per class), or NaN
    when a group has a single value (no variance to estimate)."""
    if not groups or min(map(len, groups)) < 2:
        return float("nan")
    return float(np.sqrt(sum(np.var(g, ddof=1) / len(g) for g in groups)) / len(groups))


COMPARED = (("success_rate", "success"), ("pre_success_rate", "pre_success"), ("return", "return"),
            ("pre_return", "pre_return"))
"""Summary keys of an evaluation JSON and the per-goal keys they average."""


def compare(a: dict, b: dict) -> dict:
    """Paired comparison of two evaluations of the same held-out tasks (``metarl eval`` JSON objects,
    e.g. two checkpoints, or one with and without an ``--agent-opt``): ``b - a``.

    For each summary number (success rates and returns, post and pre adaptation): ``a``, ``b``, their
    difference ``diff`` and its standard error over tasks from the per-task differences (``paired_se``;
    classes weighted as in the mean), next to the standard error the two evaluations' own errors would
    give (``unpaired_se``). Pairing removes what the tasks share, and when both evaluations drew with
    the same seed from per-task streams (``common_noise``) what their draws share too, so
    ``paired_se`` is usually the smaller. ``per_task``: each class's ``a``, ``b`` and ``diff`` of the
    success rate. Raises :class:`~metarl.errors.UsageError` if the evaluations differ in benchmark,
    rewards or evaluated tasks.
    """
    for key in ("benchmark", "reward_version"):
        if a.get(key) != b.get(key):
            raise UsageError(f"the evaluations differ in {key} ({a.get(key)} vs {b.get(key)}): compare "
                             "evaluations of one benchmark")
    goals_a, goals_b = a.get("per_goal") or [], b.get("per_goal") or []
    needed = ("task", "index", *(key for _, key in COMPARED))
    missing = sorted({k for g in goals_a + goals_b for k in needed if not isinstance(g, dict) or k not in g})
    if missing:
        raise UsageError(f"an evaluation's per_goal entries lack {', '.join(map(repr, missing))}: compare files "
                         "written by `metarl eval` or `metarl train`")
    ids_a, ids_b = [(g["task"], g["index"]) for g in goals_a], [(g["task"], g["index"]) for g in goals_b]
    if not ids_a or ids_a != ids_b:
        raise UsageError(f"the evaluations cover different held-out tasks ({len(ids_a)} vs {len(ids_b)} goals, "
                         f"protocols {a.get('protocol')!r} vs {b.get('protocol')!r}): evaluate both with the same "
                         "--eval-tasks")
    if a.get("tasks_digest") and b.get("tasks_digest"):
        if a["tasks_digest"] != b["tasks_digest"]:
            raise UsageError("the evaluations ran different held-out tasks under the same ids (their tasks_digest "
                             "differs: another split, benchmark seed or family option): compare evaluations of "
                             "the same tasks")
    else:  # files written before the digest: what they record must match
        for key in ("seed", "env_overrides"):
            if a.get(key) != b.get(key):
                raise UsageError(f"the evaluations differ in {key} ({a.get(key)} vs {b.get(key)}), so their tasks "
                                 "may too: compare evaluations of the same tasks")
    classes = sorted({name for name, _ in ids_a})
    out: dict = {"benchmark": a["benchmark"], "reward_version": a.get("reward_version"), "num_tasks": len(ids_a),
                 "common_noise": a.get("eval_seed") is not None and a.get("eval_seed") == b.get("eval_seed")}
    for summary, key in COMPARED:
        diffs = [[gb[key] - ga[key] for ga, gb in zip(goals_a, goals_b, strict=True) if ga["task"] == c]
                 for c in classes]
        own = [[g[key] for g in goals if g["task"] == c] for goals in (goals_a, goals_b) for c in classes]
        se_a, se_b = standard_error(own[:len(classes)]), standard_error(own[len(classes):])
        out[summary] = {"a": a[summary], "b": b[summary], "diff": b[summary] - a[summary],
                        "paired_se": standard_error(diffs), "unpaired_se": math.hypot(se_a, se_b)}
    out["per_task"] = {c: {"a": a["per_task"][c]["success_rate"], "b": b["per_task"][c]["success_rate"],
                           "diff": b["per_task"][c]["success_rate"] - a["per_task"][c]["success_rate"]}
                       for c in classes}
    return out

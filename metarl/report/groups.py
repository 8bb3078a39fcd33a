"""Runs pooled into groups (benchmark, agent, configuration label), and the checks that make pooling and
comparing them sound.

A group pools runs that differ only in their training seed. The seed also draws the benchmark's
held-out tasks (Meta-World's goals, Toy's targets), so two seeds never share a task digest; what runs of
one group must share is the *task set* they were drawn from: the benchmark, its family options (the
held-out split, e.g. ``test=extrapolate``), the held-out classes with their number of tasks each (the
evaluation protocol), and the reward version. Pooling is refused, in one line, where these differ, and
where two evaluations of one seed's tasks (same benchmark, options and protocol) name different task
digests: then the task sets changed between the code versions that wrote them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from metarl.errors import UsageError
from metarl.report.inputs import RunResult

METRICS = {"success": "held-out success after adaptation",
           "pre_success": "before adaptation (first episode)",
           "gain": "adaptation gain (after - before, paired per run)"}
"""Score name -> what it measures, in report order."""


@dataclass
class Group:
    """Runs of one configuration on one task set, sorted by seed."""

    benchmark: str
    agent: str
    label: str
    runs: list[RunResult]
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.benchmark} {self.agent} {self.label}"

    @property
    def classes(self) -> list[str]:
        return list(self.runs[0].per_class)

    @property
    def task_set(self) -> str:
        """What the runs' held-out tasks were drawn from (groups with equal task sets are compared)."""
        return task_set(self.runs[0])

    @property
    def reward_version(self) -> str | None:
        return self.runs[0].reward_version

    def scores(self, metric: str) -> np.ndarray:
        """``[runs, classes]`` of ``success``, ``pre_success`` or ``gain`` (their difference, per run)."""
        if metric == "gain":
            return self.scores("success") - self.scores("pre_success")
        return np.array([[r.per_class[c][metric] for c in self.classes] for r in self.runs])


def task_set(run: RunResult) -> str:
    """Benchmark, family options and held-out classes with their task counts, as one string."""
    counts = {c: row["num_tasks"] for c, row in run.per_class.items()}
    options = json.dumps(run.env_options, sort_keys=True)
    return f"{run.benchmark} options={options} classes={json.dumps(counts, sort_keys=True)}"


def split_options(run: RunResult) -> str:
    """The run's family options as ``k=v`` text (``""`` without any)."""
    return ",".join(f"{k}={v}" for k, v in sorted(run.env_options.items()))


def group_runs(runs: list[RunResult]) -> list[Group]:
    """Pool ``runs`` by (benchmark, agent, label), checked: one line of error where a group mixes task sets
    or reward versions, or holds a seed twice, or where evaluations of one seed's tasks disagree."""
    _check_digests(runs)
    by_key: dict[tuple, list[RunResult]] = {}
    for run in runs:
        by_key.setdefault((run.benchmark, run.agent, run.label), []).append(run)
    groups = []
    for (bench, agent, label), members in sorted(by_key.items()):
        members.sort(key=lambda r: (r.seed is None, r.seed or 0, r.source))
        group = Group(bench, agent, label, members)
        _check_group(group)
        groups.append(group)
    return groups


def _check_group(group: Group) -> None:
    runs = group.runs
    seen: dict[int, str] = {}
    for run in runs:
        if run.seed is not None and run.seed in seen:
            raise UsageError(f"{group.name}: seed {run.seed} appears twice ({seen[run.seed]} and {run.source}): "
                             "pass each run once (or rename one: the label comes from the file or folder name)")
        if run.seed is not None:
            seen[run.seed] = run.source
    first = runs[0]
    for run in runs[1:]:
        if run.reward_version != first.reward_version:
            raise UsageError(f"{group.name}: refusing to pool runs with reward versions {first.reward_version} "
                             f"({first.source}) and {run.reward_version} ({run.source}): report them separately")
        if task_set(run) != task_set(first):
            raise UsageError(f"{group.name}: refusing to pool runs of different held-out task sets "
                             f"({first.source}: {_describe(first)}; {run.source}: {_describe(run)}): report them "
                             "separately, or evaluate them alike")
    steps = sorted({r.env_steps for r in runs if r.env_steps is not None})
    if len(steps) > 1:
        group.notes.append(f"{group.name}: the runs trained {steps[0]:,} to {steps[-1]:,} env steps (per-seed "
                           "table); pooled because they share a label (a --max-minutes budget, or seeds resumed "
                           "with another --steps)")
    options = {json.dumps(r.agent_options, sort_keys=True) for r in runs}
    if len(options) > 1:
        group.notes.append(f"{group.name}: the runs were given different agent options ({'; '.join(sorted(options))});"
                           " pooled because they share a label (a default may have changed between them)")


def _describe(run: RunResult) -> str:
    counts = ", ".join(f"{c} x{row['num_tasks']}" for c, row in run.per_class.items())
    return f"{run.benchmark}{' ' + split_options(run) if run.env_options else ''}: {counts}"


def _check_digests(runs: list[RunResult]) -> None:
    """Evaluations of the same seed's task set must name the same tasks digest (where both record one)."""
    seen: dict[tuple, RunResult] = {}
    for run in runs:
        if run.tasks_digest is None or run.seed is None:
            continue
        key = (task_set(run), run.seed)
        other = seen.setdefault(key, run)
        if other.tasks_digest != run.tasks_digest:
            raise UsageError(f"{other.source} and {run.source} evaluated seed {run.seed} of {run.benchmark} on "
                             f"different tasks (digest {other.tasks_digest} vs {run.tasks_digest}): the task set "
                             "changed between the versions that wrote them; report them separately")


def comparable(a: Group, b: Group) -> str | None:
    """Why groups ``a`` and ``b`` can't be compared (None if they can: same task set and rewards)."""
    if a.task_set != b.task_set:
        return "different held-out task sets"
    if a.reward_version != b.reward_version:
        return f"reward versions {a.reward_version} and {b.reward_version}"
    return None

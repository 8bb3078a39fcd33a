"""The report's numbers as one JSON-ready dict: per task set, each group's IQM and mean with stratified
bootstrap intervals (after adaptation, before, gain), per-seed and per-class values, performance
profiles, learning curves on a shared grid, and probabilities of improvement between comparable groups."""

from __future__ import annotations

import numpy as np

from metarl.report import stats
from metarl.report.groups import METRICS, Group, comparable, split_options

CURVE_PANELS = (("held-out", ("eval/success_rate", "eval/pre_success_rate")),
                ("training", ("train/success_rate", "adapt/post_success_rate", "adapt/later_success_rate")))
"""Learning-curve panels: title and the ``progress.csv`` metrics drawn in it."""


def summarize(groups: list[Group], seed: int = 0, reps: int = stats.REPS) -> dict:
    """Everything the report shows, grouped by task set and reward version (groups whose runs drew from
    the same held-out tasks and were scored alike, so they are compared); the same groups, ``seed`` and
    ``reps`` give the same numbers."""
    sets: dict[tuple[str, str | None], list[Group]] = {}
    for g in groups:
        sets.setdefault((g.task_set, g.reward_version), []).append(g)
    out = []
    for members in sets.values():
        first = members[0]
        out.append({"benchmark": first.benchmark, "env_options": first.runs[0].env_options,
                    "reward_version": first.reward_version,
                    "classes": {c: row["num_tasks"] for c, row in first.runs[0].per_class.items()},
                    "groups": [_group(g, seed, reps) for g in members],
                    "comparisons": _comparisons(members, seed, reps)})
    return {"settings": {"seed": seed, "reps": reps, "confidence": stats.CONFIDENCE,
                         "metrics": METRICS},
            "task_sets": out, "notes": [n for g in groups for n in g.notes]}


def estimates(scores: np.ndarray, rng_names: tuple[str, ...], seed: int, reps: int) -> dict:
    """IQM and mean of ``scores`` ``[runs, classes]`` with their intervals (None with one run)."""
    out: dict = {}
    for name, point in (("iqm", stats.iqm), ("mean", stats.mean)):
        ci = stats.bootstrap_ci(scores, name, stats.rng_for(seed, *rng_names, name), reps)
        out[name], out[f"{name}_ci"] = point(scores), (list(ci) if ci else None)
    return out


def _group(g: Group, seed: int, reps: int) -> dict:
    metrics = {m: estimates(g.scores(m), (g.name, m), seed, reps) for m in METRICS}
    per_class = {}
    if len(g.classes) > 1:
        for i, c in enumerate(g.classes):
            per_class[c] = {m: estimates(g.scores(m)[:, i:i + 1], (g.name, c, m), seed, reps)
                            for m in ("success", "pre_success")}
    runs = [{"seed": r.seed, "source": r.source, "env_steps": r.env_steps, "train_seconds": r.train_seconds,
             **{m: float(g.scores(m)[i].mean()) for m in METRICS},
             "per_class": {c: {k: r.per_class[c][k] for k in ("success", "pre_success")} for c in g.classes}}
            for i, r in enumerate(g.runs)]
    success = g.scores("success")
    band = stats.performance_profile_ci(success, stats.rng_for(seed, g.name, "profile"))
    profile = {"taus": stats.TAUS.round(2).tolist(), "fraction": stats.performance_profile(success).tolist(),
               "lo": band[0].tolist() if band else None, "hi": band[1].tolist() if band else None}
    return {"name": g.name, "agent": g.agent, "label": g.label, "options": split_options(g.runs[0]),
            "num_runs": len(g.runs), "seeds": [r.seed for r in g.runs], "metrics": metrics,
            "per_class": per_class, "runs": runs, "profile": profile, "curves": _curves(g, seed)}


def _comparisons(members: list[Group], seed: int, reps: int) -> list[dict]:
    """P(X > Y) in held-out success after adaptation for each pair of comparable groups of two runs or
    more (between single runs it is only 0, 0.5 or 1: the tables show those runs' values already)."""
    out = []
    several = [g for g in members if len(g.runs) > 1]
    for i, x in enumerate(several):
        for y in several[i + 1:]:
            why = comparable(x, y)
            if why is not None:
                continue
            a, b = x.scores("success"), y.scores("success")
            ci = stats.probability_of_improvement_ci(a, b, stats.rng_for(seed, x.name, y.name, "poi"), reps)
            out.append({"x": f"{x.agent} {x.label}", "y": f"{y.agent} {y.label}", "metric": "success",
                        "probability": stats.probability_of_improvement(a, b), "ci": list(ci) if ci else None})
    return out


def _curves(g: Group, seed: int) -> dict:
    """Per metric: the runs' curves interpolated onto the env steps any of them logged, up to the last
    step every run reached, with their IQM and bootstrap band; ``minutes``: mean training minutes at those
    steps (the wall-time axis), where the runs logged them."""
    out = {}
    for _, keys in CURVE_PANELS:
        for key in keys:
            runs = [r.curves[key] for r in g.runs if len(r.curves.get(key, [])) > 0]
            if not runs:
                continue
            end = min(c[-1][0] for c in runs)
            grid = np.array(sorted({s for c in runs for s, _ in c if s <= end}), dtype=float)
            values = np.array([np.interp(grid, *zip(*c, strict=True)) for c in runs])  # [runs, points]
            centre, lo, hi = stats.curve_band(values, stats.rng_for(seed, g.name, key))
            out[key] = {"steps": grid.astype(int).tolist(), "iqm": centre.tolist(),
                        "lo": lo.tolist() if lo is not None else None, "hi": hi.tolist() if hi is not None else None,
                        "num_runs": len(runs), "runs": values.tolist()}
    timed = [r.curves["time/elapsed_s"] for r in g.runs if r.curves.get("time/elapsed_s")]
    if out and timed:
        steps = np.array(sorted({s for c in out.values() for s in c["steps"]}), dtype=float)
        minutes = np.mean([np.interp(steps, *zip(*c, strict=True)) for c in timed], axis=0) / 60
        out["minutes"] = {"steps": steps.astype(int).tolist(), "minutes": minutes.tolist()}
    return out

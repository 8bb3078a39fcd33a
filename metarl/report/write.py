"""``metarl report``'s files: ``report.md`` (tables and the PNGs), ``report.json`` (every number, with
provenance) and the PNGs, from run directories, evaluation JSONs and results files::

    from metarl.report import write_report

    report = write_report(["runs/sweep-rl2", "runs/sweep-maml"], "runs/report")
    report.summary["task_sets"][0]["groups"][0]["metrics"]["success"]["iqm"]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from metarl.errors import UsageError
from metarl.provenance import write_result
from metarl.report import stats
from metarl.report.groups import METRICS, group_runs
from metarl.report.inputs import load, which_tasks
from metarl.report.plots import draw_task_set, slug
from metarl.report.summary import summarize

EXPLAINED = ("IQM: interquartile mean (the mean of the middle half) of the per-class success rates over "
             "runs x held-out classes; [lo, hi]: 95% stratified bootstrap confidence interval over runs "
             "(runs resampled within each class, {reps:,} resamples, seed {seed}); mean likewise. Gain: after "
             "minus before adaptation, paired per run. Rates in %. No interval with one run: one seed says "
             "nothing about seed spread.")


class Report(NamedTuple):
    """What :func:`write_report` wrote."""

    markdown: Path
    json: Path
    images: list[Path]
    summary: dict
    """The numbers (``report.json`` without provenance)."""


def write_report(paths: list[str | Path], out: str | Path, *, seed: int = 0, reps: int = stats.REPS,
                 command: list[str] | None = None) -> Report:
    """Read ``paths`` (:func:`metarl.report.inputs.load`), pool and check the runs
    (:func:`metarl.report.groups.group_runs`), and write ``report.md``, ``report.json`` and the PNGs into
    ``out`` (created; earlier report PNGs in it are replaced). ``seed`` fixes the bootstrap: the same
    inputs give the same numbers. ``command``: what ``report.json`` records as its command."""
    runs, skipped = load([Path(p) for p in paths])
    if not runs:
        raise UsageError("no held-out evaluation in the inputs"
                         + (f" ({len(skipped)} skipped: {skipped[0]}{', ...' if len(skipped) > 1 else ''})"
                            if skipped else "") + ": give run directories, evaluation JSONs or results files")
    summary = summarize(group_runs(runs), seed=seed, reps=reps)
    summary["inputs"] = [str(p) for p in paths]
    summary["skipped"] = skipped
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: give a folder for report.md and its PNGs")
    out.mkdir(parents=True, exist_ok=True)
    _remove_old_images(out)
    images = []
    for i, ts in enumerate(summary["task_sets"]):
        ts["images"] = [p.name for p in draw_task_set(ts, out, f"{i + 1}-{slug(ts['benchmark'])}")]
        images += [out / name for name in ts["images"]]
    md = out / "report.md"
    md.write_text(markdown(summary))
    js = write_result(out / "report.json", summary, command=command)
    return Report(md, js, images, summary)


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(est: dict, name: str) -> str:
    ci = est[f"{name}_ci"]
    return pct(est[name]) + (f" [{pct(ci[0])}, {pct(ci[1])}]" if ci else "")


def summary_table(ts: dict) -> list[str]:
    """The task set's groups, one row each: runs, and IQM and mean with CIs of each metric."""
    head = ["agent", "label", "runs"] + [f"{m} {s}" for m in ("after", "before", "gain") for s in ("IQM", "mean")]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for g in ts["groups"]:
        seeds = f"seed{'s' if len(g['seeds']) > 1 else ''} {', '.join(map(str, g['seeds']))}"
        cells = [g["agent"], g["label"], f"{g['num_runs']} ({seeds})"]
        cells += [_ci(g["metrics"][m], s) for m in METRICS for s in ("iqm", "mean")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _seeds_table(ts: dict) -> list[str]:
    lines = ["| agent | label | seed | env steps | train min | after | before | gain | source |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for g in ts["groups"]:
        for r in g["runs"]:
            minutes = "-" if r["train_seconds"] is None else _minutes(r["train_seconds"])
            steps = "-" if r["env_steps"] is None else f"{r['env_steps']:,}"
            lines.append(f"| {g['agent']} | {g['label']} | {r['seed']} | {steps} | {minutes} | {pct(r['success'])} "
                         f"| {pct(r['pre_success'])} | {pct(r['gain'])} | `{r['source']}` |")
    return lines


def _minutes(seconds: float) -> str:
    """Training minutes for the per-seed table: a decimal under ten (a 20-second run is 0.3, not 0)."""
    return f"{seconds / 60:.1f}" if seconds < 600 else f"{seconds / 60:.0f}"


def _classes_table(ts: dict) -> list[str]:
    classes = list(ts["classes"])
    lines = ["| agent | label | " + " | ".join(classes) + " |", "|" + " --- |" * (len(classes) + 2)]
    for g in ts["groups"]:
        cells = [f"{pct(g['per_class'][c]['pre_success']['mean'])} → {pct(g['per_class'][c]['success']['mean'])}"
                 for c in classes]
        lines.append(f"| {g['agent']} | {g['label']} | " + " | ".join(cells) + " |")
    return lines


def _comparisons_table(ts: dict) -> list[str]:
    lines = ["| X | Y | P(X > Y) [95% CI] |", "| --- | --- | --- |"]
    for c in ts["comparisons"]:
        ci = f" [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]" if c["ci"] else ""
        lines.append(f"| {c['x']} | {c['y']} | {c['probability']:.2f}{ci} |")
    return lines


def markdown(summary: dict) -> str:
    """``report.md``: per task set the summary, per-seed, per-class and comparison tables and the PNGs."""
    s = summary["settings"]
    lines = ["# metarl report", "", EXPLAINED.format(reps=s["reps"], seed=s["seed"]), ""]
    for ts in summary["task_sets"]:
        options = ", ".join(f"{k}={v}" for k, v in sorted(ts["env_options"].items()))
        held = ", ".join(f"{c} x{n}" for c, n in ts["classes"].items())
        total = sum(ts["classes"].values())
        which = which_tasks(ts["env_options"])
        lines += [f"## {ts['benchmark']}" + (f" ({options})" if options else "") + f", {total} {which} tasks", "",
                  f"Rewards {ts['reward_version'] or 'n/a'}; {which} classes (tasks each): {held}.", "",
                  *summary_table(ts), "", "Per seed:", "", *_seeds_table(ts), ""]
        if len(ts["classes"]) > 1:
            lines += [f"Per {which} class, mean over runs, before → after adaptation:", "", *_classes_table(ts), ""]
        if ts["comparisons"]:
            lines += ["Probability of improvement (held-out success after adaptation; rows compare configurations "
                      "on the same task set, not paired by seed):", "", *_comparisons_table(ts), ""]
        lines += [f"![{name}]({name})" for name in ts["images"]] + [""]
    notes = summary["notes"] + [f"skipped {s}" for s in summary["skipped"]]
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)


def _remove_old_images(out: Path) -> None:
    """Delete the PNGs an earlier report in ``out`` listed (so none is left over), and nothing else."""
    try:
        old = json.loads((out / "report.json").read_text())
        names = [n for ts in old["task_sets"] for n in ts.get("images", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return
    for name in names:
        if isinstance(name, str) and "/" not in name and name.endswith(".png"):
            (out / name).unlink(missing_ok=True)

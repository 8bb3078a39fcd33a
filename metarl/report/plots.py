"""The report's PNGs, drawn from :func:`metarl.report.summary.summarize`'s dict: per task set, interval
estimates (IQM with 95% CI, per-seed dots), the performance profile, per-class bars before and after
adaptation (multi-class benchmarks), and per group learning curves with CI bands over seeds, env steps
below and training minutes above."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from metarl.report.groups import METRICS
from metarl.report.inputs import which_tasks
from metarl.report.summary import CURVE_PANELS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def color(i: int, n: int):
    """The ``i``-th of ``n`` colours: matplotlib's ten, or tab20's twenty when more are needed."""
    if n <= 10:
        return f"C{i}"
    from matplotlib import colormaps

    return colormaps["tab20"](i % 20)


def slug(text: str) -> str:
    """``text`` as a file-name part: ``ML1/reach-v3 rl2`` -> ``ML1-reach-v3-rl2``."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", text).strip("-")


def task_set_title(ts: dict) -> str:
    options = ",".join(f"{k}={v}" for k, v in sorted(ts["env_options"].items()))
    return ts["benchmark"] + (f" ({options})" if options else "")


def draw_task_set(ts: dict, out: Path, prefix: str) -> list[Path]:
    """All PNGs of one task set, named ``<prefix>-*.png`` in ``out``; returns their paths."""
    paths = [_intervals(ts, out / f"{prefix}-intervals.png"), _profile(ts, out / f"{prefix}-profile.png")]
    if len(ts["classes"]) > 1:
        paths.append(_classes(ts, out / f"{prefix}-classes.png"))
    for g in ts["groups"]:
        if _curve_panels(g["curves"]):
            paths.append(_curves(g, out / f"{prefix}-{slug(g['agent'] + '-' + g['label'])}-curves.png"))
    return paths


def _intervals(ts: dict, path: Path) -> Path:
    """One panel per metric: each group's IQM (bar tick) with its 95% CI and its seeds as dots."""
    plt = _plt()
    groups = ts["groups"]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 0.55 * len(groups) + 1.6),
                             sharey=True, squeeze=False)
    names = [f"{g['agent']} {g['label']}" for g in groups]
    for ax, (metric, title) in zip(axes[0], METRICS.items(), strict=True):
        for y, g in enumerate(groups):
            est = g["metrics"][metric]
            lo, hi = est["iqm_ci"] or (est["iqm"], est["iqm"])
            ax.barh(y, 100 * (hi - lo), left=100 * lo, height=0.5, color=color(y, len(groups)), alpha=0.35)
            ax.plot([100 * est["iqm"]] * 2, [y - 0.3, y + 0.3], color=color(y, len(groups)), linewidth=2.5)
            ax.scatter([100 * r[metric] for r in g["runs"]], [y] * len(g["runs"]), color="k", s=10, zorder=3)
        ax.set_title(title, fontsize=9)
        ax.use_sticky_edges = False  # bars would pin the axis to their ends, hiding the outermost seeds
        ax.margins(x=0.08)
        ax.set_xlabel("%")
        ax.grid(axis="x", alpha=0.3)
        if metric == "gain":
            ax.axvline(0, color="k", linewidth=0.8)
    axes[0][0].set_yticks(range(len(groups)), names, fontsize=8)
    axes[0][0].invert_yaxis()  # the first group on top, as in the tables
    fig.suptitle(f"{task_set_title(ts)}: IQM (tick), 95% CI (bar), seeds (dots)", fontsize=10)
    return _save(fig, path)


def _profile(ts: dict, path: Path) -> Path:
    """Fraction of runs x classes above each success threshold, with a 95% band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, g in enumerate(ts["groups"]):
        p = g["profile"]
        taus = 100 * np.array(p["taus"])
        c = color(i, len(ts["groups"]))
        ax.plot(taus, p["fraction"], color=c, label=f"{g['agent']} {g['label']} ({g['num_runs']})")
        if p["lo"] is not None:
            ax.fill_between(taus, p["lo"], p["hi"], color=c, alpha=0.2, linewidth=0)
    ax.set_xlabel("held-out success after adaptation, threshold τ (%)")
    ax.set_ylabel("fraction of runs x classes > τ")
    ax.set_title(f"{task_set_title(ts)}: performance profile", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title="(runs)", title_fontsize=7)
    return _save(fig, path)


def _classes(ts: dict, path: Path) -> Path:
    """Per held-out class: mean success before and after adaptation over seeds, with 95% CIs."""
    plt = _plt()
    groups, classes = ts["groups"], list(ts["classes"])
    fig, axes = plt.subplots(len(groups), 1, figsize=(max(6.0, 1.3 * len(classes) + 2), 2.6 * len(groups)),
                             squeeze=False)
    x = np.arange(len(classes))
    for ax, g in zip(axes[:, 0], groups, strict=True):
        for offset, metric, color in ((-0.2, "pre_success", "0.6"), (0.2, "success", "C0")):
            est = [g["per_class"][c][metric] for c in classes]
            mean = np.array([e["mean"] for e in est])
            err = np.array([[m - e["mean_ci"][0], e["mean_ci"][1] - m] if e["mean_ci"] else [0, 0]
                            for e, m in zip(est, mean, strict=True)]).T
            ax.bar(x + offset, 100 * mean, width=0.4, yerr=100 * err, color=color, capsize=3,
                   label="before adaptation" if metric == "pre_success" else "after adaptation")
        ax.set_xticks(x, classes, fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("success (%)")
        runs = f"{g['num_runs']} run{'s' if g['num_runs'] > 1 else ''}"
        ax.set_title(f"{g['agent']} {g['label']}: mean over {runs}" + (", 95% CI" if g["num_runs"] > 1 else ""),
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{task_set_title(ts)}: {which_tasks(ts['env_options'])} classes", fontsize=10)
    return _save(fig, path)


def _curves(g: dict, path: Path) -> Path:
    """Held-out and training success vs env steps: IQM over seeds with a 95% band, seeds faint; a top axis
    in mean training minutes where the runs logged them."""
    plt = _plt()
    curves = g["curves"]
    panels = _curve_panels(curves)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels, strict=True):
        for i, key in enumerate(keys):
            c = curves[key]
            steps = np.array(c["steps"])
            for run in c["runs"]:
                ax.plot(steps, 100 * np.array(run), color=f"C{i}", alpha=0.15, linewidth=0.8)
            ax.plot(steps, 100 * np.array(c["iqm"]), color=f"C{i}", marker="o" if len(steps) < 30 else None,
                    markersize=3, label=f"{key} (IQM of {c['num_runs']})")
            if c["lo"] is not None:
                ax.fill_between(steps, 100 * np.array(c["lo"]), 100 * np.array(c["hi"]), color=f"C{i}",
                                alpha=0.2, linewidth=0)
        ax.set_xlabel("env steps")
        ax.set_ylabel("success (%)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        _wall_axis(ax, curves.get("minutes"))
    fig.suptitle(f"{g['name']}: IQM over seeds, 95% CI band", fontsize=10)
    return _save(fig, path)


def _curve_panels(curves: dict) -> list[tuple[str, list[str]]]:
    """The :data:`CURVE_PANELS` with the metrics ``curves`` has at two steps or more: a series of one point
    (the final evaluation, where runs logged no periodic one) is no curve, and the intervals PNG has it."""
    panels = [(t, [k for k in keys if len(curves.get(k, {}).get("steps", [])) > 1]) for t, keys in CURVE_PANELS]
    return [(t, keys) for t, keys in panels if keys]


def _wall_axis(ax, minutes: dict | None) -> None:
    """A top x-axis in mean training minutes (seconds for runs under two minutes), mapped from env steps
    through the runs' logged times."""
    if not minutes or len(minutes["steps"]) < 2:
        return
    from matplotlib.ticker import MaxNLocator

    steps = np.array(minutes["steps"], dtype=float)
    mins = np.maximum.accumulate(np.array(minutes["minutes"], dtype=float))
    unit = "minutes" if mins[-1] >= 2 else "seconds"
    mins = mins if unit == "minutes" else 60 * mins
    # from (0 steps, 0 time), and on past the last point at the run's mean pace: the axis spans the margins
    far = 10 * steps[-1]
    steps = np.concatenate([[0.0], steps, [far]])
    mins = np.concatenate([[0.0], mins, [mins[-1] * far / steps[-2]]])
    keep = np.concatenate([[True], np.diff(steps) > 0])
    steps, mins = steps[keep], mins[keep] + np.arange(keep.sum()) * 1e-9  # strictly increasing: invertible

    def forward(s):
        return np.interp(s, steps, mins)

    def backward(m):
        return np.interp(m, mins, steps)

    top = ax.secondary_xaxis("top", functions=(forward, backward))
    top.xaxis.set_major_locator(MaxNLocator(6))
    top.set_xlabel(f"training {unit} (mean over seeds)", fontsize=8)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path

"""Learning curves from a run directory's ``progress.csv`` (success rate and return vs env steps)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

CURVES = (("success rate", ("train/success_rate", "adapt/later_success_rate", "adapt/post_success_rate",
                           "eval/success_rate", "eval/pre_success_rate")),
          ("return", ("train/return", "eval/return", "eval/pre_return")))


def read_progress(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``progress.csv`` (long format) -> metric -> [(env steps, value)], sorted by steps."""
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with path.open() as f:
        for row in csv.DictReader(f):
            series[row["key"]].append((int(row["step"]), float(row["value"])))
    return {k: sorted(v) for k, v in series.items()}


def plot_run(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``learning_curve.png`` (or ``out``): train and held-out curves, x = env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_progress(run_dir / "progress.csv")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (title, keys) in zip(axes, CURVES, strict=True):
        for key in keys:
            if key in series:
                xs, ys = zip(*series[key], strict=True)
                dots = key.startswith("eval") or len(xs) < 3  # a line of one or two points would not show
                line, = ax.plot(xs, ys, marker="o" if dots else None, markersize=3,
                                label=key.replace("eval/", "held-out ").replace("train/", "train ").replace("_", " "))
                se = dict(series.get(f"{key}_se", []))  # evaluations' standard error over tasks: a band
                if se:
                    pts = [(x, y, se[x]) for x, y in zip(xs, ys, strict=True) if x in se]
                    ax.fill_between([x for x, _, _ in pts], [y - e for _, y, e in pts], [y + e for _, y, e in pts],
                                    color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_xlabel("env steps")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out = out or run_dir / "learning_curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

"""``metarl plot RUN``: write the run's learning_curve.png."""

from __future__ import annotations

import argparse
from pathlib import Path

from metarl.errors import UsageError
from metarl.plot import CURVES, plot_run, read_progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("plot", help="write learning_curve.png for a run directory")
    g.add_argument("run_dir", type=Path, help="a run directory written by `metarl train`")


def run(args: argparse.Namespace) -> int:
    if not (args.run_dir / "progress.csv").exists():
        raise UsageError(f"{args.run_dir} has no progress.csv: pass a run directory written by "
                         "`metarl train`")
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

"""``metarl report PATH ...``: held-out success over seeds (IQM and mean with stratified bootstrap 95%
confidence intervals), probability of improvement, performance profiles, per-class bars and learning
curves, as ``report.md`` + PNGs + ``report.json``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metarl.cli._args import path_arg, seed_arg, whole


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="IQM and bootstrap confidence intervals over seeds: report.md, PNGs, JSON",
                       description=__doc__.replace("``", "`"))
    r.add_argument("paths", nargs="+", type=path_arg, metavar="PATH",
                   help="run directories, folders of them (a seed sweep's --out), evaluation JSONs "
                        "(eval*.json) or results files (benchmarks/results/*.json); runs pool by benchmark, "
                        "agent and label (the file or folder name without its seed: X.json + X-s1.json, or "
                        "OUT/seed-0 ... OUT/seed-4)")
    r.add_argument("--out", type=path_arg, default=Path("report"),
                   help="folder for report.md, report.json and the PNGs (default ./report)")
    r.add_argument("--json", action="store_true", help="print report.json's numbers instead of the table")
    r.add_argument("--seed", type=seed_arg("--seed"), default=0,
                   help="bootstrap seed (default 0): the same inputs and seed give the same report")
    r.add_argument("--reps", type=whole("--reps", 10000, minimum=100), default=10_000,
                   help="bootstrap resamples (default 10000)")


def run(args: argparse.Namespace) -> int:
    from metarl.provenance import command_line
    from metarl.report import write_report
    from metarl.report.inputs import which_tasks
    from metarl.report.write import summary_table

    report = write_report(args.paths, args.out, seed=args.seed, reps=args.reps, command=command_line())
    if args.json:
        print(json.dumps(report.summary, indent=2))
    else:
        for ts in report.summary["task_sets"]:
            options = ", ".join(f"{k}={v}" for k, v in sorted(ts["env_options"].items()))
            print(f"\n{ts['benchmark']}" + (f" ({options})" if options else "")
                  + f", {sum(ts['classes'].values())} {which_tasks(ts['env_options'])} tasks: success (%), "
                    "IQM [95% CI]")
            print("\n".join(summary_table(ts)))
    for note in report.summary["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if report.summary["skipped"]:
        print(f"skipped {len(report.summary['skipped'])} input(s) without a held-out evaluation "
              f"(listed in {report.markdown})", file=sys.stderr)
    print(f"wrote {report.markdown}, {report.json.name} and {len(report.images)} PNGs", file=sys.stderr)
    return 0

"""Results JSON from a `metarl train` run directory (for runs not started by ``benchmarks/learning.py``).

Collects the run's ``config.json``, every ``eval*.json`` it holds (the final evaluation and any
``metarl eval`` re-evaluations), the training budget used and a thinned training curve from
``progress.csv``, and adds command, commit, machine and date. The commit is the one the run was
started from (``config.json``'s ``resolved.git_commit``, with any later commits in
``resolved.resumes``); runs written before metarl recorded it get the checkout's HEAD::

    python benchmarks/from_run.py runs/ML1-reach-v3-maml-mb20-s0 \\
        --command "metarl train ML1 --task reach-v3 --agent maml --num-envs 20 --backend shm ..." \\
        --out benchmarks/results/ML1-reach-v3-maml-mb20.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from metarl.errors import UsageError, exit_code
from metarl.provenance import provenance, write_json

CURVE_KEYS = ("adapt/post_success_rate", "adapt/pre_success_rate", "adapt/later_success_rate", "train/success_rate",
              "eval/success_rate", "eval/pre_success_rate")
SUMMARY_KEYS = ("success_rate", "pre_success_rate", "return", "pre_return", "eval_actions", "agent_overrides")


def collect_run(run: Path) -> dict:
    """Config, budget, curve and evaluations of ``run``; raises FileNotFoundError without config/progress."""
    config = json.loads((run / "config.json").read_text())
    rows = list(csv.DictReader((run / "progress.csv").open()))
    if not any(r["key"] == "time/elapsed_s" for r in rows):
        raise UsageError(f"{run / 'progress.csv'} has no training rows yet: let the run log an iteration first")
    steps = max(int(r["step"]) for r in rows)
    elapsed = max(float(r["value"]) for r in rows if r["key"] == "time/elapsed_s")
    curve: dict[int, dict[str, float]] = {}
    for r in rows:
        if r["key"] in CURVE_KEYS:
            curve.setdefault(int(r["step"]), {})[r["key"]] = round(float(r["value"]), 3)
    evals = {p.name: json.loads(p.read_text()) for p in sorted(run.glob("eval*.json"))}
    return {"config": config,
            "budget": {"env_steps": steps, "train_seconds": round(elapsed, 1),
                       "train_steps_per_s": round(steps / max(elapsed, 1e-9), 1)},
            "summary": {name: {k: e[k] for k in SUMMARY_KEYS if k in e} for name, e in evals.items()},
            "training_curve": curve, "evaluations": evals}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("--command", action="append", required=True, help="the command(s) that produced the run")
    p.add_argument("--note", default="", help="budget/machine remarks (other jobs on the cores, resumes, ...)")
    p.add_argument("--cores", type=float, default=1.0,
                   help="cores the training used (1 for a sync run on one core; workers for shm/ray): "
                        "budget.cpu_hours is training seconds x cores")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    missing = [n for n in ("config.json", "progress.csv") if not (args.run / n).is_file()]
    if missing:
        raise UsageError(f"{args.run} has no {' or '.join(missing)}: give a run directory of `metarl train`")
    if args.cores <= 0:
        raise UsageError(f"--cores {args.cores:g}: give the number of cores the training used (> 0)")
    run = collect_run(args.run)
    run["budget"]["cores"] = args.cores
    run["budget"]["cpu_hours"] = round(run["budget"]["train_seconds"] * args.cores / 3600, 2)
    obj = {**provenance(args.command), "note": args.note, **run}
    trained_by = run["config"].get("resolved", {}).get("git_commit")
    resumes = run["config"].get("resolved", {}).get("resumes", [])
    if trained_by:  # the commit the run started from, not whatever is checked out now
        obj["written_at_commit"], obj["git_commit"] = obj["git_commit"], trained_by
    elif resumes:
        print(f"warning: {args.run} was started before runs recorded their commit; git_commit is this checkout's",
              file=sys.stderr)
    if resumes:
        obj["resumed_at_commits"] = resumes
    write_json(args.out, obj)
    print(json.dumps({"budget": obj["budget"], "summary": obj["summary"]}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

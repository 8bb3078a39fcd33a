"""How far a checkpoint's held-out numbers move with the evaluation's random draws alone.

Evaluates one run directory with several evaluation seeds (``metarl eval RUN --eval-seed S``: the same
held-out tasks and weights; other env-reset seeds and per-task noise streams), prints a table and
writes JSON with command, commit, machine and date::

    python benchmarks/eval_noise.py runs/learning/Driving-rl2-trial13-s0 --eval-seeds 0 1 2 3 4 \\
        --eval-opt=--env-opt=test=extrapolate

The spread over seeds is the evaluation noise of one checkpoint; the standard error printed with each
evaluation (over tasks) also holds the tasks' differences, so it is the wider of the two when tasks differ.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from metarl.errors import UsageError
from metarl.provenance import write_result

HERE = Path(__file__).resolve().parent
KEYS = ("success_rate", "pre_success_rate", "return", "pre_return")


def evaluate_seed(run: Path, seed: int, extra: list[str]) -> dict:
    """``metarl eval RUN --eval-seed SEED --json EXTRA...`` (the command, in a child process) -> its JSON object."""
    proc = subprocess.run([sys.executable, "-m", "metarl", "eval", str(run), "--eval-seed", str(seed), "--json",
                           *extra], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.returncode)  # the command printed its one-line error
    return json.loads(proc.stdout)


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample std (0 for one value), min and max."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a run directory written by `metarl train`")
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--eval-opt", action="append", default=[], metavar="FLAG",
                   help="a `metarl eval` flag passed on (repeatable), e.g. --eval-opt=--env-opt=test=extrapolate")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/eval_noise-<run dir>[-<opts>].json)")
    args = p.parse_args(argv)
    try:
        if not args.run_dir.is_dir():
            raise UsageError(f"{args.run_dir} is not a directory: pass a run directory written by `metarl train`")
        if len(set(args.eval_seeds)) != len(args.eval_seeds) or min(args.eval_seeds) < 0:
            raise UsageError(f"--eval-seeds {args.eval_seeds}: give distinct seeds >= 0, e.g. 0 1 2 3 4")
        extra = [a for opt in args.eval_opt for a in opt.split("=", 1)]
        # argparse takes any unambiguous prefix (--eval-s): refuse those too
        owned = [a for a in extra
                 if len(a) > 2 and a.startswith("--") and any(f.startswith(a) for f in ("--eval-seed", "--json"))]
        if owned:
            raise UsageError(f"--eval-opt {owned[0]} is this script's own (one evaluation per --eval-seeds): drop it")
        tag = "".join(f"-{opt.lstrip('-').split('=', 1)[-1]}" for opt in args.eval_opt)
        out = args.out or HERE / "results" / f"eval_noise-{args.run_dir.name}{tag}.json"
        rows = []
        for seed in args.eval_seeds:
            obj = evaluate_seed(args.run_dir, seed, extra)
            rows.append({"eval_seed": seed, **{k: obj[k] for k in KEYS}, "success_rate_se": obj["success_rate_se"],
                         "pre_success_rate_se": obj["pre_success_rate_se"], "protocol": obj["protocol"],
                         "eval_actions": obj["eval_actions"]})
            print(f"eval seed {seed}: success {obj['success_rate']:.1%} (pre {obj['pre_success_rate']:.1%}), "
                  f"return {obj['return']:.1f} (pre {obj['pre_return']:.1f})", file=sys.stderr)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {k: spread([r[k] for r in rows]) for k in KEYS}
    ses = [r["success_rate_se"] for r in rows if r["success_rate_se"] is not None]
    summary["mean_success_rate_se_over_tasks"] = statistics.fmean(ses) if ses else None
    out.parent.mkdir(parents=True, exist_ok=True)
    write_result(out, {"run_dir": str(args.run_dir), "benchmark": obj["benchmark"],
                       "reward_version": obj["reward_version"], "seed": obj["seed"], "eval_flags": extra,
                       "evaluations": rows, "summary": summary})
    print(f"{'':>22} {'mean':>8} {'std':>7} {'min':>8} {'max':>8}")
    for k in KEYS:
        s = summary[k]
        fmt = "{:>8.1%}" if "success" in k else "{:>8.1f}"
        print(f"{k:>22} " + " ".join(fmt.format(s[m]).rjust(w)
                                     for m, w in (("mean", 8), ("std", 7), ("min", 8), ("max", 8))))
    se = summary["mean_success_rate_se_over_tasks"]
    print(f"{len(rows)} evaluation seeds of {args.run_dir} ({obj['benchmark']}, rewards {obj['reward_version']}, "
          f"{obj['eval_actions']} actions, {obj['protocol']})"
          + ("" if se is None else f"; standard error over tasks, mean over seeds: {se:.1%}") + f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

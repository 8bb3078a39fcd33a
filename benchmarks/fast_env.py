"""Fast Meta-World envs vs upstream: exact parity on all 50 v3 tasks, and single-env speed.

1. Parity: for every v3 task, upstream and fast envs with the same goal, seed and random actions,
   ``--episodes`` full 500-step episodes with resets: max |Δobs|, max |Δreward|, and steps where
   success / terminated / truncated / touching-the-object differ (all must be 0). Then one episode
   per task driven by upstream's scripted policy, which grasps and presses: random actions make the
   gripper touch the object on 2 of the 50 tasks, the scripted policies on 11.
2. Speed: single-env steps/s (random actions, resets included) of upstream and fast classes,
   measured alternately in the same run, for reach/pick-place/door-open and the 15 ML10 classes.

Run from the repository root (metarl installed)::

    python benchmarks/fast_env.py            # writes benchmarks/results/fast_env.json
    python benchmarks/fast_env.py --quick    # 3 tasks, short timings, writes nothing unless --out
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML10_V3
from metaworld.policies import ENV_POLICY_MAP

from metarl.envbench import SPEED_ENVS, single_env
from metarl.envs.metaworld_fast import parity_check
from metarl.errors import exit_code
from metarl.provenance import write_result

HERE = Path(__file__).resolve().parent


def parity(names: list[str], episodes: int, scripted: bool = False) -> dict[str, dict]:
    """Per task: random actions, or (``scripted``) upstream's scripted policy, which grasps and
    presses, so the contact-force path (``touching_object``) runs on tasks random actions never reach."""
    rows = {}
    for name in names:
        policy = ENV_POLICY_MAP[name]().get_action if scripted else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the scripted policies' "Constant(s) may be too high" warnings
            rows[name] = parity_check(name, episodes=episodes, seed=0, policy=policy)
        d = rows[name]
        ok = d["obs"] == 0 and d["reward"] == 0 and d["flags"] == 0
        print(f"{name:32s} steps {d['steps']:5d}  max|Δobs| {d['obs']:.1e}  max|Δr| {d['reward']:.1e}  "
              f"flag diffs {d['flags']}  touching {d['touching_steps']:4d}  {'identical' if ok else 'DIFFERENT'}")
    return rows


def speed(names: list[str], steps: int, repeats: int) -> dict[str, dict]:
    rows = {}
    print(f"\n{'env':32s} {'upstream':>10s} {'fast':>10s} {'speed-up':>9s}   (steps/s, best of {repeats})")
    for name in names:
        rows[name] = single_env([name], steps, repeats)[name]
        r = rows[name]
        print(f"{name:32s} {r['upstream']:10.0f} {r['fast']:10.0f} {r['speedup']:8.2f}x")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=2, help="parity episodes per task")
    p.add_argument("--steps", type=int, default=3000, help="timed steps per speed measurement")
    p.add_argument("--repeats", type=int, default=2, help="alternating repeats per env (best is kept)")
    p.add_argument("--skip-parity", action="store_true", help="speed only")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if min(args.episodes, args.steps, args.repeats) < 1:
        print("error: --episodes, --steps and --repeats must be >= 1: give e.g. --steps 3000", file=sys.stderr)
        raise SystemExit(2)
    names = sorted(ALL_V3_ENVIRONMENTS)
    ml10 = sorted(ML10_V3["train"]) + sorted(ML10_V3["test"])
    speed_names = list(SPEED_ENVS) + [n for n in ml10 if n not in SPEED_ENVS]
    if args.quick:
        names, speed_names, args.steps, args.repeats, args.episodes = list(SPEED_ENVS), list(SPEED_ENVS), 500, 1, 1
    par = {} if args.skip_parity else parity(names, args.episodes)
    if not args.skip_parity:
        print("\nscripted policies (upstream's, acting on upstream's observations):")
    scripted = {} if args.skip_parity else parity(names, 1, scripted=True)
    spd = speed(speed_names, args.steps, args.repeats)
    ml10_rows = [spd[n] for n in ml10 if n in spd]
    summary = {
        "all_identical": all(d["obs"] == 0 and d["reward"] == 0 and d["flags"] == 0
                             for d in (*par.values(), *scripted.values())) if par else None,
        "tasks_checked": len(par),
        "scripted_touching_steps": sum(d["touching_steps"] for d in scripted.values()),
        "scripted_tasks_touching": sum(d["touching_steps"] > 0 for d in scripted.values()),
        "ml10_mean_speedup": statistics.mean(r["speedup"] for r in ml10_rows) if ml10_rows else None,
        "ml10_mean_steps_per_s": {k: statistics.mean(r[k] for r in ml10_rows) for k in ("upstream", "fast")}
        if ml10_rows else None,
    }
    print(f"\n{summary}")
    out = args.out or (None if args.quick else HERE / "results" / "fast_env.json")
    if out:
        write_result(out, {
            "reward_function_version": "v2", "settings": vars(args) | {"out": str(out)},
            "summary": summary, "parity": par, "parity_scripted": scripted, "speed": spd})
        print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

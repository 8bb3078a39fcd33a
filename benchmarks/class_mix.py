"""What lockstep costs a vector env of mixed task classes, from measured per-class single-env rates.

A vector step waits for its slowest worker. With ``K`` ML10 slots per worker (assigned as ``metarl bench
envs`` assigns them: classes in turn), a worker's time per vector step is the sum of its slots' step
times (1 / that class's single-env fast steps/s from a ``metarl bench envs`` JSON), so over ``W`` workers:

- ideal: ``W * K / mean(worker times)``, every core busy all the time;
- lockstep: ``W * K / max(worker times)``, the slowest worker pacing every step;

before any IPC, policy or jitter. Arithmetic on measured rates, not a measurement::

    python benchmarks/class_mix.py benchmarks/results/bench_envs-h200-host.json --workers 16
    # writes benchmarks/results/class_mix-<name of the source JSON>.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import metarl
from metarl.envs.bench import _ml10_slot_tasks, provenance
from metarl.errors import UsageError, exit_code

HERE = Path(__file__).resolve().parent


def class_mix(rates: dict[str, float], workers: int, slots_per_worker: int) -> dict[str, float]:
    """Ideal and lockstep slot-steps/s of ``workers`` × ``slots_per_worker`` ML10 training slots whose
    classes step at ``rates`` (class name -> single-env steps/s)."""
    tasks = _ml10_slot_tasks(metarl.make_benchmark("ML10", seed=0), workers * slots_per_worker)
    missing = sorted({t.name for t in tasks} - set(rates))
    if missing:
        raise UsageError(f"the source JSON has no single-env rate for {', '.join(missing)}: "
                         "use one written by `metarl bench envs` with the single section")
    times = [sum(1 / rates[t.name] for t in tasks[w * slots_per_worker:(w + 1) * slots_per_worker])
             for w in range(workers)]
    ideal = workers * slots_per_worker / statistics.fmean(times)
    lockstep = workers * slots_per_worker / max(times)
    return {"workers": workers, "slots_per_worker": slots_per_worker, "ideal_steps_per_s": ideal,
            "lockstep_steps_per_s": lockstep, "lockstep_share": lockstep / ideal}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="a `metarl bench envs` JSON with the single section")
    p.add_argument("--workers", type=int, nargs="+", default=[2, 16])
    p.add_argument("--slots-per-worker", type=int, nargs="+", default=[1, 2, 5])
    args = p.parse_args()
    if min(args.workers) < 1 or min(args.slots_per_worker) < 1:
        raise UsageError("--workers and --slots-per-worker must be positive")
    try:
        rows = json.loads(args.source.read_text())["single"]["rows"]
    except (OSError, ValueError, KeyError) as e:
        raise UsageError(f"{args.source}: not a readable `metarl bench envs` JSON with a single section ({e})") from None
    rates = {name: row["fast"] for name, row in rows.items()}
    out_rows = []
    print(f"{'workers':>7s} {'slots/worker':>12s} {'ideal':>9s} {'lockstep':>9s} {'share':>6s}   (slot-steps/s)")
    for w in args.workers:
        for k in args.slots_per_worker:
            r = class_mix(rates, w, k)
            out_rows.append(r)
            print(f"{w:7d} {k:12d} {r['ideal_steps_per_s']:9,.0f} {r['lockstep_steps_per_s']:9,.0f} "
                  f"{100 * r['lockstep_share']:5.0f}%")
    out = HERE / "results" / f"class_mix-{args.source.stem}.json"
    out.write_text(json.dumps({**provenance(["python", *sys.argv]), "source": str(args.source),
                               "source_machine": json.loads(args.source.read_text()).get("machine"),
                               "rows": out_rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

"""What lockstep costs a vector env of mixed task classes, from measured per-class single-env rates.

A vector step waits for its slowest worker. With ``K`` ML10 training slots per worker, laid out as the
trainer lays out a meta-batch (:meth:`metarl.TaskSet.sample`, whose order interleaves classes) and,
for comparison, with each class's slots side by side (the order before), a worker's time per vector
step is the sum of its slots' step times (1 / that class's single-env fast steps/s from a ``metarl
bench envs`` JSON), so over ``W`` workers (mean over 20 meta-batch draws):

- ideal: ``W * K / mean(worker times)``, every core busy all the time;
- lockstep: ``W * K / max(worker times)``, the slowest worker pacing every step;

before any IPC, policy or jitter. Arithmetic on measured rates, not a measurement::

    python experiments/shm_backend/class_mix.py benchmarks/results/bench_envs-h200-host.json --workers 16
    # writes experiments/shm_backend/class_mix-<name of the source JSON>.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

import metarl
from metarl.errors import UsageError, exit_code
from metarl.provenance import write_result

HERE = Path(__file__).resolve().parent


def _shares(rates: dict[str, float], batch: list, workers: int, slots_per_worker: int) -> tuple[float, float]:
    times = [sum(1 / rates[t.name] for t in batch[w * slots_per_worker:(w + 1) * slots_per_worker])
             for w in range(workers)]
    n = workers * slots_per_worker
    return n / statistics.fmean(times), n / max(times)


def class_mix(rates: dict[str, float], workers: int, slots_per_worker: int, draws: int = 20) -> dict[str, float]:
    """Ideal and lockstep slot-steps/s of ``workers`` × ``slots_per_worker`` ML10 training slots whose
    classes step at ``rates`` (class name -> single-env steps/s), mean over ``draws`` meta-batches, in the
    trainer's order (``interleaved``) and with each class's slots side by side (``grouped``)."""
    train = metarl.make_benchmark("ML10", seed=0).train
    missing = sorted(set(train.task_names) - set(rates))
    if missing:
        raise UsageError(f"the source JSON has no single-env rate for {', '.join(missing)}: "
                         "use one written by `metarl bench envs` with the single section")
    out: dict[str, float] = {"workers": workers, "slots_per_worker": slots_per_worker}
    for layout in ("interleaved", "grouped"):
        ideal, lockstep = [], []
        for seed in range(draws):
            batch = train.sample(workers * slots_per_worker, np.random.default_rng(seed))
            if layout == "grouped":
                batch = sorted(batch, key=lambda t: t.name)  # stable: each class's draws in order
            i, lk = _shares(rates, batch, workers, slots_per_worker)
            ideal.append(i)
            lockstep.append(lk)
        out[f"{layout}_ideal_steps_per_s"] = statistics.fmean(ideal)
        out[f"{layout}_lockstep_steps_per_s"] = statistics.fmean(lockstep)
        out[f"{layout}_lockstep_share"] = statistics.fmean(lk / i for i, lk in zip(ideal, lockstep, strict=True))
    return out


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
        raise UsageError(f"{args.source}: not a readable `metarl bench envs` JSON "
                         f"with a single section ({e})") from None
    rates = {name: row["fast"] for name, row in rows.items()}
    out_rows = []
    print(f"{'workers':>7s} {'slots/worker':>12s} {'ideal':>9s} {'lockstep':>9s} {'share':>6s} "
          f"{'grouped: lockstep':>18s} {'share':>6s}   (slot-steps/s; trainer's interleaved order, then grouped)")
    for w in args.workers:
        for k in args.slots_per_worker:
            r = class_mix(rates, w, k)
            out_rows.append(r)
            print(f"{w:7d} {k:12d} {r['interleaved_ideal_steps_per_s']:9,.0f} "
                  f"{r['interleaved_lockstep_steps_per_s']:9,.0f} "
                  f"{100 * r['interleaved_lockstep_share']:5.0f}% {r['grouped_lockstep_steps_per_s']:18,.0f} "
                  f"{100 * r['grouped_lockstep_share']:5.0f}%")
    out = HERE / f"class_mix-{args.source.stem}.json"
    write_result(out, {"source": str(args.source),
                       "source_machine": json.loads(args.source.read_text()).get("machine"), "rows": out_rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

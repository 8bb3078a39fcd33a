"""Ablation of the ``shm`` backend's wake-up options on ML10 slots, against one process (``sync``).

Every row steps fast ML10 envs (training classes, one slot per class in turn) with random actions
through :func:`metarl.collect`, as training does; ``--episodes`` 500-step episodes per slot after a
warm-up episode, best of ``--repeats`` taken in turn over the variants (this VM's speed drifts).
Writes ``shm_variants-<tag>.json`` beside this script::

    python experiments/shm_backend/shm_variants.py --tag dev-2core --episodes 3 --repeats 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import metarl
from metarl.envbench import time_metarl_vector
from metarl.errors import UsageError, exit_code
from metarl.provenance import provenance, write_result

VARIANTS = {
    "separate workers, block on semaphores (spin_us=0, in_parent=False)": {"spin_us": 0.0, "in_parent": False},
    "separate workers, spin 100 us then block (in_parent=False)": {"spin_us": 100.0, "in_parent": False},
    "separate workers, spin 5 ms then block (in_parent=False)": {"spin_us": 5000.0, "in_parent": False},
    "parent steps block 0, spin 100 us (in_parent=True)": {"spin_us": 100.0, "in_parent": True},
    "parent steps block 0, spin 5 ms (in_parent=True)": {"spin_us": 5000.0, "in_parent": True},
    "parent steps block 0, no spin (in_parent=True, spin_us=0)": {"spin_us": 0.0, "in_parent": True},
    "defaults": {},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--slots-per-worker", type=int, nargs="+", default=[2, 5])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--episodes", type=int, default=1, help="500-step episodes per slot per measurement")
    p.add_argument("--tag", default="dev")
    p.add_argument("--out", type=Path, default=None,
                   help="results JSON (default: shm_variants-<tag>.json beside this script)")
    args = p.parse_args()
    if min(args.workers + args.slots_per_worker + [args.repeats, args.episodes]) < 1:
        raise UsageError("--workers, --slots-per-worker, --repeats and --episodes must be >= 1")
    bench = metarl.make_benchmark("ML10", seed=0)
    out = args.out or Path(__file__).resolve().parent / f"shm_variants-{args.tag}.json"
    rows: list[dict] = []
    head = provenance()

    def write() -> None:  # after every configuration: a run cut short by a time limit keeps its rows
        write_result(out, {"rows": rows, "reward_function_version": "v2",
                           "actions": "uniform random, via metarl.collect"}, head=head)

    for spw in args.slots_per_worker:
        for w in args.workers:
            variants = {name: opts for name, opts in VARIANTS.items()  # one block stepped in the parent is sync
                        if not (w == 1 and opts.get("in_parent"))} | {"sync (one process)": None}
            best = dict.fromkeys(variants, 0.0)
            for r in range(args.repeats):  # alternating: this VM's speed drifts within seconds
                for name, opts in variants.items():
                    sps = time_metarl_vector(bench, w, spw, args.episodes, opts,
                                             "sync" if opts is None else "shm")["steps_per_s"]
                    best[name] = max(best[name], sps)
                    print(f"{w * spw:3d} slots  {w} workers  {name:62s} {sps:8,.0f}  (repeat {r + 1})", flush=True)
            for name, opts in variants.items():
                rows.append({"slots_per_worker": spw, "workers": w, "slots": w * spw, "variant": name,
                             **({} if opts is None else {"options": opts}), "steps_per_s": best[name]})
                print(f"{w * spw:3d} slots  {w} workers  {name:62s} {best[name]:8,.0f}  best", flush=True)
            write()
    print(f"wrote {out}")

if __name__ == "__main__":
    raise SystemExit(exit_code(main))

"""``metarl bench envs``: env throughput of upstream Meta-World vs metarl, measured side by side in one run.

Sections (random uniform actions, resets included, rewards ``v2`` = upstream's default):

1. **single**: one env per class on one core, the ``ML1`` env slot with upstream's class (``fast=False``)
   vs metarl's fast class (``fast=True``), alternating, best of ``repeats``; plus the MuJoCo physics
   ceiling (:func:`time_physics`: the env steps/s if a step were only its MuJoCo calls, measured under the
   same random actions; the at-rest figure, ``frame_skip`` × ``mj_step`` from the reset state, is ~2×
   higher and kept in the JSON) — for reach/pick-place/door-open and the 15 ML10 classes.
2. **vector**: ML10 training classes over W = 1, 2, 4, … cores: W independent processes stepping
   ``slots_per_worker`` fast-env slots each with nothing shared (:func:`time_independent`: what W cores
   can step at all, the ceiling of any backend), gymnasium's ``AsyncVectorEnv`` of upstream envs (one
   process per slot, same-step autoreset) and metarl's shared-memory backend (W worker processes ×
   ``slots_per_worker`` slots, fast envs, stepped through :func:`metarl.collect` as training does), and
   the memory per env slot of the last two: resident (RSS) and private (:func:`private_mb`: pages no
   other process shares, what each extra worker really costs).
3. **driving**: the batched NumPy ``Driving`` family (one process) at 1, 10 and 256 slots.
4. **memory** (``--rss-steps N``): RSS of every shm worker sampled while stepping N slot-steps, to show
   whether it grows.

Envs come from the registry only (``metarl.make_benchmark("ML1", task=..., fast=...)``, ``ML10``,
``Driving``), as a user's code gets them: the core imports no task family. Upstream's own classes come
from the upstream ``metaworld`` package. Everything is importable, so ``benchmarks/`` scripts reuse it;
the CLI (``metarl bench envs``) wraps :func:`run`; results carry :func:`metarl.provenance.provenance`.
"""

from __future__ import annotations

import os
from typing import Any

from metarl.envbench.single import (
    SPEED_ENVS,
    driving,
    make_upstream_env,
    metaworld_env,
    single_env,
    single_section,
    time_env,
    time_physics,
    upstream_env,
)
from metarl.envbench.vector import (
    memory_growth,
    memory_per_process,
    print_memory,
    private_mb,
    rss_mb,
    time_independent,
    time_metarl_vector,
    time_upstream_async,
    vector,
)
from metarl.provenance import provenance

__all__ = ["SPEED_ENVS", "driving", "make_upstream_env", "memory_growth", "memory_per_process",
           "metaworld_env", "print_memory", "private_mb", "rss_mb", "run", "single_env", "single_section",
           "time_env", "time_independent", "time_metarl_vector", "time_physics", "time_upstream_async",
           "upstream_env", "vector"]


def run(*, quick: bool = False, max_workers: int | None = None, steps: int = 3000, repeats: int = 2,
        slots_per_worker: int = 2, rss_steps: int = 0,
        sections: tuple[str, ...] = ("single", "vector", "driving"),
        worker_counts: list[int] | None = None, on_section: Any = None) -> dict[str, Any]:
    """Measure, print the tables as it goes, return the JSON-ready report.

    ``worker_counts``: the vector section's rows (default 1, 2, 4, … up to ``max_workers``).
    ``on_section(report)`` is called after every section and every vector row (the CLI writes the JSON
    there, so a run cut short by a time limit keeps what it measured).
    """
    def done() -> None:
        if on_section is not None:
            on_section(report)

    import metaworld.env_dict as env_dict

    import metarl

    max_workers = max_workers or os.cpu_count() or 1
    ml10 = sorted(env_dict.ML10_V3["train"]) + sorted(env_dict.ML10_V3["test"])
    names = list(SPEED_ENVS) + [n for n in ml10 if n not in SPEED_ENVS]
    if quick:
        names, steps, repeats, max_workers = list(SPEED_ENVS[:2]), 300, 1, min(max_workers, 2)
    report: dict[str, Any] = {**provenance(), "reward_function_version": "v2",
                              "settings": {"quick": quick, "max_workers": max_workers, "steps": steps,
                                           "repeats": repeats, "slots_per_worker": slots_per_worker,
                                           "rss_steps": rss_steps, "sections": list(sections),
                                           "worker_counts": worker_counts}}
    if "single" in sections:
        report["single"] = single_section(names, ml10, steps, repeats)
        done()
    bench = None
    if "vector" in sections or rss_steps:
        bench = metarl.make_benchmark("ML10", seed=0)
    if "vector" in sections:
        def row_done(rows: list[dict]) -> None:  # a run cut short by a time limit keeps its rows
            report["vector"] = rows
            done()

        report["vector"] = vector(bench, max_workers, steps * 4, 1 if quick else 2, slots_per_worker,
                                  worker_counts, row_done, 1.0 if quick else 3.0, repeats)
        done()
    if "driving" in sections:
        report["driving"] = driving(seconds=0.3 if quick else 1.0)
        print("\nDriving (batched NumPy, 1 process): " +
              ", ".join(f"{n} slots {sps:,.0f} steps/s" for n, sps in report["driving"].items()))
        done()
    if rss_steps:
        report["memory"] = memory_growth(bench, max_workers, slots_per_worker, rss_steps)
        print_memory(report["memory"])
        done()
    return report

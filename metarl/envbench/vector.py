"""Many env slots over many processes: the machine's ceiling (independent processes), gymnasium's
``AsyncVectorEnv`` of upstream envs and metarl's shared-memory backend, their memory per slot, and the shm
workers' memory over a long run (sections ``vector`` and ``memory`` of ``metarl bench envs``)."""

from __future__ import annotations

import functools
import os
import queue
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.envbench.single import make_upstream_env


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux ``/proc``; NaN elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def memory_per_process(procs: list[Any]) -> dict[str, float]:
    """Mean RSS and private memory (MiB) over processes ``procs`` (objects with a ``pid``)."""
    return {"rss_mb": statistics.fmean(rss_mb(p.pid) for p in procs),
            "private_mb": statistics.fmean(private_mb(p.pid) for p in procs)}


def private_mb(pid: int) -> float:
    """Memory only process ``pid`` holds (private clean + dirty pages; RSS also counts pages it shares with
    other processes, such as shared libraries), in MiB (Linux ``/proc/<pid>/smaps_rollup``; NaN elsewhere)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return float("nan")
    kb = [int(line.split()[1]) for line in lines if line.startswith(("Private_Clean:", "Private_Dirty:"))]
    return sum(kb) / 1024 if kb else float("nan")


def _worker_counts(max_workers: int) -> list[int]:
    return sorted({w for w in (1, 2, 4, 8, 16, 32, 64) if w <= max_workers} | {max_workers})


def _ml10_slot_tasks(bench: Any, slots: int) -> list[Any]:
    by_class = bench.train.by_class()
    classes = sorted(by_class)
    return [by_class[classes[i % len(classes)]][i // len(classes) % len(by_class[classes[i % len(classes)]])]
            for i in range(slots)]


def time_upstream_async(bench: Any, workers: int, steps: int) -> dict[str, float]:
    """gymnasium ``AsyncVectorEnv`` of ``workers`` upstream envs (one per process)."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    tasks = _ml10_slot_tasks(bench, workers)
    fns = [functools.partial(make_upstream_env, ALL_V3_ENVIRONMENTS[t.name], t.params, i)
           for i, t in enumerate(tasks)]
    from metarl.vector.shm import default_start_method

    ctx = default_start_method()  # the same start method as metarl's shm side of the comparison
    envs = gym.vector.AsyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, context=ctx)
    try:
        envs.reset(seed=0)
        rng = np.random.default_rng(0)
        low, high = envs.action_space.low, envs.action_space.high
        for _ in range(50):
            envs.step(rng.uniform(low, high).astype(np.float32))
        n = max(1, steps // workers)
        start = time.perf_counter()
        for _ in range(n):
            envs.step(rng.uniform(low, high).astype(np.float32))
        seconds = time.perf_counter() - start
        mem = memory_per_process(envs.processes)
    finally:
        envs.close()
    return {"slots": workers, "steps_per_s": n * workers / seconds, "rss_mb_per_slot": mem["rss_mb"],
            "private_mb_per_slot": mem["private_mb"]}


def time_metarl_vector(bench: Any, workers: int, slots_per_worker: int, episodes: int,
                       shm_options: dict[str, Any] | None = None, backend: str = "shm") -> dict[str, float]:
    """metarl's ``shm`` backend (``workers`` processes × ``slots_per_worker`` fast-env slots; ``shm_options``:
    see :func:`metarl.make_vector_env`), or ``backend="sync"``: the same slots in this process. Random actions
    via ``collect``, ``episodes`` episodes per slot after a warm-up one. Returns steps/s, and for ``shm`` the
    worker processes' RSS and private memory per slot (MB; absent when this process steps the only block:
    one worker on one core)."""
    import metarl

    slots = workers * slots_per_worker
    shm = backend == "shm"
    envs = metarl.make_vector_env(bench.train, slots, backend, num_workers=workers if shm else None,
                                  shm_options=shm_options)
    try:
        envs.set_tasks(_ml10_slot_tasks(bench, slots))
        learner = metarl.make_agent("random", bench).make_learner()
        metarl.collect(envs, learner, episodes=1, seed=list(range(slots)))  # warm-up: workers built
        start = time.perf_counter()
        ro = metarl.collect(envs, learner, episodes=episodes)
        seconds = time.perf_counter() - start
        procs = envs.env.worker_processes if shm else []
        mem = memory_per_process(procs) if procs else None
    finally:
        envs.close()
    return {"slots": slots, "steps_per_s": ro.num_steps / seconds,
            **({"rss_mb_per_slot": mem["rss_mb"] / slots_per_worker,
                "private_mb_per_slot": mem["private_mb"] / slots_per_worker} if mem else {})}


def _independent_process(env_fn: Any, tasks: list[Any], seed: int, seconds: float, barrier: Any,
                         results: Any) -> None:
    """One process of :func:`time_independent`: its slots stepped in a loop, nothing shared, no parent."""
    from metarl.vector.shm import _Block, _nbytes, _views

    n, probe = len(tasks), env_fn()
    dims = (n, int(np.prod(probe.observation_space.shape)), int(np.prod(probe.action_space.shape)))
    low, high = probe.action_space.low, probe.action_space.high
    probe.close()
    arrays = _views(memoryview(bytearray(_nbytes(*dims))), *dims)  # the shm layout, in private memory
    block = _Block(arrays, 0, n, env_fn)  # the very per-slot code an shm worker runs
    block.command("tasks", tasks)
    block.command("reset", [(j, seed + j) for j in range(n)])
    rng = np.random.default_rng(seed)
    barrier.wait()
    ends = []
    steps, start = 0, time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        ends.append(now)
        block.act[:] = rng.uniform(low, high, size=block.act.shape)
        block.step()
        steps += n
        ended = np.flatnonzero(block.term | block.trunc)
        if ended.size:
            block.command("reset", [(int(j), None) for j in ended])
    ends.append(now)
    block.close()
    results.put((steps, now - start, rss_mb(os.getpid()), np.diff(ends).astype(np.float32)))


def time_independent(bench: Any, workers: int, slots_per_worker: int,
                     seconds: float = 3.0) -> dict[str, float]:
    """The scaling ceiling of this machine for any vector backend: ``workers`` processes, each stepping its
    own ``slots_per_worker`` fast ML10 slots in a loop (random actions, resets on episode end) with no
    shared memory, no parent and no policy, all started together and timed over the same ``seconds``.

    Returns (rates in slot-steps/s):
        steps_per_s: the processes' summed rate, what ``workers`` cores can step at all; a backend's rate
            divided by it is the share the backend keeps. If it falls short of ``workers`` × the
            one-process rate, the machine (shared physical cores, memory bandwidth, clock throttling),
            not the backend, is what stops the scaling.
        lockstep_steps_per_s: the rate if the processes' k-th block steps had to wait for each other, as
            a vector env's do (each paced by the slowest of the ``workers``): the cost of lockstep with
            this machine's jitter, before any IPC or policy. The rest of a backend's gap is its own.
        block_step_us: percentiles (50, 90, 99, 99.9) of one process's time per step of all its slots, µs.
        per_process_min, per_process_max, rss_mb_per_slot (MiB).
    """
    import multiprocessing as mp

    from metarl.vector.shm import default_start_method

    ctx = mp.get_context(default_start_method())
    tasks = _ml10_slot_tasks(bench, workers * slots_per_worker)
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_independent_process, daemon=True,
                         args=(bench.train.make_env, tasks[i * slots_per_worker:(i + 1) * slots_per_worker],
                               1000 * i, seconds, barrier, results)) for i in range(workers)]
    for p in procs:
        p.start()
    out: list[tuple] = []
    deadline = time.monotonic() + seconds + 600
    try:
        while len(out) < workers:
            try:
                out.append(results.get(timeout=1.0))
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    barrier.abort()
                    raise RuntimeError(f"independent stepping processes failed (exit codes {dead}; their "
                                       f"tracebacks are above) or hung") from None
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    rates = [steps / elapsed for steps, elapsed, _, _ in out]
    k = min(len(d) for *_, d in out)
    lockstep = np.max(np.stack([d[:k] for *_, d in out]), axis=0)  # each block step paced by the slowest
    return {"slots": workers * slots_per_worker, "steps_per_s": sum(rates),
            "per_process_min": min(rates), "per_process_max": max(rates),
            "lockstep_steps_per_s": workers * slots_per_worker * k / float(lockstep.sum()),
            "block_step_us": {q: float(np.percentile(np.concatenate([d for *_, d in out]), q) * 1e6)
                              for q in (50, 90, 99, 99.9)},
            "rss_mb_per_slot": statistics.fmean(r for _, _, r, _ in out) / slots_per_worker}


def vector(bench: Any, max_workers: int, steps: int, episodes: int, slots_per_worker: int,
           worker_counts: list[int] | None = None, on_row: Any = None,
           independent_seconds: float = 3.0, repeats: int = 1) -> list[dict]:
    """Rows of the vector table, one per worker count: independent processes (the machine's ceiling),
    gymnasium's ``AsyncVectorEnv`` of upstream envs, metarl's ``shm`` backend; each measured ``repeats``
    times, alternating, the best kept (this VM's rates move by ±25% between back-to-back runs).
    ``on_row(rows)`` after each row."""
    measure = {"independent": lambda w: time_independent(bench, w, slots_per_worker, independent_seconds),
               "upstream_async": lambda w: time_upstream_async(bench, w, steps),
               # at least ``steps`` slot-steps, like the upstream side: a 2-slot run of 2 episodes lasts
               # ~0.3 s
               "metarl_shm": lambda w: time_metarl_vector(
                   bench, w, slots_per_worker,
                   max(episodes, -(-steps // (w * slots_per_worker * bench.train.horizon))))}
    print("\n" + VECTOR_HEADER)
    rows = []
    for w in worker_counts or _worker_counts(max_workers):
        runs: dict[str, list[dict]] = {key: [] for key in measure}
        for _ in range(repeats):
            for key, fn in measure.items():
                runs[key].append(fn(w))
        row: dict[str, Any] = {"workers": w, "repeats": repeats}
        for key, ms in runs.items():
            row[key] = {**max(ms, key=lambda m: m["steps_per_s"]),
                        "all_steps_per_s": [m["steps_per_s"] for m in ms]}
        rows.append(row)
        _print_vector_row(row)
        if on_row is not None:
            on_row(rows)
    return rows


def memory_growth(bench: Any, workers: int, slots_per_worker: int, total_steps: int) -> dict[str, Any]:
    """RSS (MiB, mean over shm workers) sampled after each round while stepping ``total_steps`` slot-steps,
    with new tasks for every slot before each of ~20 rounds, drawn as the trainer draws its meta-batches (so
    slots change task class, as in training, unless the slot count is a multiple of the class count)."""
    import metarl

    slots = workers * slots_per_worker
    envs = metarl.make_vector_env(bench.train, slots, "shm", num_workers=workers)
    samples = []
    rng = np.random.default_rng(0)
    try:
        learner = metarl.make_agent("random", bench).make_learner()
        done, rounds = 0, 0
        per_round = max(slots * bench.train.horizon, total_steps // 20)
        while done < total_steps:
            envs.set_tasks(bench.train.sample(slots, rng))
            episodes = max(1, per_round // (slots * bench.train.horizon))
            done += metarl.collect(envs, learner, episodes=episodes).num_steps
            rounds += 1
            samples.append({"steps": done, "rounds": rounds, **memory_per_process(envs.env.worker_processes)})
    finally:
        envs.close()
    first, last = samples[0]["rss_mb"], samples[-1]["rss_mb"]
    return {"workers": workers, "slots": slots, "samples": samples, "growth_mb": last - first,
            "growth_pct": 100 * (last - first) / first}


VECTOR_HEADER = (f"{'workers':>7s} {'slots':>6s} {'independent':>12s} {'lockstep':>9s} "
                 f"{'upstream async':>15s} "
                 f"{'metarl shm':>11s} {'shm/up':>7s} {'shm/indep':>10s} {'shm/lockstep':>13s} "
                 f"{'MiB/slot up':>12s} {'MiB/slot us':>12s}"
                 "   (ML10 train classes, steps/s; MiB: RSS/private)")


def _print_vector_row(row: dict) -> None:
    ind, up, ours = row["independent"], row["upstream_async"], row["metarl_shm"]
    print(f"{row['workers']:>7d} {ours['slots']:>6d} {ind['steps_per_s']:>12,.0f} "
          f"{ind['lockstep_steps_per_s']:>9,.0f} {up['steps_per_s']:>15,.0f} {ours['steps_per_s']:>11,.0f} "
          f"{ours['steps_per_s'] / up['steps_per_s']:>6.2f}x "
          f"{100 * ours['steps_per_s'] / ind['steps_per_s']:>9.0f}% "
          f"{100 * ours['steps_per_s'] / ind['lockstep_steps_per_s']:>12.0f}% "
          f"{_mib(up):>12s} {_mib(ours):>12s}",
          flush=True)


def _mib(m: dict) -> str:
    if "rss_mb_per_slot" not in m:
        return "-"
    return f"{m['rss_mb_per_slot']:.0f}/{m['private_mb_per_slot']:.0f}"


def print_memory(m: dict[str, Any]) -> None:
    """One line for :func:`memory_growth`'s result."""
    print(f"\nRSS over {m['samples'][-1]['steps']:,} steps ({m['workers']} shm workers, {m['slots']} slots): "
          f"{m['samples'][0]['rss_mb']:.0f} -> {m['samples'][-1]['rss_mb']:.0f} MiB per worker "
          f"({m['growth_pct']:+.1f}%)")

"""``metarl bench envs``: env throughput of upstream Meta-World vs metarl, measured side by side in one run.

Sections (random uniform actions, resets included, rewards ``v2`` = upstream's default):

1. **single**: one env per class on one core, upstream class vs metarl's fast class (``fast=True``),
   alternating, best of ``repeats``; plus the MuJoCo physics ceiling (:func:`time_physics`: the env steps/s
   if a step were only its MuJoCo calls, measured under the same random actions; the at-rest figure,
   ``frame_skip`` × ``mj_step`` from the reset state, is ~2× higher and kept in the JSON) — for
   reach/pick-place/door-open and the 15 ML10 classes.
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

Everything is importable, so ``benchmarks/`` scripts reuse it; the CLI wraps :func:`run`.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import os
import platform
import queue
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

SPEED_ENVS = ("reach-v3", "pick-place-v3", "door-open-v3")


# -- provenance ------------------------------------------------------------------------------
def git_commit(where: Path | None = None) -> str:
    """``$METARL_GIT_COMMIT`` if set (hosts that get a copy without ``.git``), else ``git rev-parse HEAD``
    of the checkout holding ``where`` (default: this file's, i.e. metarl's own), with ``+dirty`` appended
    when tracked files outside ``benchmarks/results/`` differ from it (the numbers came from uncommitted
    code) and ``+unknown`` when git can't tell; ``"unknown"`` outside a checkout. Read-only: git's
    optional index refresh is off, so a benchmark never takes the index lock of a checkout in use."""
    if os.environ.get("METARL_GIT_COMMIT"):
        return os.environ["METARL_GIT_COMMIT"]
    cwd = where or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "--no-optional-locks", *args], cwd=cwd, capture_output=True, text=True,
                                  check=False)
        except OSError:
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if not sha:
        return "unknown"
    top = git("rev-parse", "--show-toplevel")
    changed = git("-C", top, "status", "--porcelain", "--untracked-files=no", "--", ".",
                  ":(exclude)benchmarks/results") if top else None
    return f"{sha}+unknown" if changed is None else f"{sha}+dirty" if changed else sha


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, falling back to ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Platform, CPU and library versions the numbers were measured with."""
    versions = {}
    for pkg in ("numpy", "gymnasium", "mujoco", "metaworld", "torch"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"platform": platform.platform(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), **versions}


def provenance(command: list[str] | None = None) -> dict[str, Any]:
    """Command (default: this process's, program name without its path), commit, machine and UTC date
    for a results JSON; benchmark scripts pass ``["python", *sys.argv]``."""
    if command is None:
        program = Path(sys.argv[0])
        head = (["python", "-m", program.parent.name] if program.name == "__main__.py"  # python -m metarl
                else [program.name])
        command = [*head, *sys.argv[1:]]
    return {"command": command, "git_commit": git_commit(),
            "machine": machine_info(),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


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


# -- single env ------------------------------------------------------------------------------
def make_upstream_env(env_cls: type, task: Any, seed: int) -> gym.Env:
    """One upstream env as training builds it: task set before any reset, then seeded (picklable via partial)."""
    env = env_cls()
    env.set_task(task)
    env.seed(seed)
    return env


def time_env(env: gym.Env, steps: int, warmup: int = 200, seed: int = 0) -> dict[str, float]:
    """Steps/s of ``env`` under uniform random actions, resets after each episode end included."""
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    env.reset()

    def run(n: int) -> None:
        for _ in range(n):
            _, _, terminated, truncated, _ = env.step(rng.uniform(low, high).astype(np.float32))
            if terminated or truncated:
                env.reset()

    run(warmup)
    start = time.perf_counter()
    run(steps)
    seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds}


def time_physics(env: gym.Env, steps: int) -> dict[str, float]:
    """Two MuJoCo ceilings, in env steps/s: what a step would cost if it were physics only.

    ``at_rest``: ``frame_skip`` × ``mj_step`` from the reset state with no control (the arm idles, few
    contacts). ``in_workload``: the time spent inside ``mj_step``, ``mj_forward`` and
    ``mj_rnePostConstraint`` while the env runs the same random actions as the speed measurement
    (moving arm, contacts): the honest ceiling for that workload.
    """
    import mujoco

    model, data, frame_skip = env.unwrapped.model, env.unwrapped.data, env.unwrapped.frame_skip
    env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        for _ in range(frame_skip):
            mujoco.mj_step(model, data)
    at_rest = steps / (time.perf_counter() - start)
    spent = [0.0]
    originals = {k: getattr(mujoco, k) for k in ("mj_step", "mj_forward", "mj_rnePostConstraint")}

    def timed(fn):
        def call(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t
        return call

    for k, fn in originals.items():
        setattr(mujoco, k, timed(fn))
    try:
        time_env(env, steps, warmup=0)
    finally:
        for k, fn in originals.items():
            setattr(mujoco, k, fn)
    return {"at_rest": at_rest, "in_workload": steps / spent[0]}


def single_env(names: list[str], steps: int, repeats: int) -> dict[str, dict[str, float]]:
    """Per class: upstream, fast and physics-ceiling steps/s (best of ``repeats``, alternating)."""
    from metarl.envs.metaworld import make_env

    rows = {}
    for name in names:
        best = {"upstream": 0.0, "fast": 0.0}
        for _ in range(repeats):
            for key in best:
                env = make_env(name, fast=key == "fast", seed=0)
                best[key] = max(best[key], time_env(env, steps)["steps_per_s"])
                env.close()
        env = make_env(name, fast=True, seed=0)
        ceiling = time_physics(env, steps)
        env.close()
        rows[name] = {**best, "physics_ceiling": ceiling["in_workload"], "physics_at_rest": ceiling["at_rest"],
                      "speedup": best["fast"] / best["upstream"],
                      "fast_pct_of_ceiling": 100 * best["fast"] / ceiling["in_workload"]}
    return rows


# -- vector ----------------------------------------------------------------------------------
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
    fns = [functools.partial(make_upstream_env, ALL_V3_ENVIRONMENTS[t.name], t.params, i) for i, t in enumerate(tasks)]
    from metarl.vector_shm import default_start_method

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
    workers' RSS and private memory per slot (MB)."""
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
        mem = memory_per_process(envs.env.worker_processes) if shm else None
    finally:
        envs.close()
    return {"slots": slots, "steps_per_s": ro.num_steps / seconds,
            **({"rss_mb_per_slot": mem["rss_mb"] / slots_per_worker,
                "private_mb_per_slot": mem["private_mb"] / slots_per_worker} if mem else {})}


def _independent_process(env_fn: Any, tasks: list[Any], seed: int, seconds: float, barrier: Any, results: Any) -> None:
    """One process of :func:`time_independent`: its slots stepped in a loop, nothing shared, no parent."""
    from metarl.vector_shm import _Block, _nbytes, _views

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


def time_independent(bench: Any, workers: int, slots_per_worker: int, seconds: float = 3.0) -> dict[str, float]:
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

    from metarl.vector_shm import default_start_method

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
               # at least ``steps`` slot-steps, like the upstream side: a 2-slot run of 2 episodes lasts ~0.3 s
               "metarl_shm": lambda w: time_metarl_vector(
                   bench, w, slots_per_worker, max(episodes, -(-steps // (w * slots_per_worker * bench.train.horizon))))}
    rows = []
    for w in worker_counts or _worker_counts(max_workers):
        runs: dict[str, list[dict]] = {key: [] for key in measure}
        for _ in range(repeats):
            for key, fn in measure.items():
                runs[key].append(fn(w))
        row: dict[str, Any] = {"workers": w, "repeats": repeats}
        for key, ms in runs.items():
            row[key] = {**max(ms, key=lambda m: m["steps_per_s"]), "all_steps_per_s": [m["steps_per_s"] for m in ms]}
        rows.append(row)
        _print_vector_row(row)
        if on_row is not None:
            on_row(rows)
    return rows


def memory_growth(bench: Any, workers: int, slots_per_worker: int, total_steps: int) -> dict[str, Any]:
    """RSS (MiB, mean over shm workers) sampled after each round while stepping ``total_steps`` slot-steps, with new
    tasks for every slot before each of ~20 rounds, drawn as the trainer draws its meta-batches (so slots
    change task class, as in training, unless the slot count is a multiple of the class count)."""
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
            done += metarl.collect(envs, learner, episodes=max(1, per_round // (slots * bench.train.horizon))).num_steps
            rounds += 1
            samples.append({"steps": done, "rounds": rounds, **memory_per_process(envs.env.worker_processes)})
    finally:
        envs.close()
    first, last = samples[0]["rss_mb"], samples[-1]["rss_mb"]
    return {"workers": workers, "slots": slots, "samples": samples, "growth_mb": last - first,
            "growth_pct": 100 * (last - first) / first}


# -- driving ---------------------------------------------------------------------------------
def driving(slot_counts: tuple[int, ...] = (1, 10, 256), seconds: float = 1.0) -> dict[int, float]:
    """Slot-steps/s of the batched ``Driving`` family in this process, random actions, ended slots reset."""
    from metarl.envs.driving import DrivingVectorEnv
    from metarl.envs.driving import driving as make_driving

    tasks = make_driving(seed=0).train.tasks
    out = {}
    for n in slot_counts:
        env = DrivingVectorEnv(n, 100)
        env.set_attr("task", [tasks[i % len(tasks)] for i in range(n)])
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, size=(100, n, 2))
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:  # as collect() does: reset slots whose episode ended
            for a in actions:
                _, _, terminated, truncated, _ = env.step(a)
                ended = terminated | truncated
                if ended.any():
                    env.reset(options={"reset_mask": ended})
            steps += 100 * n
        out[n] = steps / (time.perf_counter() - start)
    return out


# -- report ----------------------------------------------------------------------------------
_VECTOR_HEADER = (f"{'workers':>7s} {'slots':>6s} {'independent':>12s} {'lockstep':>9s} {'upstream async':>15s} "
                  f"{'metarl shm':>11s} {'shm/up':>7s} {'shm/indep':>10s} {'shm/lockstep':>13s} {'MiB/slot up':>12s} {'MiB/slot us':>12s}"
                  "   (ML10 train classes, steps/s; MiB: RSS/private)")


def _print_vector_row(row: dict) -> None:
    ind, up, ours = row["independent"], row["upstream_async"], row["metarl_shm"]
    print(f"{row['workers']:>7d} {ours['slots']:>6d} {ind['steps_per_s']:>12,.0f} {ind['lockstep_steps_per_s']:>9,.0f} "
          f"{up['steps_per_s']:>15,.0f} {ours['steps_per_s']:>11,.0f} {ours['steps_per_s'] / up['steps_per_s']:>6.2f}x "
          f"{100 * ours['steps_per_s'] / ind['steps_per_s']:>9.0f}% "
          f"{100 * ours['steps_per_s'] / ind['lockstep_steps_per_s']:>12.0f}% {_mib(up):>12s} {_mib(ours):>12s}", flush=True)


def _mib(m: dict) -> str:
    return f"{m['rss_mb_per_slot']:.0f}/{m['private_mb_per_slot']:.0f}"


def run(*, quick: bool = False, max_workers: int | None = None, steps: int = 3000, repeats: int = 2,
        slots_per_worker: int = 2, rss_steps: int = 0, sections: tuple[str, ...] = ("single", "vector", "driving"),
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
        print(f"{'single env (1 core)':32s} {'upstream':>9s} {'fast':>9s} {'speed-up':>9s} {'physics':>9s} "
              f"{'% of physics':>13s}   steps/s")
        rows = {}
        for name in names:
            rows.update(single_env([name], steps, repeats))
            r = rows[name]
            print(f"{name:32s} {r['upstream']:9,.0f} {r['fast']:9,.0f} {r['speedup']:8.2f}x {r['physics_ceiling']:9,.0f} "
                  f"{r['fast_pct_of_ceiling']:12.0f}%", flush=True)
        ml10_rows = [rows[n] for n in ml10 if n in rows]
        summary = {k: statistics.fmean(r[k] for r in ml10_rows)
                   for k in ("upstream", "fast", "speedup", "physics_ceiling", "physics_at_rest")} \
            if ml10_rows else {}
        if summary:
            print(f"{'ML10 mean':32s} {summary['upstream']:9,.0f} {summary['fast']:9,.0f} {summary['speedup']:8.2f}x "
                  f"{summary['physics_ceiling']:9,.0f}")
        report["single"] = {"rows": rows, "ml10_mean": summary}
        done()
    bench = None
    if "vector" in sections or rss_steps:
        bench = metarl.make_benchmark("ML10", seed=0)
    if "vector" in sections:
        print("\n" + _VECTOR_HEADER)

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
        m = report["memory"]
        print(f"\nRSS over {m['samples'][-1]['steps']:,} steps ({m['workers']} shm workers, {m['slots']} slots): "
              f"{m['samples'][0]['rss_mb']:.0f} -> {m['samples'][-1]['rss_mb']:.0f} MiB per worker "
              f"({m['growth_pct']:+.1f}%)")
        done()
    return report

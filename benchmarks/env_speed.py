"""Baseline throughput of upstream Meta-World v3 environments on this machine.

Measures, with nothing but numpy, gymnasium, metaworld and mujoco (metarl is deliberately not
imported, so the numbers describe upstream alone):

1. single-env steps/s of upstream v3 envs driven by uniformly random actions, resets included;
2. the MuJoCo physics ceiling of each env: ``env.frame_skip`` calls of ``mujoco.mj_step`` per
   env step, i.e. what a step would cost with no Python-side reward, observation or bookkeeping;
3. vector steps/s on pick-place-v3 with gymnasium's ``AsyncVectorEnv`` (one process per env)
   and, as a reference, ``SyncVectorEnv`` with the same number of envs.

Every env uses upstream's default reward function ("v2"). Results are printed as a table and
written as JSON (``--out``). Run from the repository root::

    python benchmarks/env_speed.py            # full run, writes benchmarks/results/env_speed-upstream.json
    python benchmarks/env_speed.py --quick    # smoke run, writes nothing unless --out is given
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium
import metaworld
import mujoco
import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "env_speed-upstream.json"
EXTRA_ENVS = ("reach-v3", "pick-place-v3", "door-open-v3")
VECTOR_ENV = "pick-place-v3"
RESET_REPEATS = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``--quick`` shrinks every size to a smoke-test run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="timed env steps per single env")
    parser.add_argument("--warmup", type=int, default=200, help="untimed steps before each timing")
    parser.add_argument(
        "--vector-steps", type=int, default=6000, help="timed env steps (summed over sub-envs) per vector run"
    )
    parser.add_argument(
        "--max-workers", type=int, default=os.cpu_count() or 1, help="largest AsyncVectorEnv process count"
    )
    parser.add_argument("--mp-context", default="forkserver", choices=("forkserver", "spawn", "fork"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help=f"JSON path (default: {DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (< 30 s, writes no JSON)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.vector_steps = 300, 20, 400
        args.max_workers = min(args.max_workers, 2)
    elif args.out is None:
        args.out = DEFAULT_OUT
    return args


def worker_counts(max_workers: int) -> list[int]:
    """Powers of two below ``max_workers``, plus ``max_workers`` itself."""
    counts = {max_workers}
    power = 1
    while power < max_workers:
        counts.add(power)
        power *= 2
    return sorted(counts)


def make_upstream_env(env_cls: type, task: Any, seed: int) -> gymnasium.Env:
    """Build one upstream env the way training does: task set before any reset, then seeded.

    Top-level so that ``functools.partial`` of it pickles into AsyncVectorEnv workers.
    """
    env = env_cls()
    env.set_task(task)
    env.seed(seed)
    return env


def env_sources(ml10: Any, names: list[str], seed: int) -> dict[str, tuple[type, Any, str]]:
    """Map each env name to ``(class, first task, split)``, taking tasks from ML10 where possible.

    ``split`` is "ML10-train", "ML10-test" or "ML1" (names outside ML10 get their own ML1 benchmark).
    """
    sources = {}
    for name in names:
        for split, classes, tasks in (
            ("ML10-train", ml10.train_classes, ml10.train_tasks),
            ("ML10-test", ml10.test_classes, ml10.test_tasks),
        ):
            if name in classes:
                sources[name] = (classes[name], next(t for t in tasks if t.env_name == name), split)
                break
        else:
            ml1 = metaworld.ML1(name, seed=seed)
            sources[name] = (ml1.train_classes[name], ml1.train_tasks[0], "ML1")
    return sources


def run_env_steps(env: gymnasium.Env, steps: int, rng: np.random.Generator) -> int:
    """Step ``env`` with uniform random actions, resetting after truncation; return the reset count."""
    low, high = env.action_space.low, env.action_space.high
    resets = 0
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(low, high).astype(np.float32))
        if terminated or truncated:
            env.reset()
            resets += 1
    return resets


def time_env(env: gymnasium.Env, steps: int, warmup: int, seed: int) -> dict[str, float]:
    """Time ``steps`` random-action env steps (resets included) after ``warmup`` untimed ones."""
    rng = np.random.default_rng(seed)
    env.reset()
    run_env_steps(env, warmup, rng)
    start = time.perf_counter()
    resets = run_env_steps(env, steps, rng)
    seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": seconds, "resets": resets, "steps_per_s": steps / seconds}


def time_reset(env: gymnasium.Env, repeats: int) -> float:
    """Mean wall time of one ``env.reset()`` in milliseconds."""
    start = time.perf_counter()
    for _ in range(repeats):
        env.reset()
    return 1000 * (time.perf_counter() - start) / repeats


def time_mujoco(env: gymnasium.Env, steps: int, warmup: int) -> dict[str, float]:
    """Time bare physics: ``env.frame_skip`` ``mj_step`` calls per env-step equivalent."""
    model, data, frame_skip = env.unwrapped.model, env.unwrapped.data, env.unwrapped.frame_skip
    env.reset()
    for _ in range(warmup * frame_skip):
        mujoco.mj_step(model, data)
    start = time.perf_counter()
    for _ in range(steps):
        for _ in range(frame_skip):
            mujoco.mj_step(model, data)
    seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": seconds, "frame_skip": frame_skip, "steps_per_s": steps / seconds}


def bench_single(name: str, source: tuple[type, Any, str], args: argparse.Namespace) -> dict[str, Any]:
    """All single-env measurements of one env name."""
    env_cls, task, split = source
    env = make_upstream_env(env_cls, task, args.seed)
    result = {
        "env": name,
        "split": split,
        "reward_function_version": env.reward_function_version,
        "env_step": time_env(env, args.steps, args.warmup, args.seed),
        "reset_ms": time_reset(env, RESET_REPEATS),
        "mujoco": time_mujoco(env, args.steps, args.warmup),
    }
    env.close()
    return result


def ml10_average(results: list[dict[str, Any]]) -> dict[str, float]:
    """Arithmetic and harmonic means of steps/s over the ML10 classes.

    The harmonic mean is the throughput of a run giving every class the same number of steps.
    """
    env_sps = [r["env_step"]["steps_per_s"] for r in results if r["split"].startswith("ML10")]
    mj_sps = [r["mujoco"]["steps_per_s"] for r in results if r["split"].startswith("ML10")]
    return {
        "num_classes": len(env_sps),
        "env_steps_per_s_mean": statistics.fmean(env_sps),
        "env_steps_per_s_harmonic_mean": statistics.harmonic_mean(env_sps),
        "mujoco_steps_per_s_mean": statistics.fmean(mj_sps),
    }


def make_vector_env(
    kind: str, num_envs: int, source: tuple[type, Any, str], tasks: list[Any], args: argparse.Namespace
) -> gymnasium.vector.VectorEnv:
    """An Async- or SyncVectorEnv of ``num_envs`` upstream envs, each with its own task and seed.

    SAME_STEP autoreset resets a sub-env inside the step that truncates it, so upstream's
    "step past truncation" ValueError can never fire.
    """
    env_cls = source[0]
    fns = [
        functools.partial(make_upstream_env, env_cls, tasks[i % len(tasks)], args.seed + i)
        for i in range(num_envs)
    ]
    mode = gymnasium.vector.AutoresetMode.SAME_STEP
    if kind == "async":
        return gymnasium.vector.AsyncVectorEnv(fns, context=args.mp_context, autoreset_mode=mode)
    return gymnasium.vector.SyncVectorEnv(fns, autoreset_mode=mode)


def bench_vector(
    kind: str, num_envs: int, source: tuple[type, Any, str], tasks: list[Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Time one vector env: start-up, then ``--vector-steps`` env steps summed over sub-envs."""
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    envs = make_vector_env(kind, num_envs, source, tasks, args)
    envs.reset(seed=args.seed)
    startup = time.perf_counter() - start
    low, high = envs.action_space.low, envs.action_space.high
    for _ in range(max(1, args.warmup // num_envs)):
        envs.step(rng.uniform(low, high).astype(np.float32))
    vector_steps = max(1, args.vector_steps // num_envs)
    start = time.perf_counter()
    for _ in range(vector_steps):
        envs.step(rng.uniform(low, high).astype(np.float32))
    seconds = time.perf_counter() - start
    envs.close()
    steps = vector_steps * num_envs
    return {
        "kind": kind,
        "env": VECTOR_ENV,
        "num_envs": num_envs,
        "startup_s": startup,
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps / seconds,
        "steps_per_s_per_env": steps / seconds / num_envs,
    }


def git_commit() -> str:
    """``git rev-parse HEAD`` of this checkout, or "uncommitted" when there is no commit."""
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "uncommitted"


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
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
        "mujoco": mujoco.__version__,
        "metaworld": importlib.metadata.version("metaworld"),
    }


def print_single_table(results: list[dict[str, Any]], average: dict[str, float]) -> None:
    """Print the single-env table: env steps/s, physics ceiling and reset cost per env."""
    print(
        f"{'env':<26}{'split':<12}{'env steps/s':>12}{'mujoco steps/s':>16}{'env/mujoco':>12}{'reset ms':>10}"
    )
    for r in results:
        env_sps, mj_sps = r["env_step"]["steps_per_s"], r["mujoco"]["steps_per_s"]
        print(
            f"{r['env']:<26}{r['split']:<12}{env_sps:>12.0f}{mj_sps:>16.0f}"
            f"{env_sps / mj_sps:>12.2f}{r['reset_ms']:>10.1f}"
        )
    print(
        f"{'ML10 mean (' + str(average['num_classes']) + ' classes)':<38}"
        f"{average['env_steps_per_s_mean']:>12.0f}{average['mujoco_steps_per_s_mean']:>16.0f}"
    )
    print(f"{'ML10 harmonic mean':<38}{average['env_steps_per_s_harmonic_mean']:>12.0f}")


def print_vector_table(results: list[dict[str, Any]]) -> None:
    """Print the vector-env table."""
    print(f"\n{'vector env (' + VECTOR_ENV + ')':<34}{'steps/s':>10}{'per env':>10}{'startup s':>11}")
    for r in results:
        label = f"{r['kind']} x{r['num_envs']}"
        print(f"{label:<34}{r['steps_per_s']:>10.0f}{r['steps_per_s_per_env']:>10.0f}{r['startup_s']:>11.1f}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement and return the JSON-ready report."""
    ml10 = metaworld.ML10(seed=args.seed)
    ml10_names = list(ml10.train_classes) + list(ml10.test_classes)
    if args.quick:
        ml10_names = [next(iter(ml10.train_classes)), next(iter(ml10.test_classes))]
    names = list(dict.fromkeys([*EXTRA_ENVS, *ml10_names]))
    sources = env_sources(ml10, names, args.seed)
    single = [bench_single(name, sources[name], args) for name in names]
    vector_tasks = [t for t in ml10.train_tasks if t.env_name == VECTOR_ENV]
    vector = [
        bench_vector(kind, n, sources[VECTOR_ENV], vector_tasks, args)
        for n in worker_counts(args.max_workers)
        for kind in ("async", "sync")
    ]
    return {
        "command": sys.argv,
        "git_commit": git_commit(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "reward_function_version": "/".join(sorted({r["reward_function_version"] for r in single})),
        "reward_function_version_note": "upstream default of every v3 env class; not overridden here",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "single_env": single,
        "ml10_average": ml10_average(single),
        "vector": vector,
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point: measure, print the tables, write the JSON report."""
    args = parse_args(argv)
    report = run(args)
    print_single_table(report["single_env"], report["ml10_average"])
    print_vector_table(report["vector"])
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

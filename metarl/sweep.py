"""Seed sweeps: one training configuration for several seeds, each in its own run directory
``OUT/seed-S/``, then `metarl report` over them in ``OUT/report/``::

    metarl train Toy --agent rl2 --steps 20000 --seeds 0-4 --jobs 2 --out runs/toy-rl2

Each seed is a ``metarl train`` process (``python -m metarl train ... --seed S --out OUT/seed-S``), so it
gets everything a single run has: checkpoints, its lock, Ctrl-C and SIGTERM handling, resuming. The same
command run again resumes the sweep: a seed whose final evaluation is of its last weights and whose
budget is spent is skipped, a checkpointed one is resumed (``--resume``), one that died before its first
checkpoint is started again (``--force``), a missing one is started. With ``--jobs J``, J seeds train at
once, each with ``cores // J`` torch threads (``OMP_NUM_THREADS``) and, on the shm backend (or a local
Ray), as many env workers (actors) unless ``--num-workers`` is given, so together they use the cores
once; their output goes to ``OUT/logs/seed-S.log``. With one job the seeds train one after the other in
this terminal. Checkpointed seeds must have been trained with the command's configuration (as
``--resume`` checks), finished ones too: a rerun with another agent or options is refused, not skipped.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from metarl.errors import UsageError

SEED_DIR = "seed-{}"
"""A seed's run directory inside the sweep's folder."""


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``; ``"0,2,7-8"`` -> ``[0, 2, 7, 8]``; a one-line error otherwise."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise UsageError(f"--seeds {text!r}: give whole numbers and ranges, e.g. --seeds 0-4 or --seeds 0,2,5")
        seeds += range(int(m[1]), int(m[2] or m[1]) + 1)
    if len(set(seeds)) < len(seeds):
        raise UsageError(f"--seeds {text!r} names a seed twice: give each once, e.g. --seeds 0-4")
    if len(seeds) > 1000:
        raise UsageError(f"--seeds {text!r} is {len(seeds)} seeds: give at most 1000")
    return seeds


@dataclass
class SeedJob:
    """What the sweep does with one seed."""

    seed: int
    out: Path
    action: str
    """``"start"`` (new run), ``"restart"`` (``--force``), ``"resume"`` or ``"skip"`` (finished)."""
    why: str = ""


def plan(out: Path, seeds: list[int], *, force: bool = False, steps: int | None = None,
         max_minutes: float | None = None, final_eval: bool = True, eval_tasks: int | None = None,
         expect: dict | None = None) -> list[SeedJob]:
    """Each seed's action, from what ``OUT/seed-S`` holds (see the module docstring); ``steps``,
    ``max_minutes`` and ``eval_tasks``: this command's budget and final evaluation (None: the run's saved
    ones). ``expect``: the configuration the command gives (:func:`metarl.runs.resume`'s ``expect``, without
    the seed), which every checkpointed seed must have been trained with, finished ones included. A seed
    folder holding something other than a metarl run, or another configuration's run, is a one-line error,
    before anything runs."""
    jobs = []
    for seed in seeds:
        d = out / SEED_DIR.format(seed)
        entries = [p for p in d.iterdir() if p.name != "run.lock"] if d.is_dir() else []
        if d.exists() and not d.is_dir() or entries and not (d / "config.json").is_file():
            raise UsageError(f"{d} exists and is not a metarl run directory: move it away, or give another --out")
        if not entries:
            jobs.append(SeedJob(seed, d, "start"))
        elif force:
            jobs.append(SeedJob(seed, d, "restart", "--force"))
        elif not (d / "checkpoint.pt").is_file():
            jobs.append(SeedJob(seed, d, "restart", "stopped before its first checkpoint"))
        else:
            if expect is not None:
                _check_config(d, {**expect, "seed": seed})
            done = _finished(d, steps, max_minutes, final_eval, eval_tasks)
            jobs.append(SeedJob(seed, d, "skip", done) if done else SeedJob(seed, d, "resume"))
    return jobs


def _check_config(run: Path, expect: dict) -> None:
    """A one-line error unless the run in ``run`` was trained as ``expect`` says (the checks ``--resume``
    makes), so a sweep rerun with another agent or options neither skips seeds trained otherwise (and
    reports them as this configuration) nor fails seed by seed."""
    from metarl import runs

    try:
        runs._resumed_config(runs.load_config(run), run, expect, None, True, {})
    except UsageError as e:
        raise UsageError(str(e).replace("--resume continues", "--seeds would skip or resume", 1)) from None


def _finished(run: Path, steps: int | None, max_minutes: float | None, final_eval: bool,
              eval_tasks: int | None = None) -> str:
    """Why the run in ``run`` needs nothing more (``""`` if it does): its budget is spent and, unless
    ``final_eval`` is off, its final evaluation file (``eval.json``, or ``eval-firstK.json`` with
    ``eval_tasks`` or the saved ``--eval-tasks`` K) is of its last logged weights; another evaluation of
    them (``metarl eval`` with other options) is not the final one."""
    try:
        saved = json.loads((run / "config.json").read_text())["trainer"]
        rows = list(csv.DictReader((run / "progress.csv").open()))
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    trained = max((int(r["step"]) for r in rows), default=0)
    elapsed = max((float(r["value"]) for r in rows if r["key"] == "time/elapsed_s"), default=0.0)
    limit = 60 * max_minutes if max_minutes is not None else saved.get("max_seconds")
    if trained < (steps or saved.get("steps") or 0) and not (limit and elapsed >= limit):
        return ""
    if not final_eval:
        return f"trained {trained:,} env steps"
    k = eval_tasks if eval_tasks is not None else saved.get("final_eval_tasks_per_class")
    for path in [run / "eval.json", *([run / f"eval-first{k}.json"] if k else [])]:
        try:
            if json.loads(path.read_text()).get("trained_env_steps") == trained:
                return f"trained {trained:,} env steps and evaluated ({path.name})"
        except (OSError, ValueError, AttributeError):
            continue
    return ""


def cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_job(jobs: int) -> int:
    """Torch threads (and shm workers) for each of ``jobs`` concurrent seeds: this process's cores // jobs."""
    return max(1, cores() // jobs)


def command(train_flags: list[str], job: SeedJob) -> list[str]:
    """The ``metarl train`` process for ``job``: ``train_flags`` (the configuration, without ``--seed``,
    ``--out``, ``--resume`` or ``--force``) plus the seed, its folder and how to start it."""
    how = {"start": [], "restart": ["--force"], "resume": ["--resume"]}[job.action]
    return [sys.executable, "-m", "metarl", "train", *train_flags, "--seed", str(job.seed), "--out", str(job.out),
            *how]


@dataclass
class SweepResult:
    """Exit status per seed (0 for a skipped one) and whether the sweep was stopped."""

    codes: dict[int, int]
    stopped: int = 0
    """The signal (SIGINT / SIGTERM) that stopped the sweep, 0 if none did."""

    @property
    def finished(self) -> list[int]:
        return [s for s, c in self.codes.items() if c == 0]


def run(train_flags: list[str], todo: list[SeedJob], jobs: int = 1, log=print) -> SweepResult:
    """Run ``todo``'s seeds as ``metarl train`` processes, ``jobs`` at a time (see the module docstring).
    Ctrl-C or SIGTERM stops starting seeds and lets the running ones save their checkpoints (SIGTERM is
    passed on to them; Ctrl-C reaches them from the terminal). A seed failing with a usage error (exit 2)
    stops the sweep too: the others would fail alike."""
    codes = {j.seed: 0 for j in todo if j.action == "skip"}
    queue = [j for j in todo if j.action != "skip"]
    flags, env = job_settings(train_flags, jobs)
    running: dict[int, tuple[subprocess.Popen, float, Path | None]] = {}
    state = {"stopped": 0}

    def on_term(signum, frame):
        state["stopped"] = signal.SIGTERM
        for proc, _, _ in running.values():
            proc.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None
    try:
        while queue or running:
            try:
                while queue and len(running) < jobs and not state["stopped"]:
                    job = queue.pop(0)
                    proc, path = _start(flags, job, jobs, env, log)
                    running[job.seed] = (proc, time.monotonic(), path)
                _reap(running, codes, log)
                if any(c == 2 for c in codes.values()) and not state["stopped"]:
                    state["stopped"] = -1  # a usage error: start no more seeds
                time.sleep(0.2 if running else 0)
            except KeyboardInterrupt:  # the children got the Ctrl-C too: wait for their checkpoints
                state["stopped"] = signal.SIGINT
                queue.clear()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return SweepResult(codes, max(state["stopped"], 0))


def job_settings(train_flags: list[str], jobs: int) -> tuple[list[str], dict | None]:
    """The flags and environment each seed's process gets when ``jobs`` train at once: ``cores // jobs``
    torch threads, and as many shm workers (or local Ray actors) unless the flags give ``--num-workers``;
    with one job, the flags as given and this process's environment (None)."""
    flags = list(train_flags)
    if jobs == 1:
        return flags, None
    threads = threads_per_job(jobs)
    backend = _flag(flags, "--backend")
    local_ray = backend == "ray" and _flag(flags, "--ray-address") is None  # each seed starts its own Ray
    if _flag(flags, "--num-workers") is None and (backend == "shm" or local_ray):
        flags += ["--num-workers", str(threads)]
    return flags, {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _start(flags: list[str], job: SeedJob, jobs: int, env: dict | None, log) -> tuple[subprocess.Popen, Path | None]:
    """The seed's process, and its log file (None with one job: it writes to this terminal)."""
    cmd = command(flags, job)
    why = f" ({job.why})" if job.why else ""
    if jobs == 1:
        log(f"seed {job.seed}: {job.action}{why}: {shlex.join(['python', *cmd[1:]])}")
        return subprocess.Popen(cmd), None
    logs = job.out.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"seed-{job.seed}.log"
    with path.open("a") as f:  # a resumed seed appends to its log
        log(f"seed {job.seed}: {job.action}{why}, log {path}")
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    return proc, path


def _reap(running: dict, codes: dict[int, int], log) -> None:
    for seed, (proc, start, path) in list(running.items()):
        code = proc.poll()
        if code is None:
            continue
        del running[seed]
        codes[seed] = code
        what = "finished" if code == 0 else "stopped" if code in (130, 143) else "failed"
        last = _last_error(path) if code not in (0, 130, 143) else ""
        log(f"seed {seed}: {what} (exit {code}) after {(time.monotonic() - start) / 60:.1f} min"
            + (f": {last}" if last else ""))


def _last_error(path: Path | None) -> str:
    """The last ``error:`` line of a seed's log (what a failing ``metarl train`` printed last)."""
    try:
        lines = path.read_text(errors="replace").splitlines() if path else []
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else (lines[-1] if lines else "")


def _flag(flags: list[str], name: str) -> str | None:
    for i, f in enumerate(flags):
        if f == name and i + 1 < len(flags):
            return flags[i + 1]
        if f.startswith(name + "="):
            return f.split("=", 1)[1]
    return None


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()

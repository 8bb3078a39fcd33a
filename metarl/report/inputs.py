"""What `metarl report` reads: run directories, evaluation JSONs and results files, as one
:class:`RunResult` per training run and evaluation.

Accepted inputs:

- a run directory (``config.json``): each of its evaluation files (``eval.json``, and variants such as
  ``eval-first10.json`` or ``eval-inner_lr=0.json``) with the learning curves of its ``progress.csv``;
- a folder: each run directory in it (a seed sweep's ``OUT/``) and each JSON file (``benchmarks/results/``);
- an evaluation JSON (``metarl eval`` / ``metarl train``); the agent comes from the ``config.json`` beside
  it, if any (``metarl eval --sb3``'s: ``sb3-<algorithm>``, e.g. ``sb3-PPO``, with the model's training steps);
- a results file of ``benchmarks/learning.py`` (a ``seeds`` list of per-seed evaluation summaries) or of
  ``benchmarks/from_run.py`` (a run's ``config``, ``evaluations`` and thinned ``training_curve``), or
  an older file holding one ``eval`` object (its agent read from the file name).

Other JSON files (speed benchmarks, studies) hold no held-out evaluation and are skipped with a note.

The **label** names the configuration: the input's name with a trailing seed (``-s1``, ``seed-3``)
removed, so ``X.json`` and ``X-s1.json``, or a sweep's ``OUT/seed-0`` ... ``OUT/seed-4`` (label ``OUT``'s
name), pool as seeds of one configuration; a leading ``<benchmark>-<agent>`` is dropped
(``ML1-reach-v3-rl2-trial13.json``: ``trial13``), and an evaluation variant adds ``[first10]``,
``[inner_lr=0]``.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metarl.errors import UsageError

CURVE_KEYS = ("eval/success_rate", "eval/pre_success_rate", "train/success_rate", "adapt/post_success_rate",
              "adapt/later_success_rate", "time/elapsed_s")
"""``progress.csv`` metrics the report reads (held-out and training success, training seconds)."""


@dataclass
class RunResult:
    """One evaluation of one training run."""

    source: str
    """Where it was read: a path, and the evaluation file inside a results file or run directory."""
    benchmark: str
    """The benchmark's label, e.g. ``"ML1/reach-v3"`` or ``"ML10"``."""
    agent: str
    label: str
    seed: int | None
    """The training seed (it also drew the benchmark's held-out tasks)."""
    reward_version: str | None
    per_class: dict[str, dict[str, float]]
    """Held-out class -> ``success``, ``pre_success`` (first adaptation episode) and ``num_tasks``."""
    tasks_digest: str | None = None
    env_steps: int | None = None
    """Env steps the evaluated weights trained for."""
    train_seconds: float | None = None
    agent_options: dict = field(default_factory=dict)
    env_options: dict = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """Metric -> [(env steps, value)] from ``progress.csv`` (or a results file's thinned curve)."""


def load(paths: list[Path]) -> tuple[list[RunResult], list[str]]:
    """Every evaluation in ``paths``; also the inputs skipped, each with why. A path that doesn't exist,
    or a folder holding no run, is a one-line error."""
    runs: list[RunResult] = []
    skipped: list[str] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            runs += _from_folder(path, skipped)
        elif path.is_file():
            runs += _from_file(path, skipped)
        else:
            raise UsageError(f"{path} does not exist: give run directories, evaluation JSONs or results files")
    return runs, skipped


def seedless(name: str) -> str:
    """``name`` without a trailing seed: ``ML1-reach-v3-rl2-s1`` -> ``ML1-reach-v3-rl2``, ``seed-3`` -> ``""``."""
    return re.sub(r"(^|[-_.])(s|seed)[-_]?\d+$", "", name)


def _from_folder(path: Path, skipped: list[str]) -> list[RunResult]:
    if (path / "config.json").is_file():
        runs = _from_run_dir(path)
        if not runs:
            skipped.append(f"{path}: no evaluation file yet (eval*.json)")
        return runs
    inner = sorted(p for p in path.iterdir() if (p / "config.json").is_file())
    files = sorted(p for p in path.glob("*.json") if p.is_file())
    if not inner and not files:
        raise UsageError(f"{path} holds no run directory (config.json) and no JSON file: give run directories, "
                         "a sweep's folder, evaluation JSONs or results files")
    return [r for p in inner for r in _from_folder(p, skipped)] + [r for p in files for r in _from_file(p, skipped)]


def _label_of_dir(path: Path) -> str:
    return seedless(path.name) or path.resolve().parent.name


def _from_run_dir(path: Path) -> list[RunResult]:
    config = _read_json(path / "config.json")
    curves = read_curves(path / "progress.csv")
    out = []
    for file in sorted(path.glob("eval*.json")):
        ev = _read_json(file)
        if isinstance(ev, dict) and "per_task" in ev:
            out.append(_from_eval(ev, file, config, _label_of_dir(path), variant(file.name), curves))
    return out


def variant(name: str) -> str:
    """What an evaluation file's name says differs from the official evaluation: ``eval.json`` -> ``""``,
    ``eval-first10.json`` -> ``"first10"``."""
    stem = name[:-5] if name.endswith(".json") else name
    return stem[len("eval-"):] if stem.startswith("eval-") else ""


def _from_file(path: Path, skipped: list[str]) -> list[RunResult]:
    obj = _read_json(path)
    if not isinstance(obj, dict):
        skipped.append(f"{path}: not a JSON object")
        return []
    label = seedless(path.stem) or path.stem
    if "per_task" in obj:  # an evaluation JSON
        config = _read_json(path.parent / "config.json") if (path.parent / "config.json").is_file() else None
        curves = read_curves(path.parent / "progress.csv") if config else {}
        return [_from_eval(obj, path, config, _label_of_dir(path.parent) if config else label,
                           variant(path.name) if config else "", curves)]
    if isinstance(obj.get("seeds"), list) and isinstance(obj.get("settings"), dict):
        runs = [_from_learning_row(obj["settings"], row, path, label) for row in obj["seeds"]
                if isinstance(row, dict) and isinstance(row.get("per_task"), dict)]
        if not runs:
            skipped.append(f"{path}: its seeds hold no held-out evaluation (per_task)")
        return runs
    if isinstance(obj.get("evaluations"), dict) and isinstance(obj.get("config"), dict):
        curve = _thinned_curve(obj.get("training_curve") or {})
        return [_from_eval(ev, f"{path}:{name}", obj["config"], label, variant(name), curve,
                           obj.get("budget", {}) if name == "eval.json" else {})
                for name, ev in sorted(obj["evaluations"].items())
                if isinstance(ev, dict) and "per_task" in ev]
    if isinstance(obj.get("eval"), dict) and "per_task" in obj["eval"]:  # one evaluation and its training
        bench = obj["eval"].get("benchmark", "?")
        config = {"agent": _agent_in_name(path.stem, bench), "agent_options": obj.get("agent_options")}
        return [_from_eval(obj["eval"], f"{path}:eval", config, label, "",
                           _thinned_curve(obj.get("training_curve") or {}), obj.get("budget") or {})]
    skipped.append(f"{path}: no held-out evaluation in it (not a learning result)")
    return []


def _agent_in_name(stem: str, benchmark: str) -> str:
    """The registered agent named after ``<benchmark>-`` in a file name (``ML1-reach-v3-maml-mb20``:
    ``maml``), for files that record no agent; ``"?"`` if none is."""
    from metarl.registry import agent_names

    rest = stem[len(benchmark.replace("/", "-")) + 1:] if stem.startswith(benchmark.replace("/", "-")) else ""
    names = [a for a in agent_names() if rest == a or rest.startswith(a + "-")]
    return max(names, key=len) if names else "?"


def _from_eval(ev: dict, source: Path | str, config: dict | None, label: str, what: str,
               curves: dict, budget: dict | None = None) -> RunResult:
    """A :class:`RunResult` from an evaluation JSON object and its run's ``config.json`` (if known)."""
    config = config or {}
    trainer = config.get("trainer") or {}
    seed = ev.get("seed", trainer.get("seed"))
    overrides = ev.get("agent_overrides") or {}
    steps = ev.get("trained_env_steps") or (budget or {}).get("env_steps")
    if steps is None and what == "" and curves:
        steps = max((s for points in curves.values() for s, _ in points), default=None)
    elapsed = (budget or {}).get("train_seconds")
    if elapsed is None and what == "" and curves.get("time/elapsed_s"):
        elapsed = curves["time/elapsed_s"][-1][1]
    sb3 = _dict(ev.get("sb3"))  # `metarl eval --sb3`: no config.json, the file names the algorithm
    steps = steps if steps is not None else sb3.get("num_timesteps")
    agent = str(config.get("agent") or (f"sb3-{sb3['algo']}" if sb3.get("algo") else "?"))
    bench = str(ev.get("benchmark") or _benchmark_label(config))
    return RunResult(
        source=str(source), benchmark=bench, agent=agent,
        label=short_label(label, bench, agent) + (f" [{what}]" if what else ""),
        seed=seed if isinstance(seed, int) else None, reward_version=ev.get("reward_version"),
        per_class=_per_class(ev["per_task"], source), tasks_digest=ev.get("tasks_digest") or None,
        env_steps=steps, train_seconds=elapsed,
        agent_options={**_dict(config.get("agent_options")), **_dict(overrides)},
        env_options={**_dict(config.get("env_options")), **_dict(ev.get("env_overrides")),
                     **({"split": ev["split"]} if ev.get("split") else {})},  # `metarl eval --split train`
        curves=curves if what == "" else {})


def _from_learning_row(settings: dict, row: dict, path: Path, label: str) -> RunResult:
    """A seed's row of a ``benchmarks/learning.py`` results file."""
    bench, agent = _benchmark_label(settings), str(settings.get("agent", "?"))
    return RunResult(
        source=f"{path}:seed {row.get('seed')}", benchmark=bench, agent=agent,
        label=short_label(label, bench, agent), seed=row.get("seed"),
        reward_version=row.get("reward_version"), per_class=_per_class(row["per_task"], path),
        tasks_digest=row.get("tasks_digest"), env_steps=row.get("env_steps"),
        train_seconds=row.get("train_seconds"), agent_options=_dict(settings.get("agent_options")),
        env_options=_dict(settings.get("env_options")))


def short_label(label: str, benchmark: str, agent: str) -> str:
    """``label`` without a leading ``<benchmark>-<agent>`` (the table names both already):
    ``ML1-reach-v3-rl2-trial13`` -> ``trial13``; a label that is nothing more is kept whole."""
    prefix = f"{benchmark.replace('/', '-')}-{agent}"
    rest = label[len(prefix):].lstrip("-_") if label.startswith(prefix) else label
    return rest if rest and not rest.startswith("[") else label


def which_tasks(env_options: dict) -> str:
    """``"training"`` for an evaluation on the training tasks (``metarl eval --split train``), else
    ``"held-out"``: how tables name the tasks of a task set."""
    return "training" if env_options.get("split") == "train" else "held-out"


def _benchmark_label(config: dict) -> str:
    name, task = config.get("benchmark", "?"), config.get("task")
    return f"{name}/{task}" if task else str(name)


def _per_class(per_task: dict, source: Path | str) -> dict[str, dict[str, float]]:
    try:
        return {name: {"success": float(row["success_rate"]), "pre_success": float(row["pre_success_rate"]),
                       "num_tasks": int(row.get("num_tasks", 0))} for name, row in sorted(per_task.items())}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UsageError(f"{source}: its per_task entries lack success_rate/pre_success_rate: give files "
                         "written by metarl") from None


def read_curves(path: Path) -> dict[str, list[tuple[int, float]]]:
    """The :data:`CURVE_KEYS` of a ``progress.csv`` (step, key, value rows), sorted by step; {} without
    one or if unreadable."""
    series: dict[str, list[tuple[int, float]]] = {}
    try:
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("key") in CURVE_KEYS:
                    series.setdefault(row["key"], []).append((int(row["step"]), float(row["value"])))
    except (OSError, KeyError, TypeError, ValueError, UnicodeDecodeError):
        return {}
    return {k: sorted(v) for k, v in series.items()}


def _thinned_curve(curve: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """A ``from_run.py`` ``training_curve`` ({step: {key: value}}) as :func:`read_curves` returns it."""
    series: dict[str, list[tuple[int, float]]] = {}
    for step, row in curve.items():
        for key, value in (row or {}).items():
            if key in CURVE_KEYS:
                series.setdefault(key, []).append((int(step), float(value)))
    return {k: sorted(v) for k, v in series.items()}


def _dict(x: Any) -> dict:
    """``x`` if it is a dict (options as recorded), else ``{}`` (older files wrote some as text)."""
    return dict(x) if isinstance(x, dict) else {}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path} is not readable JSON ({e}): give run directories, evaluation JSONs or "
                         "results files") from None

"""Evaluate a trained Meta-World run with Meta-World's own evaluator, next to metarl's evaluation.

``metaworld.evaluation.metalearning_evaluation`` runs the run's Learner (through
:class:`metarl.envs.metaworld.OfficialEvaluatorAdapter`) on upstream's vector env of the held-out
classes, with **one env per held-out class**: upstream counts the first episodes to *finish* per class,
so several envs per class over-count early (often successful) episodes; with one env per class its
count is exact. ``--goals`` goals per class (40 covers ML10/ML45's official set; ML1 has 50).

The metarl number comes from the run's evaluation file (``eval.json`` for the official set, or the one
``--metarl-eval`` names); both are printed with a 95% interval over goals (normal approximation of
the per-goal success mean)::

    python benchmarks/official_eval.py RUN_DIR --goals 40 --out benchmarks/results/ML10-maml-official.json

Evaluation episodes use the agent's own action choice (MAML and RL² sample, as in ``metarl eval``) unless
``--actions mean|sampled`` says otherwise; per class, the two evaluations agree only with the same choice.

Upstream's adapter has limits (no rewards shown during evaluation episodes, so ``prev_reward`` is 0
there; no ``success`` flags in the adaptation rollout): agents that read either (RL²) can score
differently under it. MAML reads neither.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from metarl.errors import UsageError, exit_code
from metarl.provenance import write_result
from metarl.runs import load_trained


def interval(rates: list[float]) -> tuple[float, float]:
    """Mean and 95% half-width (1.96 standard errors) of per-goal success rates."""
    x = np.asarray(rates, dtype=float)
    return float(x.mean()), float(1.96 * x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


def official(run: Path, goals: int, device: str, actions: str = "auto") -> dict:
    """Meta-World's ``metalearning_evaluation`` of the run's weights: overall and per-class success."""
    import metaworld
    from metaworld.evaluation import metalearning_evaluation

    from metarl.envs.metaworld import OfficialEvaluatorAdapter
    from metarl.seeding import seed_everything

    trained = load_trained(run, device)
    cfg, agent = trained.config, trained.agent
    if cfg.benchmark not in ("ML1", "ML10", "ML45"):
        raise UsageError(f"{run} trained on {cfg.benchmark}: the official evaluator takes ML1, ML10 or ML45 runs")
    name = cfg.task if cfg.benchmark == "ML1" else cfg.benchmark
    classes = 1 if cfg.benchmark == "ML1" else 5
    seed_everything(cfg.trainer.seed)
    envs = metaworld.make_ml_envs(name, seed=cfg.trainer.seed, meta_batch_size=classes, total_tasks_per_cls=goals,
                                  split="test", terminate_on_success=False, task_select="pseudorandom",
                                  reward_function_version=trained.benchmark.reward_version or "v2",
                                  max_episode_steps=trained.benchmark.test.horizon)
    start = time.perf_counter()
    adapter = OfficialEvaluatorAdapter(agent.make_learner(), classes, {"auto": None, "mean": True,
                                                                      "sampled": False}[actions])
    try:
        rate, ret, per_class = metalearning_evaluation(adapter, envs, num_evals=goals, adaptation_episodes=10,
                                                       evaluation_episodes=3)
    finally:
        envs.close()
    return {"success_rate": float(rate), "return": float(ret),
            "per_class": {k: float(v) for k, v in sorted(per_class.items())},
            "goals_per_class": goals, "envs_per_class": 1, "seconds": round(time.perf_counter() - start, 1),
            "eval_actions": "mean" if adapter.deterministic else "sampled",
            "trained_env_steps": trained.env_steps}


def ours(path: Path) -> dict:
    """metarl's evaluation file: overall success with its 95% interval over goals, and per class."""
    try:
        e = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"cannot read metarl's evaluation {path} ({err}): run `metarl eval RUN` first, "
                         "or pass --metarl-eval") from None
    rates = [g["success"] for g in e.get("per_goal") or []]
    mean, half = interval(rates) if rates else (e["success_rate"], math.nan)
    by_class: dict[str, list[float]] = {}
    for g in e.get("per_goal") or []:
        by_class.setdefault(g["task"], []).append(g["success"])
    return {"file": str(path), "success_rate": e["success_rate"], "ci95_half_width": half,
            "per_class": {k: v["success_rate"] for k, v in sorted(e.get("per_task", {}).items())},
            "per_class_ci95_half_width": {k: interval(v)[1] for k, v in sorted(by_class.items())},
            "eval_actions": e.get("eval_actions"), "num_tasks": len(rates) or None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a metarl train run directory (ML1/ML10/ML45)")
    p.add_argument("--goals", type=int, default=40, help="goals per held-out class (default 40: the official set)")
    p.add_argument("--metarl-eval", type=Path, help="metarl's evaluation JSON (default RUN/eval.json)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--actions", choices=("auto", "mean", "sampled"), default="auto",
                   help="evaluation-episode actions in upstream's loop (auto: the agent's choice, as `metarl eval` "
                        "makes it; compare with a metarl evaluation made with the same)")
    p.add_argument("--out", type=Path, required=True, help="results JSON to write")
    args = p.parse_args()
    if args.goals < 2:
        raise UsageError(f"--goals {args.goals}: give at least 2 goals per class, e.g. --goals 40")
    if not args.out.parent.is_dir():
        raise UsageError(f"--out {args.out}: folder {args.out.parent} does not exist")
    mine = ours(args.metarl_eval or args.run / "eval.json")
    theirs = official(args.run, args.goals, args.device, args.actions)
    if mine["eval_actions"] not in (None, theirs["eval_actions"]):
        print(f"warning: metarl's evaluation used {mine['eval_actions']} actions and this one "
              f"{theirs['eval_actions']}: not a like-for-like comparison (give --actions, or evaluate with "
              "`metarl eval --actions`)",
              file=sys.stderr)
    diff = theirs["success_rate"] - mine["success_rate"]
    agree = bool(abs(diff) <= mine["ci95_half_width"]) if not math.isnan(mine["ci95_half_width"]) else None
    per_class_agree = {c: bool(abs(theirs["per_class"][c] - mine["per_class"][c]) <= half)
                       for c, half in mine["per_class_ci95_half_width"].items()
                       if c in theirs["per_class"] and not math.isnan(half)}
    write_result(args.out, {"run": str(args.run), "metarl": mine, "metaworld_official": theirs,
                            "difference": diff, "within_metarl_ci95": agree,
                            "per_class_within_metarl_ci95": per_class_agree})
    print(f"metarl   {mine['success_rate']:.3f} ± {mine['ci95_half_width']:.3f} (95%, {mine['num_tasks']} goals)")
    print(f"official {theirs['success_rate']:.3f} ({args.goals} goals per class, one env per class)")
    for cls in theirs["per_class"]:
        print(f"  {cls:24s} metarl {mine['per_class'].get(cls, math.nan):.3f}  official {theirs['per_class'][cls]:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

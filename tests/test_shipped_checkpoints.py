"""The checkpoints shipped under benchmarks/checkpoints/ load and evaluate from a fresh clone, and reproduce
the quick evaluation committed beside them (``eval-first1.json``: the first held-out goal per class)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from metarl.runs import evaluate_run

SHIPPED = Path(__file__).resolve().parent.parent / "benchmarks" / "checkpoints"


@pytest.mark.metaworld
@pytest.mark.parametrize("run", ["ML10-maml-is1-s0"])
def test_a_shipped_checkpoint_reproduces_its_quick_evaluation(run, tmp_path):
    src = SHIPPED / run
    shutil.copytree(src, tmp_path / run)  # the shipped folder stays untouched
    ours = evaluate_run(tmp_path / run, eval_tasks=1, device="cpu", out=tmp_path / "eval.json").summary
    committed = json.loads((src / "eval-first1.json").read_text())
    assert ours["trained_env_steps"] == committed["trained_env_steps"] > 0
    assert ours["tasks_digest"] == committed["tasks_digest"]
    assert [g["task"] for g in ours["per_goal"]] == [g["task"] for g in committed["per_goal"]]
    for key in ("success", "pre_success"):
        assert [g[key] for g in ours["per_goal"]] == [g[key] for g in committed["per_goal"]]
    for key in ("return", "pre_return"):
        assert [g[key] for g in ours["per_goal"]] == pytest.approx([g[key] for g in committed["per_goal"]], rel=1e-4)

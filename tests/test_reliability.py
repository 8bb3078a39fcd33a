"""Runs that survive what clusters and careless users do to them: each guarantee of
``docs/guarantees.md`` and the test behind it.

Runnable alone (``pytest tests/test_reliability.py``; ``--full`` adds the tests that start processes).
The faults come from ``tests/faulty.py``: the ``Faulty`` task family and the ``faulty`` agent, registered
here only. Every run is tiny (4 slots x 4-step episodes: 16 env steps an iteration).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metarl.cli import main
from tests import faulty

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def plugins():
    faulty.register()


def train(out: Path, *extra: str, steps: int = 32, agent: str = "faulty") -> list[str]:
    """The argv of a tiny Faulty run in ``out`` (no final evaluation unless ``extra`` drops it)."""
    return ["train", "Faulty", "--agent", agent, "--num-envs", "4", "--steps", str(steps), "--out", str(out),
            *extra]


def one_line(err: str) -> str:
    """``err`` is one ``error:`` line (no traceback): return it."""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def run_process(argv: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """``metarl ARGV`` with the fault plug-in, in a process of its own (from the repository root)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tests.faulty", *argv], cwd=kwargs.pop("cwd", ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


# --- evaluation files ------------------------------------------------------------------------------------


def test_eval_of_a_read_only_run_dir_refuses_before_evaluating_and_out_writes_elsewhere(tmp_path, capsys,
                                                                                        monkeypatch):
    from metarl import runs

    out = tmp_path / "run"
    assert main(train(out, "--no-final-eval")) == 0
    evaluated = []
    real = runs.evaluate_agent
    monkeypatch.setattr(runs, "evaluate_agent", lambda *a, **k: evaluated.append(1) or real(*a, **k))
    faulty.read_only(monkeypatch, out)
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 2
    assert "--out" in one_line(capsys.readouterr().err) and not evaluated  # refused before the work
    target = tmp_path / "elsewhere" / "eval.json"
    target.parent.mkdir()
    assert main(["eval", str(out), "--json", "--out", str(target)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(target.read_text()) == printed and printed["trained_env_steps"] == 32
    assert not list(out.glob("eval*.json"))

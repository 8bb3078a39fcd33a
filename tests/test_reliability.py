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
import warnings
from pathlib import Path

import numpy as np
import pytest

from metarl.cli import main
from tests import faulty

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def plugins():
    faulty.register()
    faulty.STEPS["count"] = 0  # the faults' clock starts with each test


def train(out: Path, *extra: str, steps: int = 32, agent: str = "faulty") -> list[str]:
    """The argv of a tiny Faulty run in ``out`` (no final evaluation unless ``extra`` drops it)."""
    return ["train", "Faulty", "--agent", agent, "--num-envs", "4", "--steps", str(steps), "--out", str(out),
            *extra]


def one_line(err: str) -> str:
    """``err`` is one ``error:`` line (no traceback): return it."""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def error_line(err: str) -> str:
    """A run's stderr ends with one ``error:`` line, with no traceback before it: return that line."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error: ") for line in lines) == 1, err
    return lines[-1]


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
    assert main(["eval", str(out), "--json", "--out", str(target)]) == 0  # an evaluation file: written again
    capsys.readouterr()
    weights = (out / "checkpoint.pt").read_bytes()
    for precious in ("checkpoint.pt", "config.json", "progress.csv"):  # never replaced by an evaluation
        assert main(["eval", str(out), "--out", str(out / precious)]) == 2
        assert "exists and is not an evaluation file" in one_line(capsys.readouterr().err)
    assert (out / "checkpoint.pt").read_bytes() == weights


# --- the run-directory lock ------------------------------------------------------------------------------


def test_a_run_dir_in_use_is_refused_in_one_line_naming_the_process(tmp_path, capsys):
    import socket

    from metarl import runs

    out = tmp_path / "run"
    assert main(train(out, "--no-final-eval")) == 0
    checkpoint = (out / "checkpoint.pt").read_bytes()
    run = runs.resume(out, steps=64, final_eval=False)  # holds the run as a training process does
    try:
        capsys.readouterr()
        for argv in (train(out, "--force"), train(out, "--resume", steps=64), train(out, "--resume", steps=64)):
            assert main(argv) == 2
            err = one_line(capsys.readouterr().err)
            assert f"in use by pid {os.getpid()} on host {socket.gethostname()} (`" in err and "`, since " in err
        assert main(["eval", str(out)]) == 2  # an evaluation file is not written into a run that trains
        assert "--out FILE" in one_line(capsys.readouterr().err)
        assert main(["eval", str(out), "--out", str(tmp_path / "now.json")]) == 0  # elsewhere: fine
        assert (out / "checkpoint.pt").read_bytes() == checkpoint and not list(out.glob("eval*.json"))
    finally:
        run.close()
    capsys.readouterr()
    assert main(train(out, "--resume", steps=64)) == 0  # released
    assert "note:" not in capsys.readouterr().err and not (out / "run.lock").exists()


def test_evaluations_share_the_lock_and_training_refuses_while_one_writes_into_the_run(tmp_path, capsys):
    from metarl.runlock import RunLock

    out = tmp_path / "run"
    assert main(train(out, "--no-final-eval")) == 0
    with RunLock(out, shared=True).acquire("write an evaluation into"):
        assert main(["eval", str(out), "--eval-tasks", "1"]) == 0  # evaluations share it
        capsys.readouterr()
        assert main(train(out, "--resume", steps=64)) == 2
        err = one_line(capsys.readouterr().err)
        assert "in use by `metarl eval`" in err
        if Path("/proc/locks").exists():  # Linux: the evaluations' pids, to find one that hangs
            assert f"`metarl eval` (pid {os.getpid()}: another process evaluating it)" in err
    assert main(train(out, "--resume", steps=64)) == 0


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_note(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train(out, "--no-final-eval")) == 0
    # what a `kill -9`ed trainer leaves: its lock file (the kernel has dropped the lock itself)
    (out / "run.lock").write_text(json.dumps({"pid": 4_000_000, "host": "node17", "since": "2026-12-07 03:00:00",
                                              "command": "metarl train Faulty --agent faulty"}))
    capsys.readouterr()
    assert main(train(out, "--resume", "--no-final-eval", steps=64)) == 0
    err = capsys.readouterr().err
    assert "note: " in err and "pid 4000000 on host node17" in err and "taken over" in err
    assert not (out / "run.lock").exists()


# --- SIGTERM ---------------------------------------------------------------------------------------------


@pytest.mark.spawn
def test_sigterm_saves_the_iteration_and_exits_143_with_the_resume_command_also_while_evaluating(tmp_path):
    import torch

    out = tmp_path / "run"  # SIGTERM at the 3rd meta-update; checkpoints every 10 iterations by default
    done = run_process(train(out, "--agent-opt", "sigterm_at=3", steps=1600), cwd=tmp_path)
    assert done.returncode == 143 and "Traceback" not in done.stderr, done.stderr
    assert "SIGTERM: stopping after this iteration" in done.stderr and "--resume" in done.stderr
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 3 and not (out / "run.lock").exists()
    # SIGTERM during the final evaluation (env step 40: training takes the first 32): the trained weights
    # are saved, no evaluation is written
    out = tmp_path / "evaluated"
    done = run_process(train(out, "--env-opt", "sigterm_at=40", steps=32), cwd=tmp_path)
    assert done.returncode == 143 and "Traceback" not in done.stderr, done.stderr
    assert "during the final evaluation" in done.stderr and not list(out.glob("eval*.json"))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["trainer"]["env_steps"] == 32
    # and during `metarl eval`
    done = run_process(["eval", str(out), "--env-opt", "sigterm_at=3"], cwd=tmp_path)
    assert (done.returncode, done.stderr.strip()) == (143, "terminated"), done.stderr
    assert not (out / "run.lock").exists() and not list(out.glob("eval*.json"))


def test_a_second_sigterm_quits_at_once_and_the_handlers_are_restored():
    import signal
    from types import SimpleNamespace

    from metarl.errors import Terminated
    from metarl.stopping import stop_on_signals

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # what a fresh process has (another test's library may
    # have left its own handler, e.g. ray.init's, which stop_on_signals rightly leaves alone)
    trainer = SimpleNamespace(interrupted=False, stop_signal=None, run_dir=None)
    with pytest.raises(Terminated), stop_on_signals(trainer):
        os.kill(os.getpid(), signal.SIGTERM)  # the first: stop after the iteration in progress
        assert trainer.interrupted and trainer.stop_signal == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)  # the second: at once, unsaved
        pytest.fail("the second SIGTERM did not stop the block")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# --- env workers that die --------------------------------------------------------------------------------


@pytest.mark.spawn
def test_shm_restarts_are_limited_per_hour_and_each_one_is_reported(monkeypatch):
    import functools
    import warnings

    from metarl.types import Task
    from metarl.vector import shm

    clock = [0.0]
    monkeypatch.setattr(shm, "_now", lambda: clock[0], raising=False)
    envs = shm.SharedMemoryVectorEnv(functools.partial(faulty.FaultyEnv, die_at=2), num_envs=1, num_workers=1,
                                     in_parent=False, max_restarts=1)  # every worker dies at its 2nd step
    try:
        envs.set_attr("task", [Task("faulty-goal", 0, "train", (1.0, 0.0))])
        envs.reset()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")  # Python's own filter: shows a repeated text once
            for hours in (0, 2, 4):  # a crash every two hours: one restart in any hour, never too many
                clock[0] = 3600.0 * hours
                for _ in range(2):
                    envs.step(np.zeros((1, 2)))
        assert len([w for w in caught if "restarted" in str(w.message)]) == 3
        with pytest.raises(shm.WorkerError, match="after 1 restarts within an hour"):
            for _ in range(2):  # a second crash within the hour
                envs.step(np.zeros((1, 2)))
    finally:
        envs.close()


@pytest.mark.spawn
def test_training_that_loses_its_env_workers_saves_a_checkpoint_and_ends_in_one_line(tmp_path):
    import torch

    out = tmp_path / "run"  # each worker life dies at its 20th env step (its 2 slots step 8 an iteration)
    done = run_process(train(out, "--backend", "shm", "--num-workers", "2", "--env-opt", "die_at=20", steps=1600),
                       cwd=tmp_path)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert err[-1].startswith("error: env worker for slots") and "after 3 restarts within an hour" in err[-1]
    assert len([line for line in err if "restarted (restart" in line]) == 3  # each restart reported
    state = torch.load(out / "checkpoint.pt", weights_only=True)  # never reached --checkpoint-every 10
    assert f"checkpoint saved at {state['trainer']['env_steps']:,} env steps" in err[-1] and "--resume`" in err[-1]
    assert 2 <= state["trainer"]["iteration"] < 10


def test_a_retried_trial_replays_the_random_draws_of_the_failed_attempt():
    import random

    import torch

    from metarl.rollout import WorkerRestarted, retry_trial

    def draws():  # what a Learner and a plug-in env draw from the global generators during a trial
        return torch.rand(3).tolist(), np.random.rand(2).tolist(), random.random()

    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    uninterrupted = [draws(), draws()]
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    attempts = []

    def trial():
        attempts.append(draws())
        if len(attempts) == 1:  # a worker restart lost a slot's episodes: collected again
            raise WorkerRestarted("slot(s) [1] lost their episodes to a worker restart")
        return attempts[-1]

    with pytest.warns(RuntimeWarning, match="collecting the trial again"):
        assert retry_trial(trial, "training iteration 1") == uninterrupted[0]
    assert draws() == uninterrupted[1]  # and the run goes on as if nothing had failed


@pytest.mark.spawn
def test_a_run_that_recovered_from_a_worker_crash_equals_one_that_never_crashed(tmp_path):
    import torch

    from metarl import runs
    from metarl.trainer import TrainerConfig

    def trained(out: Path, **env_options) -> dict:
        config = runs.RunConfig("Faulty", "faulty", env_options=env_options, trainer=TrainerConfig(
            steps=80, num_envs=4, backend="shm", num_workers=2, final_eval=False, progress=False))
        runs.create(config, out).train()
        return torch.load(out / "checkpoint.pt", weights_only=True)

    with pytest.warns(RuntimeWarning, match="restarted|collecting the trial again"):  # one worker dies once
        crashed = trained(tmp_path / "crashed", die_at=20, die_once=str(tmp_path / "died"))
    assert (tmp_path / "died").exists()
    clean = trained(tmp_path / "clean")
    assert torch.equal(crashed["algorithm"]["weight"], clean["algorithm"]["weight"])
    assert torch.equal(crashed["rng"]["torch"], clean["rng"]["torch"])


@pytest.mark.spawn
def test_async_workers_that_die_or_hang_end_in_one_line_and_sigterm_to_the_group_stops_cleanly(tmp_path):
    import functools

    import torch

    from metarl.types import Task
    from metarl.vector import shm

    out = tmp_path / "run"  # each worker steps one slot, 4 steps an iteration: dies in the 3rd iteration
    done = run_process(train(out, "--backend", "async", "--env-opt", "die_at=10", steps=1600), cwd=tmp_path, timeout=90)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert err[-1].startswith("error: async env worker for slot ") and "died (exit code -9)" in err[-1]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 2
    # a worker that stops answering: gymnasium's wait had no timeout
    from metarl.vector.asyncenv import CheckedAsyncVectorEnv

    envs = CheckedAsyncVectorEnv([functools.partial(faulty.FaultyEnv, hang_at=2)] * 2, step_timeout=1.0)
    envs.set_attr("task", [Task("faulty-goal", 0, "train", (1.0, 0.0))] * 2)
    envs.reset()
    envs.step(np.zeros((2, 2)))
    with pytest.raises(shm.WorkerError, match="gave no answer within 1 s"):
        envs.step(np.zeros((2, 2)))
    envs.close()
    # a worker that dies after the poll saw its pipe ready (a closed pipe polls ready): the read's EOF
    envs = CheckedAsyncVectorEnv([faulty.FaultyEnv, functools.partial(faulty.FaultyEnv, hang_at=1)])
    envs.set_attr("task", [Task("faulty-goal", 0, "train", (1.0, 0.0))] * 2)
    envs.reset()
    envs.step_async(np.zeros((2, 2)))  # slot 1's worker takes the step and stops answering
    envs._poll_pipe_envs = lambda timeout=None: True  # the poll has passed; then the worker dies
    envs.processes[1].kill()
    envs.processes[1].join()
    with pytest.raises(shm.WorkerError, match=r"slot 1 died \(exit code -9\)"):
        envs.step_wait()
    assert envs.closed and not any(process.is_alive() for process in envs.processes)
    # an env's own ConnectionError is the env's error, not a dead worker
    envs = CheckedAsyncVectorEnv([functools.partial(faulty.FaultyEnv, connection_error_at=1)] * 2)
    envs.set_attr("task", [Task("faulty-goal", 0, "train", (1.0, 0.0))] * 2)
    envs.reset()
    with warnings.catch_warnings(), pytest.raises(ConnectionError, match="simulator socket reset"):
        warnings.simplefilter("ignore")  # gymnasium logs each worker's error, with its traceback, as a warning
        envs.step(np.zeros((2, 2)))
    envs.close()
    # SIGTERM to the whole process group (the workers too), as a scheduler sends it
    out = tmp_path / "terminated"
    done = run_process(train(out, "--backend", "async", "--agent-opt", "sigterm_at=3", "--agent-opt",
                             "sigterm_group=True", steps=1600), cwd=tmp_path, start_new_session=True)
    assert done.returncode == 143 and "Traceback" not in done.stderr, done.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 3


# --- full and read-only disks ----------------------------------------------------------------------------


def test_a_full_disk_after_start_up_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    import errno
    import io

    import torch

    from metarl import checkpoint
    from metarl.logging import CSVWriter

    out = tmp_path / "run"
    real_save, saves = torch.save, []

    def save(obj, f, *args, **kwargs):  # the second checkpoint file runs out of space half-way
        saves.append(not isinstance(f, io.BytesIO))  # not the start-up's round trip in memory
        if sum(saves) == 2 and saves[-1]:
            f.write(b"\x00" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    assert main(train(out, "--checkpoint-every", "1", steps=64)) == 1
    err = error_line(capsys.readouterr().err)
    assert "No space left on device" in err and "still holds the last one written whole, at 16 env steps" in err
    assert "--resume`" in err  # the command to go on with
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert checkpoint.load(out / "checkpoint.pt")["trainer"]["env_steps"] == 16
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary files left
    # the metrics file fails instead: one line, and the iterations done are saved
    real_write, rows = CSVWriter.write, []

    def write(self, step, metrics):
        rows.append(step)
        if len(rows) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "progress.csv"))
        real_write(self, step, metrics)

    monkeypatch.setattr(CSVWriter, "write", write)
    assert main(train(out, "--resume", "--checkpoint-every", "10", steps=128)) == 1
    err = error_line(capsys.readouterr().err)
    assert f"could not write the metrics to {out / 'progress.csv'} (No space left on device)" in err
    assert "checkpoint saved at 64 env steps" in err and not (out / "run.lock").exists()  # resumed at 16


def test_a_read_only_run_dir_is_refused_in_one_line_by_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(train(out, "--no-final-eval")) == 0
    faulty.read_only(monkeypatch, out)
    capsys.readouterr()
    assert main(train(out, "--resume", steps=64)) == 2
    assert "Read-only file system" in one_line(capsys.readouterr().err)


@pytest.mark.spawn
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps (Linux)")
def test_killing_the_process_group_leaves_nothing_in_dev_shm(tmp_path):
    import signal
    import time

    script = tmp_path / "hold.py"  # an shm vector env in mid-run, then waiting to be killed
    script.write_text(
        "import functools, sys, time\nimport numpy as np\n"
        "from metarl.types import Task\nfrom metarl.vector.shm import SharedMemoryVectorEnv\nfrom tests import faulty\n"
        "if __name__ == '__main__':\n"
        "    envs = SharedMemoryVectorEnv(functools.partial(faulty.FaultyEnv), 4, 2, in_parent=False)\n"
        "    envs.set_attr('task', [Task('faulty-goal', i, 'train', (1.0, 0.0)) for i in range(4)])\n"
        "    envs.reset(seed=0)\n    envs.step(np.zeros((4, 2)))\n"
        "    print(*[p.pid for p in envs.worker_processes], flush=True)\n    time.sleep(120)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        pids = [proc.pid, *map(int, proc.stdout.readline().split())]
        named = set()  # what these processes map from /dev/shm under a name that outlives them
        for pid in pids:
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                if "/dev/shm/" in line and not line.endswith("(deleted)"):
                    named.add(line.split(None, 5)[-1])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # what a scheduler's hard kill does: the resource tracker too
        proc.wait()
    time.sleep(0.5)
    assert len(pids) == 3 and not [path for path in named if Path(path).exists()], named


# --- checkpoints -----------------------------------------------------------------------------------------


def test_a_byte_changed_inside_the_tensor_data_fails_the_checkpoint_checksum(tmp_path, capsys):
    import torch

    out = tmp_path / "run"
    assert main(train(out, "--no-final-eval")) == 0
    path = out / "checkpoint.pt"
    weight = torch.load(path, weights_only=True)["algorithm"]["weight"]
    data = bytearray(path.read_bytes())
    at = data.find(weight.numpy().tobytes())
    assert at > 0
    data[at + 5] ^= 0x10  # one bit of one float, as a bad disk or copy leaves it
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=True)["algorithm"]["weight"], weight)  # torch reads it
    capsys.readouterr()
    for argv in (["eval", str(out)], train(out, "--resume", steps=64)):
        assert main(argv) == 2
        assert "fails its checksum" in one_line(capsys.readouterr().err)


def test_a_plain_pickle_as_checkpoint_is_one_line_without_torch_s_warning(tmp_path, capsys):
    import pickle
    import warnings

    out = tmp_path / "run"
    assert main(train(out, "--no-final-eval")) == 0
    (out / "checkpoint.pt").write_bytes(pickle.dumps({"weight": [0.0]}, protocol=4))  # not a torch file
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", str(out)]) == 2
    assert "not a weights-only torch file" in one_line(capsys.readouterr().err)
    assert not [w for w in caught if "pickle protocol" in str(w.message)]


def test_a_checkpoint_from_another_run_is_refused_naming_the_cause(tmp_path, capsys):
    import shutil

    from metarl import checkpoint

    runs_ = {name: tmp_path / name for name in ("mine", "turned", "random")}
    assert main(train(runs_["mine"], "--no-final-eval")) == 0
    assert main(train(runs_["turned"], "--no-final-eval", "--env-opt", "goal_angle=1.0")) == 0  # other goals
    assert main(train(runs_["random"], "--no-final-eval", agent="random")) == 0
    capsys.readouterr()
    for target, cause in (("turned", "trained on other train tasks than Faulty"),
                          ("random", "written by a faulty run on Faulty, but config.json describes random")):
        shutil.copy(runs_["mine"] / "checkpoint.pt", runs_[target] / "checkpoint.pt")  # the wrong file copied in
        for argv in (["eval", str(runs_[target])], ["train", "Faulty", "--agent", target == "random" and "random"
                                                    or "faulty", "--out", str(runs_[target]), "--resume",
                                                    "--steps", "64"]):
            assert main(argv) == 2
            assert cause in one_line(capsys.readouterr().err)
        assert not list(runs_[target].glob("eval*.json"))
    # a checkpoint from before checkpoints recorded their origin: the agent config of another agent
    rl2 = tmp_path / "rl2"
    assert main(["train", "Faulty", "--agent", "rl2", "--num-envs", "4", "--steps", "16", "--no-final-eval",
                 "--out", str(rl2)]) == 0
    state = checkpoint.load(rl2 / "checkpoint.pt")
    del state["origin"]
    state["algorithm"]["config"]["hidden"] = [128, 128]  # zero-shot's layers
    checkpoint.save(rl2 / "checkpoint.pt", state)
    capsys.readouterr()
    assert main(["eval", str(rl2)]) == 2
    err = one_line(capsys.readouterr().err)
    assert "doesn't fit the rl2 agent" in err and "comes from another run" in err


def test_a_diverged_agent_never_replaces_the_last_good_checkpoint_and_ends_in_one_line(tmp_path, capsys):
    import torch

    from metarl import checkpoint

    out = tmp_path / "run"  # the weights go NaN in the 3rd meta-update; a checkpoint after each iteration
    assert main(train(out, "--checkpoint-every", "1", "--agent-opt", "nan_at=3", steps=160)) == 1
    err = error_line(capsys.readouterr().err)
    assert "training diverged by iteration 3" in err and "NaN at state_dict()['weight']" in err
    assert "keeps the last state without NaN, at 32 env steps" in err
    kept = checkpoint.load(out / "checkpoint.pt")
    assert kept["trainer"]["iteration"] == 2 and torch.isfinite(kept["algorithm"]["weight"]).all()
    # RL² with a learning rate that makes PPO blow up in its first update: one line, not torch's 50
    out = tmp_path / "rl2"
    assert main(["train", "Faulty", "--agent", "rl2", "--agent-opt", "lr=10", "--agent-opt", "hidden=16",
                 "--num-envs", "4", "--steps", "2000", "--out", str(out)]) == 1
    err = error_line(capsys.readouterr().err)
    assert "training diverged by iteration" in err and "smaller learning rate" in err


@pytest.mark.parametrize(("option", "what"), [("nan_obs_at", "observation"), ("nan_reward_at", "reward")])
def test_non_finite_env_output_is_refused_where_it_enters_naming_the_env(tmp_path, capsys, option, what):
    for agent in ("faulty", "random"):  # before any update, whichever agent
        faulty.STEPS["count"] = 0
        assert main(train(tmp_path / agent, "--env-opt", f"{option}=7", agent=agent)) == 1
        err = error_line(capsys.readouterr().err)
        assert f"env tests.faulty.FaultyEnv returned a non-finite {what} ([nan" in err
        assert "on task faulty-goal #" in err and "diverged" not in err


def test_an_env_that_goes_non_finite_late_in_a_run_keeps_the_iterations_done(tmp_path, capsys):
    # a simulator that goes unstable hours in: a run error (exit 1) that saves the last whole iteration
    out = tmp_path / "run"
    assert main(train(out, "--env-opt", "nan_obs_at=100", steps=320)) == 1  # step 100: in iteration 7
    err = error_line(capsys.readouterr().err)
    assert "returned a non-finite observation" in err and "checkpoint saved at 96 env steps (iteration 6)" in err
    from metarl import checkpoint

    assert checkpoint.load(out / "checkpoint.pt")["trainer"]["iteration"] == 6  # not 0: --checkpoint-every 10


def test_nan_actions_from_a_diverged_agent_end_in_the_divergence_line(tmp_path, capsys):
    # NaN weights, no checkpoint due yet: the next iteration's actions are NaN (a mean action, say)
    out = tmp_path / "run"
    assert main(train(out, "--agent-opt", "actions=weights", "--agent-opt", "nan_at=3", steps=160)) == 1
    err = error_line(capsys.readouterr().err)
    assert "training diverged by iteration 4" in err and "non-finite actions" in err
    assert "NaN at state_dict()['weight']" in err and "no checkpoint was written before" in err


def test_the_per_step_finite_check_is_exact_and_warns_nothing():
    import warnings

    from metarl.rollout import _all_finite

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's overflow / invalid-value warnings would raise here
        for value in (np.nan, np.inf, -np.inf, 3e38, -3e38, 1e20, 1e-40, 0.0):
            for dtype in (np.float32, np.float64):
                for shape in ((1,), (7, 3), (256, 6)):
                    arr = np.ones(shape, dtype)
                    arr.flat[-1] = value
                    assert _all_finite(arr) == bool(np.isfinite(arr).all()), (value, dtype, shape)
        huge = np.full((256, 6), 3e38, np.float32)  # squares and sums would overflow: still finite
        assert _all_finite(huge) and _all_finite(huge[:, ::2])
        huge[5, 5] = -np.inf
        assert not _all_finite(huge) and _all_finite(np.zeros((0, 3), np.float32))


@pytest.mark.parametrize("actions", ["strings", "ragged"])
def test_actions_that_are_not_numbers_are_one_line(tmp_path, capsys, actions):
    assert main(train(tmp_path / "run", "--agent-opt", f"actions={actions}")) == 2
    assert "Learner.act returned actions that are not an array of numbers" in error_line(capsys.readouterr().err)


def test_a_family_factory_that_raises_is_one_line_from_train(tmp_path, capsys):
    assert main(train(tmp_path / "run", "--env-opt", "factory_raises=True")) == 2
    err = one_line(capsys.readouterr().err)
    assert "task family 'Faulty' failed to build: RuntimeError: the simulator's licence file is missing" in err
    assert "faulty.py:" in err and not (tmp_path / "run").exists()


# --- the user's own files --------------------------------------------------------------------------------


def test_force_refuses_a_run_dir_holding_files_metarl_did_not_write_and_lists_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train(out, "--no-final-eval")) == 0
    (out / "notes.txt").write_text("keep me")
    (out / "mydata").mkdir()
    (out / "mydata" / "x.csv").write_text("1,2\n")
    capsys.readouterr()
    assert main(train(out, "--force")) == 2
    assert "also holds mydata/, notes.txt" in one_line(capsys.readouterr().err)
    assert (out / "notes.txt").read_text() == "keep me" and (out / "checkpoint.pt").exists()
    (out / "notes.txt").unlink()
    (out / "mydata" / "x.csv").unlink()
    (out / "mydata").rmdir()
    (out / ".env.local").write_text("TOKEN=1")  # a dotfile with a dot in its name is the user's too
    assert main(train(out, "--force")) == 2
    assert "also holds .env.local: move it" in one_line(capsys.readouterr().err)
    (out / ".env.local").unlink()
    (out / ".checkpoint.pt.k3j2x").write_bytes(b"half")  # what a killed atomic write leaves: metarl's
    assert main(train(out, "--force", "--no-final-eval")) == 0  # only metarl's own files: replaced
    assert not (out / ".checkpoint.pt.k3j2x").exists()


def test_a_folder_that_is_not_a_run_is_not_advised_resume_or_force(tmp_path, capsys):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert main(train(folder)) == 2
    err = one_line(capsys.readouterr().err)
    assert "not a metarl run directory" in err and "--resume" not in err and "--force" not in err


def test_the_printed_resume_command_names_this_interpreter_when_metarl_is_not_on_path(monkeypatch):
    from metarl.cli.train import metarl_command

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a virtual environment that isn't activated
    assert metarl_command() == [sys.executable, "-m", "metarl"]
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + ":/usr/bin:/bin")
    if (Path(sys.executable).parent / "metarl").exists():  # the console script of this installation
        assert metarl_command() == ["metarl"]


@pytest.mark.spawn
def test_the_printed_resume_command_runs_without_an_activated_venv(tmp_path, capsys, monkeypatch):
    import errno
    import io

    import torch

    from metarl import checkpoint

    real_save, files = torch.save, []

    def save(obj, f, *args, **kwargs):  # the disk fills at the second checkpoint: the error prints the command
        files.append(not isinstance(f, io.BytesIO))
        if sum(files) == 2 and files[-1]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    out = tmp_path / "run"
    assert main(["train", "Toy", "--agent", "random", "--num-envs", "2", "--steps", "120", "--checkpoint-every",
                 "1", "--no-final-eval", "--out", str(out)]) == 1
    command = error_line(capsys.readouterr().err).rsplit("`", 2)[-2]
    assert "--resume" in command
    done = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert checkpoint.load(out / "checkpoint.pt")["trainer"]["env_steps"] >= 120

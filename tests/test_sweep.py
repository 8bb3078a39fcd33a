"""Seed sweeps (`metarl train ... --seeds`): seed lists, what each seed's folder asks for, the flags each
seed's process gets, and whole sweeps on Toy: parallel, resumed, stopped by Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metarl import sweep
from metarl.cli import build_parser, main
from metarl.cli._sweep import expected, train_flags
from metarl.errors import UsageError

TOY = ["train", "Toy", "--agent", "zero-shot", "--num-envs", "2", "--agent-opt", "hidden=(16, 16)"]


def test_parse_seeds():
    assert sweep.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert sweep.parse_seeds("0,2, 7-8") == [0, 2, 7, 8]
    assert sweep.parse_seeds("3") == [3]
    for bad in ("4-2", "a", "0,0-1", "-1", "", "1-"):
        with pytest.raises(UsageError):
            sweep.parse_seeds(bad)


def fake_run(d: Path, *, checkpoint=True, trained=400, evaluated=400, steps=400, elapsed=10.0,
             max_seconds=None) -> Path:
    """A seed folder as `metarl train` leaves it: config, checkpoint, progress and an evaluation."""
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"benchmark": "Toy", "agent": "zero-shot",
                                               "trainer": {"steps": steps, "max_seconds": max_seconds}}))
    if checkpoint:
        (d / "checkpoint.pt").write_bytes(b"x")
    (d / "progress.csv").write_text(f"step,key,value\n{trained},time/elapsed_s,{elapsed}\n")
    if evaluated is not None:
        (d / "eval.json").write_text(json.dumps({"trained_env_steps": evaluated, "per_task": {}}))
    return d


def test_plan_reads_what_each_seed_folder_holds(tmp_path):
    (tmp_path / "seed-1").mkdir()  # empty: start
    fake_run(tmp_path / "seed-2")  # trained to its budget and evaluated: skip
    fake_run(tmp_path / "seed-3", trained=200, evaluated=None)  # stopped at a checkpoint: resume
    fake_run(tmp_path / "seed-4", checkpoint=False, evaluated=None)  # died before its first checkpoint
    fake_run(tmp_path / "seed-5", evaluated=200)  # evaluated, then trained on: evaluate again
    fake_run(tmp_path / "seed-6", trained=200, evaluated=200, elapsed=120, max_seconds=60.0)  # out of time
    actions = {j.seed: j.action for j in sweep.plan(tmp_path, list(range(7)))}
    assert actions == {0: "start", 1: "start", 2: "skip", 3: "resume", 4: "restart", 5: "resume", 6: "skip"}
    assert sweep.plan(tmp_path, [2], steps=800)[0].action == "resume"  # a larger budget given now
    assert sweep.plan(tmp_path, [6], max_minutes=5)[0].action == "resume"
    assert sweep.plan(tmp_path, [3], final_eval=False)[0].action == "resume"
    assert sweep.plan(tmp_path, [2], force=True)[0].action == "restart"
    (tmp_path / "seed-9").mkdir()
    (tmp_path / "seed-9" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a metarl run directory"):
        sweep.plan(tmp_path, [9])


def test_each_seed_gets_the_flags_as_given():
    argv = [*TOY, "--steps", "2000", "--env-opt", "horizon=10", "--no-final-eval", "--seeds", "0-2",
            "--jobs", "2", "--out", "runs/x", "--force"]
    args = build_parser().parse_args(argv)
    flags = train_flags(args)
    assert flags[0] == "Toy" and "--steps=2000" in flags and "--no-final-eval" in flags
    assert not any(f.startswith(("--seeds", "--jobs", "--out", "--force", "--seed=")) for f in flags)
    again = build_parser().parse_args(["train", *flags, "--seed", "1", "--out", "runs/x/seed-1"])
    for dest in ("agent", "steps", "num_envs", "agent_opt", "env_opt", "no_final_eval"):
        assert getattr(again, dest) == getattr(args, dest), dest
    cmd = sweep.command(flags, sweep.SeedJob(1, Path("runs/x/seed-1"), "resume"))
    assert cmd[:4] == [sys.executable, "-m", "metarl", "train"] and cmd[-5:] == [
        "--seed", "1", "--out", "runs/x/seed-1", "--resume"]


def test_threads_split_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert sweep.threads_per_job(1) == cores and sweep.threads_per_job(cores + 1) == 1


def test_parallel_seeds_get_a_share_of_threads_and_workers_unless_given():
    def settings(*extra, jobs=2):
        flags = train_flags(build_parser().parse_args([*TOY, *extra, "--seeds", "0-3"]))
        return sweep.job_settings(flags, jobs)

    share = str(sweep.threads_per_job(2))
    flags, env = settings("--backend", "shm")
    assert flags[-2:] == ["--num-workers", share] and env["OMP_NUM_THREADS"] == share
    flags, _ = settings("--backend", "shm", "--num-workers", "3")  # the user's count, not overridden
    assert build_parser().parse_args(["train", *flags]).num_workers == 3 and "--num-workers" not in flags
    assert settings("--backend", "ray")[0][-2:] == ["--num-workers", share]  # a local Ray per seed
    assert "--num-workers" not in settings("--backend", "ray", "--ray-address", "auto")[0]  # a cluster's
    assert "--num-workers" not in settings()[0]  # in-process envs
    assert settings("--backend", "shm", jobs=1) == (settings("--backend", "shm", jobs=1)[0], None)


def test_a_rerun_with_another_configuration_is_refused_not_skipped(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main([*TOY, "--steps", "200", "--seed", "0", "--out", str(out / "seed-0")]) == 0  # finished
    capsys.readouterr()
    same = build_parser().parse_args([*TOY, "--steps", "200", "--seeds", "0"])
    assert [j.action for j in sweep.plan(out, [0], steps=200, expect=expected(same))] == ["skip"]
    for other in (["--agent", "rl2"], ["--agent-opt", "lr=0.01"], ["--env-opt", "horizon=7"]):
        args = build_parser().parse_args([*TOY, *other, "--steps", "200", "--seeds", "0"])
        with pytest.raises(UsageError, match="--seeds would skip or resume") as e:
            sweep.plan(out, [0], steps=200, expect=expected(args))
        assert "\n" not in str(e.value)
    assert main([*TOY, "--agent", "rl2", "--steps", "200", "--seeds", "0", "--out", str(out)]) == 2
    assert "--agent differs" in capsys.readouterr().err
    assert sweep.plan(out, [0], force=True, expect=expected(args))[0].action == "restart"


def test_seeds_left_unstarted_after_a_usage_error_are_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "run", lambda flags, todo, jobs, log: sweep.SweepResult({0: 2}))
    assert main([*TOY, "--seeds", "0-2", "--out", str(tmp_path / "sw")]) == 2
    assert "seeds 0 failed (their output is above); seeds 1, 2 were not started;" in capsys.readouterr().err


def test_only_the_final_evaluation_file_finishes_a_seed(tmp_path):
    d = fake_run(tmp_path / "seed-0", evaluated=None)
    (d / "eval-test=extrapolate.json").write_text(json.dumps({"trained_env_steps": 400, "per_task": {}}))
    assert sweep.plan(tmp_path, [0])[0].action == "resume"  # another evaluation of the last weights
    (d / "eval-first5.json").write_text(json.dumps({"trained_env_steps": 400, "per_task": {}}))
    assert sweep.plan(tmp_path, [0])[0].action == "resume"
    assert sweep.plan(tmp_path, [0], eval_tasks=5)[0].action == "skip"  # the final one with --eval-tasks 5


@pytest.mark.parametrize(("extra", "message"), [
    (["--seeds", "0-1", "--seed", "3"], "--seed trains one seed"),
    (["--jobs", "2"], "give --seeds too"),
    (["--seeds", "0-1", "--resume"], "drop --resume"),
    (["--seeds", "1-0"], "ranges"),
    (["--seeds", "0-1", "--jobs", "0"], "must be positive"),
])
def test_bad_sweep_flags_are_one_line(tmp_path, capsys, extra, message):
    assert main([*TOY, "--out", str(tmp_path / "sw"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "sw").exists()


def test_unknown_agent_is_refused_before_any_seed(tmp_path, capsys):
    assert main(["train", "Toy", "--agent", "nosuch", "--seeds", "0-2", "--out", str(tmp_path / "sw")]) == 2
    assert "unknown agent" in capsys.readouterr().err and not (tmp_path / "sw").exists()


@pytest.mark.spawn
def test_sweep_in_parallel_resumes_what_it_finds_and_reports(tmp_path, capsys):
    out = tmp_path / "toy-sweep"
    assert main([*TOY, "--steps", "200", "--seed", "1", "--out", str(out / "seed-1")]) == 0  # trained to 200
    (out / "seed-2").mkdir()  # a seed that died before its first checkpoint: only its config
    (out / "seed-2" / "config.json").write_text((out / "seed-1" / "config.json").read_text())
    capsys.readouterr()
    assert main([*TOY, "--steps", "400", "--seeds", "0-2", "--jobs", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 to start, 1 to resume, 1 to restart" in err and "2 at a time" in err
    for seed in range(3):
        evaluation = json.loads((out / f"seed-{seed}" / "eval.json").read_text())
        assert evaluation["seed"] == seed and evaluation["trained_env_steps"] == 400
        assert "seed" in (out / "logs" / f"seed-{seed}.log").read_text()
    resumes = json.loads((out / "seed-1" / "config.json").read_text())["resolved"]["resumes"]
    assert [r["env_steps"] for r in resumes] == [200]  # seed 1 went on from its checkpoint
    report = json.loads((out / "report" / "report.json").read_text())
    (g,) = report["task_sets"][0]["groups"]
    assert (g["label"], g["seeds"]) == ("toy-sweep", [0, 1, 2])
    assert (out / "report" / "report.md").exists()
    assert main([*TOY, "--steps", "400", "--seeds", "0-2", "--jobs", "2", "--out", str(out)]) == 0
    assert "3 to skip" in capsys.readouterr().err  # nothing left to do: no seed process started


@pytest.mark.spawn
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_sweep_stopped_checkpoints_every_seed_and_resumes(tmp_path, how):
    out = tmp_path / "sw"
    argv = [sys.executable, "-m", "metarl", *TOY, "--checkpoint-every", "1", "--seeds", "0-1", "--jobs", "2",
            "--out", str(out)]
    # as from a terminal: SIGINT at its default even where pytest runs in the background (`cmd &` starts it
    # ignored, and metarl leaves an ignored SIGINT alone, as nohup'd runs expect)
    proc = subprocess.Popen([*argv, "--steps", "100000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not all((out / f"seed-{s}" / "checkpoint.pt").exists() for s in (0, 1)):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.5)
        if how == "ctrl-c":  # a terminal sends it to the whole foreground process group
            os.killpg(proc.pid, signal.SIGINT)
        else:  # a scheduler or `kill` may signal the sweep alone: it passes SIGTERM on to the seeds
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == (130 if how == "ctrl-c" else 143), err
    assert "sweep stopped" in err and "run the same command again" in err and "Traceback" not in err
    assert not any((out / f"seed-{s}" / "eval.json").exists() for s in (0, 1))
    if how == "ctrl-c":
        return  # resuming is the same after either
    done = subprocess.run([*argv, "--steps", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 to resume" in done.stderr
    assert all((out / f"seed-{s}" / "eval.json").exists() for s in (0, 1)) and (out / "report" / "report.md").exists()


def test_more_jobs_than_cores_is_warned(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "cores", lambda: 2)
    monkeypatch.setattr(sweep, "run", lambda flags, todo, jobs, log: sweep.SweepResult({s: 2 for s in range(3)}))
    main([*TOY, "--seeds", "0-2", "--jobs", "3", "--out", str(tmp_path / "sw")])
    assert "warning: --jobs 3 runs more seeds at once than the 2 cores" in capsys.readouterr().err
    main([*TOY, "--seeds", "0-2", "--jobs", "2", "--out", str(tmp_path / "sw")])
    assert "warning" not in capsys.readouterr().err

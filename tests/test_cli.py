import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metarl.cli import main

BAD = [
    (["train", "NoSuch", "--agent", "random"], "unknown benchmark"),
    (["train", "ML1", "--agent", "random"], "needs a task class"),
    (["train", "ML1", "--task", "reachh-v3", "--agent", "random"], "unknown Meta-World task"),
    (["train", "ML10", "--task", "reach-v3", "--agent", "random"], "drop --task"),
    (["train", "Toy", "--agent", "nope"], "unknown agent"),
    (["train", "Toy", "--agent", "random", "--steps", "0"], "must be positive"),
    (["train", "Toy", "--agent", "random", "--steps", "-5"], "must be positive"),
    (["train", "Toy", "--agent", "random", "--num-envs", "0"], "must be positive"),
    (["train", "Toy", "--agent", "random", "--device", "tpu"], "unknown device"),
    (["train", "Toy", "--agent", "random", "--max-minutes", "0"], "must be a positive number"),
    (["train", "Toy", "--agent", "zero-shot", "--agent-opt", "nosuch=1"], "unknown option nosuch"),
    (["train", "Toy", "--agent", "zero-shot", "--agent-opt", "lr"], "not KEY=VALUE"),
    (["eval", "Toy"], "add --agent"),
    (["train", "Toy", "--agent", "random", "--env-opt", "horizon"], "not KEY=VALUE"),
    (["train", "Driving", "--agent", "random", "--env-opt", "test=sideways"], "test=extrapolate"),
    (["train", "Toy", "--agent", "random", "--env-opt", "nosuch=3"], "takes no option nosuch"),
    (["bench", "envs", "--sections", "gpu"], "--sections"),
    (["bench", "envs", "--worker-counts", "0,2"], "--worker-counts"),
    (["bench", "envs", "--worker-counts", "two"], "--worker-counts"),
    (["bench", "envs", "--json", "/nonexistent-dir/x.json"], "does not exist"),
    (["render", "/nonexistent-run"], "not a directory"),
    (["train", "Toy", "--agent", "random", "--env-opt", "seed=3"], "use --seed"),
    (["train", "Toy", "--agent", "random", "--backend", "native"], "native"),
    (["train", "Toy", "--agent", "zero-shot", "--agent-opt", "lr={1, 2}"], "must be a number"),
    (["train", "Toy", "--agent", "random", "--num-workers", "2"], "add --backend shm"),
    (["train", "Toy", "--agent", "random", "--backend", "shm", "--num-workers", "0"], "must be positive"),
    (["eval", "Toy", "--agent", "random", "--num-workers", "2"], "add --backend shm"),
    (["train", "Toy", "--agent", "random", "--eval-every", "-1"], "must be >= 0"),
    (["train", "Toy", "--agent", "rl2", "--agent-opt", "lr=-1"], "option lr=-1 must be > 0"),
    (["train", "Toy", "--agent", "rl2", "--agent-opt", "trial_episodes=0"], "must be > 0"),  # crashed mid-run
    (["train", "Toy", "--agent", "rl2", "--agent-opt", "gamma=abc"], "must be a finite number"),
    (["train", "Toy", "--agent", "maml", "--agent-opt", "inner_steps=0"],
     "must be > 0 (default 2); for the policy without adaptation give inner_lr=0"),
    (["train", "Toy", "--agent", "rl2", "--seed", "-1"], "--seed: must be >= 0"),
    (["train", "Toy", "--agent", "zero-shot", "--agent-opt", "hidden=64.5"], "must be whole numbers"),
    (["train", "Toy", "--agent", "random", "--resume", "--force"], "give one of them"),
    (["train", "ml1", "--task", "reach-v3", "--agent", "random"], "did you mean 'ML1'"),
    (["eval", "/nonexistent-run", "--agent", "random"], "pass a run directory"),
    (["train", "ML1", "--task", "Reach-V3", "--agent", "random"], "did you mean 'reach-v3'"),
    (["train", "ML1", "--task", "reach-v2", "--agent", "random"], "did you mean 'reach-v3'"),
    (["train", "Toy", "--agent", "random", "--env-opt", "horizon=5", "--env-opt", "horizon=6"], "given twice"),
    (["train", "Toy", "--agent", "zero-shot", "--agent-opt", "hidden=a,b"],
     "e.g. hidden=128,128 (one layer: hidden=128)"),
    (["train", "Toy", "--agent", "random", "--max-minutes", "nan"], "--max-minutes must be a positive number"),
    (["train", "Toy", "--agent", "random", "--max-minutes", "inf"], "--max-minutes must be a positive number"),
    (["train", "Toy", "--agent", "random", "--env-opt", "reward_version=v1"], "use --reward-version"),
]


@pytest.mark.parametrize(("argv", "message"), BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    code = main([*argv, "--out", str(out)] if argv[0] == "train" else argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and err.startswith("error: ") and "\n" not in err
    assert not out.exists()


def test_num_envs_must_fit_the_benchmark(capsys):
    from metarl.errors import UsageError
    from metarl.runs import num_envs_for

    class Fake:
        label = "ML10"

        class train:  # noqa: N801
            task_names = tuple(f"t{i}" for i in range(10))

    with pytest.raises(UsageError, match="multiple of its 10 training classes"):
        num_envs_for(Fake, 7)
    assert num_envs_for(Fake, 20) == 20 and num_envs_for(Fake, None) == 10


def test_existing_run_dir_needs_resume_or_force(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "Toy", "--agent", "random", "--steps", "40", "--num-envs", "2", "--out", str(out)]
    assert main(args) == 0
    first_config = (out / "config.json").read_text()
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "config.json").read_text() == first_config
    assert main([*args, "--force"]) == 0
    assert main(["train", "Toy", "--agent", "random", "--out", str(out), "--resume", "--steps", "80"]) == 0
    rows = (out / "progress.csv").read_text().splitlines()  # resume continued past the first 40 steps
    assert max(int(r.split(",")[0]) for r in rows[1:]) >= 80


def test_resume_refuses_workers_for_a_run_without_shm_workers(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "Toy", "--agent", "random", "--steps", "40", "--num-envs", "2", "--out", str(out)]) == 0
    config = (out / "config.json").read_text()
    capsys.readouterr()
    assert main(["train", "Toy", "--agent", "random", "--out", str(out), "--resume", "--num-workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "trained with backend 'auto', which --resume keeps: drop --num-workers" in err and "\n" not in err.strip()
    assert (out / "config.json").read_text() == config


@pytest.mark.spawn
def test_eval_of_a_run_uses_its_backend_and_workers_unless_given(tmp_path, monkeypatch):
    import metarl.runs as runs

    out = tmp_path / "run"
    assert main(["train", "Toy", "--agent", "random", "--steps", "40", "--num-envs", "2", "--backend", "shm",
                 "--num-workers", "1", "--no-final-eval", "--out", str(out)]) == 0
    made = []
    real = runs.make_vector_env
    monkeypatch.setattr(runs, "make_vector_env", lambda dist, n, backend, workers: made.append((backend, workers))
                        or real(dist, n, "sync"))
    for extra in ([], ["--num-workers", "2"], ["--backend", "sync"]):
        assert main(["eval", str(out), "--eval-tasks", "1", "--json", *extra]) == 0
    assert made == [("shm", 1), ("shm", 2), ("sync", None)]
    assert main(["eval", str(out), "--backend", "sync", "--num-workers", "2"]) == 2  # workers need shm
    assert main(["eval", str(out), "--seed", "5"]) == 2  # a run is evaluated with its own seed, not silently
    assert main(["eval", str(out), "--reward-version", "v1"]) == 2  # and its own rewards


def test_eval_of_a_run_repeats_its_final_evaluation_exactly(tmp_path, capsys):
    out = tmp_path / "run"
    # random actions while adapting: the pre-adaptation numbers hang on torch's draws
    assert main(["train", "Toy", "--agent", "random", "--steps", "200", "--num-envs", "2", "--eval-tasks", "2",
                 "--out", str(out)]) == 0
    # a partial final evaluation is named as one: eval.json is the official protocol's only
    assert not (out / "eval.json").exists()
    final = json.loads((out / "eval-first2.json").read_text())
    assert final["protocol"] == "first 2 tasks per class"
    assert main(["eval", str(out), "--eval-tasks", "2"]) == 0
    again = json.loads((out / "eval-first2.json").read_text())
    assert final["per_goal"] == again["per_goal"] and len({g["pre_return"] for g in final["per_goal"]}) > 1
    assert final["seed"] == final["eval_seed"] == 0
    # each task draws from its own stream: one slot instead of two gives the same evaluation
    assert main(["eval", str(out), "--eval-tasks", "2", "--num-envs", "1"]) == 0
    assert json.loads((out / "eval-first2.json").read_text())["per_goal"] == final["per_goal"]
    # another evaluation seed: the same tasks, other draws, in a file of its own
    assert main(["eval", str(out), "--eval-tasks", "2", "--eval-seed", "5"]) == 0
    other = json.loads((out / "eval-first2-eval_seed=5.json").read_text())
    assert (other["seed"], other["eval_seed"]) == (0, 5)
    assert [(g["task"], g["index"]) for g in other["per_goal"]] == [(g["task"], g["index"]) for g in final["per_goal"]]
    assert [g["pre_return"] for g in other["per_goal"]] != [g["pre_return"] for g in final["per_goal"]]
    assert json.loads((out / "eval-first2.json").read_text())["per_goal"] == final["per_goal"]
    assert main(["eval", str(out), "--eval-seed", "-1"]) == 2
    # the same protocol on the training tasks: a file of its own, marked, with the training tasks' digest
    assert main(["eval", str(out), "--eval-tasks", "2", "--split", "train"]) == 0
    train = json.loads((out / "eval-first2-split=train.json").read_text())
    assert train["split"] == "train" and "split" not in final
    assert train["tasks_digest"] != final["tasks_digest"] and len(train["per_goal"]) == len(final["per_goal"])
    assert main(["eval", "Toy", "--agent", "random", "--split", "train"]) == 2  # a run directory's option
    # paired comparison of the two evaluations (other draws: not common noise)
    capsys.readouterr()
    assert main(["compare", str(out / "eval-first2.json"), str(out / "eval-first2-eval_seed=5.json"), "--json"]) == 0
    cmp = json.loads(capsys.readouterr().out)
    assert cmp["num_tasks"] == 2 and cmp["common_noise"] is False
    assert cmp["pre_return"]["diff"] == pytest.approx(other["pre_return"] - final["pre_return"])
    assert main(["compare", str(out / "eval-first2.json"), str(out / "eval-first2.json")]) == 0
    assert "+0.0%" in capsys.readouterr().out
    assert main(["compare", str(out), str(out / "eval-first2.json")]) == 2  # the run has no eval.json
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "eval-first2.json" in err
    assert main(["compare", str(out / "eval-first2.json"), str(out / "config.json")]) == 2
    assert main(["compare", str(out / "eval-first2.json"), str(tmp_path)]) == 2  # not a run directory
    assert "not a run directory" in capsys.readouterr().err
    assert main(["eval", str(out), "--eval-seed", str(2**64)]) == 2  # too large for torch: one line, not a traceback


def test_resume_takes_a_new_time_limit(tmp_path):
    out = tmp_path / "run"
    base = ["train", "Toy", "--agent", "random", "--num-envs", "2", "--out", str(out), "--no-final-eval"]
    assert main([*base, "--steps", "4000", "--max-minutes", "1e-6"]) == 0  # stops after one iteration

    def last_step() -> int:
        return max(int(r.split(",")[0]) for r in (out / "progress.csv").read_text().splitlines()[1:])

    first = last_step()
    assert first < 4000
    assert main(["train", "Toy", "--agent", "random", "--out", str(out), "--resume", "--max-minutes", "10"]) == 0
    assert last_step() >= 4000 > first
    # config.json says which code trained the run: the commit it started from, then each resume's
    from metarl.provenance import git_commit

    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["git_commit"] == git_commit()
    assert resolved["resumes"] == [{"env_steps": first, "git_commit": git_commit()}]
    assert main(["train", "Toy", "--agent", "random", "--out", str(out), "--resume"]) == 0  # nothing left to train
    assert len(json.loads((out / "config.json").read_text())["resolved"]["resumes"]) == 1
    from metarl.runs import record_resume

    record_resume(out / "config.json", 9000)
    record_resume(out / "config.json", 9000)  # a resume that died before its first iteration, retried
    resumes = json.loads((out / "config.json").read_text())["resolved"]["resumes"]
    assert [r["env_steps"] for r in resumes] == [first, 9000] and not list(out.glob("*.tmp"))


def test_resume_out_of_time_trains_nothing_and_does_not_evaluate_again(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "Toy", "--agent", "random", "--num-envs", "2", "--out", str(out), "--eval-tasks", "2"]
    assert main([*base, "--steps", "4000", "--max-minutes", "1e-6"]) == 0  # one iteration, then evaluates
    evals = [p.name for p in out.glob("eval*.json")]
    assert len(evals) == 1
    before = (out / evals[0]).read_text(), (out / "progress.csv").read_text()
    capsys.readouterr()
    assert main(["train", "Toy", "--agent", "random", "--out", str(out), "--resume"]) == 0  # same time limit
    err = capsys.readouterr().err
    assert "nothing to train" in err and "--max-minutes counts the whole run" in err and "already evaluates" in err
    assert ((out / evals[0]).read_text(), (out / "progress.csv").read_text()) == before
    assert "resumes" not in json.loads((out / "config.json").read_text())["resolved"]


@pytest.mark.spawn
def test_from_run_reports_the_commit_the_run_trained_with(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "Toy", "--agent", "random", "--num-envs", "2", "--out", str(run), "--steps", "400"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    cfg["resolved"]["git_commit"] = "f" * 40  # as if trained by another commit than the checkout's
    (run / "config.json").write_text(json.dumps(cfg))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "from_run.py"
    res = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(script), str(run), "--command", "metarl train ...", "--out", str(res)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(res.read_text())
    assert obj["git_commit"] == "f" * 40 and obj["written_at_commit"] != "f" * 40
    assert obj["budget"]["env_steps"] >= 400
    assert obj["summary"]["eval.json"]["success_rate"] == json.loads((run / "eval.json").read_text())["success_rate"]


def test_force_refuses_non_run_directory(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    code = main(["train", "Toy", "--agent", "random", "--out", str(tmp_path), "--force"])
    assert code == 2 and "not a metarl run directory" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["train", "Toy", "--agent", "random", "--out", str(blocker / "run")])
    assert code == 2 and "cannot write" in capsys.readouterr().err


def test_train_then_eval_run_dir_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "Toy", "--agent", "zero-shot", "--steps", "100", "--num-envs", "2", "--out", str(out),
                 "--agent-opt", "hidden=(16, 16)"]) == 0
    assert json.loads((out / "config.json").read_text())["agent_options"] == {"hidden": [16, 16]}
    assert {"config.json", "checkpoint.pt", "eval.json", "progress.csv", "tb", "learning_curve.png"} <= {
        p.name for p in out.iterdir()}
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(out)]) == 0
    assert main(["plot", str(tmp_path)]) == 2
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert {"success_rate", "per_task", "benchmark", "reward_version", "seed"} <= set(obj)
    assert obj["per_task"]["point-goal"]["num_tasks"] == 20
    assert obj["eval_actions"] == "mean" and obj["protocol"] == "official"  # zero-shot's default; all 20 tasks
    official = (out / "eval.json").read_text()
    assert main(["eval", str(out), "--json", "--actions", "sampled", "--eval-tasks", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["eval_actions"] == "sampled"
    partial = json.loads((out / "eval-first3-sampled.json").read_text())
    assert partial["per_task"]["point-goal"]["num_tasks"] == 3 and partial["protocol"] == "first 3 tasks per class"
    assert (out / "eval.json").read_text() == official  # never replaced by a non-default evaluation
    assert main(["eval", str(out), "--json", "--eval-tasks", "2", "--agent-opt", "hidden=(16, 16)"]) == 0
    capsys.readouterr()
    saved = json.loads((out / "eval-first2-hidden=_16__16_.json").read_text())
    assert saved["agent_overrides"] == {"hidden": [16, 16]}
    assert main(["eval", str(out), "--agent-opt", "hidden=(8, 8)"]) == 2  # weights don't fit: one-line error
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not fit" in err and err.count("\n") == 1


def test_envs_lists_benchmarks_and_agents(capsys):
    assert main(["envs", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    bench = obj["benchmarks"]
    assert len(bench["ML1"]["task_choices"]) == 50
    assert (len(bench["ML10"]["train"]), len(bench["ML10"]["test"])) == (10, 5)
    assert (len(bench["ML45"]["train"]), len(bench["ML45"]["test"])) == (45, 5)
    assert not set(bench["ML10"]["train"]) & set(bench["ML10"]["test"])
    assert {"random", "zero-shot"} <= set(obj["agents"])


@pytest.mark.spawn
def test_console_script_exit_code_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "metarl", "train", "ML7", "--agent", "random"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: unknown benchmark")


def test_driving_train_env_opts_and_render(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "Driving", "--agent", "zero-shot", "--steps", "1500", "--num-envs", "4", "--eval-tasks", "2",
            "--env-opt", "num_tasks=4", "--env-opt", "horizon=20", "--env-opt", "test=extrapolate", "--out", str(out)]
    assert main(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["env_options"] == {"num_tasks": 4, "horizon": 20, "test": "extrapolate"}
    assert cfg["trainer"]["backend"] == "auto"
    capsys.readouterr()
    assert main(["render", str(out), "--task", "1", "--out", str(tmp_path / "strip.png")]) == 0
    assert (tmp_path / "strip.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["render", str(out), "--task", "9"]) == 2  # 4 held-out tasks only
    assert "out of range" in capsys.readouterr().err
    assert main(["render", str(out), "--out", str(tmp_path / "strip.txt")]) == 2
    assert "ending in .png" in capsys.readouterr().err
    # the same checkpoint on the other held-out split: a file of its own, never over the run's own
    official = (out / "eval-first2.json").read_text()
    assert main(["eval", str(out), "--eval-tasks", "2", "--env-opt", "test=interpolate", "--json"]) == 0
    other = json.loads((out / "eval-first2-test=interpolate.json").read_text())
    assert other["env_overrides"] == {"test": "interpolate"} and (out / "eval-first2.json").read_text() == official
    saved = json.loads(official)  # the saved split (extrapolate), same tasks
    assert [g["pre_return"] for g in other["per_goal"]] != [g["pre_return"] for g in saved["per_goal"]]
    assert main(["eval", str(out), "--eval-tasks", "1", "--env-opt", "test=sideways"]) == 2
    if os.path.isdir("/proc/self"):  # a folder that passes the access check but takes no new file
        assert main(["render", str(out), "--out", "/proc/strip.png"]) == 2
        assert "cannot write --out /proc/strip.png" in capsys.readouterr().err
    assert main(["train", "Driving", "--agent", "zero-shot", "--out", str(out), "--resume",
                 "--env-opt", "horizon=30"]) == 2
    assert "--env-opt differ" in capsys.readouterr().err
    for clash, flag in ((["--agent", "rl2"], "--agent"), (["--seed", "5"], "--seed"),
                        (["--num-envs", "8"], "--num-envs")):
        args = ["train", "Driving", "--agent", "zero-shot", *clash, "--out", str(out), "--resume"]
        assert main(args) == 2 and f"{flag} differ" in capsys.readouterr().err
    # the run's own values are not a clash: the command that started it, plus --resume, continues it
    before = json.loads((out / "config.json").read_text())
    assert main(["train", "Driving", "--agent", "zero-shot", "--env-opt", "horizon=20", "--steps", "2500",
                 "--out", str(out), "--resume", "--no-final-eval"]) == 0
    after = json.loads((out / "config.json").read_text())
    resumes = after["resolved"].pop("resumes")  # the only change: this resume's record
    assert after == before and len(resumes) == 1 and resumes[0]["git_commit"] == before["resolved"]["git_commit"]


def test_render_needs_a_family_with_a_renderer(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "Toy", "--agent", "random", "--steps", "40", "--num-envs", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["render", str(out)]) == 2
    assert "no trial renderer" in capsys.readouterr().err


def test_bench_envs_driving_section_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "envs", "--quick", "--sections", "driving", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert set(report["driving"]) == {"1", "10", "256"} and all(v > 0 for v in report["driving"].values())
    assert {"command", "git_commit", "machine", "date_utc"} <= set(report)
    assert "Driving" in capsys.readouterr().out


def test_exit_code_prints_one_line_for_usage_errors_and_returns_2(capsys):
    from metarl.errors import UsageError, exit_code

    def bad():
        raise UsageError("--variant 'x' is not KEY=VALUE: give e.g. --variant backend=shm")

    assert exit_code(bad) == 2
    assert capsys.readouterr().err == "error: --variant 'x' is not KEY=VALUE: give e.g. --variant backend=shm\n"
    assert exit_code(lambda: None) == 0 and exit_code(lambda: 3) == 3


def test_runs_are_evaluated_and_resumed_with_the_options_they_were_trained_with(tmp_path, capsys):
    # config.json keeps only the command line's options; the checkpoint keeps the whole agent config.
    # An option left at its default must come from the checkpoint, so that changing a default (here
    # faked by editing the saved config) does not change how old runs are evaluated or resumed.
    import torch

    from metarl import checkpoint
    from metarl.runs import load_trained

    out = tmp_path / "run"
    base = ["train", "ToySides", "--agent", "maml", "--num-envs", "2", "--out", str(out), "--no-final-eval",
            "--agent-opt", "hidden=(8,)", "--agent-opt", "episodes=2"]
    assert main([*base, "--steps", "200"]) == 0
    resolved = json.loads((out / "config.json").read_text())["resolved"]["agent_config"]
    assert resolved["hidden"] == [8] and resolved["inner_steps"] >= 1  # defaults recorded too
    path = out / checkpoint.CHECKPOINT_NAME
    state = checkpoint.load(path)
    assert state["algorithm"]["config"]["inner_steps"] != 3  # the default
    state["algorithm"]["config"]["inner_steps"] = 3
    torch.save(state, path)
    assert load_trained(out, "cpu").agent.cfg.inner_steps == 3
    agent = load_trained(out, "cpu", {"inner_steps": 2}).agent
    assert agent.cfg.inner_steps == 2 and list(agent.cfg.hidden) == [8]  # explicit options win
    assert main(["train", "ToySides", "--agent", "maml", "--out", str(out), "--resume", "--steps", "400"]) == 0
    assert checkpoint.load(path)["algorithm"]["config"]["inner_steps"] == 3  # resumed as trained


def test_result_table_never_cuts_task_names(capsys):
    from types import SimpleNamespace

    from metarl.cli.evaluate import print_table

    names = ["door-close-v3", "drawer-open-v3", "peg-insert-side-v3", "pick-place-wall-v3", "sweep-into-v3"]
    row = {"num_tasks": 40, "success_rate": 0.5, "pre_success_rate": 0.25, "return": 1234.5, "pre_return": 987.6}
    result = SimpleNamespace(per_task=dict.fromkeys(names, row), success_rate=0.5, pre_success_rate=0.25,
                             mean_return=1234.5, pre_return=987.6, eval_actions="mean", protocol="official",
                             success_rate_se=0.031, pre_success_rate_se=0.024)
    print_table(result, SimpleNamespace(label="ML45", reward_version="v2"), 0)  # 80 columns: not a terminal
    out = capsys.readouterr().out
    assert all(name in out for name in names) and "…" not in out
    assert "±3.1% (post), ±2.4% (pre)" in " ".join(out.split())  # the caption: the standard errors


def test_no_final_eval_is_each_invocations_own(tmp_path):
    out = tmp_path / "run"
    base = ["train", "Toy", "--agent", "random", "--num-envs", "2", "--eval-tasks", "1", "--out", str(out)]
    assert main([*base, "--steps", "40", "--no-final-eval"]) == 0
    assert not (out / "eval-first1.json").exists()
    assert main([*base, "--steps", "80", "--resume"]) == 0  # a resume without the flag ends with the evaluation
    assert (out / "eval-first1.json").exists()


def test_eval_tasks_covering_every_held_out_task_is_the_official_evaluation(tmp_path):
    out = tmp_path / "run"  # Toy holds out 20 goals: --eval-tasks 25 evaluates all of them
    assert main(["train", "Toy", "--agent", "random", "--steps", "40", "--num-envs", "2", "--eval-tasks", "25",
                 "--out", str(out)]) == 0
    assert json.loads((out / "eval.json").read_text())["protocol"] == "official"
    assert not (out / "eval-first25.json").exists()


def test_force_and_run_dirs_need_metarls_own_files(tmp_path, capsys):
    project = tmp_path / "project"  # someone else's folder that happens to hold a config.json
    project.mkdir()
    (project / "config.json").write_text('{"name": "my web app"}')
    (project / "notes.txt").write_text("keep me")
    assert main(["train", "Toy", "--agent", "random", "--steps", "40", "--out", str(project), "--force"]) == 2
    assert "--force refuses to delete" in capsys.readouterr().err and (project / "notes.txt").exists()

    out = tmp_path / "run"
    assert main(["train", "Toy", "--agent", "random", "--steps", "40", "--num-envs", "2", "--no-final-eval",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated
    for argv in (["eval", str(out)],
                 ["train", "Toy", "--agent", "random", "--steps", "80", "--out", str(out), "--resume"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "not a readable metarl checkpoint" in err and err.count("\n") == 1
    (out / "config.json").write_text("{not json")
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is not a metarl run config" in err and err.count("\n") == 1


def test_eval_steps_no_more_slots_than_tasks_and_counts_real_steps_only(monkeypatch, capsys):
    import metarl.runs as runs

    made = []
    real = runs.make_vector_env
    monkeypatch.setattr(runs, "make_vector_env", lambda dist, n, *a: made.append(n) or real(dist, n, *a))
    # Toy: 20 steps per episode, 13 per trial; 3 tasks in 2 slots = a second batch with one padded slot
    for argv, slots in ((["--eval-tasks", "1"], 1), (["--eval-tasks", "3", "--num-envs", "2"], 2)):
        assert main(["eval", "Toy", "--agent", "random", "--json", *argv]) == 0
        tasks = int(argv[1])
        assert made[-1] == slots and json.loads(capsys.readouterr().out)["env_steps"] == tasks * 13 * 20


def test_resume_rewinds_progress_rows_logged_after_the_checkpoint(tmp_path, capsys):
    import csv

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from metarl.logging import TensorBoardWriter

    out = tmp_path / "run"
    base = ["train", "Toy", "--agent", "random", "--num-envs", "2", "--no-final-eval", "--out", str(out)]
    assert main([*base, "--steps", "80"]) == 0
    with (out / "progress.csv").open("a", newline="") as f:  # an interrupted run logged past its checkpoint
        csv.writer(f).writerows([[120, "train/return", 1.0], [160, "train/return", 2.0]])
    tb = TensorBoardWriter(out / "tb")
    tb.write(120, {"train/return": 1.0})
    tb.write(160, {"train/return": 2.0})
    tb.close()
    for f in (out / "tb").iterdir():  # TensorBoard reads event files in name order: date them as an earlier
        parts = f.name.split(".")     # process's (a resume in the same second could otherwise sort first)
        f.rename(f.with_name(".".join([*parts[:3], "1000000000", *parts[4:]])))
    assert main([*base, "--steps", "160", "--resume"]) == 0
    rows = list(csv.reader((out / "progress.csv").open()))[1:]
    keys = [(int(r[0]), r[1]) for r in rows]
    assert len(keys) == len(set(keys)) and (120, "train/return") in keys  # once each, the resumed values
    assert [float(r[2]) for r in rows if r[:2] == ["120", "train/return"]] != [1.0]
    events = EventAccumulator(str(out / "tb"))  # TensorBoard's reader: the same rows, once each
    events.Reload()
    scalars = {e.step: e.value for e in events.Scalars("train/return")}
    assert len(events.Scalars("train/return")) == len(scalars)
    assert scalars == {int(r[0]): pytest.approx(float(r[2])) for r in rows if r[1] == "train/return"}
    capsys.readouterr()
    assert main([*base, "--steps", "100", "--resume"]) == 0  # nothing left to train: said so
    assert "nothing to train" in capsys.readouterr().err
    # with the final evaluation: once; a no-op resume doesn't run and log it again
    final = [a for a in base if a != "--no-final-eval"] + ["--eval-tasks", "1", "--steps", "200"]
    assert main([*final, "--resume"]) == 0
    assert json.loads((out / "eval-first1.json").read_text())["trained_env_steps"] == 200
    rows = (out / "progress.csv").read_text()
    capsys.readouterr()
    assert main([*final, "--resume"]) == 0
    assert "already evaluates these weights" in capsys.readouterr().err
    assert (out / "progress.csv").read_text() == rows
    # `metarl eval` rewriting that file records the same weights' steps: a resume still knows them evaluated
    assert main(["eval", str(out), "--eval-tasks", "1"]) == 0
    assert json.loads((out / "eval-first1.json").read_text())["trained_env_steps"] == 200
    capsys.readouterr()
    assert main([*final, "--resume"]) == 0 and "already evaluates these weights" in capsys.readouterr().err


def test_plot_of_a_run_without_metrics_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "progress.csv").write_text("step,key,value\n")
    assert main(["plot", str(tmp_path)]) == 2
    assert "no training or evaluation metrics yet" in capsys.readouterr().err
    (tmp_path / "progress.csv").write_text("garbage\nx\n")
    assert main(["plot", str(tmp_path)]) == 2
    assert "is not a metarl progress.csv" in capsys.readouterr().err
    assert not (tmp_path / "learning_curve.png").exists()


def test_parse_options_reads_python_and_json_literals():
    from metarl.runs import parse_options

    got = parse_options(["a=True", "b=false", "c=null", "d=1,2", "e=true_story", "f=[1, 2]"], "--agent-opt", "x=1")
    assert got == {"a": True, "b": False, "c": None, "d": [1, 2], "e": "true_story", "f": [1, 2]}


def test_resume_accepts_a_default_repeated_and_refuses_a_changed_one(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "Toy", "--agent", "zero-shot", "--num-envs", "2", "--out", str(out), "--no-final-eval"]
    assert main([*base, "--steps", "40", "--agent-opt", "hidden=16"]) == 0
    gamma = json.loads((out / "config.json").read_text())["resolved"]["agent_config"]["gamma"]
    assert main([*base, "--steps", "80", "--resume", "--agent-opt", f"gamma={gamma}"]) == 0  # the run's own value
    assert main([*base, "--steps", "80", "--resume", "--agent-opt", "hidden=16,"]) == 0  # one layer either way
    capsys.readouterr()
    assert main([*base, "--steps", "120", "--resume", "--agent-opt", f"gamma={gamma / 2}"]) == 2
    assert "--agent-opt differs" in capsys.readouterr().err


def test_a_truncated_or_foreign_checkpoint_is_one_line(tmp_path, capsys):
    from metarl import checkpoint

    out = tmp_path / "run"
    assert main(["train", "Toy", "--agent", "random", "--num-envs", "2", "--steps", "40", "--no-final-eval",
                 "--out", str(out)]) == 0
    path = out / checkpoint.CHECKPOINT_NAME
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # readable as the run's other files are
    whole = path.read_bytes()
    for broken in (whole[: len(whole) // 2], b"\x80\x04garbage", b"junk\n", None):
        if broken is None:
            path.unlink()
            path.mkdir()  # a directory where the file should be
        else:
            path.write_bytes(broken)
        capsys.readouterr()
        assert main(["eval", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err
        assert "not a readable metarl checkpoint" in err and "weights_only=False" not in err


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_envs_lists_each_agents_options_and_one_number_is_one_layer(capsys):
    assert main(["envs", "--json"]) == 0
    options = json.loads(capsys.readouterr().out)["agent_options"]
    assert options["rl2"]["hidden"] == 256 and options["pearl"]["online_after_adapt"] is True
    assert options["random"] is None  # no options
    import metarl

    bench = metarl.make_benchmark("Toy", num_tasks=2, horizon=3)
    assert metarl.make_agent("zero-shot", bench, hidden=16).cfg.hidden == (16,)  # the help's hidden=128 form
    assert main(["envs"]) == 0
    assert "zero-shot options (--agent-opt, defaults): hidden=128,128 " in capsys.readouterr().out


def test_a_run_started_from_python_is_a_full_run(tmp_path, capsys):
    # metarl.runs is what `metarl train/eval` call: a run it creates is evaluated and resumed by the CLI,
    # and one the CLI resumed is resumed and evaluated from Python again
    from metarl import runs
    from metarl.errors import UsageError
    from metarl.trainer import TrainerConfig

    out = tmp_path / "run"
    trainer = TrainerConfig(steps=40, num_envs=2, final_eval_tasks_per_class=1, progress=False)
    result = runs.create(runs.RunConfig("Toy", "random", trainer=trainer), out).train()
    assert {"config.json", "checkpoint.pt", "eval-first1.json", "learning_curve.png"} <= {p.name for p in out.iterdir()}
    assert result.success_rate == json.loads((out / "eval-first1.json").read_text())["success_rate"]
    with pytest.raises(UsageError, match="already exists"):
        runs.create(runs.RunConfig("Toy", "random", trainer=trainer), out)
    assert main(["eval", str(out), "--eval-tasks", "1", "--eval-seed", "3"]) == 0
    assert main(["train", "Toy", "--agent", "random", "--out", str(out), "--resume", "--steps", "80"]) == 0
    run = runs.resume(out, steps=120, final_eval=False)
    assert (run.done, run.config.trainer.steps, run.config.trainer.num_envs) == (False, 120, 2)
    assert run.train() is None and run.trainer.state.env_steps >= 120
    resumes = json.loads((out / "config.json").read_text())["resolved"]["resumes"]
    assert [r["env_steps"] for r in resumes] == [40, 80]
    again = runs.evaluate_run(out, eval_tasks=1)
    assert again.path == out / "eval-first1.json" and again.summary["trained_env_steps"] == run.trainer.state.env_steps
    assert json.loads(again.path.read_text()) == again.summary
    assert runs.read_eval(out / "eval-first1-eval_seed=3.json")["eval_seed"] == 3

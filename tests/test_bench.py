"""``metarl bench envs`` (:mod:`metarl.envbench`) and what every result JSON carries (:mod:`metarl.provenance`)."""

import dataclasses
import time

import pytest

import metarl
from metarl.envbench import time_independent


def _broken_env():
    raise RuntimeError("this env cannot be built")


@pytest.mark.spawn
def test_independent_processes_all_report_and_sum():
    bench = metarl.make_benchmark("Toy", seed=0)
    r = time_independent(bench, workers=2, slots_per_worker=3, seconds=0.3)
    assert r["slots"] == 6
    assert 0 < r["per_process_min"] <= r["per_process_max"]
    # the total is the sum over the two processes, each between the slowest and the fastest
    assert 2 * r["per_process_min"] <= r["steps_per_s"] <= 2 * r["per_process_max"]
    # lockstep: each step paced by the slower process, so between one process's rate and the sum
    assert 0.9 * r["per_process_min"] <= r["lockstep_steps_per_s"] <= 1.1 * r["steps_per_s"]
    assert r["rss_mb_per_slot"] > 0


@pytest.mark.spawn
def test_a_process_that_dies_is_an_error_not_a_hang():
    bench = metarl.make_benchmark("Toy", seed=0)
    broken = dataclasses.replace(bench, train=dataclasses.replace(bench.train, env_factory=_broken_env))
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="failed"):
        time_independent(broken, workers=2, slots_per_worker=1, seconds=0.3)
    assert time.monotonic() - start < 60


def test_results_name_their_commit_and_say_when_the_code_was_uncommitted(tmp_path, monkeypatch):
    import shutil
    import subprocess

    from metarl.provenance import git_commit

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    monkeypatch.delenv("METARL_GIT_COMMIT", raising=False)

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "r.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    (tmp_path / "benchmarks" / "results" / "r.json").write_text('{"rows": []}\n')  # a benchmark writing its JSON
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert git_commit(tmp_path) == sha
    (tmp_path / "code.py").write_text("x = 2\n")  # measured code that isn't committed
    assert git_commit(tmp_path) == f"{sha}+dirty"
    monkeypatch.setenv("METARL_GIT_COMMIT", "abc123")  # hosts without .git
    assert git_commit(tmp_path) == "abc123"


def test_results_record_the_command_as_it_was_typed(monkeypatch):
    from metarl.provenance import provenance

    monkeypatch.setattr("sys.argv", ["/venv/lib/site-packages/metarl/__main__.py", "bench", "envs", "--json"])
    assert provenance()["command"] == ["python", "-m", "metarl", "bench", "envs", "--json"]
    monkeypatch.setattr("sys.argv", ["/venv/bin/metarl", "bench", "envs"])
    assert provenance()["command"] == ["metarl", "bench", "envs"]
    monkeypatch.setattr("sys.argv", ["benchmarks/throughput.py", "--steps", "10"])  # a script, by its path
    assert provenance()["command"] == ["python", "benchmarks/throughput.py", "--steps", "10"]


def test_one_writer_puts_provenance_first_and_replaces_files_whole(tmp_path, monkeypatch):
    import json

    from metarl.provenance import provenance, write_result

    monkeypatch.setenv("METARL_GIT_COMMIT", "abc123")
    monkeypatch.setattr("sys.argv", ["benchmarks/x.py", "--quick"])
    path = write_result(tmp_path / "r.json", {"rows": [1, 2]})
    obj = json.loads(path.read_text())
    assert list(obj)[:4] == ["command", "git_commit", "machine", "date_utc"]
    assert obj["command"] == ["python", "benchmarks/x.py", "--quick"] and obj["git_commit"] == "abc123"
    assert obj["rows"] == [1, 2] and {"cpu_model", "python", "torch", "metaworld"} <= set(obj["machine"])
    # a script that rewrites its results as it goes: provenance of its start, payload keys win in place
    head = {**provenance(["python", "run.py"]), "date_utc": "2000-01-01T00:00:00+00:00"}
    write_result(path, {"started_utc": head["date_utc"], "date_utc": "2000-01-02T00:00:00+00:00"}, head=head)
    obj = json.loads(path.read_text())
    assert list(obj) == ["command", "git_commit", "machine", "date_utc", "started_utc"]
    assert obj["command"] == ["python", "run.py"] and obj["date_utc"].startswith("2000-01-02")
    with pytest.raises(TypeError):  # not serialisable: the earlier file stays whole, no temp file is left
        write_result(path, {"x": object()})
    assert json.loads(path.read_text())["started_utc"].startswith("2000-01-01")
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_the_core_reaches_task_families_only_through_the_registry():
    import ast
    from pathlib import Path

    core = Path(metarl.__file__).resolve().parent
    offenders = []
    for path in sorted(core.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            if any(n == "metarl.envs" or n.startswith("metarl.envs.") for n in names):
                offenders.append(f"{path.relative_to(core)}:{node.lineno}")
    assert not offenders, f"metarl/ imports a task family module directly: {offenders}"


def _learning_script():
    """benchmarks/learning.py as a module (benchmarks/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "learning.py"
    spec = importlib.util.spec_from_file_location("learning_script", path)
    learning = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learning)
    return learning


def test_learning_script_refuses_to_overwrite_other_seeds_results_or_append_to_a_run(tmp_path, monkeypatch):
    import argparse
    import json

    learning = _learning_script()
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(benchmark="Toy", task=None, agent="rl2", tag="", steps=100, num_envs=2, eval_every=0,
                              max_minutes=None, eval_tasks=None, seeds=[1], evaluate_only=False, out=None)
    out = tmp_path / "Toy-rl2.json"
    out.write_text(json.dumps({"settings": {"seeds": [0]}}))
    with pytest.raises(metarl.UsageError, match="holds the results of --seeds 0; this run has --seeds 1"):
        learning.check_args(args, out)
    args.seeds = [0]
    learning.check_args(args, out)  # the same seeds: rewriting it is the point (e.g. --evaluate-only)
    (tmp_path / "runs/learning/Toy-rl2-s0").mkdir(parents=True)
    (tmp_path / "runs/learning/Toy-rl2-s0/progress.csv").write_text("step,key,value\n")
    with pytest.raises(metarl.UsageError, match="already holds a run"):
        learning.check_args(args, out)
    args.max_minutes = float("nan")
    with pytest.raises(metarl.UsageError, match="--max-minutes must be a positive number"):
        learning.check_args(args, out)


def test_the_results_index_lists_every_results_file_and_only_existing_ones():
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    listed = set()
    for line in (results / "README.md").read_text().splitlines():
        if line.startswith("| `"):  # a table row: its first cell names the file(s)
            listed |= {name.strip().strip("`") for name in line.split("|")[1].split(",")}
    on_disk = {str(p.relative_to(results)) for p in results.rglob("*") if p.is_file() and p.name != "README.md"}
    folders = {name for name in listed if name.endswith("/")}  # a folder listed whole (the sweeps' run copies)
    on_disk = {f for f in on_disk if not any(f.startswith(folder) for folder in folders)}
    on_disk |= {folder for folder in folders if (results / folder).is_dir()}
    assert not on_disk - listed, f"results files missing from benchmarks/results/README.md: {sorted(on_disk - listed)}"
    assert not listed - on_disk, (
        f"benchmarks/results/README.md names files that don't exist: {sorted(listed - on_disk)}")


def test_learning_script_runs_are_runs_that_metarl_eval_and_resume_accept(tmp_path, monkeypatch):
    import argparse

    from metarl import runs

    learning = _learning_script()
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(benchmark="Toy", task=None, agent="random", tag="", steps=200, num_envs=10,
                              eval_every=0, max_minutes=None, eval_tasks=1, seeds=[0], evaluate_only=False,
                              out=None, backend="sync", device="cpu", agent_options={}, env_options={})
    row = learning.run_seed(args, 0)
    trained = runs.load_trained(row["run_dir"])  # refused before: the checkpoint named the agent's class
    assert trained[-1] == row["env_steps"]

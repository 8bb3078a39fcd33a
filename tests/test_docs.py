"""The documentation must stay true: the site builds with no broken link, the extending examples run
from their page, the README stays short, and every repository path the docs name exists."""

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import metarl
from metarl import registry

ROOT = Path(__file__).parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _example(page: str, heading: str) -> str:
    """The first Python block after ``heading`` in ``page``."""
    section = (ROOT / page).read_text().split(heading + "\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_is_at_most_250_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_headline_tables_match_the_checked_in_report(capsys):
    # The README's headline rows and the agent pages' sweep tables come from
    # benchmarks/results/headline/report.json through benchmarks/headline_table.py: the files equal what
    # it writes, and a row edited by hand, or a report regenerated without the tables, is caught here.
    spec = importlib.util.spec_from_file_location("headline_table", ROOT / "benchmarks/headline_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    assert table.main(["--check"]) == 0, capsys.readouterr().err
    report = json.loads(table.REPORT.read_text())
    readme = (ROOT / "README.md").read_text()
    for row in table.rows(report):  # every group of the report has its row, with its IQM
        assert f"| {row['family']} | {row['agent']} | {row['seeds']} | {row['steps']} | {row['after']} |" in readme
    edited = readme.replace(table.rows(report)[0]["after"], "99.9% [99.0, 100.0]", 1)
    assert table.readme_table(edited, report) == readme
    # a report covering another family: its (family, agent) rows replace that family's rows in place or
    # follow them; rows it doesn't cover stay; the rows of a family it no longer covers go
    text = (f"{table.BEGIN}\n| family | agent | seeds |\n| --- | --- | --- |\n| Fam | RL² | 1 seed |\n"
            f"| Fam | PEARL | 1 seed |\n| Other | MAML | 1 seed |\n| Gone | MAML | 5 | [report]"
            f"(benchmarks/results/headline/report.md) |\n{table.END}\n")
    run = {"env_steps": 2_000_000, "train_seconds": 600.0}
    group = {"num_runs": 5, "runs": [run] * 5, "metrics": {"success": {"iqm": 0.9, "iqm_ci": [0.8, 1.0]},
                                                             "pre_success": {"iqm": 0.5, "iqm_ci": [0.4, 0.6]}}}
    fam = {"task_sets": [{"benchmark": "Fam", "env_options": {},
                          "groups": [{**group, "agent": "rl2"}, {**group, "agent": "maml"}]},
                         {"benchmark": "Fam", "env_options": {"test": "far"}, "groups": [{**group, "agent": "rl2"}]}]}
    lines = table.readme_table(text, fam).splitlines()[3:-1]
    assert [line.split("|")[1:4] for line in lines] == [
        [" Fam ", " RL² ", " 5 "], [" Fam ", " PEARL ", " 1 seed "], [" Fam ", " MAML ", " 5 "],
        [" Fam (far) ", " RL² ", " 5 "], [" Other ", " MAML ", " 1 seed "]]
    assert "| 2.0M | **90.0%** [80.0, 100.0] | 50.0% [40.0, 60.0] |" in lines[0]
    assert "| 2.0M | 90.0% [80.0, 100.0] |" in lines[3]  # the only agent of its family: no bold


@pytest.mark.spawn
def test_docs_site_builds_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs and mkdocs-material are not installed (scripts/install.sh dev installs them)")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
           "--site-dir", str(tmp_path / "site")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stdout + out.stderr  # strict: a broken link, anchor or page fails
    assert (tmp_path / "site" / "index.html").exists()


# Repository paths named in the docs: they are outside docs/, so `mkdocs build --strict` can't check them.
REPO_PATH = re.compile(r"(?<![\w/.-])((?:benchmarks|experiments|metarl|envs|agents|tests|scripts|docs)/[\w./=+-]*"
                       r"\.(?:py|json|sh|md|png|log))")
# A results file named without its folder (in a table whose header says `benchmarks/results/`).
RESULT_NAME = re.compile(r"`([\w.=+-]+\.json)`")
NOT_RESULTS = re.compile(r"^(eval[-.].*|config\.json)$")  # a run directory's files


def test_paths_named_in_the_docs_exist():
    missing = []
    for doc in DOC_FILES:
        text = doc.read_text()
        for path in REPO_PATH.findall(re.sub(r"\]\([^)]*\)", "]", text)):  # links are checked below
            if not (ROOT / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
        for name in RESULT_NAME.findall(text):
            if not NOT_RESULTS.match(name) and not (ROOT / "benchmarks" / "results" / name).exists():
                missing.append(f"{doc.relative_to(ROOT)}: benchmarks/results/{name}")
        for link in re.findall(r"\]\(([^)\s]+)\)", text):  # relative links (README's, into the repo)
            link = link.split("#")[0]
            if link and ":" not in link and not (doc.parent / link).exists():
                missing.append(f"{doc.relative_to(ROOT)}: link {link}")
    assert not missing, "named in the docs but not in the repository:\n" + "\n".join(missing)


def test_add_a_task_family_example_runs(monkeypatch):
    code = _example("docs/extending.md", "## Add a task family")
    assert len(code.splitlines()) <= 40
    registry.benchmark_names()  # fill the registry from entry points before copying it
    monkeypatch.setattr(registry, "_BENCHMARKS", dict(registry._BENCHMARKS))  # leave the registry as it was
    code = code.replace("steps=5_000", "steps=200")
    namespace: dict = {}
    exec(compile(code, "docs/extending.md", "exec"), namespace)
    bench = metarl.make_benchmark("TargetSpeed", seed=1)
    assert [t.params for t in bench.train.tasks] != [t.params for t in bench.test.tasks]
    assert max(t.params for t in bench.train.tasks) <= 1.0 < min(t.params for t in bench.test.tasks)


def test_add_an_agent_example_runs(monkeypatch, capsys):
    code = _example("docs/extending.md", "## Add an agent")
    assert len(code.splitlines()) <= 45
    registry.agent_names()
    monkeypatch.setattr(registry, "_AGENTS", dict(registry._AGENTS))
    code = code.replace("steps=2_000", "steps=400")
    namespace: dict = {}
    exec(compile(code, "docs/extending.md", "exec"), namespace)
    printed = float(capsys.readouterr().out.strip().splitlines()[-1])  # the final held-out success rate
    agent = namespace["agent"]
    from metarl.runs import evaluate_agent  # the same weights and seed evaluate to the same rate again

    again = evaluate_agent(namespace["bench"], agent, eval_seed=0, num_envs=metarl.TrainerConfig().num_envs)
    assert printed == pytest.approx(again.success_rate)
    assert np.linalg.norm(agent.theta) > 0  # the meta-update moved the shared action
    buf = io.BytesIO()
    torch.save(agent.state_dict(), buf)  # as the Trainer's checkpoints do, loaded with weights_only=True
    buf.seek(0)
    again = namespace["ReptileOffset"](metarl.EnvSpec.from_distribution(metarl.make_benchmark("Toy").train))
    again.load_state_dict(torch.load(buf, weights_only=True))
    assert np.array_equal(again.theta, agent.theta)
    # adaptation changes actions: after adapt(), each slot acts with its own best episode's mean action
    bench = metarl.make_benchmark("Toy", seed=0)
    envs = metarl.make_vector_env(bench.test, 3)
    envs.set_tasks(list(bench.test.tasks[:3]))
    learner = agent.make_learner()
    learner.reset(3)
    ro = metarl.collect(envs, learner, 5, seed=0)
    envs.close()
    before = learner.offset.copy()
    learner.observe(ro)
    learner.adapt()
    assert not np.allclose(learner.offset, before) and len({tuple(r) for r in learner.offset.round(6)}) == 3


def test_python_api_run_example_runs(tmp_path, monkeypatch):
    code = _example("docs/python.md", "## Runs on disk")
    monkeypatch.chdir(tmp_path)  # the example writes runs/toy-rl2
    code = code.replace("steps=20_000", "steps=2_600").replace("steps=40_000", "steps=5_200")  # 1 and 2 meta-batches
    namespace: dict = {}
    exec(compile(code, "docs/python.md", "exec"), namespace)
    run = tmp_path / "runs" / "toy-rl2"
    assert {"config.json", "checkpoint.pt", "eval.json", "eval-eval_seed=1.json"} <= {p.name for p in run.iterdir()}
    assert namespace["again"].eval_seed == 1 and namespace["again"].path.name == "eval-eval_seed=1.json"

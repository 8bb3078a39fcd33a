"""The README's code must keep working: run its "Add your own task family" and "Add your own agent" examples."""

import re
from pathlib import Path

import metarl
from metarl import registry


def test_add_your_own_family_example_runs(monkeypatch):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## Add your own task family", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.splitlines()) <= 40
    registry.benchmark_names()  # fill the registry from entry points before copying it
    monkeypatch.setattr(registry, "_BENCHMARKS", dict(registry._BENCHMARKS))  # leave the registry as it was
    code = code.replace("steps=5_000", "steps=200")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    bench = metarl.make_benchmark("TargetSpeed", seed=1)
    assert [t.params for t in bench.train.tasks] != [t.params for t in bench.test.tasks]
    assert max(t.params for t in bench.train.tasks) <= 1.0 < min(t.params for t in bench.test.tasks)


def test_add_your_own_agent_example_runs(monkeypatch, capsys):
    import numpy as np

    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## Add your own agent", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.splitlines()) <= 45
    registry.agent_names()
    monkeypatch.setattr(registry, "_AGENTS", dict(registry._AGENTS))
    code = code.replace("steps=2_000", "steps=400")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert 0.0 <= float(capsys.readouterr().out.strip().splitlines()[-1]) <= 1.0  # the held-out success rate
    agent = namespace["agent"]
    assert np.linalg.norm(agent.theta) > 0  # the meta-update moved the shared action
    import io

    import torch

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

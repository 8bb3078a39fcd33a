"""The README's code must keep working: run its "Add your own task family" example."""

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

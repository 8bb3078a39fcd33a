import numpy as np
import pytest

import metarl
from metarl.tasks import TaskSet, tasks_overlap
from metarl.types import Task


def test_toy_splits_are_disjoint_and_seeded():
    a, b = metarl.make_benchmark("Toy", seed=1), metarl.make_benchmark("Toy", seed=1)
    assert tasks_overlap(a.train.tasks, a.test.tasks) == []
    assert [t.params for t in a.train.tasks] == [t.params for t in b.train.tasks]
    c = metarl.make_benchmark("Toy", seed=2)
    assert [t.params for t in a.train.tasks] != [t.params for t in c.train.tasks]


def test_sample_is_balanced_and_reproducible():
    tasks = tuple(Task(name, i, "train", (name, i)) for name in ("b", "a", "c") for i in range(4))
    ts = TaskSet("train", tasks, env_factory=object, horizon=1)
    assert ts.task_names == ("a", "b", "c")
    s1 = ts.sample(6, np.random.default_rng(0))
    s2 = ts.sample(6, np.random.default_rng(0))
    assert s1 == s2
    assert sorted(t.name for t in s1) == ["a", "a", "b", "b", "c", "c"]
    one = ts.sample(3, np.random.default_rng(5))
    assert len({t.id for t in one}) == 3
    # within a class, no repeats while enough variants remain
    big = ts.sample(12, np.random.default_rng(1))
    assert len({t.id for t in big}) == 12
    # past the variant count, whole rounds: 10 slots of one class with 4 variants -> each 2 or 3 times
    for seed in range(5):
        counts = np.unique([t.id for t in ts.sample(30, np.random.default_rng(seed))], return_counts=True)[1]
        assert len(counts) == 12 and set(counts) <= {2, 3}


def test_sample_interleaves_classes_so_neighbouring_slots_differ():
    """Slots side by side (one worker's) run different classes; the draws are the grouped ones, reordered."""
    tasks = tuple(Task(name, i, "train", (name, i)) for name in ("a", "b", "c") for i in range(4))
    ts = TaskSet("train", tasks, env_factory=object, horizon=1)
    batch = ts.sample(9, np.random.default_rng(3))
    assert [t.name for t in batch] == ["a", "b", "c"] * 3
    rng = np.random.default_rng(3)  # the same draws as sample(): offset, then each class's variants in turn
    rng.integers(3)
    grouped = [tasks[4 * c + j] for c in range(3) for j in rng.choice(4, size=3, replace=False)]
    assert sorted(t.id for t in batch) == sorted(t.id for t in grouped)
    assert [t.id for t in batch if t.name == "b"] == [t.id for t in grouped if t.name == "b"]
    # fewer slots than classes: still one of each drawn class, in class order
    assert [t.name for t in ts.sample(2, np.random.default_rng(0))] in (["a", "b"], ["a", "c"], ["b", "c"])


def test_evaluation_tasks_respect_per_class_limit():
    tasks = tuple(Task(name, i, "test", i) for name in ("x", "y") for i in range(5))
    ts = TaskSet("test", tasks, env_factory=object, horizon=1, eval_tasks_per_class=2)
    assert [t.id for t in ts.evaluation_tasks()] == ["test/x/0", "test/x/1", "test/y/0", "test/y/1"]


def test_bad_requests_are_usage_errors():
    with pytest.raises(metarl.UsageError, match="no tasks"):
        TaskSet("train", (), env_factory=object, horizon=1)
    ts = TaskSet("train", (Task("a", 0, "train"),), env_factory=object, horizon=1)
    with pytest.raises(metarl.UsageError, match="at least one"):
        ts.sample(0, np.random.default_rng(0))
    with pytest.raises(metarl.UsageError, match="unknown benchmark"):
        metarl.make_benchmark("NoSuch")

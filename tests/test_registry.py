"""Plug-in API: families and agents registered from outside metarl, and clear errors for bad ones."""

import functools
import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import metarl
from metarl import registry
from metarl.tasks import Benchmark, TaskSet
from metarl.types import Task


@pytest.fixture(autouse=True)
def _restore_registry(monkeypatch):
    registry.benchmark_names(), registry.agent_names()  # load entry points first
    monkeypatch.setattr(registry, "_BENCHMARKS", dict(registry._BENCHMARKS))
    monkeypatch.setattr(registry, "_AGENTS", dict(registry._AGENTS))


class DiscreteEnv(gym.Env):
    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(2)
    task = None


def _box_env(dim):
    env = gym.Env()
    env.observation_space = gym.spaces.Box(-1, 1, (dim,), np.float32)
    env.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    return env


def _family(make_env=DiscreteEnv, make_test_env=None):
    def factory(seed=0, task=None):
        train = TaskSet("train", (Task("a", 0, "train", 0),), make_env, horizon=5)
        test = TaskSet("test", (Task("a", 0, "test", 1),), make_test_env or make_env, horizon=5)
        return Benchmark("Custom", train, test, seed=seed)
    return factory


def test_registered_family_appears_everywhere_and_trains():
    toy = metarl.make_benchmark("Toy", num_tasks=3, horizon=4)
    metarl.register_benchmark("Mine", lambda seed=0, task=None: toy)
    assert "Mine" in metarl.benchmark_names()
    bench = metarl.make_benchmark("Mine")
    trainer = metarl.Trainer(bench, metarl.make_agent("zero-shot", bench), metarl.TrainerConfig(
        steps=8, num_envs=2, final_eval=False, progress=False))
    trainer.train()
    assert trainer.state.iteration == 1


def test_duplicate_and_non_callable_registrations_are_rejected():
    with pytest.raises(metarl.UsageError, match="already registered"):
        metarl.register_benchmark("Toy", lambda seed=0: None)
    with pytest.raises(metarl.UsageError, match="must be callable"):
        metarl.register_agent("x", 42)


def test_factory_without_a_split_is_a_clear_error():
    metarl.register_benchmark("NoTest", lambda seed=0: type("B", (), {"train": _family()(0).train})())
    with pytest.raises(metarl.UsageError, match="no 'test' split"):
        metarl.make_benchmark("NoTest")


def test_non_box_spaces_are_a_clear_error():
    metarl.register_benchmark("Discrete", _family())
    bench = metarl.make_benchmark("Discrete")
    with pytest.raises(metarl.UsageError, match="space is Discrete.*Box"):
        metarl.make_agent("random", bench)


def test_train_and_test_spaces_must_match():
    metarl.register_benchmark("Mismatch", _family(functools.partial(_box_env, 2), functools.partial(_box_env, 3)))
    with pytest.raises(metarl.UsageError, match="train and test spaces differ"):
        metarl.make_agent("random", metarl.make_benchmark("Mismatch"))


def test_family_options_are_checked_against_the_factory_before_it_runs():
    with pytest.raises(metarl.UsageError, match=r"'Toy' takes no option colour \(its options: num_tasks, horizon"):
        metarl.make_benchmark("Toy", colour="red")
    with pytest.raises(metarl.UsageError, match="takes no option --reward-version"):  # a Meta-World flag
        metarl.make_benchmark("Toy", reward_version="v1")
    with pytest.raises(metarl.UsageError, match=r"option horizon='abc' must be a whole number \(default 20\)"):
        metarl.make_benchmark("Toy", horizon="abc")
    with pytest.raises(metarl.UsageError, match="option test=3 must be text"):
        metarl.make_benchmark("Driving", test=3)
    calls = []

    def single_class(seed=0, size=1.0):  # no task parameter: one task class
        calls.append(size)
        return _family()(seed)

    metarl.register_benchmark("Single", single_class)
    with pytest.raises(metarl.UsageError, match="'Single' has a single task class: drop --task"):
        metarl.make_benchmark("Single", task="a")
    assert metarl.make_benchmark("Single", size=2).train.task_names == ("a",) and calls == [2]  # an int for a float
    # NumPy scalars from a sweep are numbers too
    assert len(metarl.make_benchmark("Toy", num_tasks=np.int64(5), terminate_on_success=np.True_).train.tasks) == 5
    metarl.make_benchmark("Single", size=np.float32(0.5))
    with pytest.raises(metarl.UsageError, match="must be a whole number"):
        metarl.make_benchmark("Toy", num_tasks=np.float64(5.0))


def test_factory_rejecting_options_is_a_usage_error():
    def loose(seed=0, **options):  # takes anything: judged by its own TypeError
        if options:
            raise TypeError(f"unexpected {sorted(options)}")
        return _family()(seed)

    metarl.register_benchmark("Loose", loose)
    with pytest.raises(metarl.UsageError, match="rejected its options"):
        metarl.make_benchmark("Loose", colour="red")


def test_a_num_envs_that_cannot_fit_is_refused_before_the_family_is_built(tmp_path, capsys):
    from metarl.cli import main

    built = []

    def slow(seed=0):  # stands for ML45, whose construction takes ~40 s
        built.append(seed)
        return _family()(seed)

    slow.describe = lambda: {"train": ["a", "b", "c"], "test": ["a"], "tasks_per_class": 1, "options": {}}
    metarl.register_benchmark("Slow", slow)
    assert main(["train", "Slow", "--agent", "random", "--num-envs", "4", "--out", str(tmp_path / "run")]) == 2
    assert "--num-envs 4 doesn't fit Slow: use a multiple of its 3 training classes (e.g. 3)" in capsys.readouterr().err
    assert built == [] and not (tmp_path / "run").exists()


def test_every_built_in_family_describes_exactly_the_options_its_factory_takes():
    import inspect

    for name in metarl.benchmark_names():
        factory = registry.benchmark_factory(name)
        params = set(inspect.signature(factory).parameters) - {"seed", "task"}
        assert set(factory.describe()["options"]) == params, name  # `metarl envs` lists them all


def test_a_broken_plug_in_names_its_entry_point_and_leaves_the_others_listed(capsys):
    from importlib.metadata import EntryPoint

    from metarl.cli import main

    group = "metarl.benchmarks"
    registry._BENCHMARKS["Broken"] = registry._Lazy(EntryPoint("Broken", "no_such_pkg.families.fam", group),
                                                    "benchmark")
    registry._BENCHMARKS["NotAFactory"] = registry._Lazy(EntryPoint("NotAFactory", "math:pi", group), "benchmark")
    with pytest.raises(metarl.UsageError, match=r"benchmark 'Broken' \(entry point 'no_such_pkg.families.fam'\) failed "
                       r"to load: ModuleNotFoundError.*module:attribute"):
        metarl.make_benchmark("Broken")
    with pytest.raises(metarl.UsageError, match="'NotAFactory'.*is a float, not a factory"):
        metarl.make_benchmark("NotAFactory")
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "Broken: unavailable: benchmark 'Broken'" in out and "\nToy: " in out and "NotAFactory: unavailable" in out
    assert main(["envs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["benchmarks"]
    assert "ModuleNotFoundError" in rows["Broken"]["error"] and rows["Toy"]["train"]
    registry._AGENTS["gone"] = registry._Lazy(EntryPoint("gone", "no_such_pkg:agent", "metarl.agents"), "agent")
    assert main(["envs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert "gone" not in listed["agents"] and "rl2" in listed["agents"]
    assert "No module named 'no_such_pkg'" in listed["unavailable_agents"]["gone"]
    assert main(["envs"]) == 0 and "agent gone: unavailable: agent 'gone'" in capsys.readouterr().out


def test_a_type_error_inside_a_factory_is_its_bug_not_a_rejected_option():
    def buggy(seed=0, size=1.0):
        return len(size)  # TypeError from the family's own code

    metarl.register_benchmark("Buggy", buggy)
    for options in ({}, {"size": 2.0}):  # named parameters were checked already: the traceback is the family's
        with pytest.raises(TypeError, match="has no len"):
            metarl.make_benchmark("Buggy", **options)


def test_bad_horizons_split_labels_and_overlapping_splits_are_caught():
    def family(horizon=5, test_label="test", test_params=1):
        def factory(seed=0):
            train = TaskSet("train", (Task("a", 0, "train", [0]),), DiscreteEnv, horizon=horizon)
            test = TaskSet("test", (Task("a", 0, test_label, [test_params]),), DiscreteEnv, horizon=5)
            return Benchmark("Custom", train, test, seed=seed)
        return factory

    for bad in (-5, 0, 2.5, True):
        metarl.register_benchmark("H", family(horizon=bad), overwrite=True)
        with pytest.raises(metarl.UsageError, match=f"train split's horizon is {bad!r}: give a whole number"):
            metarl.make_benchmark("H")
    metarl.register_benchmark("Label", family(test_label="train"))
    with pytest.raises(metarl.UsageError, match=r"test split holds task train/a/0 \(Task.split 'train'\)"):
        metarl.make_benchmark("Label")
    metarl.register_benchmark("Same", family(test_params=0))  # list params: compared by value
    with pytest.warns(UserWarning, match="1 test task.*also training tasks.*e.g. test/a/0"):
        metarl.make_benchmark("Same")
    metarl.register_benchmark("Apart", family(test_params=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # disjoint splits, and the one family that says why it shares: no warning
        metarl.make_benchmark("Apart")
        metarl.make_benchmark("HalfCheetahDir")


def test_shm_with_an_env_factory_that_does_not_pickle_is_refused_before_the_run_dir(tmp_path, capsys):
    from metarl.cli import main
    from metarl.vector import check_backend

    def factory(seed=0):
        train = TaskSet("train", (Task("a", 0, "train", 0),), lambda: _box_env(2), horizon=5)
        test = TaskSet("test", (Task("a", 0, "test", 1),), functools.partial(_box_env, 2), horizon=5)
        return Benchmark("Lam", train, test, seed=seed)

    metarl.register_benchmark("Lam", factory)
    bench = metarl.make_benchmark("Lam")
    assert check_backend(bench.test, "shm") == "shm"  # a partial of a module-level function pickles
    with pytest.raises(metarl.UsageError, match="shm backend sends the env factory.*does not pickle.*not a lambda"):
        check_backend(bench.train, "shm")
    assert check_backend(bench.train, "sync") == "sync"
    out = tmp_path / "run"
    assert main(["train", "Lam", "--agent", "random", "--backend", "shm", "--steps", "10", "--out", str(out)]) == 2
    assert "does not pickle" in capsys.readouterr().err and not out.exists()


def test_agent_options_are_checked_by_name_and_a_factory_bug_keeps_its_traceback():
    class Named(_Agent):  # options as named parameters, like docs/extending.md's ReptileOffset
        def __init__(self, spec, device="cpu", sigma=None):  # a None default: the value's kind goes unchecked
            super().__init__(spec, device)
            self.sigma = len(sigma)  # a bug for a float sigma

    metarl.register_agent("named", Named)
    bench = metarl.make_benchmark("Toy")
    with pytest.raises(metarl.UsageError,
                       match=r"agent 'named' does not take these options .*sigmaa.*its options: sigma$"):
        metarl.make_agent("named", bench, sigmaa=0.8)
    with pytest.raises(TypeError, match="has no len"):
        metarl.make_agent("named", bench, sigma=0.8)
    assert metarl.make_agent("named", bench, sigma=[1, 2]).sigma == 2


def test_overlap_compares_params_by_value():
    import dataclasses

    from metarl.tasks import tasks_overlap

    @dataclasses.dataclass(frozen=True)
    class Goal:
        xy: np.ndarray

    big = np.zeros(2000)
    changed = big.copy()
    changed[1000] = 1.0  # repr() of both reads the same ("...")
    for same, other in (({"a": 1, "b": big}, {"b": big.copy(), "a": 1}), ([big], [big.copy()]),
                        (Goal(big), Goal(big.copy())), ((1.0, 2), (1.0, 2))):
        assert tasks_overlap([Task("c", 0, "train", same)], [Task("c", 0, "test", other)]) == ["test/c/0"]
    for a, b in (({"b": big}, {"b": changed}), ([big], [changed]), (Goal(big), Goal(changed)), (1.0, 2.0)):
        assert tasks_overlap([Task("c", 0, "train", a)], [Task("c", 0, "test", b)]) == []
    assert tasks_overlap([Task("c", 0, "train", 1.0)], [Task("d", 0, "test", 1.0)]) == []  # another class


def test_a_plug_in_that_fails_inside_its_module_names_the_line(tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    (tmp_path / "broken_family.py").write_text("def helper():\n    return undefined_name\n\nhelper()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint("Fails", "broken_family:factory", "metarl.benchmarks")
    registry._BENCHMARKS["Fails"] = registry._Lazy(ep, "benchmark")
    with pytest.raises(metarl.UsageError,
                       match=r"NameError: name 'undefined_name' is not defined at .*broken_family.py:2;"
                             r" fix that package \(`python -c \"import broken_family\"`"):
        metarl.make_benchmark("Fails")


def test_shm_picklability_check_lets_multiprocessing_objects_through():
    import multiprocessing as mp

    from metarl.vector.shm import check_picklable

    check_picklable(functools.partial(_box_env, 2))
    check_picklable(functools.partial(dict, lock=mp.get_context("spawn").Lock()))  # pickles while a worker starts
    with pytest.raises(metarl.UsageError, match="does not pickle"):
        check_picklable(lambda: _box_env(2))


class _Learner:
    def __init__(self, act_dim, shape_fn):
        self.act_dim, self.shape_fn = act_dim, shape_fn

    def reset(self, n):
        self.n = n

    def act(self, step, deterministic=False):
        return self.shape_fn(self.n, self.act_dim)

    def observe(self, rollout):
        pass

    def adapt(self):
        pass


class _Agent:
    adapt_episodes, post_episodes = 1, 0

    def __init__(self, spec, device="cpu", level=1.0):
        self.spec, self.level = spec, level
        self.shape_fn = lambda n, d: metarl.ActOutput(np.zeros((n, d), np.float32), {})
        self.state = {"w": torch.zeros(2)}

    def make_learner(self):
        return _Learner(self.spec.act_dim, self.shape_fn)

    def meta_update(self, batch):
        return {"meta/level": self.level}

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.state = state




def test_agent_factories_and_what_they_return_are_checked_before_training(tmp_path):
    bench = metarl.make_benchmark("Toy")
    metarl.register_agent("ok", _Agent)
    with pytest.raises(metarl.UsageError, match=r"option level='high' must be a finite number \(default 1.0\)"):
        metarl.make_agent("ok", bench, level="high")

    def no_device(spec, level=1.0):
        return _Agent(spec)

    metarl.register_agent("nodev", no_device)
    with pytest.raises(metarl.UsageError, match=r"factory\(spec, device, \*\*options\), but it takes \(spec, level\)"):
        metarl.make_agent("nodev", bench)
    metarl.register_agent("devname", lambda spec, dev: _Agent(spec, dev))  # any name for the device
    assert isinstance(metarl.make_agent("devname", bench), _Agent)
    for attr, value, msg in (("adapt_episodes", 0, "adapt_episodes is 0: give a whole number >= 1"),
                             ("post_episodes", 1.0, "post_episodes is 1.0: give a whole number >= 0")):
        metarl.register_agent(attr, type("A", (_Agent,), {attr: value}))
        with pytest.raises(metarl.UsageError, match=msg):
            metarl.make_agent(attr, bench)
    delattr_agent = type("C", (), {"adapt_episodes": 1, "post_episodes": 0,
                                   "__init__": lambda self, spec, device: None})
    metarl.register_agent("bare", delattr_agent)
    with pytest.raises(metarl.UsageError, match="lacks make_learner, meta_update, state_dict, load_state_dict"):
        metarl.make_agent("bare", bench)
    # a state_dict a weights-only checkpoint can't hold is found when the Trainer gets its run dir
    agent = metarl.make_agent("ok", bench)
    agent.state = {"w": torch.zeros(2), "nested": [{"rng": np.random.default_rng(0)}]}
    cfg = metarl.TrainerConfig(steps=10, num_envs=2, final_eval=False, progress=False)
    with pytest.raises(metarl.UsageError, match=r"checkpoint _Agent.state_dict\(\)\['nested'\]\[0\]\['rng'\] is a "
                       r"numpy.random._generator.Generator"):
        metarl.Trainer(bench, agent, cfg, run_dir=tmp_path / "run")
    agent.state = None
    with pytest.raises(metarl.UsageError, match=r"state_dict\(\) returned a NoneType: return a dict"):
        metarl.Trainer(bench, agent, cfg, run_dir=tmp_path / "run")
    import enum

    class Mode(enum.IntEnum):
        A = 1

    for bad, where in (({"mode": Mode.A}, r"\['mode'\] is a .*Mode"), ({np.int64(0): 1.0}, r"key np.int64\(0\) is a")):
        agent.state = bad  # an int subclass and a NumPy key: both unreadable by weights-only loading
        with pytest.raises(metarl.UsageError, match=where):
            metarl.Trainer(bench, agent, cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    agent.state = {"w": np.zeros(2), "n": np.float32(1)}  # NumPy is converted: fine
    metarl.Trainer(bench, agent, cfg, run_dir=tmp_path / "new" / "run")  # and a missing run dir is made
    assert (tmp_path / "new" / "run").is_dir()


@pytest.mark.parametrize("act, msg", [
    (lambda n, d: metarl.ActOutput(np.zeros(d, np.float32), {}), r"actions of shape \(2,\) for 3 slots"),
    (lambda n, d: metarl.ActOutput(np.zeros((n, d + 1), np.float32), {}), r"actions of shape \(3, 3\) for 3 slots"),
    (lambda n, d: (np.zeros((n, d)),), "returned a tuple: return metarl.ActOutput"),
    (lambda n, d: metarl.ActOutput(np.full((n, d), np.nan), {}), r"non-finite actions in slot\(s\) \[0, 1, 2\]"),
    (lambda n, d: metarl.ActOutput(np.zeros((n, d)), {"v": np.zeros(n + 1)}), r"extras\['v'\] has shape \(4,\)"),
    (lambda n, d: metarl.ActOutput(np.zeros((n, d)), {"v": 1.0}), r"extras\['v'\] has shape \(\)"),
])
def test_collect_refuses_what_act_should_not_return(act, msg):
    bench = metarl.make_benchmark("Toy", horizon=3)
    metarl.register_agent("shapes", _Agent)
    agent = metarl.make_agent("shapes", bench)
    agent.shape_fn = act
    with pytest.raises(metarl.UsageError, match=msg):
        _collect_three(bench, agent)


def _collect_three(bench, agent):
    """One episode in each of 3 slots on the first 3 training tasks."""
    envs = metarl.make_vector_env(bench.train, 3)
    try:
        envs.set_tasks(list(bench.train.tasks[:3]))
        learner = agent.make_learner()
        learner.reset(3)
        return metarl.collect(envs, learner, 1, seed=0)
    finally:
        envs.close()


def test_collect_takes_tensors_even_with_grad():
    bench = metarl.make_benchmark("Toy", horizon=3)
    metarl.register_agent("tensors", _Agent)
    agent = metarl.make_agent("tensors", bench)
    agent.shape_fn = lambda n, d: metarl.ActOutput(torch.ones(n, d, requires_grad=True) * 0.1, {"v": torch.ones(n)})
    ro = _collect_three(bench, agent)
    assert ro.actions.shape == (3, 3, 2) and np.allclose(ro.actions, 0.1) and ro.extras["v"].shape == (3, 3)


def test_a_metric_that_is_not_a_number_is_named():
    from metarl.logging import Logger

    seen = []
    log = Logger([type("W", (), {"write": lambda self, step, m: seen.append(m)})()])
    log.log(1, {"a": np.float32(0.5), "b": torch.tensor(2.0), "c": 3, "d": True})
    assert seen == [{"a": 0.5, "b": 2.0, "c": 3, "d": 1.0}] and type(seen[0]["c"]) is int
    for bad in ("text", "0.5", torch.zeros(3), [1.0]):
        with pytest.raises(metarl.UsageError, match="metric 'meta/x' is a .*not a number: return plain floats"):
            log.log(1, {"meta/x": bad})
    log.log(2, {"meta/se": None})  # undefined this time: a gap
    assert np.isnan(seen[-1]["meta/se"])


def test_registering_the_factory_an_entry_point_names_is_no_error():
    from importlib.metadata import EntryPoint

    registry._AGENTS["mine"] = registry._Lazy(EntryPoint("mine", f"{__name__}:_Agent", "metarl.agents"), "agent")
    metarl.register_agent("mine", _Agent)  # the plug-in module's own register line: a no-op
    with pytest.raises(metarl.UsageError, match="already registered"):
        metarl.register_agent("mine", _Learner)


def test_two_entry_points_claiming_one_name_warn(monkeypatch):
    from importlib.metadata import EntryPoint

    eps = [EntryPoint("dup", "pkg_a:f", "metarl.agents"), EntryPoint("dup", "pkg_b:f", "metarl.agents"),
           EntryPoint("dup", "pkg_a:f", "metarl.agents")]  # the same one twice (a stale install): no warning
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    monkeypatch.setattr(registry, "_LOADED", set())
    table: dict = {}
    with pytest.warns(UserWarning, match=r"agent 'dup' is defined by two entry points, 'pkg_a:f' .* and 'pkg_b:f'"):
        registry._load_entry_points("metarl.agents", table)
    assert table["dup"].ep.value == "pkg_a:f"


def test_training_continues_the_trial_into_the_post_episodes_as_the_evaluator_does():
    seen = []

    class Recording(_Learner):
        def act(self, step, deterministic=False):
            if step.first.all():
                seen.append(step.prev_reward.copy())
            return super().act(step, deterministic)

    class Post(_Agent):
        post_episodes = 1

        def make_learner(self):
            return Recording(self.spec.act_dim, self.shape_fn)

        def meta_update(self, batch):
            seen.append(batch.pre.last_rewards())
            return {}

    bench = metarl.make_benchmark("Toy", horizon=3)
    metarl.register_agent("post", Post)
    metarl.Trainer(bench, metarl.make_agent("post", bench), metarl.TrainerConfig(
        steps=6, num_envs=2, final_eval=False, progress=False)).train()
    pre_first, post_first, last = seen
    assert not pre_first.any() and last.any() and np.array_equal(post_first, last)


def test_a_state_dict_checkpoints_cannot_hold_is_refused_before_the_run_dir_is_touched(tmp_path, capsys):
    from metarl.cli import main

    class Unsavable(_Agent):
        def state_dict(self):
            return {"x": object()}

    metarl.register_agent("unsavable", Unsavable)
    out = tmp_path / "run"
    args = ["train", "Toy", "--agent", "unsavable", "--steps", "20", "--num-envs", "2", "--out", str(out)]
    assert main(args) == 2 and "cannot hold" in capsys.readouterr().err and not out.exists()
    assert main(["train", "Toy", "--agent", "random", "--steps", "20", "--num-envs", "2", "--out", str(out)]) == 0
    before = sorted(p.name for p in out.iterdir())
    assert main([*args, "--force"]) == 2  # the good run is still there
    assert sorted(p.name for p in out.iterdir()) == before


def test_meta_update_must_return_a_dict():
    class Forgot(_Agent):
        def meta_update(self, batch):
            self.level += 1  # no return

    metarl.register_agent("forgot", Forgot)
    bench = metarl.make_benchmark("Toy", horizon=3)
    trainer = metarl.Trainer(bench, metarl.make_agent("forgot", bench),
                             metarl.TrainerConfig(steps=6, num_envs=2, final_eval=False, progress=False))
    with pytest.raises(metarl.UsageError, match="Forgot.meta_update returned a NoneType: return a dict"):
        trainer.train()


def test_a_package_re_exporting_its_factory_may_register_it_too():
    from importlib.metadata import EntryPoint

    factory = type("Agent", (_Agent,), {"__module__": "my_pkg.agent", "__qualname__": "Agent"})
    registry._AGENTS["pkg"] = registry._Lazy(EntryPoint("pkg", "my_pkg:Agent", "metarl.agents"), "agent")
    metarl.register_agent("pkg", factory)  # defined in my_pkg.agent, named by the entry point as my_pkg:Agent
    other = type("Agent", (_Agent,), {"__module__": "other_pkg", "__qualname__": "Agent"})
    with pytest.raises(metarl.UsageError, match="already registered"):
        metarl.register_agent("pkg", other)

import dataclasses
import math
import pickle
import sys

import gymnasium as gym
import numpy as np
import pytest

import metarl
from metarl.envs import highway as hw
from metarl.rollout import collect
from metarl.tasks import tasks_overlap
from metarl.types import Task
from metarl.vector import make_vector_env

from .conftest import ConstantLearner


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("highway_env")
    return hw.highway(seed=3, num_tasks=12, num_test_tasks=8, horizon=4)


def _scenario(**changes) -> hw.Scenario:
    base = hw.Scenario(lanes=3, density=1.0, vehicles=12, time_wanted=1.5, distance_wanted=10.0,
                       comfort_acc_max=3.0, politeness=0.5, lane_change_min_acc_gain=0.2,
                       lane_change_max_braking_imposed=2.0, target_speed=30.0, speed_weight=0.8)
    return dataclasses.replace(base, **changes)


def _episode(env, scenario, seed, actions):
    env.task = Task("highway", 0, "train", scenario)
    obs, _ = env.reset(seed=seed)
    out = [(obs, 0.0)]
    for a in actions:
        obs, r, te, tr, _ = env.step(np.asarray(a, np.float32))
        out.append((obs, r))
        if te or tr:
            break
    return out


def test_splits_are_disjoint_and_seeded(bench):
    assert tasks_overlap(bench.train.tasks, bench.test.tasks) == []
    again = hw.highway(seed=3, num_tasks=12, num_test_tasks=8, horizon=4)
    for split in ("train", "test"):
        assert [t.params for t in getattr(bench, split).tasks] == [t.params for t in getattr(again, split).tasks]
    other = hw.highway(seed=4, num_tasks=12, num_test_tasks=8, horizon=4)
    assert [t.params for t in bench.train.tasks] != [t.params for t in other.train.tasks]
    # interpolation: density x headway cells of a checkerboard, train on even cells, test on odd ones
    assert {hw.checkerboard_parity(t.params.density, t.params.time_wanted) for t in bench.train.tasks} == {0}
    assert {hw.checkerboard_parity(t.params.density, t.params.time_wanted) for t in bench.test.tasks} == {1}
    for t in bench.train.tasks + bench.test.tasks:
        hash(t.params)
        assert t.name == "highway" and t.params.lanes in hw.LANES
        for key, (lo, hi) in hw.TRAIN_RANGES.items():
            assert lo <= getattr(t.params, key) <= hi
    assert len(bench.train.tasks) == 12 and len(bench.test.tasks) == 8
    assert bench.info["test"] == "interpolate"


def test_extrapolation_is_denser_and_more_aggressive_than_training():
    pytest.importorskip("highway_env")
    b = hw.highway(seed=0, test="extrapolate", num_tasks=60, num_test_tasks=30)
    train = [t.params for t in b.train.tasks]
    above = ("density", "comfort_acc_max", "lane_change_max_braking_imposed")
    below = ("time_wanted", "distance_wanted", "politeness", "lane_change_min_acc_gain")
    for s in (t.params for t in b.test.tasks):
        for key in above:
            assert getattr(s, key) >= hw.TRAIN_RANGES[key][1] and getattr(s, key) > max(getattr(p, key) for p in train)
        for key in below:
            assert getattr(s, key) <= hw.TRAIN_RANGES[key][0] and getattr(s, key) < min(getattr(p, key) for p in train)
    # more traffic on the same road: more cars than the training scenario with the same lane count
    for lanes in hw.LANES:
        test_cars = [s.vehicles for s in (t.params for t in b.test.tasks) if s.lanes == lanes]
        train_cars = [p.vehicles for p in train if p.lanes == lanes]
        if test_cars and train_cars:
            assert min(test_cars) >= max(train_cars)
    assert b.info["test"] == "extrapolate"


def test_spaces_are_fixed_float32_boxes_across_splits_and_lane_counts(bench):
    train_env, test_env = bench.train.make_env(), bench.test.make_env()
    for env in (train_env, test_env):
        assert env.observation_space == gym.spaces.Box(-1.0, 1.0, (35,), np.float32)
        assert env.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    for lanes in (2, 4):
        (obs, _), *_ = _episode(train_env, _scenario(lanes=lanes, vehicles=6), seed=1, actions=[])
        assert obs.shape == (35,) and obs.dtype == np.float32 and train_env.observation_space.contains(obs)
    pickle.loads(pickle.dumps(bench.train.env_factory))


def test_reset_seed_reproduces_traffic_and_tasks_change_it(bench):
    actions = [[0.2, 0.0], [0.0, 0.1], [-0.2, -0.1]]
    a = _episode(bench.train.make_env(), bench.train.tasks[0].params, 7, actions)
    b = _episode(bench.train.make_env(), bench.train.tasks[0].params, 7, actions)
    assert all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b, strict=True))
    c = _episode(bench.train.make_env(), bench.train.tasks[0].params, 8, actions)
    assert not np.array_equal(a[0][0], c[0][0])
    # two tasks of the benchmark, same seed and actions -> different observations and rewards
    d = _episode(bench.train.make_env(), bench.train.tasks[1].params, 7, actions)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, d, strict=False))
    assert [x[1] for x in a[1:]] != [y[1] for y in d[1:]]


def test_driver_behaviour_and_preferences_are_applied():
    pytest.importorskip("highway_env")
    env = hw.HighwayTaskEnv(horizon=5)
    actions = [[0.0, 0.0]] * 4
    calm = _episode(env, _scenario(time_wanted=2.5, politeness=0.9), 5, actions)
    pushy = _episode(env, _scenario(time_wanted=0.5, politeness=0.0), 5, actions)
    assert np.array_equal(calm[0][0], pushy[0][0])  # same seed: same traffic at the start ...
    assert not np.array_equal(calm[-1][0], pushy[-1][0])  # ... driven differently
    ego = env.upstream.vehicle
    others = [v for v in env.upstream.road.vehicles if v is not ego]
    assert others and all(v.TIME_WANTED == 0.5 and v.POLITENESS == 0.0 for v in others)
    # the reward's target speed: the ego car starts at 25 m/s, saturating a target of 25 but not of 35
    slow = _episode(env, _scenario(target_speed=25.0), 5, actions[:1])
    fast = _episode(env, _scenario(target_speed=35.0), 5, actions[:1])
    assert np.array_equal(slow[1][0], fast[1][0]) and slow[1][1] > fast[1][1]


def test_truncation_success_and_termination():
    pytest.importorskip("highway_env")
    from highway_env.vehicle.objects import Obstacle

    env = hw.HighwayTaskEnv(horizon=3)
    env.task = Task("highway", 0, "train", _scenario(vehicles=1, density=0.6))
    env.reset(seed=0)
    ends = [env.step(np.zeros(2, np.float32))[2:] for _ in range(3)]
    assert [(te, tr, info["success"]) for te, tr, info in ends] == [(False, False, 0.0)] * 2 + [(False, True, 1.0)]
    assert all(isinstance(info["success"], float) for *_, info in ends)

    braking = hw.HighwayTaskEnv(horizon=10)  # 5 s of full braking from 25 m/s: mean speed 12.5 m/s
    braking.task = env.task
    braking.reset(seed=0)
    ends = [braking.step(np.array([-1.0, 0.0], np.float32))[2:] for _ in range(10)]
    assert ends[-1][:2] == (False, True) and all(info["success"] == 0.0 for *_, info in ends)
    assert ends[-1][2]["speed"] < 1.0

    def crash_ahead(horizon):
        env.horizon = horizon
        env.reset(seed=0)
        ego = env.upstream.vehicle
        env.upstream.road.objects.append(Obstacle(env.upstream.road, ego.position + np.array([9.0, 0.0])))
        return env.step(np.zeros(2, np.float32))

    for horizon in (1, 3):  # a crash terminates, also on the horizon's step, and is never a success
        _, _, te, tr, info = crash_ahead(horizon)
        assert (te, tr, info["success"], info["crashed"]) == (True, False, 0.0, True)

    wide = hw.HighwayTaskEnv(horizon=40, max_steering=math.pi / 4)  # leaving the road terminates too
    wide.task = env.task
    wide.reset(seed=0)
    for _ in range(40):
        _, r, te, tr, info = wide.step(np.array([0.0, 1.0], np.float32))
        if te or tr:
            break
    assert te and not tr and info["success"] == 0.0 and not wide.upstream.vehicle.on_road


def test_reset_needs_a_task_and_rollouts_work(bench):
    env = bench.train.make_env()
    with pytest.raises(RuntimeError, match="env.task"):
        env.reset()
    envs = make_vector_env(bench.train, 2, backend="sync")
    envs.set_tasks(bench.train.tasks[:2])
    ro = collect(envs, ConstantLearner(act_dim=2), episodes=1, seed=[0, 1])
    assert ro.obs.shape[1:] == (2, 35) and ro.obs.shape[0] <= 4
    ended = ro.terminated | ro.truncated
    assert (ro.success <= ro.truncated).all() and ended.any(axis=0).all()
    envs.close()


def test_rgb_array_frames(bench):
    env = hw.HighwayTaskEnv(horizon=2, render_mode="rgb_array")
    env.task = bench.train.tasks[0]
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (150, 600, 3) and frame.dtype == np.uint8 and frame.std() > 0
    env.step(np.array([1.0, 0.0], np.float32))
    assert not np.array_equal(env.render(), frame)
    env.close()
    assert hw.HighwayTaskEnv(horizon=2).render() is None


@pytest.mark.parametrize("options, match", [
    ({"task": "merge"}, "single task class"),
    ({"test": "outside"}, "extrapolate"),
    ({"num_tasks": 0}, "num_tasks"),
    ({"horizon": 0}, "horizon"),
    ({"max_steering": 2.0}, "max_steering"),
    ({"render_mode": "human"}, "rgb_array"),
])
def test_bad_options_are_usage_errors(options, match):
    with pytest.raises(metarl.UsageError, match=match):
        hw.highway(**options)


def test_missing_highway_env_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "highway_env", None)  # makes `import highway_env` fail
    with pytest.raises(metarl.UsageError, match=r"pip install 'metarl\[driving\]'"):
        hw.highway()
    assert hw.highway.describe()["train"] == ["highway"]

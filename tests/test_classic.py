import math
import pickle

import gymnasium as gym
import numpy as np
import pytest

import metarl
from metarl.envs import classic
from metarl.tasks import tasks_overlap
from metarl.types import Task

H = 8  # short horizon keeps the MuJoCo tests fast

FAMILIES = {
    "HalfCheetahVel": classic.half_cheetah_vel,
    "HalfCheetahDir": classic.half_cheetah_dir,
    "AntDir": classic.ant_dir,
    "PointNav": classic.point_nav,
    "PointNavSparse": classic.point_nav_sparse,
}
CONTINUOUS = ["HalfCheetahVel", "AntDir", "PointNav", "PointNavSparse"]


def _bench(name, **options):
    return FAMILIES[name](horizon=options.pop("horizon", H), **options)


def _in_bins(values, lo, hi, num_bins, parity):
    bins = np.floor((np.asarray(values) - lo) / ((hi - lo) / num_bins)).astype(int)
    return bool(np.all(bins % 2 == parity)) and bool(np.all((bins >= 0) & (bins < num_bins)))


def _actions(env, name, goal, n):
    """A fixed action sequence: random for MuJoCo, straight at ``goal`` for the point families."""
    if name.startswith("Point"):
        step = np.asarray(goal) / np.abs(goal).max()
        return [step.astype(np.float32)] * n
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, env.action_space.shape).astype(np.float32) for _ in range(n)]


def _run(env, task, actions, seed=3):
    env.task = task
    env.reset(seed=seed)
    return [env.step(a) for a in actions]


@pytest.mark.parametrize("name", CONTINUOUS)
def test_splits_are_disjoint_and_seeded(name):
    a, b, c = _bench(name, seed=1), _bench(name, seed=1), _bench(name, seed=2)
    assert tasks_overlap(a.train.tasks, a.test.tasks) == []
    for split in ("train", "test"):
        params = [t.params for t in getattr(a, split).tasks]
        assert params == [t.params for t in getattr(b, split).tasks]
        assert params != [t.params for t in getattr(c, split).tasks]
        assert len(set(params)) == len(params)
    assert {t.name for t in a.train.tasks} == {t.name for t in a.test.tasks}
    # goals come from alternating bins: train even, test odd
    tr, te = [t.params for t in a.train.tasks], [t.params for t in a.test.tasks]
    if name == "HalfCheetahVel":
        assert _in_bins(tr, 0, 2, 20, 0) and _in_bins(te, 0, 2, 20, 1)
    elif name == "AntDir":
        assert _in_bins(tr, 0, 2 * math.pi, 16, 0) and _in_bins(te, 0, 2 * math.pi, 16, 1)
    elif name == "PointNavSparse":
        assert np.allclose(np.linalg.norm(tr, axis=1), 1.0) and min(y for _, y in tr + te) >= 0
        ang = lambda ps: [math.atan2(y, x) for x, y in ps]  # noqa: E731
        assert _in_bins(ang(tr), 0, math.pi, 20, 0) and _in_bins(ang(te), 0, math.pi, 20, 1)
    else:
        cell = lambda ps: np.floor((np.asarray(ps) + 0.5) / 0.1).astype(int).sum(axis=1) % 2  # noqa: E731
        assert (cell(tr) == 0).all() and (cell(te) == 1).all()
        assert np.abs(np.asarray(tr + te)).max() <= 0.5


def test_cheetah_dir_train_and_test_are_the_two_directions():
    bench = _bench("HalfCheetahDir")
    assert sorted(t.params for t in bench.train.tasks) == [-1.0, 1.0]
    assert sorted(t.params for t in bench.test.tasks) == [-1.0, 1.0]
    assert len(tasks_overlap(bench.train.tasks, bench.test.tasks)) == 2  # documented overlap
    assert "same two directions" in classic.half_cheetah_dir.describe()["note"]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_describe_matches_the_built_benchmark(name):
    d, bench = FAMILIES[name].describe(), FAMILIES[name]()
    assert d["train"] == list(bench.train.task_names) and d["test"] == list(bench.test.task_names)
    assert d["tasks_per_class"] == len(bench.train.tasks)
    assert d["eval_tasks_per_class"] == len(bench.test.evaluation_tasks())
    assert "horizon" in d["options"]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_tasks_change_rewards(name):
    bench = _bench(name, horizon=20)
    env = bench.train.make_env()
    t0, t1 = bench.train.tasks[0], bench.train.tasks[-1]
    actions = _actions(env, name, t0.params, 20)
    r0 = [s[1] for s in _run(env, t0, actions)]
    r0_again = [s[1] for s in _run(env, t0, actions)]
    r1 = [s[1] for s in _run(env, t1, actions)]
    assert r0 == r0_again  # same reset seed, same actions, same task -> same rewards
    assert abs(sum(r0) - sum(r1)) > 0.1
    env.close()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_truncates_at_the_horizon(name):
    bench = _bench(name, horizon=5)
    env = bench.test.make_env()
    env.task = bench.test.tasks[0]
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, np.float32)
    ends = [env.step(zero)[2:4] for _ in range(5)]
    assert ends == [(False, False)] * 4 + [(False, True)]
    env.close()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_spaces_are_float32_boxes_equal_across_splits_and_tasks(name):
    bench = _bench(name)
    a, b = bench.train.make_env(), bench.test.make_env()
    with pytest.raises(RuntimeError, match="before a task was set"):
        a.reset()
    for space in (a.observation_space, a.action_space):
        assert isinstance(space, gym.spaces.Box) and space.dtype == np.float32
    assert a.observation_space == b.observation_space and a.action_space == b.action_space
    b.task = bench.test.tasks[-1]
    obs, _ = b.reset(seed=0)
    assert obs.dtype == np.float32 and obs in b.observation_space
    step = b.step(b.action_space.sample())
    assert step[0].dtype == np.float32 and isinstance(step[1], float) and "success" in step[4]
    env = pickle.loads(pickle.dumps(bench.train.env_factory))()  # factories go to worker processes
    assert env.observation_space == a.observation_space
    for e in (a, b, env):
        e.close()


@pytest.mark.parametrize("name", ["HalfCheetahVel", "HalfCheetahDir", "AntDir"])
def test_reset_seed_fixes_initial_state_noise(name):
    bench = _bench(name)
    env = bench.train.make_env()
    env.task = bench.train.tasks[0]
    o1, o2, o3 = env.reset(seed=5)[0], env.reset(seed=5)[0], env.reset(seed=6)[0]
    assert np.array_equal(o1, o2) and not np.array_equal(o1, o3)
    env.close()


@pytest.mark.parametrize("name", ["HalfCheetahVel", "HalfCheetahDir", "AntDir"])
def test_locomotion_rewards_match_a_hand_computation(name):
    bench = _bench(name)
    env = bench.train.make_env()
    for task in (bench.train.tasks[0], bench.test.tasks[-1]):
        g = task.params
        actions = _actions(env, name, None, H)
        for a, (_, r, _, _, info) in zip(actions, _run(env, task, actions), strict=True):
            a = a.astype(np.float64)
            if name == "AntDir":
                assert info["reward_ctrl"] == pytest.approx(-0.5 * np.sum(a**2))
                expected = (math.cos(g) * info["x_velocity"] + math.sin(g) * info["y_velocity"]
                            + info["reward_survive"] + info["reward_ctrl"] + info["reward_contact"])
                assert info["reward_survive"] == 1.0 and info["reward_contact"] <= 0
            else:
                assert info["reward_ctrl"] == pytest.approx(-0.05 * np.sum(a**2))
                forward = -abs(info["x_velocity"] - g) if name == "HalfCheetahVel" else g * info["x_velocity"]
                expected = forward + info["reward_ctrl"]
            assert r == pytest.approx(expected, abs=1e-9)
    env.close()


@pytest.mark.parametrize("sparse", [False, True])
def test_point_rewards_match_a_hand_computation(sparse):
    bench = _bench("PointNavSparse" if sparse else "PointNav", horizon=20)
    env = bench.train.make_env()
    task = bench.train.tasks[3]
    actions = _actions(env, "Point", task.params, 20)
    rewards = []
    for obs, r, _, _, info in _run(env, task, actions):
        d = float(np.linalg.norm(obs.astype(np.float64) - np.asarray(task.params)))
        assert info["dense_reward"] == pytest.approx(-d, abs=1e-6)
        if sparse:
            assert r == pytest.approx(1 - d if d <= 0.2 else 0.0, abs=1e-6)
            assert info["success"] == float(d <= 0.2)
        else:
            assert r == pytest.approx(-d, abs=1e-6)
        rewards.append(r)
    assert max(rewards) > (0.8 if sparse else -0.1)  # heading straight at the goal gets there


def test_point_nav_terminates_at_the_goal_and_task_applies_at_reset():
    env = classic.PointNavEnv(horizon=100)
    env.task = Task("point-nav", 0, "train", (0.05, -0.03))
    env.reset()
    env.task = Task("point-nav", 1, "train", (0.4, 0.4))  # takes effect at the next reset only
    _, r, terminated, truncated, info = env.step(np.array([0.5, -0.3], np.float32))
    assert r == pytest.approx(0.0, abs=1e-6) and terminated and not truncated and info["success"] == 1.0
    env.reset()
    _, r, terminated, _, _ = env.step(np.array([0.5, -0.3], np.float32))
    assert not terminated and r == pytest.approx(-math.hypot(0.35, 0.43))


def test_ant_terminates_when_unhealthy():
    bench = _bench("AntDir", horizon=50)
    env = bench.train.make_env()
    env.task = bench.train.tasks[0]
    env.reset(seed=0)
    inner = env.mujoco_env
    qpos = inner.data.qpos.copy()
    qpos[2] = 2.0  # torso above the healthy range (z <= 1)
    inner.set_state(qpos, inner.data.qvel.copy())
    _, _, terminated, truncated, _ = env.step(np.zeros(8, np.float32))
    assert terminated and not truncated
    env.close()


def test_cheetah_vel_success_needs_a_full_window_near_the_goal():
    window = classic.SUCCESS_WINDOW
    env = classic.CheetahVelEnv(horizon=window + 5)
    zero = np.zeros(6, np.float32)
    for goal, expect in ((0.0, True), (1.5, False)):
        env.task = Task("cheetah-vel", 0, "train", goal)
        env.reset(seed=0)
        success = [env.step(zero)[4]["success"] for _ in range(window + 5)]
        assert not any(success[: window - 1])  # the 1 s window is not full yet
        assert any(success) == expect  # standing still is 0 m/s: within 0.2 of 0, far from 1.5
    env.close()


def test_collect_runs_a_family_end_to_end():
    from metarl.rollout import collect
    from metarl.vector import make_vector_env

    from .conftest import ConstantLearner

    bench = _bench("HalfCheetahVel", horizon=4)
    envs = make_vector_env(bench.train, 2, backend="sync")
    envs.set_tasks(bench.train.tasks[:2])
    ro = collect(envs, ConstantLearner(act_dim=6, value=0.3), episodes=2, seed=0)
    assert ro.obs.shape == (8, 2, 17) and ro.truncated.sum() == 4 and not ro.terminated.any()
    envs.close()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_bad_options_are_usage_errors(name):
    factory = FAMILIES[name]
    with pytest.raises(metarl.UsageError, match="single task class"):
        factory(task="x")
    with pytest.raises(metarl.UsageError, match="horizon"):
        factory(horizon=0)
    if name != "HalfCheetahDir":
        for opt in ("num_tasks", "num_test_tasks"):
            with pytest.raises(metarl.UsageError, match=opt):
                factory(**{opt: 0})
    if name == "HalfCheetahVel":
        with pytest.raises(metarl.UsageError, match="max_velocity"):
            factory(max_velocity=0)


def test_family_builds_through_make_benchmark(monkeypatch):
    metarl.benchmark_names()  # load the registry, then add a name for this test only
    monkeypatch.setitem(metarl.registry._BENCHMARKS, "HalfCheetahVel-test", classic.half_cheetah_vel)
    bench = metarl.make_benchmark("HalfCheetahVel-test", seed=3, num_tasks=4, max_velocity=3.0)
    assert len(bench.train.tasks) == 4 and max(t.params for t in bench.train.tasks) < 3.0
    with pytest.raises(metarl.UsageError, match="takes no option no_such_option"):
        metarl.make_benchmark("HalfCheetahVel-test", no_such_option=1)

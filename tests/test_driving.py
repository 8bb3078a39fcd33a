"""The fast batched driving family: splits, hidden parameters, episode semantics, native backend."""

from __future__ import annotations

import numpy as np
import pytest

import metarl
from metarl.envs.driving import LANE_HALF_WIDTH, MAX_STEER, DrivingEnv, DrivingVectorEnv, driving
from metarl.errors import UsageError
from metarl.tasks import tasks_overlap
from metarl.vector import make_vector_env


def controller(obs: np.ndarray, speed: np.ndarray | float) -> np.ndarray:
    """Lane-keeping PD on (offset, heading, curvature) plus a speed P-controller: ``[N, 2]`` actions."""
    d, psi, v, k = obs[:, 0] * LANE_HALF_WIDTH, obs[:, 1] * 0.2, (obs[:, 2] + 1.5) * 10, obs[:, 3] * 0.02
    steer = (2.7 * k - 0.15 * d - psi) / MAX_STEER
    return np.stack([steer, np.clip(0.8 * (speed - v), -1, 1)], axis=1)


def drive(env: DrivingVectorEnv, speed, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    obs, _ = env.reset(seed=seed)
    out = {"success": np.zeros(env.num_envs), "terminated": np.zeros(env.num_envs, bool),
           "truncated": np.zeros(env.num_envs, bool), "return": np.zeros(env.num_envs)}
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(controller(obs, speed))
        out["success"] = np.maximum(out["success"], info["success"])
        out["terminated"] |= term
        out["truncated"] |= trunc
        out["return"] += r
    return out


def test_splits_disjoint_seeded_and_extrapolation_outside_training():
    a, b, c = driving(seed=0), driving(seed=0), driving(seed=1)
    assert [t.params for t in a.train.tasks] == [t.params for t in b.train.tasks]
    assert [t.params for t in a.test.tasks] == [t.params for t in b.test.tasks]
    assert [t.params for t in a.train.tasks] != [t.params for t in c.train.tasks]
    assert tasks_overlap(a.train.tasks, a.test.tasks) == []
    train_speed = np.array([t.params.target_speed for t in a.train.tasks])
    test_speed = np.array([t.params.target_speed for t in a.test.tasks])
    assert np.all(np.floor(train_speed) % 2 == 0) and np.all(np.floor(test_speed) % 2 == 1)  # interleaved bins
    x = driving(seed=0, test="extrapolate")
    assert tasks_overlap(x.train.tasks, x.test.tasks) == []
    train = [t.params for t in x.train.tasks]
    for p in (t.params for t in x.test.tasks):
        assert p.target_speed > max(q.target_speed for q in train)
        assert p.grip < min(q.grip for q in train)
        assert p.steer_gain > max(q.steer_gain for q in train)


def test_every_task_is_feasible_and_success_needs_the_hidden_speed():
    """An oracle that knows each target speed succeeds everywhere; one fixed speed fails most tasks."""
    for test in ("interpolate", "extrapolate"):
        bench = driving(seed=0, test=test)
        for dist in (bench.train, bench.test):
            env = DrivingVectorEnv(len(dist.tasks), 100)
            env.set_attr("task", list(dist.tasks))
            oracle = drive(env, env.param("target_speed"), 100)
            assert oracle["success"].all() and not oracle["terminated"].any() and oracle["truncated"].all()
            fixed = drive(env, 13.0, 100)
            assert fixed["success"].mean() < 0.5
            assert fixed["return"].mean() < oracle["return"].mean()


def test_tasks_differ_measurably_under_the_same_actions():
    tasks = driving(seed=0).train.tasks
    env = DrivingVectorEnv(2, 100)
    env.set_attr("task", [tasks[0], tasks[-1]])
    obs, _ = env.reset(seed=[3, 3])
    np.testing.assert_array_equal(obs[0, :3], obs[1, :3])  # same start state (same seed)
    rewards = []
    for _ in range(30):
        obs, r, *_ = env.step(np.tile([[0.2, 0.5]], (2, 1)))
        rewards.append(r)
    rewards = np.array(rewards)
    assert np.abs(rewards[:, 0] - rewards[:, 1]).max() > 0.1
    assert np.abs(obs[0] - obs[1]).max() > 0.1


def test_vector_env_equals_single_envs_and_reset_mask():
    tasks = list(driving(seed=0).test.tasks[:3])
    vec = DrivingVectorEnv(3, 20)
    vec.set_attr("task", tasks)
    singles = [DrivingEnv(20) for _ in tasks]
    for env, task in zip(singles, tasks, strict=True):
        env.task = task
    obs_v, _ = vec.reset(seed=[5, 6, 7])
    obs_s = np.stack([env.reset(seed=s)[0] for env, s in zip(singles, (5, 6, 7), strict=True)])
    np.testing.assert_array_equal(obs_v, obs_s)
    rng = np.random.default_rng(0)
    for _ in range(25):  # past the horizon: slot 0 is reset by mask, the others keep their state
        act = rng.uniform(-1, 1, size=(3, 2)).astype(np.float32)
        obs_v, r_v, term_v, trunc_v, info = vec.step(act)
        outs = [env.step(a) for env, a in zip(singles, act, strict=True)]
        np.testing.assert_array_equal(obs_v, np.stack([o[0] for o in outs]))
        np.testing.assert_array_equal(r_v, [o[1] for o in outs])
        np.testing.assert_array_equal(trunc_v, [o[3] for o in outs])
        if trunc_v[0] or term_v[0]:
            before = vec.state()
            obs_r, _ = vec.reset(options={"reset_mask": np.array([True, False, False])})
            after = vec.state()
            assert after["s"][0] == 0.0 and np.array_equal(after["s"][1:], before["s"][1:])
            np.testing.assert_array_equal(obs_r[0], singles[0].reset()[0])
            break
    else:
        pytest.fail("slot 0 never finished an episode")


def test_truncation_is_not_termination():
    task = driving(seed=0).train.tasks[0]
    env = DrivingEnv(horizon=15)
    env.task = task
    obs, _ = env.reset(seed=0)
    flags = [env.step(controller(obs[None], 10.0)[0])[2:4] for _ in range(15)]
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])
    env.reset(seed=0)
    for _ in range(15):  # full left lock leaves the road: terminated, not truncated
        _, r, term, trunc, info = env.step(np.array([1.0, 1.0]))
        if term:
            break
    assert term and not trunc and r == -10.0 and info["success"] == 0.0


def test_native_backend_is_auto_for_driving_and_rejected_elsewhere():
    bench = metarl.make_benchmark("Driving", num_tasks=4, horizon=20)
    envs = make_vector_env(bench.train, 4)
    assert envs.backend == "native" and isinstance(envs.env, DrivingVectorEnv)
    sync = make_vector_env(bench.train, 4, "sync")
    for e in (envs, sync):
        e.set_tasks(list(bench.train.tasks))
    np.testing.assert_array_equal(envs.reset(seed=1)[0], sync.reset(seed=1)[0])
    a = np.full((4, 2), 0.3, np.float32)
    np.testing.assert_array_equal(envs.step(a)[0], sync.step(a)[0])
    with pytest.raises(UsageError, match="native"):
        make_vector_env(metarl.make_benchmark("Toy").train, 2, "native")


def test_reset_before_task_and_bad_options_are_clear():
    with pytest.raises(RuntimeError, match="task"):
        DrivingEnv().reset()
    with pytest.raises(UsageError, match="extrapolate"):
        driving(test="sideways")
    with pytest.raises(UsageError, match="single task class"):
        driving(task="drive")
    env = DrivingVectorEnv(2)
    env.set_attr("task", list(driving(seed=0).train.tasks[:2]))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="one bool per slot"):
        env.reset(options={"reset_mask": np.ones(3, bool)})
    with pytest.raises(ValueError, match="one seed per slot"):
        env.reset(seed=[1, 2, 3])
    with pytest.raises(TypeError, match="not a Driving task"):
        env.set_attr("task", list(metarl.make_benchmark("Toy").train.tasks[:2]))


def test_a_seed_list_with_none_reseeds_only_the_slots_given_a_seed():
    import metarl

    bench = metarl.make_benchmark("Driving", seed=0)
    a, b = metarl.make_vector_env(bench.test, 3), metarl.make_vector_env(bench.test, 3)
    for env in (a, b):
        env.set_tasks(list(bench.test.tasks[:3]))
    a.reset(seed=[1, 2, 3])
    obs_a, _ = a.reset(seed=[5, None, 9])  # slot 1 continues its stream: its second reset
    b.reset(seed=[0, 2, 0])
    obs_b, _ = b.reset(seed=[5, None, 9])
    np.testing.assert_array_equal(obs_a, obs_b)
    c = metarl.make_vector_env(bench.test, 3)
    c.set_tasks(list(bench.test.tasks[:3]))
    obs_c, _ = c.reset(seed=[5, 2, 9])  # slot 1's first reset with seed 2: not what a second one gives
    assert np.array_equal(obs_c[[0, 2]], obs_a[[0, 2]]) and not np.array_equal(obs_c[1], obs_a[1])

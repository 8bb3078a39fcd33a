import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from metarl.rollout import collect, torch_threads
from metarl.vector import make_vector_env

from .conftest import ConstantLearner, ScriptedEnv, scripted_benchmark


def _envs(params):
    bench = scripted_benchmark(params)
    envs = make_vector_env(bench.train, len(params))
    envs.set_tasks(list(bench.train.tasks))
    return envs


def test_truncation_vs_termination_and_final_observation():
    # slot 0: 3-step episodes ending by termination; slot 1: 3-step episodes ending by truncation
    envs = _envs([(3, True, -1), (3, False, -1)])
    ro = collect(envs, ConstantLearner(), episodes=2)
    assert ro.obs.shape == (6, 2, 2)
    np.testing.assert_array_equal(ro.terminated[:, 0], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(ro.truncated[:, 0], [0] * 6)
    np.testing.assert_array_equal(ro.truncated[:, 1], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(ro.terminated[:, 1], [0] * 6)
    # the final observation of episode 0 is kept (t=3), and the next obs is the reset one (t=0, ep 1)
    np.testing.assert_array_equal(ro.next_obs[2, 1], [3, 0])
    np.testing.assert_array_equal(ro.obs[3, 1], [0, 100])
    np.testing.assert_array_equal(ro.first[:, 0], [1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(ro.episode[:, 0], [0, 0, 0, 1, 1, 1])
    assert ro.valid.all()


def test_slots_finishing_early_are_masked():
    envs = _envs([(2, False, -1), (4, False, -1)])
    ro = collect(envs, ConstantLearner(), episodes=1)
    assert ro.obs.shape[0] == 4
    np.testing.assert_array_equal(ro.valid[:, 0], [1, 1, 0, 0])
    np.testing.assert_array_equal(ro.valid[:, 1], [1, 1, 1, 1])
    assert ro.num_steps == 6
    np.testing.assert_allclose(ro.episode_returns()[0], [1 + 2, 1 + 2 + 3 + 4])


def test_success_counts_at_any_step_and_prev_reward_enters_next_input():
    envs = _envs([(4, False, 2), (4, False, -1)])
    learner = ConstantLearner()
    ro = collect(envs, learner, episodes=1)
    np.testing.assert_array_equal(ro.episode_successes()[0], [True, False])
    assert not ro.success[-1, 0]  # success only at step 2, still counted
    # prev_reward seen at step t is the reward of step t-1 (0 at the start)
    np.testing.assert_allclose([s.prev_reward[0] for s in learner.seen], [0, 1, 2, 3])
    np.testing.assert_array_equal(ro.extras["tag"][:, 1], [1, 1, 1, 1])


def test_collect_requires_disabled_autoreset():
    env = SyncVectorEnv([ScriptedEnv], autoreset_mode=AutoresetMode.NEXT_STEP)
    with pytest.raises(AssertionError, match="autoreset disabled"):
        collect(env, ConstantLearner(), episodes=1)


def test_reset_before_set_tasks_is_a_clear_error():
    bench = scripted_benchmark([(2, False, -1)])
    envs = make_vector_env(bench.train, 1)
    with pytest.raises(RuntimeError, match="set_tasks"):
        envs.reset()


def test_actions_are_clipped_for_the_env_but_stored_raw():
    envs = _envs([(2, False, -1)])
    ro = collect(envs, ConstantLearner(value=5.0), episodes=1)
    assert (ro.actions == 5.0).all()


def test_a_continued_trial_sees_the_last_reward_of_the_previous_rollout():
    envs = _envs([(2, False, -1), (3, False, -1)])
    first = collect(envs, ConstantLearner(), episodes=1)
    np.testing.assert_allclose(first.last_rewards(), [2, 3])  # slot 0's step 3 is invalid
    learner = ConstantLearner()
    collect(envs, learner, episodes=1, prev_reward=first.last_rewards())
    np.testing.assert_allclose(learner.seen[0].prev_reward, [2, 3])
    assert learner.seen[0].first.all()


def test_evaluator_asks_the_learner_whether_evaluation_is_deterministic():
    import metarl

    class Recording(ConstantLearner):
        def act(self, step, deterministic=False):
            self.flags.append(deterministic)
            return super().act(step, deterministic)

    bench = scripted_benchmark([(2, False, -1)])
    envs = make_vector_env(bench.test, 1)
    for attr, expected in ((None, True), (False, False)):
        learner = Recording()
        learner.flags = []
        if attr is not None:
            learner.eval_deterministic = attr
        metarl.evaluate(bench.test, learner, envs, metarl.EvalConfig(adapt_episodes=1, eval_episodes=1))
        assert learner.flags == [False, False, expected, expected]


def test_evaluation_draws_depend_on_its_seed_alone_and_leave_the_callers_stream_alone():
    import metarl

    bench = metarl.make_benchmark("Toy", num_tasks=6, horizon=10, seed=0)
    learner = metarl.make_agent("random", bench).make_learner()  # samples while adapting, from torch
    envs = make_vector_env(bench.test, 2)
    config = metarl.EvalConfig(adapt_episodes=2, eval_episodes=1)
    try:
        def pre_returns(torch_seed, seed):
            torch.manual_seed(torch_seed)
            result = metarl.evaluate(bench.test, learner, envs, config, seed)
            return [g["pre_return"] for g in result.per_goal], torch.rand(4)

        a, after_a = pre_returns(1, 0)
        b, after_b = pre_returns(2, 0)  # a different torch state before: the same evaluation
        c, _ = pre_returns(1, 1)
        torch.manual_seed(1)
        untouched = torch.rand(4)
    finally:
        envs.close()
    assert a == b
    assert a != c  # the draws do matter: another evaluation seed, other returns
    assert torch.equal(after_a, untouched) and not torch.equal(after_b, untouched)  # the caller's stream continues


def test_the_random_floor_acts_at_random_in_evaluation_episodes_too():
    import metarl

    bench = metarl.make_benchmark("Toy", num_tasks=4, horizon=10, seed=0)
    envs = make_vector_env(bench.test, 2)
    try:
        result = metarl.evaluate(bench.test, metarl.make_agent("random", bench).make_learner(), envs,
                                 metarl.EvalConfig(adapt_episodes=1, eval_episodes=2))
    finally:
        envs.close()
    assert result.eval_actions == "sampled"
    assert len({round(g["return"], 6) for g in result.per_goal}) == len(result.per_goal)  # no two goals alike


def test_torch_threads_sets_and_restores_the_count_even_on_error():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(target):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


class _SeededEnv(ScriptedEnv):
    """ScriptedEnv whose rewards carry a number drawn at reset from the reset seed's RNG; a seeded reset
    starts a new trial (episode count from 0)."""

    def reset(self, *, seed=None, options=None):
        gym.Env.reset(self, seed=seed)  # seeds self.np_random
        if seed is not None:
            self.episode = -1
        self.offset = float(self.np_random.uniform())
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward + self.offset, terminated, truncated, info


def test_evaluation_batches_take_classes_in_turn_and_each_task_keeps_its_seed():
    import metarl
    from metarl.tasks import TaskSet
    from metarl.types import Task

    # episodes of 3, 4 and 2 steps: a slot of a shorter class pads (steps and resets) while a longer one
    # finishes its adaptation episodes, which must not reach its evaluation episodes' draws
    tasks = [Task(name, i, "test", (length, False, 2)) for name, k, length in (("a", 3, 3), ("b", 2, 4), ("c", 1, 2))
             for i in range(k)]
    dist = TaskSet("test", tuple(tasks), _SeededEnv, horizon=4)
    per_goal = {}
    for n in (1, 2, 3, 4):  # 4: the second batch is padded
        envs = make_vector_env(dist, n)
        batches, set_tasks = [], envs.set_tasks
        envs.set_tasks = lambda ts, set_tasks=set_tasks, batches=batches: (batches.append([t.name for t in ts]),
                                                                         set_tasks(ts))[1]
        result = metarl.evaluate(dist, ConstantLearner(), envs, metarl.EvalConfig(adapt_episodes=2, eval_episodes=1),
                                 seed=7)
        envs.close()
        per_goal[n] = result.per_goal
        if n == 3:  # one of each class side by side, not a worker's worth of one class
            assert batches == [["a", "b", "c"], ["a", "b", "a"]]
    assert [(g["task"], g["index"]) for g in per_goal[1]] == [(t.name, t.index) for t in tasks]
    assert len({g["pre_return"] for g in per_goal[1]}) == len(tasks)  # every task drew from its own seed
    assert len({g["return"] for g in per_goal[1]}) == len(tasks)
    for n in (2, 3, 4):  # ... the same one whichever batch and slot it ran in
        assert per_goal[n] == per_goal[1], n


@pytest.mark.parametrize("agent, options", [("random", {}), ("zero-shot", {}), ("rl2", {"hidden": 16}),
                                            ("maml", {}), ("pearl", {})])
def test_a_tasks_sampled_evaluation_is_the_same_with_any_slot_count(agent, options, one_torch_thread):
    """Each task draws its noise (actions, PEARL's z) from its own stream: 1, 2 or 4 slots (4: a padded
    batch) give it the same trial, which sampling from torch's one global stream would not. Episodes end
    at success, so slots that finish early wait for others; their padding steps must not draw."""
    import metarl

    bench = metarl.make_benchmark("Toy", num_tasks=8, horizon=25, seed=0, terminate_on_success=True)
    algo = metarl.make_agent(agent, bench, **options)
    config = metarl.EvalConfig(adapt_episodes=2, eval_episodes=2, deterministic=False)
    per_goal = {}
    for n in (1, 2, 4):
        envs = make_vector_env(bench.test, n)
        try:
            per_goal[n] = metarl.evaluate(bench.test, algo.make_learner(), envs, config, seed=0).per_goal
        finally:
            envs.close()
    assert len({round(g["return"], 6) for g in per_goal[1]}) == len(per_goal[1])  # the goals' trials differ
    successes = [g[k] for g in per_goal[1] for k in ("pre_success", "success")]
    assert 0 < sum(s > 0 for s in successes) < len(successes)  # episodes of different lengths: slots wait
    for n in (2, 4):
        for ours, one in zip(per_goal[n], per_goal[1], strict=True):
            assert (ours["task"], ours["index"], ours["success"], ours["pre_success"]) == \
                (one["task"], one["index"], one["success"], one["pre_success"])
            # equal up to the last bits of batched matrix products (batch sizes 1, 2, 4 may round differently)
            assert (ours["return"], ours["pre_return"]) == pytest.approx((one["return"], one["pre_return"]), rel=1e-5)


def test_slot_noise_draws_of_a_slot_depend_on_its_seed_alone():
    from metarl.seeding import SlotNoise, slot_noise

    three, one = SlotNoise([5, 7, 9]), SlotNoise([7])
    assert torch.equal(three.normal(4)[1], one.normal(4)[0])
    assert torch.equal(three.normal(4, torch.tensor([False, True, False]))[0], one.normal(4)[0])  # a mask
    assert torch.equal(three.uniform(3, torch.tensor([1]))[0], one.uniform(3)[0])  # indices; uniform draws
    assert three.normal(2, torch.zeros(3, dtype=torch.bool)).shape == (0, 2)
    u = SlotNoise(range(50)).uniform(100)
    assert u.shape == (50, 100) and float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.02 and abs(float(u.std()) - 12**-0.5) < 0.02  # U[0, 1): 5000 draws
    assert len({round(float(x), 6) for x in SlotNoise(range(20)).normal(1).flatten()}) == 20  # streams differ
    # not torch.manual_seed(s)'s stream, which the env-side or other code could share
    assert not torch.equal(SlotNoise([7]).normal(4)[0], torch.randn(4, generator=torch.Generator().manual_seed(7)))
    # across block ends, with another slot drawing more in between, slot 1 reads the same stream
    two, alone = SlotNoise([5, 7], block=8), SlotNoise([7], block=8)
    for size in (3, 3, 2, 7):
        two.normal(5, torch.tensor([0]))
        assert torch.equal(two.normal(size)[1], alone.normal(size)[0])
    with pytest.raises(ValueError, match="draws of 9 numbers"):
        alone.normal(9)
    # inactive slots get zeros and keep their place in the stream
    pair, solo = SlotNoise([1, 2]), SlotNoise([2])
    skipped = pair.normal(3, active=np.array([True, False]))
    assert torch.equal(skipped[1], torch.zeros(3)) and torch.equal(pair.normal(3)[1], solo.normal(3)[0])
    assert torch.equal(pair.uniform(2, torch.tensor([1]), active=np.array([False, False])), torch.zeros(1, 2))
    assert slot_noise(3, 2).seeds == [3, 4] and slot_noise([8, 1], 2).seeds == [8, 1] and slot_noise(None, 2) is None
    with pytest.raises(ValueError, match="3 seeds for 2 slots"):
        slot_noise([1, 2, 3], 2)


def _eval_json(successes: list[tuple[str, float]], **extra) -> dict:
    """An evaluation JSON object with these per-goal (class, success) pairs."""
    from types import SimpleNamespace

    from metarl.evaluator import _aggregate
    from metarl.trainer import eval_summary

    index: dict[str, int] = {}
    goals = []
    for t, sr in successes:
        index[t] = index.get(t, -1) + 1
        goals.append({"task": t, "index": index[t], "success": sr, "pre_success": 0.0, "return": 10 * sr,
                      "pre_return": 0.0})
    result = _aggregate(goals, steps=0)
    result.tasks_digest = extra.pop("tasks_digest", "d1")
    return {**eval_summary(result, SimpleNamespace(label="Toy", reward_version=None), 0), **extra}


def test_paired_comparison_by_hand():
    from metarl.errors import UsageError
    from metarl.evaluator import compare

    a = _eval_json([("a", 1.0), ("a", 0.0), ("a", 1.0), ("b", 0.0), ("b", 0.0), ("b", 1.0)])
    b = _eval_json([("a", 1.0), ("a", 1.0), ("a", 1.0), ("b", 1.0), ("b", 0.0), ("b", 1.0)])
    out = compare(a, b)
    s = out["success_rate"]
    assert (s["a"], s["b"], s["diff"]) == pytest.approx((0.5, 5 / 6, 1 / 3))
    # per-task differences: class a 0, 1, 0 and class b 1, 0, 0 (sample variance 1/3 each)
    assert s["paired_se"] == pytest.approx(np.sqrt(1 / 9 + 1 / 9) / 2)
    # the evaluations' own errors: sqrt(1/9 + 1/9) / 2 and sqrt(0 + 1/9) / 2
    assert s["unpaired_se"] == pytest.approx(np.hypot(np.sqrt(2 / 9) / 2, 1 / 6))
    assert out["return"]["diff"] == pytest.approx(10 / 3) and out["pre_success_rate"]["paired_se"] == 0.0
    assert [tuple(out["per_task"][c].values()) for c in "ab"] == [pytest.approx((2 / 3, 1.0, 1 / 3)),
                                                                 pytest.approx((1 / 3, 2 / 3, 1 / 3))]
    assert out["num_tasks"] == 6 and out["common_noise"]  # both eval_seed 0
    assert not compare(a, {**b, "eval_seed": 5})["common_noise"]
    assert compare(a, a)["success_rate"]["diff"] == 0.0 and compare(a, a)["success_rate"]["paired_se"] == 0.0
    for other, match in (({**b, "benchmark": "ML1/reach-v3"}, "differ in benchmark"),
                         ({**b, "tasks_digest": "d2"}, "different held-out tasks"),
                         (_eval_json([("a", 1.0), ("a", 1.0), ("b", 1.0), ("b", 0.0)]),
                          "cover different held-out tasks")):
        with pytest.raises(UsageError, match=match):
            compare(a, other)
    # files without a digest (written before it): the benchmark seed and family options must match
    with pytest.raises(UsageError, match="differ in env_overrides"):
        compare({**a, "tasks_digest": ""}, {**b, "env_overrides": {"test": "extrapolate"}})
    with pytest.raises(UsageError, match="differ in seed"):
        compare(a, {**b, "tasks_digest": None, "seed": 1})
    with pytest.raises(UsageError, match="per_goal entries lack 'pre_return'"):
        compare(a, {**b, "per_goal": [{k: v for k, v in g.items() if k != "pre_return"} for g in b["per_goal"]]})


def test_tasks_digest_tells_splits_and_seeds_apart_and_hashes_values():
    import dataclasses

    import metarl
    from metarl.evaluator import _canonical, tasks_digest

    def digest(**kw):
        return tasks_digest(metarl.make_benchmark("Driving", **kw).test.evaluation_tasks())

    assert digest(seed=0) == digest(seed=0) != digest(seed=1)
    assert digest(seed=0) != digest(seed=0, test="extrapolate")  # same task ids, other scenarios

    @dataclasses.dataclass
    class P:
        goal: np.ndarray
        kind: type

    # values, not pickles: a class by name, an array by dtype, shape and bytes
    assert _canonical(P(np.array([1.5, 2.0]), float)) == ("P", (("goal", ("array", "<f8", (2,), np.array(
        [1.5, 2.0]).tobytes().hex())), ("kind", ("class", "float"))))
    assert _canonical(b"not a pickle") == ("bytes", b"not a pickle".hex())


def test_evaluation_standard_error_by_hand():
    from metarl.evaluator import _aggregate, standard_error

    # class a: per-task success 1, 0, 1, 0 (var 1/3); class b: 1, 1, 1/3 (var 4/27)
    goals = [{"task": t, "success": s, "pre_success": 0.0, "return": 0.0, "pre_return": 0.0}
             for t, s in (("a", 1.0), ("a", 0.0), ("a", 1.0), ("a", 0.0), ("b", 1.0), ("b", 1.0), ("b", 1 / 3))]
    result = _aggregate(goals, steps=0)
    assert result.success_rate == pytest.approx((0.5 + 7 / 9) / 2)
    assert result.success_rate_se == pytest.approx(np.sqrt((1 / 3) / 4 + (4 / 27) / 3) / 2)
    assert result.pre_success_rate_se == 0.0
    assert result.metrics()["eval/success_rate_se"] == result.success_rate_se  # logged: the plot draws a band
    assert np.isnan(standard_error([[1.0], [0.0, 1.0]]))  # one task in a class: no variance to estimate


class _BoxActionEnv(gym.Env):
    """An action Box of shape (2, 1) with a different bound per component; the observation is the action."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(np.array([[-1.0], [-0.1]], np.float32), np.array([[1.0], [0.1]], np.float32))
    task = None

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        assert action.shape == (2, 1)
        return action.reshape(-1).astype(np.float32), 0.0, False, True, {}


def test_actions_are_clipped_per_component_of_a_multi_dimensional_box_and_closed_envs_refuse():
    from metarl.tasks import TaskSet
    from metarl.types import Task

    dist = TaskSet("train", (Task("box", 0, "train", None),), _BoxActionEnv, horizon=1)
    envs = make_vector_env(dist, 2)
    envs.set_tasks([dist.tasks[0]] * 2)
    ro = collect(envs, ConstantLearner(act_dim=2, value=0.5), episodes=1)
    np.testing.assert_array_equal(ro.next_obs[0], np.float32([[0.5, 0.1], [0.5, 0.1]]))  # each slot, each bound its own
    envs.close()
    with pytest.raises(RuntimeError, match="after close"):
        envs.reset()


def test_an_unbounded_action_space_is_refused_with_the_reason():
    import metarl
    from metarl.tasks import TaskSet
    from metarl.types import Task
    from metarl.vector import EnvSpec

    class Unbounded(_BoxActionEnv):
        action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    dist = TaskSet("train", (Task("box", 0, "train", None),), Unbounded, horizon=1)
    with pytest.raises(metarl.UsageError, match="unbounded"):
        EnvSpec.from_distribution(dist)

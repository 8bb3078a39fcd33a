"""Real Meta-World tests with short horizons (a few seconds each)."""

import numpy as np
import pytest
import torch

import metarl
from metarl.envs.metaworld import MetaWorldTaskEnv, OfficialEvaluatorAdapter
from metarl.rollout import collect
from metarl.tasks import tasks_overlap
from metarl.types import ActOutput

pytestmark = pytest.mark.metaworld


@pytest.fixture(scope="module")
def ml1():
    return metarl.make_benchmark("ML1", task="reach-v3", seed=7, horizon=20)


def _rand_vecs(tasks):
    import pickle

    return {pickle.loads(t.params.data)["rand_vec"].tobytes() for t in tasks}


def test_ml1_split_sizes_and_disjoint_goals(ml1):
    assert (len(ml1.train.tasks), len(ml1.test.tasks)) == (50, 50)
    assert ml1.train.task_names == ml1.test.task_names == ("reach-v3",)
    assert len(ml1.test.evaluation_tasks()) == 50
    assert not _rand_vecs(ml1.train.tasks) & _rand_vecs(ml1.test.tasks)
    assert tasks_overlap(ml1.train.tasks, ml1.test.tasks) == []
    assert ml1.reward_version == "v2"


def test_ml10_classes_disjoint_and_40_eval_goals():
    bench = metarl.make_benchmark("ML10", seed=0, horizon=10)
    assert (len(bench.train.task_names), len(bench.test.task_names)) == (10, 5)
    assert not set(bench.train.task_names) & set(bench.test.task_names)
    assert len(bench.test.evaluation_tasks()) == 5 * 40
    batch = bench.train.sample(10, np.random.default_rng(0))
    assert sorted(t.name for t in batch) == sorted(bench.train.task_names)  # one slot per class
    envs = metarl.make_vector_env(bench.train, 10)
    envs.set_tasks(batch)
    torch.manual_seed(0)
    ro = collect(envs, metarl.make_agent("random", bench).make_learner(), episodes=1)
    envs.close()
    assert ro.obs.shape == (10, 10, 39) and ro.truncated[-1].all() and not ro.terminated.any()


def test_same_seed_same_tasks_and_rollouts_in_process_and_in_workers(ml1):
    other = metarl.make_benchmark("ML1", task="reach-v3", seed=7, horizon=20)
    assert [t.params for t in other.test.tasks] == [t.params for t in ml1.test.tasks]
    tasks = ml1.train.sample(3, np.random.default_rng(1))
    outs = []
    for backend in ("sync", "sync", "async"):
        envs = metarl.make_vector_env(ml1.train, 3, backend)
        envs.set_tasks(tasks)
        torch.manual_seed(0)
        outs.append(collect(envs, metarl.make_agent("random", ml1).make_learner(), episodes=2, seed=[1, 2, 3]))
        envs.close()
    for ro in outs[1:]:
        np.testing.assert_array_equal(ro.obs, outs[0].obs)
        np.testing.assert_array_equal(ro.rewards, outs[0].rewards)
    assert not np.array_equal(outs[0].obs[:, 0], outs[0].obs[:, 1])  # different goals, different runs


def test_reset_before_task_is_a_clear_error():
    env = MetaWorldTaskEnv()
    with pytest.raises(RuntimeError, match="assign env.task first"):
        env.reset()


class Scripted:
    """Upstream's scripted button-press policy: deterministic, needs no goal in the observation."""

    def __init__(self):
        from metaworld.policies import SawyerButtonPressTopdownV3Policy

        self.policy = SawyerButtonPressTopdownV3Policy()

    def reset(self, n):
        pass

    def act(self, step, deterministic=False):
        actions = np.stack([self.policy.get_action(o.astype(np.float64)) for o in step.obs])
        return ActOutput(actions.astype(np.float32), {})

    def observe(self, rollout):
        pass

    def adapt(self):
        pass


def test_official_adapter_acts_as_metarl_evaluates():
    """The adapter's evaluation episodes use the Learner's own action choice (MAML and RL² sample), as
    metarl.evaluate does, unless told otherwise: a cross-check compares like with like."""
    from metarl.envs.metaworld import OfficialEvaluatorAdapter

    class Recorder(Scripted):
        def __init__(self, eval_deterministic=None):
            self.seen = []
            if eval_deterministic is not None:
                self.eval_deterministic = eval_deterministic

        def act(self, step, deterministic=False):
            self.seen.append(deterministic)
            return ActOutput(np.zeros((len(step.obs), 4), np.float32), {})

    obs = np.zeros((1, 39), np.float32)
    for learner, given, expected in ((Recorder(), None, True), (Recorder(False), None, False),
                                     (Recorder(False), True, True)):
        OfficialEvaluatorAdapter(learner, 1, given).eval_action(obs)
        assert learner.seen == [expected]


@pytest.mark.filterwarnings("ignore:Constant")
def test_parity_with_official_metaworld_evaluator():
    import metaworld
    from metaworld.evaluation import metalearning_evaluation

    task, horizon, goals, seed = "button-press-topdown-v3", 60, 8, 3
    bench = metarl.make_benchmark("ML1", task=task, seed=seed, horizon=horizon)
    envs = metarl.make_vector_env(bench.test, 4)
    ours = metarl.evaluate(bench.test, Scripted(), envs,
                           metarl.EvalConfig(adapt_episodes=1, eval_episodes=2, max_tasks_per_class=goals), seed)
    envs.close()
    # Upstream counts the first episodes to *finish* per task class, so with several envs per class
    # it favours early (successful) episodes; one env per class makes its count exact.
    up_envs = metaworld.make_ml_envs(task, seed=seed, meta_batch_size=1, total_tasks_per_cls=goals, split="test",
                                     terminate_on_success=False, task_select="pseudorandom", max_episode_steps=horizon)
    theirs, _, per_task = metalearning_evaluation(OfficialEvaluatorAdapter(Scripted(), 1), up_envs, num_evals=goals,
                                                  adaptation_episodes=1, evaluation_episodes=2)
    up_envs.close()
    assert 0.0 < ours.success_rate < 1.0  # a non-trivial rate, so agreement means something
    assert ours.success_rate == pytest.approx(theirs)
    assert ours.per_task[task]["success_rate"] == pytest.approx(per_task[task])


def test_cli_eval_ml1_json(capsys):
    import json

    from metarl.cli import main

    # 10 slots by default, capped at the 2 tasks evaluated (it stepped 8 padded slots)
    assert main(["eval", "ML1", "--task", "reach-v3", "--agent", "random", "--eval-tasks", "2", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["benchmark"] == "ML1/reach-v3" and obj["reward_version"] == "v2" and obj["seed"] == 0
    assert obj["per_task"]["reach-v3"]["num_tasks"] == 2 and len(obj["per_goal"]) == 2
    assert obj["env_steps"] == 2 * 13 * 500
    assert main(["eval", "ML1", "--task", "reach-v3", "--agent", "random", "--eval-tasks", "1", "--json",
                 "--reward-version", "v1"]) == 0
    assert json.loads(capsys.readouterr().out)["reward_version"] == "v1"


def _episode(env, task, seed, actions):
    env.task = task
    obs = [env.reset(seed=seed)[0]]
    rewards, successes = [], []
    for a in actions:
        o, r, _, _, info = env.step(a)
        obs.append(o)
        rewards.append(r)
        successes.append(info["success"])
    return np.array(obs), np.array(rewards), np.array(successes)


@pytest.mark.parametrize("seed", [3, None])
def test_a_pooled_env_runs_its_next_task_exactly_like_a_new_one(seed):
    """Slots of one process share upstream envs by class (switching class returns the env to a pool), so
    an env's earlier tasks, mid-episode state and RNG use must not show in its next episode."""
    from metarl.envs import metaworld as mw

    tasks = metarl.make_benchmark("ML1", task="pick-place-v3", seed=0).train.tasks[:2]
    actions = np.random.default_rng(0).uniform(-1, 1, (60, 4)).astype(np.float32)
    mw._IDLE.clear()
    try:
        used = MetaWorldTaskEnv()
        _episode(used, tasks[0], 11, actions[:37])  # left mid-episode, with another goal and seed
        pooled = used._env
        used.close()  # hands its pick-place env to the pool
        slot = MetaWorldTaskEnv()
        again = _episode(slot, tasks[1], seed, actions)
        assert slot._env is pooled  # the pooled env was reused
        mw._IDLE.clear()
        fresh = _episode(MetaWorldTaskEnv(), tasks[1], seed, actions)
    finally:
        mw._IDLE.clear()
    for a, b in zip(again, fresh, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.abs(np.diff(fresh[0], axis=0)).sum() > 0  # the arm moved: the comparison can fail


def test_slots_switching_classes_share_one_env_per_class():
    """Memory stays bounded by the classes run at once, not slots x classes seen (ML45 training grew
    ~20 MiB per slot per new class before the pool)."""
    from metarl.envs import metaworld as mw

    names = ("reach-v3", "push-v3", "door-open-v3")
    tasks = [metarl.make_benchmark("ML1", task=n, seed=0).train.tasks[0] for n in names]
    mw._IDLE.clear()
    slots = [MetaWorldTaskEnv(horizon=5), MetaWorldTaskEnv(horizon=5)]
    try:
        seen = set()
        for r in range(6):  # slot i runs class (i + r) mod 3: every slot sees every class
            for i, slot in enumerate(slots):
                slot.task = tasks[(i + r) % 3]
            for slot in slots:
                slot.reset(seed=r)
                seen.add(id(slot._env))
        assert len(seen) == 3  # one upstream env per class (was 2 slots x 3 classes = 6)
        assert sum(len(v) for v in mw._IDLE.values()) == 1  # the class no slot runs now waits in the pool
        for slot in slots:
            slot.close()
        assert mw.clear_pool() == 3 and not mw._IDLE  # closed slots' envs are idle, and can be freed
    finally:
        mw._IDLE.clear()


def test_a_task_of_an_unknown_class_is_refused_when_set():
    from metarl.types import Task

    with pytest.raises(metarl.UsageError, match="not of a Meta-World v3 class"):
        MetaWorldTaskEnv().task = Task("reach-v9", 0, "train")


@pytest.mark.spawn
def test_a_bad_mujoco_gl_is_one_line_naming_the_variable(tmp_path):
    # MuJoCo reads MUJOCO_GL when it is imported: the fix is the variable, not a reinstall
    import os
    import subprocess
    import sys

    env = {**os.environ, "MUJOCO_GL": "bogus"}
    done = subprocess.run([sys.executable, "-m", "metarl", "train", "ML1", "--task", "reach-v3", "--agent", "random",
                           "--steps", "10", "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "MUJOCO_GL: bogus" in done.stderr
    assert done.stderr.rstrip().endswith("unset MUJOCO_GL, or set it to egl, osmesa or glfw")
    assert not (tmp_path / "run").exists()

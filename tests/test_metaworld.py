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
        return ActOutput(np.stack([self.policy.get_action(o.astype(np.float64)) for o in step.obs]).astype(np.float32), {})

    def observe(self, rollout):
        pass

    def adapt(self):
        pass


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

    assert main(["eval", "ML1", "--task", "reach-v3", "--agent", "random", "--eval-tasks", "2", "--json",
                 "--num-envs", "2"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["benchmark"] == "ML1/reach-v3" and obj["reward_version"] == "v2" and obj["seed"] == 0
    assert obj["per_task"]["reach-v3"]["num_tasks"] == 2 and len(obj["per_goal"]) == 2
    assert obj["env_steps"] == 2 * 13 * 500

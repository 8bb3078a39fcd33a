"""Protocol conformance, parametrised over the agent registry: a new agent is checked automatically."""

import numpy as np
import pytest
import torch

import metarl
from metarl import checkpoint
from metarl.learner import Learner, MetaAlgorithm
from metarl.types import StepInput

from .conftest import LEARNING_SEEDS, state_tensors


@pytest.mark.parametrize("name", metarl.agent_names())
def test_agent_protocol(name, tmp_path):
    bench = metarl.make_benchmark("Toy", num_tasks=4, horizon=4)
    algo = metarl.make_agent(name, bench)
    assert isinstance(algo, MetaAlgorithm)
    learner = algo.make_learner()
    assert isinstance(learner, Learner)
    learner.reset(3)
    out = learner.act(StepInput(np.zeros((3, 2), np.float32), np.zeros(3, np.float32), np.ones(3, bool)))
    assert out.actions.shape == (3, 2)
    for v in out.extras.values():
        assert v.shape[0] == 3
    trainer = metarl.Trainer(bench, algo, metarl.TrainerConfig(steps=8, num_envs=2, final_eval=False, progress=False))
    trainer.train()
    checkpoint.save(tmp_path / "c.pt", {"algorithm": algo.state_dict()})
    algo2 = metarl.make_agent(name, bench)
    algo2.load_state_dict(checkpoint.load(tmp_path / "c.pt")["algorithm"])
    for a, b in zip(state_tensors(algo), state_tensors(algo2), strict=True):
        assert torch.equal(a, b)


@pytest.mark.learning
@pytest.mark.usefixtures("one_torch_thread")  # seeded numbers independent of the core count
def test_zero_shot_ppo_learns_a_fixed_goal():
    # With a single goal there is nothing to infer, so plain PPO must improve its return.
    from metarl.tasks import Benchmark, TaskSet
    from metarl.types import Task

    toy = metarl.make_benchmark("Toy", num_tasks=1, horizon=10, seed=0)
    goal = Task("point-goal", 0, "train", (1.0, 0.0))
    one = TaskSet("train", (goal,), toy.train.env_factory, 10)
    bench = Benchmark("One", one, one, seed=0)
    returns = {}
    for seed in LEARNING_SEEDS:
        torch.manual_seed(seed)
        algo = metarl.make_agent("zero-shot", bench, lr=3e-3, minibatch_size=64)
        trainer = metarl.Trainer(bench, algo, metarl.TrainerConfig(steps=6000, num_envs=8, seed=seed, final_eval=False,
                                                                   progress=False))
        first = trainer.iteration()["train/return"]
        trainer.train()
        returns[seed] = first, np.mean([trainer.iteration()["train/return"] for _ in range(3)])
        trainer.close()
    # Seeds 0 / 1 / 2: first iteration -10.2 / -10.4 / -11.9, last three -2.4 / -2.4 / -2.6.
    for first, last in returns.values():
        assert last > first + 5.0 and last > -3.5, returns


def test_gaussian_act_matches_torch_distributions_and_rejects_a_diverged_policy():
    from metarl.agents.nets import gaussian_act

    mean, log_std = torch.randn(5, 3), torch.randn(3)
    dist = torch.distributions.Normal(mean, log_std.exp())
    torch.manual_seed(3)
    expected = dist.sample()
    torch.manual_seed(3)
    action, log_prob = gaussian_act(mean, log_std)
    assert torch.equal(action, expected)  # same draws from the same RNG state
    assert torch.equal(log_prob, dist.log_prob(expected).sum(-1))
    det, det_log_prob = gaussian_act(mean, log_std, deterministic=True)
    assert torch.equal(det, mean) and torch.equal(det_log_prob, dist.log_prob(mean).sum(-1))
    with pytest.raises(ValueError, match="diverged"):
        gaussian_act(mean.index_fill(0, torch.tensor([2]), float("nan")), log_std)
    with pytest.raises(ValueError, match="diverged"):
        gaussian_act(mean, torch.full((3,), -float("inf")))


@pytest.mark.parametrize("device", ["cpu", pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))])
def test_gaussian_act_draws_active_rows_from_their_slot_streams(device):
    from metarl.agents.nets import gaussian_act
    from metarl.seeding import SlotNoise

    mean, log_std = torch.randn(3, 2, device=device), torch.full((2,), -1.0, device=device)
    action, log_prob = gaussian_act(mean, log_std, noise=SlotNoise([4, 5, 6]), active=np.array([True, False, True]))
    eps = SlotNoise([4, 6]).normal(2, device=device)  # slots 0 and 2 drew; slot 1 (padding) did not
    assert action.device == mean.device
    torch.testing.assert_close(action[[0, 2]], mean[[0, 2]] + np.exp(-1.0) * eps)
    assert torch.equal(action[1], mean[1])
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(action).sum(-1)
    torch.testing.assert_close(log_prob, expected)


@pytest.mark.parametrize("rescale_value", [True, False])
def test_zero_shot_value_targets_follow_the_return_normaliser(monkeypatch, rescale_value):
    # Rewards are divided by the running return std; when an update moves it, the value net's outputs
    # are rescaled with it and GAE sees values in the new units (a stale scale biases every TD error by
    # a multiple of the reward). rescale_value=False (the ablation) leaves both alone.
    from metarl.agents import ppo as ppo_module
    from metarl.rollout import collect
    from metarl.types import MetaBatch
    from metarl.vector import make_vector_env

    torch.manual_seed(0)
    bench = metarl.make_benchmark("Toy", seed=0)
    algo = metarl.make_agent("zero-shot", bench, rescale_value=rescale_value)
    algo.ret_rms.update(np.array([0.5, -0.5, 1.0]))  # a std far from this batch's
    envs = make_vector_env(bench.train, 2, "sync")
    envs.set_tasks(list(bench.train.tasks[:2]))
    learner = algo.make_learner()
    learner.reset(2)
    ro = collect(envs, learner, 1, seed=[0, 1])
    obs = torch.as_tensor(ro.obs[ro.valid])
    with torch.no_grad():
        before = algo.net.value(obs)
    std_before, seen = algo.ret_rms.std, {}
    monkeypatch.setattr(ppo_module, "ppo_epochs",
                        lambda net, opt, size, terms, cfg: seen.update(terms(torch.arange(size))._asdict()) or {})
    metrics = algo.meta_update(MetaBatch(list(envs.tasks), ro))
    envs.close()
    assert std_before / algo.ret_rms.std < 0.5
    scale = std_before / algo.ret_rms.std if rescale_value else 1.0
    assert metrics == {"meta/return_std": pytest.approx(algo.ret_rms.std), "meta/value_scale": pytest.approx(scale)}
    with torch.no_grad():
        torch.testing.assert_close(algo.net.value(obs), before * scale)
    torch.testing.assert_close(seen["ret"] - seen["adv"], before * scale)  # GAE's values, new units

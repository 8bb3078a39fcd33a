"""MAML: the inner VPG step, first- and second-order meta-gradients, TRPO pieces, adaptation and learning."""

import copy

import numpy as np
import pytest
import torch

import metarl
from metarl.agents.maml import (
    advantages,
    conjugate_gradient,
    inner_step,
    line_search,
    policy_dist,
    slot_batches,
)
from metarl.rollout import collect
from metarl.types import MetaBatch
from metarl.vector import make_vector_env

from .conftest import LEARNING_SEEDS, learning_table, toy_sides_before_after

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # seeded numbers independent of the core count


def _setup(num_slots=3, **options):
    """A tiny MAML on ToySides and pre/post rollouts of ``num_slots`` tasks (2 episodes each); one inner
    step unless ``options`` say otherwise."""
    torch.manual_seed(0)
    bench = metarl.make_benchmark("ToySides", seed=0, num_tasks=4, horizon=4)
    algo = metarl.make_agent("maml", bench, **{"hidden": (8,), "episodes": 2, "inner_lr": 0.5, "inner_steps": 1,
                                               **options})
    envs = make_vector_env(bench.train, num_slots)
    envs.set_tasks(list(bench.train.tasks[:num_slots]))
    learner = algo.make_learner()
    learner.reset(num_slots)
    pre = collect(envs, learner, 2, seed=list(range(num_slots)))
    learner.observe(pre)
    learner.adapt()
    post = collect(envs, learner, 2)
    envs.close()
    return algo, learner, MetaBatch(list(bench.train.tasks[:num_slots]), pre, post)


def _manual_loss(policy, obs, act, adv):
    mean, log_std = policy(obs)
    return -(torch.distributions.Normal(mean, log_std.exp()).log_prob(act).sum(-1) * adv).mean()


def test_inner_step_equals_a_manual_sgd_step():
    algo, learner, batch = _setup()
    cfg = algo.cfg
    adv = advantages(batch.pre, cfg.gamma, cfg.baseline_reg, cfg.normalize_inner_adv)  # [T, N]
    for n in range(3):
        m = batch.pre.valid[:, n]
        obs, act, a = (torch.as_tensor(x[m, n]) for x in (batch.pre.obs, batch.pre.actions, adv))
        ref = copy.deepcopy(algo.policy)
        _manual_loss(ref, obs, act, a).backward()
        for name, p in ref.named_parameters():
            expected = p.detach() - cfg.inner_lr * p.grad  # plain SGD on the same loss
            torch.testing.assert_close(learner.adapted[name][n], expected)  # what the Learner acts with
            assert not torch.equal(expected, p.detach())
        data = {"obs": obs, "act": act, "adv": a}
        _, loss = inner_step(algo.policy, algo.params(), data, cfg.inner_lr, create_graph=False)
        torch.testing.assert_close(loss, _manual_loss(algo.policy, obs, act, a))


def test_two_inner_steps_are_two_manual_sgd_steps_on_the_same_data():
    algo, learner, batch = _setup(inner_steps=2)
    cfg = algo.cfg
    adv = advantages(batch.pre, cfg.gamma, cfg.baseline_reg, cfg.normalize_inner_adv)  # [T, N]
    m = batch.pre.valid[:, 0]
    obs, act, a = (torch.as_tensor(x[m, 0]) for x in (batch.pre.obs, batch.pre.actions, adv))
    ref = copy.deepcopy(algo.policy)
    for _ in range(2):
        ref.zero_grad()
        _manual_loss(ref, obs, act, a).backward()
        with torch.no_grad():
            for p in ref.parameters():
                p -= cfg.inner_lr * p.grad
    for name, p in ref.named_parameters():
        torch.testing.assert_close(learner.adapted[name][0], p.detach())


def _meta_grad(algo, batch, create_graph, with_lrs=False):
    cfg = algo.cfg
    pre = slot_batches(batch.pre, advantages(batch.pre, cfg.gamma, cfg.baseline_reg, False), algo.device)
    post = slot_batches(batch.post, advantages(batch.post, cfg.gamma, cfg.baseline_reg, True), algo.device)
    surr, _, _ = algo.objective(pre, post, None, create_graph=create_graph)
    grads = torch.autograd.grad(surr, algo.meta_parameters() if with_lrs else list(algo.policy.parameters()))
    return torch.cat([g.flatten() for g in grads]), pre, post


def test_second_order_meta_gradient_differs_from_first_order_which_matches_a_reference():
    algo, _, batch = _setup()
    second, _, _ = _meta_grad(algo, batch, create_graph=True)
    first, pre, post = _meta_grad(algo, batch, create_graph=False)
    assert second.abs().max() > 0 and first.abs().max() > 0
    assert (second - first).norm() > 1e-3 * first.norm()
    # First-order reference: per slot, the gradient of the slot's surrogate at θ'_n (a detached copy),
    # averaged over slots, is the update direction applied to θ.
    expected = torch.zeros_like(first)
    for d_pre, d_post in zip(pre, post, strict=True):
        ref = copy.deepcopy(algo.policy)
        _manual_loss(ref, d_pre["obs"], d_pre["act"], d_pre["adv"]).backward()
        with torch.no_grad():
            for p in ref.parameters():
                p -= algo.cfg.inner_lr * p.grad  # θ'_n
                p.grad = None
        mean, log_std = ref(d_post["obs"])
        logp = torch.distributions.Normal(mean, log_std.exp()).log_prob(d_post["act"]).sum(-1)
        (torch.exp(logp - d_post["log_prob"]) * d_post["adv"]).mean().backward()
        expected += torch.cat([p.grad.flatten() for p in ref.parameters()]) / len(pre)
    torch.testing.assert_close(first, expected)


def test_meta_sgd_steps_by_learned_per_entry_sizes_which_the_meta_update_trains():
    # Meta-SGD: θ' = θ - α ⊙ ∇L with α learned. A non-uniform α must give exactly that step, the
    # meta-gradient must reach α, and a TRPO meta-update must move α (within the trust region).
    algo, _, batch = _setup(learn_inner_lr=True, max_kl=1e-3)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for a in algo.inner_lrs:
            a.copy_(torch.rand(a.shape, generator=g) * 0.5)
    pre = slot_batches(batch.pre, advantages(batch.pre, algo.cfg.gamma, algo.cfg.baseline_reg, False), algo.device)
    adapted, _ = algo.adapt_slots(pre[:1], create_graph=False)
    ref = copy.deepcopy(algo.policy)
    _manual_loss(ref, pre[0]["obs"], pre[0]["act"], pre[0]["adv"]).backward()
    for (name, p), a in zip(ref.named_parameters(), algo.inner_lrs, strict=True):
        torch.testing.assert_close(adapted[0][name], p.detach() - a.detach() * p.grad)
    grads, _, post = _meta_grad(algo, batch, create_graph=True, with_lrs=True)
    n_theta = sum(p.numel() for p in algo.policy.parameters())
    assert grads[n_theta:].abs().max() > 0  # ∂ surrogate / ∂α
    alphas = torch.cat([a.detach().flatten() for a in algo.inner_lrs])
    metrics = algo.meta_update(batch)
    assert metrics["meta/step_accepted"] == 1.0 and metrics["meta/kl"] <= 1e-3
    assert not torch.equal(alphas, torch.cat([a.detach().flatten() for a in algo.inner_lrs]))
    # Checkpoints carry α; a plain MAML loads one (adapting with its scalar inner_lr), not the reverse.
    state = algo.state_dict()
    bench = metarl.make_benchmark("ToySides", seed=0, num_tasks=4, horizon=4)
    again = metarl.make_agent("maml", bench, hidden=(8,), episodes=2, learn_inner_lr=True)
    again.load_state_dict(state)
    torch.testing.assert_close(list(again.inner_lrs), list(algo.inner_lrs))
    plain = metarl.make_agent("maml", bench, hidden=(8,), episodes=2, inner_lr=0.0)
    plain.load_state_dict(state)
    assert plain.step_sizes() == 0.0
    with pytest.raises(KeyError, match="inner_lrs"):
        again.load_state_dict(plain.state_dict())


def test_conjugate_gradient_solves_an_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)  # symmetric positive definite
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=20)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))


def test_line_search_backtracks_into_the_trust_region():
    # KL grows as 0.04 * fraction², so the full step (KL 0.04) violates δ = 0.01; the largest
    # 0.8**i within it is 0.8**4 (KL 0.0067; 0.8**3 gives 0.0105). The surrogate improves everywhere.
    seen = []

    def evaluate(frac):
        seen.append(frac)
        return frac, 0.04 * frac**2

    frac, tries = line_search(evaluate, surrogate_before=0.0, max_kl=0.01)
    assert frac == pytest.approx(0.8**4) and tries == 5 and 0.04 * frac**2 <= 0.01
    assert seen[0] == 1.0
    # No improvement anywhere: keep θ (fraction 0) after all 15 tries.
    assert line_search(lambda f: (-f, 0.0), surrogate_before=0.0, max_kl=0.01) == (0.0, 15)


def test_meta_update_respects_the_trust_region_and_moves_theta():
    algo, _, batch = _setup(max_kl=1e-3)
    theta = torch.cat([p.detach().flatten() for p in algo.policy.parameters()])
    metrics = algo.meta_update(batch)
    assert metrics["meta/kl"] <= 1e-3
    assert set(metrics) >= {"meta/surrogate_before", "meta/surrogate_after", "meta/kl",
                            "meta/line_search_steps", "meta/inner_loss"}
    moved = not torch.equal(theta, torch.cat([p.detach().flatten() for p in algo.policy.parameters()]))
    assert moved and metrics["meta/step_accepted"] == 1.0
    assert metrics["meta/surrogate_after"] > metrics["meta/surrogate_before"]


def test_ppo_meta_update_improves_the_surrogate_and_checkpoints_its_optimiser():
    algo, _, batch = _setup(outer="ppo", outer_lr=1e-2)
    metrics = algo.meta_update(batch)
    assert metrics["meta/surrogate_after"] > metrics["meta/surrogate_before"] and metrics["meta/kl"] > 0
    state = algo.state_dict()
    assert state["opt"]["state"]  # Adam moments are part of the checkpoint
    with pytest.raises(metarl.UsageError, match="outer"):
        metarl.make_agent("maml", metarl.make_benchmark("ToySides"), outer="sgd")


def test_adapt_changes_the_policy_actions():
    algo, learner, batch = _setup()
    obs = torch.as_tensor(batch.post.obs[0])  # [N, obs_dim]
    fresh = algo.make_learner()
    fresh.reset(3)
    step = metarl.StepInput(obs.numpy(), np.zeros(3, np.float32), np.ones(3, bool))
    before = fresh.act(step, deterministic=True).actions
    after = learner.act(step, deterministic=True).actions
    assert np.abs(before - after).max() > 1e-4
    # The acting log-prob is the adapted policy's, as the outer surrogate assumes.
    out = learner.act(step)
    params = {k: v[1] for k, v in learner.adapted.items()}
    expected = policy_dist(algo.policy, params, obs[1:2]).log_prob(torch.as_tensor(out.actions[1:2])).sum(-1)
    np.testing.assert_allclose(out.extras["log_prob"][1], expected.item(), rtol=1e-5, atol=1e-5)


def test_acting_with_per_slot_parameters_is_each_slots_functional_policy():
    # MAMLLearner.act evaluates slot n's adapted parameters with batched matmuls; it must be the
    # policy with those parameters, slot by slot (two hidden layers, action_scale != 1).
    torch.manual_seed(0)
    algo = metarl.make_agent("maml", metarl.make_benchmark("ToySides"), hidden=(8, 6), action_scale=10.0)
    params = {k: torch.stack([p.detach() + 0.1 * torch.randn_like(p) for _ in range(4)])
              for k, p in algo.policy.named_parameters()}
    obs = torch.randn(4, algo.spec.obs_dim)
    mean, log_std = algo.policy.forward_per_slot(params, obs)
    assert mean.shape == (4, algo.spec.act_dim) and log_std.shape == (4, algo.spec.act_dim)
    for n in range(4):
        dist = policy_dist(algo.policy, {k: v[n] for k, v in params.items()}, obs[n:n + 1])
        torch.testing.assert_close(mean[n], dist.loc[0], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(log_std[n].exp(), dist.scale[0])
    assert not torch.allclose(mean[0], mean[1])  # the slots really used different parameters


def test_maml_rejects_unknown_options():
    with pytest.raises(metarl.UsageError, match="unknown option"):
        metarl.make_agent("maml", metarl.make_benchmark("ToySides"), inner_rl=0.1)
    with pytest.raises(metarl.UsageError, match="option action_scale=0 must be > 0"):
        metarl.make_agent("maml", metarl.make_benchmark("ToySides"), action_scale=0)


def test_action_scale_is_a_reparametrisation_with_smaller_steps():
    # The same env-space policy in two parametrisations: scale 1 with std 0.1, scale 10 (garage's
    # expected_action_scale) with its output layer 10x larger. Same distribution, same loss; the
    # output-bias gradient is 10x smaller and moves the env-space mean another 10x less.
    bench = metarl.make_benchmark("ToySides")
    torch.manual_seed(0)
    a = metarl.make_agent("maml", bench, hidden=(8,), init_log_std=float(np.log(0.1)))
    b = metarl.make_agent("maml", bench, hidden=(8,), action_scale=10.0)
    b.policy.load_state_dict(a.policy.state_dict())
    with torch.no_grad():
        b.policy.mean[-1].weight.mul_(10)
        b.policy.mean[-1].bias.add_(0.3)
        a.policy.mean[-1].bias.add_(0.03)
        b.policy.log_std.add_(np.log(10))
    obs = torch.randn(16, a.spec.obs_dim)
    act = torch.randn(16, a.spec.act_dim) * 0.1
    data = {"obs": obs, "act": act, "adv": torch.randn(16)}
    da, db = policy_dist(a.policy, a.params(), obs), policy_dist(b.policy, b.params(), obs)
    torch.testing.assert_close(da.loc, db.loc)
    torch.testing.assert_close(da.scale, db.scale)
    new_a, loss_a = inner_step(a.policy, a.params(), data, 1e-3, create_graph=False)
    new_b, loss_b = inner_step(b.policy, b.params(), data, 1e-3, create_graph=False)
    torch.testing.assert_close(loss_a, loss_b)
    step_a = new_a["mean.2.bias"] - a.policy.mean[-1].bias  # env-space mean shift from the bias step
    step_b = (new_b["mean.2.bias"] - b.policy.mean[-1].bias) / 10
    torch.testing.assert_close(step_b, step_a / 100)
    torch.testing.assert_close(new_b["log_std"] - b.policy.log_std, new_a["log_std"] - a.policy.log_std)


@pytest.mark.learning
def test_maml_learns_to_adapt_on_toy_sides():
    # Held-out ToySides goals, official protocol (10 adaptation episodes, then 3 deterministic ones).
    runs = {seed: toy_sides_before_after("maml", 48_000, seed, hidden=(32, 32), inner_lr=0.5, normalize_inner_adv=True)
            for seed in LEARNING_SEEDS}
    # Seeds 0 / 1 / 2, one thread: untrained post -4.6 (success 0.4); trained pre -6.0, post -2.5 / -2.4 / -2.6,
    # success 0.93 / 0.97 / 0.93.
    for untrained, trained in runs.values():
        assert trained.mean_return > trained.pre_return + 2.5, learning_table(runs)  # adapting helps
        assert trained.mean_return > untrained.mean_return + 1.5, learning_table(runs)  # training helped
        assert trained.success_rate >= 0.8, learning_table(runs)

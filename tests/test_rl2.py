"""RL²: hidden state across a trial, GRU inputs, trial-level GAE, exact replay, and that it learns."""

import numpy as np
import pytest
import torch

import metarl
from metarl.agents import rl2 as rl2_module
from metarl.agents.rl2 import trial_gae
from metarl.evaluator import EvalConfig, evaluate
from metarl.rollout import collect
from metarl.types import MetaBatch
from metarl.vector import make_vector_env

from .conftest import LEARNING_SEEDS, scripted_benchmark

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _setup(params, device="cpu", **options):
    bench = scripted_benchmark(params)
    algo = metarl.make_agent("rl2", bench, device=device, **{"hidden": 8, **options})
    envs = make_vector_env(bench.train, len(params))
    envs.set_tasks(list(bench.train.tasks))
    return algo, envs


def test_hidden_state_spans_the_trial_and_resets_only_on_reset():
    torch.manual_seed(0)
    algo, envs = _setup([(3, False, -1), (3, True, -1)])
    learner = algo.make_learner()
    learner.reset(2)
    first = collect(envs, learner, 2, seed=[0, 1])  # T = 6: episodes at t = 0..2 and 3..5
    hidden = first.extras["hidden"]  # [T, N, H], state before each step
    assert np.all(hidden[0] == 0)
    # The state entering episode 2 (t = 3) is the GRU run over episode 1: no reset at the boundary.
    data = algo.replay_batch(first, {})
    with torch.no_grad():
        _, _, h3 = algo.net(data["x"][:, :3], data["h0"])
    assert np.abs(hidden[3]).min() > 0
    np.testing.assert_allclose(hidden[3], h3.numpy(), atol=1e-6)
    # A second collect() continues the same trial (the evaluator's adaptation -> evaluation episodes).
    end_of_first = learner.h.clone()
    second = collect(envs, learner, 1, deterministic=True)
    np.testing.assert_array_equal(second.extras["hidden"][0], end_of_first.numpy())
    assert torch.equal(learner.prev_action, torch.as_tensor(second.actions[-1]))
    # reset() starts a new trial: zero state and zero previous action.
    learner.reset(2)
    assert not learner.h.any() and not learner.prev_action.any()
    third = collect(envs, learner, 1)
    assert np.all(third.extras["hidden"][0] == 0)


def test_gru_input_at_an_episode_boundary():
    torch.manual_seed(0)
    algo, envs = _setup([(2, False, -1)], init_log_std=1.0)
    algo.rew_rms.var = np.float64(4.0)  # reward input = raw reward / 2
    seen = []
    features = algo.features

    def spy(*args):  # the GRU input of each acting step
        x = features(*args)
        seen.append(x.detach().clone())
        return x

    algo.features = spy
    learner = algo.make_learner()
    learner.reset(1)
    ro = collect(envs, learner, 2, seed=0)  # ScriptedEnv: obs [t, 100 * episode], reward 10 * episode + t
    x = torch.stack(seen)[:, 0]  # [T, in_dim]: one input per step, slot 0
    a = np.clip(ro.actions[:, 0, 0], -1, 1)
    expected = torch.tensor([
        [0, 0, 0.0, 0.0, 1],  # t=0: trial start, nothing before
        [1, 0, a[0], 0.5, 0],  # t=1: reward 1 of step 0
        [0, 100, a[1], 1.0, 1],  # t=2: episode 2 begins; prev reward = last reward (2) of episode 1
        [1, 100, a[2], 5.5, 0],  # t=3: reward 11 of step 2
    ])
    torch.testing.assert_close(x, expected)
    assert np.abs(ro.actions).max() > 1  # wide policy: the clipped previous action was exercised


def test_trial_gae_matches_hand_computation():
    # gamma = lambda = 0.5, so gamma * lambda = 0.25. Slot 0: four valid steps (an episode boundary
    # inside the trial changes nothing). Slot 1: its trial ends at t = 1; t >= 2 are invalid.
    rewards = np.array([[1, 1], [0, 1], [0, 5], [2, 5]], np.float32)
    values = np.array([[0.5, 0], [1, 2], [0, 7], [1, 7]], np.float32)
    valid = np.array([[1, 1], [1, 1], [1, 0], [1, 0]], bool)
    adv, ret = trial_gae(rewards, values, valid, gamma=0.5, lam=0.5)
    # slot 0: d3 = 2 - 1 = 1 (no bootstrap at the trial end); d2 = 0 + .5*1 - 0 = .5; d1 = 0 + 0 - 1 = -1;
    #         d0 = 1 + .5*1 - .5 = 1. A3 = 1, A2 = .75, A1 = -1 + .25*.75, A0 = 1 + .25*A1.
    # slot 1: d1 = 1 - 2 = -1 (trial end, invalid t = 2 ignored); d0 = 1 + .5*2 - 0 = 2. A0 = 2 - .25.
    np.testing.assert_allclose(adv[:, 0], [0.796875, -0.8125, 0.75, 1.0])
    np.testing.assert_allclose(adv[:2, 1], [1.75, -1.0])
    np.testing.assert_allclose(ret[:2], (adv + values)[:2])


@pytest.mark.parametrize(("rescale_value", "bptt_offset"), [(True, 0), (False, 0), (True, 3)])
@pytest.mark.parametrize("device", DEVICES)
def test_update_replays_the_acted_log_probs(device, rescale_value, bptt_offset, monkeypatch):
    # Unequal episode lengths leave invalid steps in slot 0; bptt_len 4 cuts 15 steps into padded chunks
    # (with bptt_offset 3: steps 0-2, then 3-6, 7-10, 11-14).
    torch.manual_seed(0)
    algo, envs = _setup([(3, True, -1), (5, False, -1)], device=device, bptt_len=4, epochs=1,
                        rescale_value=rescale_value, bptt_offset=bptt_offset)
    algo.rew_rms.update(np.array([3.0, -7.0, 12.0]))  # a non-trivial reward normaliser while acting
    algo.ret_rms.update(np.array([30.0, -70.0, 120.0]))  # and a return std this batch will move
    learner = algo.make_learner()
    learner.reset(2)
    ro = collect(envs, learner, 3, seed=[0, 1])
    assert ro.rewards.shape[0] == 15 and not ro.valid[:, 0].all()
    stored = algo.replay_batch(ro, {"value": ro.extras["value"]})
    stored_value = stored["value"][stored["mask"]]  # [valid steps], in the update's chunk order
    checked = []
    real = rl2_module.ppo_epochs

    def checking_ppo_epochs(net, opt, size, terms, cfg):
        with torch.no_grad():
            t = terms(torch.arange(size, device=algo.device))
        log_prob, value = t.log_prob, t.value
        torch.testing.assert_close(log_prob, t.old_log_prob, atol=1e-5, rtol=1e-5)  # ratio == 1
        # the value head now predicts in units of the updated return std (PopArt's output preservation)
        assert abs(std_before / algo.ret_rms.std - 1) > 1e-3
        scale = std_before / algo.ret_rms.std if rescale_value else 1.0
        torch.testing.assert_close(value, stored_value * scale, atol=1e-5, rtol=1e-5)
        assert log_prob.shape[0] == ro.num_steps
        checked.append(True)
        return real(net, opt, size, terms, cfg)

    monkeypatch.setattr(rl2_module, "ppo_epochs", checking_ppo_epochs)
    var_before, std_before = float(algo.rew_rms.var), algo.ret_rms.std
    metrics = algo.meta_update(MetaBatch(list(envs.tasks), ro))
    assert checked and np.isfinite(list(metrics.values())).all()
    assert metrics["meta/return_std"] == pytest.approx(algo.ret_rms.std)
    assert metrics["meta/value_scale"] == pytest.approx(std_before / algo.ret_rms.std if rescale_value else 1.0)
    assert float(algo.rew_rms.var) != var_before  # the input normaliser moves only after the epochs
    with pytest.raises(ValueError, match="start a trial"):
        algo.meta_update(MetaBatch(list(envs.tasks), collect(envs, learner, 1)))  # no reset: mid-trial


@pytest.mark.parametrize(("offset", "mid_chunk_starts"), [(0, 0), (2, 4)])
def test_bptt_offset_puts_episode_boundaries_inside_chunks(offset, mid_chunk_starts):
    # 4-step episodes, bptt_len 4: on the default grid every episode starts a chunk (its hidden state is
    # the stored, detached one, so no gradient reaches back into the episode before); offset 2 moves
    # each later episode start (t = 4, 8 in both slots) to the middle of a chunk.
    algo, envs = _setup([(4, False, -1), (4, False, -1)], bptt_len=4, bptt_offset=offset)
    learner = algo.make_learner()
    learner.reset(2)
    ro = collect(envs, learner, 3, seed=[0, 1])
    t = np.broadcast_to(np.arange(12, dtype=np.float32)[:, None], (12, 2))
    data = algo.replay_batch(ro, {"t": t, "first": ro.first})
    mask, first, steps = data["mask"], data["first"].bool(), data["t"]
    assert int(mask.sum()) == 24 and sorted(steps[mask].tolist()) == sorted(2 * list(range(12)))
    assert int((first & mask)[:, 1:].sum()) == mid_chunk_starts
    first_steps = steps[:, 0].long().tolist()  # each chunk replays from the hidden state stored at its start
    assert sorted(set(first_steps)) == ([0, 4, 8] if offset == 0 else [0, 2, 6, 10])
    slot = torch.arange(len(first_steps)) % 2
    torch.testing.assert_close(data["h0"], torch.as_tensor(ro.extras["hidden"][first_steps, slot.numpy()]))
    # a trial shorter than the offset stays one chunk (the grid is not wrapped around the trial)
    long_chunks, _ = _setup([(4, False, -1), (4, False, -1)], bptt_len=250, bptt_offset=125)
    assert long_chunks.replay_batch(ro, {})["mask"].shape == (2, 12)
    with pytest.raises(metarl.UsageError, match="bptt_offset=4 must be >= 0 and below bptt_len=4"):
        metarl.make_agent("rl2", scripted_benchmark([(4, False, -1)]), bptt_len=4, bptt_offset=4)


def test_rl2_rejects_unknown_options():
    with pytest.raises(metarl.UsageError, match="unknown option"):
        metarl.make_agent("rl2", scripted_benchmark([(2, False, -1)]), hiden=8)


def test_toy_sides_splits_are_disjoint():
    from metarl.tasks import tasks_overlap

    bench = metarl.make_benchmark("ToySides", seed=0)
    assert not tasks_overlap(bench.train.tasks, bench.test.tasks)
    for dist in (bench.train, bench.test):
        xs = np.array([t.params[0] for t in dist.tasks])
        assert (xs > 0).sum() == (xs < 0).sum() == 5 and np.all((np.abs(xs) >= 0.5) & (np.abs(xs) < 1))
    bins = lambda d: {int((abs(t.params[0]) - 0.5) // 0.05) % 2 for t in d.tasks}  # noqa: E731
    assert bins(bench.train) == {0} and bins(bench.test) == {1}


def _train_and_evaluate(bench, agent, steps, num_envs, seed=0, **options):
    torch.manual_seed(seed)
    algo = metarl.make_agent(agent, bench, **options)
    trainer = metarl.Trainer(bench, algo, metarl.TrainerConfig(steps=steps, num_envs=num_envs, seed=seed,
                                                               final_eval=False, progress=False))
    trainer.train()
    envs = make_vector_env(bench.test, 10)
    try:
        return evaluate(bench.test, algo.make_learner(), envs, EvalConfig(), seed=0)
    finally:
        envs.close()


@pytest.mark.learning
@pytest.mark.usefixtures("one_torch_thread")
def test_rl2_learns_to_adapt_where_a_memoryless_policy_cannot():
    # ToySides: the goal is left or right; only experience tells which. Official protocol on held-out
    # goals: 10 adaptation episodes, then 3 deterministic evaluation episodes in the same trial.
    # One torch thread: small GRU ops run ~3x faster than with 2, and the seeded numbers don't depend
    # on the machine's core count.
    # trial_episodes=10: the budget was calibrated on 10-episode trials (13, the default, gives fewer
    # updates in the same steps).
    bench = metarl.make_benchmark("ToySides", seed=0)
    runs = {seed: (_train_and_evaluate(bench, "rl2", 150_000, 16, seed=seed, hidden=128, lr=3e-3, minibatch_chunks=8,
                                       epochs=4, trial_episodes=10),
                   _train_and_evaluate(bench, "zero-shot", 30_000, 16, seed=seed, lr=3e-3, minibatch_size=256,
                                       episodes=10))
            for seed in LEARNING_SEEDS}
    table = {seed: {"rl2 success": rl2.success_rate, "rl2 post": round(rl2.mean_return, 2),
                    "rl2 pre": round(rl2.pre_return, 2), "flat success": flat.success_rate,
                    "flat post": round(flat.mean_return, 2)} for seed, (rl2, flat) in runs.items()}
    # Seeds 0 / 1 / 2, one thread: RL² success 1.0 / 1.0 / 0.83, return -1.9 / -1.8 / -2.1 (first episodes
    # -3.9 / -3.7 / -4.8); zero-shot bets on one side: success 0.5, return -7.0 to -7.2.
    for rl2, flat in runs.values():
        assert rl2.success_rate >= 0.7 and rl2.success_rate >= flat.success_rate + 0.2, table
        assert rl2.mean_return > flat.mean_return + 3.0, table
        assert rl2.mean_return > rl2.pre_return + 1.0, table  # it improved with experience of the task
    assert np.median([rl2.success_rate for rl2, _ in runs.values()]) >= 0.9, table


def test_an_evaluation_trial_split_into_two_collects_matches_one_contiguous_trial():
    # The evaluator runs a trial as two collects (10 adaptation, then 3 evaluation episodes); training
    # runs it as one. A slot that finishes early pads while slower slots run: those steps must not
    # enter its GRU state, or its evaluation episodes start from a state training never produced.
    # Slot 0's goal is at the start (1-step episodes, terminated on success); slot 1's is out of reach.
    import functools

    from metarl.envs.toy import PointGoalEnv
    from metarl.tasks import Benchmark, TaskSet
    from metarl.types import Task

    factory = functools.partial(PointGoalEnv, horizon=20, terminate_on_success=True)
    tasks = (Task("p", 0, "train", (0.0, 0.0)), Task("p", 1, "train", (5.0, 0.0)))
    dist = TaskSet("train", tasks, factory, 20)
    torch.manual_seed(0)
    algo = metarl.make_agent("rl2", Benchmark("T", dist, dist, seed=0), hidden=16)
    envs = make_vector_env(dist, 2)
    envs.set_tasks(list(tasks))
    learner = algo.make_learner()
    learner.reset(2)
    whole = collect(envs, learner, 13, deterministic=True, seed=0)
    learner.reset(2)
    pre = collect(envs, learner, 10, deterministic=True, seed=0)
    post = collect(envs, learner, 3, deterministic=True, prev_reward=pre.last_rewards())
    envs.close()
    assert pre.valid[:, 0].sum() == 10 and not pre.valid[:, 0].all()  # slot 0 padded in the first collect
    for slot in range(2):
        tail = whole.valid[:, slot] & (whole.episode[:, slot] >= 10)  # episodes 11-13 of the whole trial
        ours = post.valid[:, slot]
        assert tail.sum() == ours.sum() > 0
        np.testing.assert_allclose(post.extras["hidden"][ours, slot], whole.extras["hidden"][tail, slot], atol=1e-6)
        np.testing.assert_allclose(post.actions[ours, slot], whole.actions[tail, slot], atol=1e-6)


def test_the_replayed_gru_runs_in_full_float32_on_cuda():
    """Acting's gru_cell multiplies in float32; cuDNN would replay the same trial in TF32 by default."""
    from metarl.agents.rl2 import _ieee_rnn

    rnn = getattr(torch.backends.cudnn, "rnn", None)
    if rnn is None or not hasattr(rnn, "fp32_precision"):
        pytest.skip("torch < 2.9: the legacy allow_tf32 flag is used")
    before = rnn.fp32_precision
    with _ieee_rnn(torch.device("cuda")):
        assert rnn.fp32_precision == "ieee"
    assert rnn.fp32_precision == before
    with _ieee_rnn(torch.device("cpu")):
        assert rnn.fp32_precision == before

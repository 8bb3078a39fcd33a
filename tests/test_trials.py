"""Trials (metarl/trials.py) depend on their seeds and the weights alone: a trial leaves the global random
generators alone, and a batch cut into blocks of slots, each run on its own vector env and merged back
(what ``backend="ray"`` does on actors), gives the whole batch's results for every shipped agent. In one
process, no Ray: tests/test_ray.py runs the same on actors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from metarl.evaluator import EvalConfig
from metarl.factory import make_agent, make_benchmark
from metarl.seeding import seed_everything
from metarl.trainer import Trainer, TrainerConfig
from metarl.trials import TrialBatch, TrialPlan, merge_results, run_batch, split_batch
from metarl.vector import make_vector_env

AGENTS = ["random", "zero-shot", "rl2", "maml", "pearl"]


def toy():
    # episodes end at success: slots finish at different steps, so blocks differ in length
    return make_benchmark("Toy", seed=0, horizon=6, terminate_on_success=True, num_tasks=6)


class BlockTrials:
    """A trial runner that cuts every batch into blocks of ``sizes`` slots, runs each on a vector env of
    its own size and merges them in slot order (RayPool's work, in this process)."""

    def __init__(self, dist, sizes: list[int]) -> None:
        self.sizes, self.num_slots = sizes, sum(sizes)
        self.envs = {k: make_vector_env(dist, k, "sync") for k in sorted(set(sizes))}

    def run_trials(self, source, batches, plan, what="trial"):
        return [merge_results([run_batch(self.envs[len(p.tasks)], source, p, plan, what)
                               for p in split_batch(b, self.sizes)]) for b in batches]

    def close(self) -> None:
        for envs in self.envs.values():
            envs.close()


def train(agent: str, sizes: list[int] | None, iterations: int = 2):
    """``iterations`` meta-updates and a held-out evaluation of ``agent`` on 5 slots: on one sync vector env
    (``sizes`` None) or in blocks of ``sizes``. Returns (metrics per iteration, evaluation)."""
    bench = toy()
    seed_everything(0)
    cfg = TrainerConfig(steps=10**6, num_envs=5, seed=0, backend="sync", progress=False)
    trainer = Trainer(bench, make_agent(agent, bench), cfg)
    runners = []
    if sizes is not None:
        def blocks(split: str, n: int) -> BlockTrials:
            runners.append(BlockTrials(bench.train if split == "train" else bench.test, sizes))
            return runners[-1]

        trainer._trials = blocks
    try:
        metrics = [trainer.iteration() for _ in range(iterations)]
        result = trainer.evaluate(EvalConfig(max_tasks_per_class=4, adapt_episodes=2, eval_episodes=1))
    finally:
        trainer.close()
        for r in runners:
            r.close()
    return metrics, result


def assert_same(a, b, rtol: float = 1e-4, loose: tuple[str, ...] = ()) -> None:
    """Equal training metrics (``loose`` ones from the second iteration on within 5%) and evaluations."""
    (ma, ra), (mb, rb) = a, b
    for it, (x, y) in enumerate(zip(ma, mb, strict=True)):
        assert set(x) == set(y)
        for k in x:
            if not k.startswith("time/"):
                tol = 5e-2 if k in loose and it > 0 else rtol
                assert np.isclose(x[k], y[k], rtol=tol, atol=1e-6 if tol else 0), (it, k, x[k], y[k])
    assert [(g["task"], g["index"], g["success"], g["pre_success"]) for g in ra.per_goal] == [
        (g["task"], g["index"], g["success"], g["pre_success"]) for g in rb.per_goal]
    for key in ("return", "pre_return"):
        np.testing.assert_allclose([g[key] for g in ra.per_goal], [g[key] for g in rb.per_goal], rtol=10 * rtol)
    assert (ra.success_rate, ra.pre_success_rate) == (rb.success_rate, rb.pre_success_rate)


def batch_invariant_act(self, step, deterministic=False):
    """MAMLLearner.act with its pre-adaptation policy evaluated row by row (one matrix product per slot,
    as after adaptation), so a slot's numbers don't depend on how many slots share the call."""
    from metarl.agents.nets import gaussian_act
    from metarl.types import ActOutput

    with torch.no_grad():
        obs = torch.as_tensor(step.obs)  # [N, obs_dim]
        params = self.adapted
        if params is None:
            params = {k: p.detach().expand(len(obs), *p.shape) for k, p in self.algo.policy.named_parameters()}
        mean, log_std = self.algo.policy.forward_per_slot(params, obs)  # [N, act_dim], [N, act_dim]
        action, log_prob = gaussian_act(mean, log_std, deterministic, step.noise, step.active)
    return ActOutput(action.numpy(), {"log_prob": log_prob.numpy()})


@pytest.mark.parametrize("agent", AGENTS)
def test_a_trial_leaves_the_global_generators_alone(agent):
    """Learners draw from their slots' streams only: a trial on Ray actors, whose global generators are
    nobody's, then acts as it does in the driver."""
    bench = toy()
    algo = make_agent(agent, bench)
    envs = make_vector_env(bench.train, 3, "sync")
    tasks = list(bench.train.tasks[:3])
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    for plan in (TrialPlan(algo.adapt_episodes, algo.post_episodes), TrialPlan(2, 1, None)):
        run_batch(envs, algo, TrialBatch(tasks, [1, 2, 3], [(0, 1), (0, 2), (0, 3)]), plan, "trial")
    envs.close()
    assert torch.equal(torch.get_rng_state(), before[0])
    assert (np.random.get_state()[1] == before[1]).all() and random.getstate() == before[2]


@pytest.mark.parametrize("agent", AGENTS)
def test_blocks_of_slots_give_the_whole_batch_results(agent, monkeypatch):
    """2 iterations and an evaluation with the batch of 5 slots run whole, and in blocks of 2, 1, 2 (what
    3 Ray actors run). Equal up to the last bits of batched matrix products (one slot's row of a product
    over 5 rows vs 2 or 1 can differ in the last bit). MAML's TRPO step grows those bits to ~1% of the
    second iteration's surrogate and KL (conjugate gradient on a near-singular Fisher matrix), so MAML is
    also checked with its pre-adaptation policy evaluated row by row: then blocks and the whole batch are
    equal to the bit, which leaves float rounding as the only difference (no slot order, no baseline)."""
    whole = train(agent, None)
    assert_same(whole, train(agent, [2, 1, 2]), loose=("meta/surrogate_after", "meta/kl") if agent == "maml" else ())
    if agent == "maml":
        from metarl.agents.maml import MAMLLearner

        monkeypatch.setattr(MAMLLearner, "act", batch_invariant_act)
        assert_same(train(agent, None), train(agent, [2, 1, 2]), rtol=0)

"""``zero-shot``: a multi-task PPO baseline without adaptation.

One Gaussian MLP policy is trained with PPO (Schulman et al. 2017) on all training tasks at once.
It sees no goal and never adapts, so on held-out tasks it shows what a policy that doesn't
meta-learn reaches: the floor that RL², MAML and PEARL must beat.

Why our own PPO rather than Stable-Baselines3's: SB3's ``PPO.learn`` owns its collection loop and
vector env, while metarl's single Trainer loop owns collection (task sampling, trials, held-out
evaluation) and agents only provide hooks. The same PPO loss serves RL² over whole trials.
SB3 is used as the reference in the throughput benchmark instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from metarl.config import config_from_options
from metarl.returns import RunningMeanStd, gae, normalise_rewards
from metarl.types import ActOutput, MetaBatch, Rollout, StepInput
from metarl.vector import EnvSpec

from .nets import GaussianActorCritic, gaussian_act, rescale_output


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters (defaults: Andrychowicz et al. 2021, "What matters in on-policy RL")."""

    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer sizes of the policy and value MLPs."""
    lr: float = 3e-4
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    lam: float = 0.95
    """GAE lambda."""
    clip: float = 0.2
    """PPO ratio clip range."""
    epochs: int = 10
    """Passes over each batch."""
    minibatch_size: int = 1024
    """Transitions per gradient step."""
    vf_coef: float = 0.5
    """Value loss weight."""
    ent_coef: float = 0.0
    """Entropy bonus weight."""
    max_grad_norm: float = 0.5
    """Gradient clipping norm."""
    episodes: int = 1
    """Episodes per slot per iteration."""
    normalize_rewards: bool = True
    """Divide rewards by the running std of discounted returns (SB3 VecNormalize-style); the value head
    is rescaled whenever that std moves, so its predictions stay in the rewards' units (see
    ``rescale_value``)."""
    rescale_value: bool = True
    """With ``normalize_rewards``: rescale the value head (and the values GAE uses) by old/new return
    std when an update moves it (PopArt's output preservation). ``False`` is the ablation."""


class PPOLearner:
    """Acts with the shared policy; no adaptation (observe/adapt do nothing)."""

    def __init__(self, net: GaussianActorCritic, device: torch.device) -> None:
        self.net, self.device = net, device

    def reset(self, num_slots: int) -> None:
        pass

    @torch.no_grad()
    def act(self, step: StepInput, deterministic: bool = False) -> ActOutput:
        obs = torch.as_tensor(step.obs, device=self.device)  # [N, obs_dim]
        action, log_prob = gaussian_act(self.net.pi(obs), self.net.log_std, deterministic, step.noise,
                                        step.active)  # [N, act_dim], [N]
        extras = {"log_prob": log_prob.cpu().numpy(), "value": self.net.value(obs).cpu().numpy()}
        return ActOutput(action.cpu().numpy(), extras)

    def observe(self, rollout: Rollout) -> None:
        pass

    def adapt(self) -> None:
        pass


class PPOTerms(NamedTuple):
    """One minibatch's inputs to the PPO loss, each ``[b]`` over the same ``b`` steps."""

    log_prob: torch.Tensor
    """Log-probability of the taken actions under the current policy (with gradient)."""
    entropy: torch.Tensor
    """The current policy's entropy (with gradient)."""
    value: torch.Tensor
    """The current value estimate (with gradient)."""
    old_log_prob: torch.Tensor
    """Log-probability of the actions when they were taken."""
    adv: torch.Tensor
    """Advantages (standardised here, per minibatch)."""
    ret: torch.Tensor
    """Value targets."""


def ppo_epochs(net: torch.nn.Module, opt: torch.optim.Optimizer, size: int,
               terms: Callable[[torch.Tensor], PPOTerms], cfg: PPOConfig) -> dict[str, float]:
    """Clipped-surrogate PPO for ``cfg.epochs`` epochs over ``size`` batch items, shuffled into minibatches
    of ``cfg.minibatch_size`` items each epoch.

    ``terms(idx)`` evaluates the current network on the items ``idx`` (``[b]`` indices into the batch:
    steps for a feed-forward agent, BPTT chunks for RL², which returns their valid steps only) and
    returns the loss's inputs (:class:`PPOTerms`).
    """
    device = next(net.parameters()).device
    stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "entropy": [], "approx_kl": [],
                                     "clip_frac": []}
    for _ in range(cfg.epochs):
        perm = torch.randperm(size, device=device)
        for start in range(0, size, cfg.minibatch_size):
            t = terms(perm[start:start + cfg.minibatch_size])
            adv = (t.adv - t.adv.mean()) / (t.adv.std(unbiased=False) + 1e-8)
            log_ratio = t.log_prob - t.old_log_prob
            ratio = log_ratio.exp()
            pg = -torch.min(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv).mean()
            v_loss = 0.5 * (t.value - t.ret).pow(2).mean()
            loss = pg + cfg.vf_coef * v_loss - cfg.ent_coef * t.entropy.mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
            opt.step()
            with torch.no_grad():
                stats["policy_loss"].append(pg.item())
                stats["value_loss"].append(v_loss.item())
                stats["entropy"].append(t.entropy.mean().item())
                stats["approx_kl"].append(((ratio - 1) - log_ratio).mean().item())
                stats["clip_frac"].append(((ratio - 1).abs() > cfg.clip).float().mean().item())
    return {f"meta/{k}": float(np.mean(v)) for k, v in stats.items()}


class ZeroShotPPO:
    """Multi-task PPO: one policy for all tasks, updated on every iteration's rollout."""

    config_class = PPOConfig
    """Its options (``--agent-opt``) and their defaults, as ``metarl envs`` lists them."""

    post_episodes = 0

    def __init__(self, spec: EnvSpec, device: torch.device | str = "cpu", **options: Any) -> None:
        self.cfg = config_from_options(PPOConfig, options, "zero-shot agent")
        self.device = torch.device(device)
        self.net = GaussianActorCritic(spec.obs_dim, spec.act_dim, self.cfg.hidden).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr, eps=1e-5)
        self.ret_rms = RunningMeanStd()
        self.adapt_episodes = self.cfg.episodes

    def make_learner(self) -> PPOLearner:
        return PPOLearner(self.net, self.device)

    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        ro = batch.pre
        rewards, values = ro.rewards, ro.extras["value"]
        with torch.no_grad():
            next_values = self.net.value(torch.as_tensor(ro.next_obs, device=self.device)).cpu().numpy()  # [T, N]
        norm: dict[str, float] = {}
        if self.cfg.normalize_rewards:
            rewards, scale, norm = normalise_rewards(self.ret_rms, rewards, ro.dones, ro.valid, self.cfg.gamma,
                                                     self.cfg.rescale_value)
            values, next_values = values * np.float32(scale), next_values * np.float32(scale)  # new std's units
            rescale_output(self.net.v, scale)
        adv, ret = gae(rewards, values, next_values, ro.terminated, ro.dones, self.cfg.gamma, self.cfg.lam)
        v = ro.valid  # flatten valid steps only: [B, ...]
        flat = {k: torch.as_tensor(a[v], device=self.device) for k, a in
                {"obs": ro.obs, "act": ro.actions, "log_prob": ro.extras["log_prob"], "adv": adv, "ret": ret}.items()}

        def terms(idx: torch.Tensor) -> PPOTerms:
            obs = flat["obs"][idx]
            dist = self.net.dist(obs)
            return PPOTerms(dist.log_prob(flat["act"][idx]).sum(-1), dist.entropy().sum(-1), self.net.value(obs),
                            flat["log_prob"][idx], flat["adv"][idx], flat["ret"][idx])

        return {**ppo_epochs(self.net, self.opt, int(v.sum()), terms, self.cfg), **norm}

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "ret_rms": self.ret_rms.state_dict(),
                "config": asdict(self.cfg)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.ret_rms.load_state_dict(state["ret_rms"])

"""``pearl``: PEARL (Rakelly et al. 2019, "Efficient Off-Policy Meta-Reinforcement Learning via
Probabilistic Context Variables", arXiv:1903.08254).

A task is inferred as a latent ``z``: an encoder maps each context transition ``(s, a, r)`` to a
Gaussian factor ``N(mu_i, var_i)`` over ``z``; the posterior is their product with the prior
``N(0, I)`` (permutation invariant, sharpening as transitions arrive). The policy and the critics see
``[s, z]``. Adaptation is posterior sampling: ``z`` is drawn from the current posterior at the start
of every episode, and the posterior takes in each transition as it happens.

* **Learner** (:class:`PEARLLearner`): ``act`` adds the previous transition of every slot to that
  slot's posterior (sums of precisions and precision-weighted means, so each step costs one encoder
  pass) and draws ``z`` where an episode starts; ``observe(rollout)`` rebuilds each slot's posterior
  exactly from the rollout's valid steps and the first step after ``adapt()`` draws ``z`` from it.
* **Meta-update** (:meth:`PEARL.meta_update`): the meta-batch's valid transitions go to per-task
  replay buffers kept inside the agent (keyed by ``Task.id``); the pre-adaptation rollout of a task
  replaces that task's context buffer (PEARL keeps the context on-policy-ish: recent data from the
  current encoder's exploration). Then SAC gradient steps, each on ``meta_batch`` tasks: the context
  of each task gives ``z`` by the reparametrisation trick; the critics' loss trains the encoder
  through ``z``, plus ``kl_weight`` x KL(posterior || prior); the actor sees ``z`` detached.
  SAC as in Haarnoja et al. 2018 (arXiv:1812.05905): twin Q, target critics, tanh-squashed Gaussian,
  learned temperature (PEARL's own code used SAC v1 with a value net and a fixed temperature), with
  PEARL's reward scale 5.

Differences from the paper's code, by choice: the prior is one factor of the posterior product (the
empty context gives the prior, no special case); ``z`` is resampled per episode during the evaluation
episodes too (the paper's meta-test does the same, trajectory by trajectory). By default the evaluation
episodes keep adding their transitions to the posterior, as the paper's meta-test does;
``online_after_adapt=False`` keeps the posterior the adaptation episodes built (Meta-World's evaluator,
garage).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from metarl.config import config_from_options
from metarl.errors import UsageError
from metarl.seeding import SlotNoise
from metarl.types import ActOutput, MetaBatch, Rollout, StepInput
from metarl.vector import EnvSpec

from .nets import mlp

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""Clamp of the policy's log-std (as in SAC's reference code)."""


@dataclass(frozen=True)
class PEARLConfig:
    """PEARL hyper-parameters. "As in PEARL" means the paper's code defaults (``configs/default.py``)."""

    latent: int = 5
    """Size of ``z`` (as in PEARL: ``latent_size=5``)."""
    hidden: tuple[int, ...] = (256, 256)
    """Policy and critic MLP hidden sizes (PEARL: three layers of 300; two of 256 is SAC's common size)."""
    encoder_hidden: tuple[int, ...] = (200, 200, 200)
    """Context encoder hidden sizes (as in PEARL)."""
    lr: float = 3e-4
    """Adam learning rate of every network and the temperature (as in PEARL)."""
    gamma: float = 0.99
    """Discount (as in PEARL)."""
    tau: float = 0.005
    """Polyak factor of the target critics (as in PEARL's ``soft_target_tau``)."""
    kl_weight: float = 0.1
    """Weight of KL(posterior || prior) in the encoder's loss, the KL summed over the gradient step's
    tasks while the critic loss is a mean (as in PEARL: ``kl_lambda=0.1``, ``compute_kl_div``)."""
    reward_scale: float = 5.0
    """Factor on rewards in the critic target (as in PEARL). It also sets the critic loss's size against
    the KL term: on ToySides at 10,000 steps, 5 gave -1.9 held-out return after adaptation (80% success)
    and 1 collapsed the posterior (no gain over the first episode)."""
    meta_batch: int = 16
    """Tasks per gradient step (as in PEARL)."""
    batch_size: int = 256
    """Transitions per task per gradient step (as in PEARL)."""
    context_size: int = 100
    """Context transitions per task per gradient step (as in PEARL: ``embedding_batch_size=100``)."""
    updates_per_step: float = 0.25
    """Gradient steps per env step collected (PEARL: 2,000 per ~5,000-step iteration, 0.4); at least one per
    meta-update when > 0; 0 collects and stores replay without training (to time collection alone)."""
    learning_starts: int = 1000
    """Env steps in replay before the first gradient step."""
    buffer_per_task: int = 20_000
    """Transitions kept per task (oldest dropped first). Memory: ~4 bytes x (2 obs_dim + act_dim + 2)
    per transition, ~6.7 MB per task of 20,000 Meta-World steps."""
    adapt_episodes: int = 2
    """Episodes per slot before ``adapt()`` in meta-training (posterior sampling, per episode)."""
    post_episodes: int = 1
    """Episodes per slot after ``adapt()`` in meta-training."""
    online_after_adapt: bool = True
    """After ``adapt()`` (the evaluation episodes; meta-training's post episodes), keep adding each
    transition to the posterior, so evaluation episode 2 draws ``z`` from a posterior that includes
    evaluation episode 1 (the paper's meta-test: ``accum_context=True``). False: the posterior stays what
    the adaptation episodes built, as in Meta-World's own evaluator (its agents see no rewards during
    evaluation episodes) and garage's PEARL; ``z`` is still redrawn from it at every episode start."""
    init_alpha: float = 0.1
    """Initial SAC temperature (learned; target entropy ``-act_dim``)."""
    checkpoint_replay: bool = True
    """Keep the replay buffers in checkpoints (a resumed run then equals an uninterrupted one; large)."""


class TanhGaussianPolicy(nn.Module):
    """``[s, z] -> tanh(u)``, ``u ~ N(mu, std)``: actions in ``[-1, 1]^act_dim`` (scaled to the env's box
    by the agent), and their log-density with the tanh correction."""

    def __init__(self, in_dim: int, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(in_dim, 2 * act_dim, hidden, act=nn.ReLU, out_gain=0.01)

    def forward(self, x: torch.Tensor, deterministic: bool = False, noise: SlotNoise | None = None,
                active: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, in_dim]`` -> ``(action [B, act_dim] in [-1, 1], log_prob [B])``; ``noise``: per-slot
        streams for row ``i``'s draw (``B`` = slots; None: torch's global generator), drawn for the
        ``active`` rows only (the others take the mean: padding)."""
        mean, log_std = self.net(x).chunk(2, dim=-1)
        std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        if deterministic:
            u = mean
        else:
            eps = torch.randn_like(mean) if noise is None else noise.normal(mean.shape[-1], device=mean.device,
                                                                            active=active)
            u = mean + std * eps
        log_prob = (-0.5 * ((u - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)  # log(1 - tanh(u)^2), stable
        return torch.tanh(u), log_prob


class ContextEncoder(nn.Module):
    """Context transitions ``(s, a, r)`` -> Gaussian factors over ``z``; products give the posterior."""

    def __init__(self, in_dim: int, latent: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(in_dim, 2 * latent, hidden, act=nn.ReLU)

    def factors(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``context [..., in_dim]`` -> ``(precision [..., latent], precision * mean [..., latent])``."""
        mean, raw_var = self.net(context).chunk(2, dim=-1)
        precision = 1.0 / F.softplus(raw_var).clamp_min(1e-7)
        return precision, precision * mean


def posterior(precision_sum: torch.Tensor, weighted_mean_sum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Product of the prior ``N(0, I)`` and the factors summed so far -> ``(mean, var)``, ``[..., latent]``."""
    var = 1.0 / (1.0 + precision_sum)
    return var * weighted_mean_sum, var


class PEARLLearner:
    """Per-slot posterior over ``z`` (kept as sums of the encoder's factors) and the slot's current ``z``."""

    eval_deterministic = True
    """Evaluation episodes take the policy's mean action for the sampled ``z`` (as PEARL's meta-test)."""

    def __init__(self, algo: PEARL) -> None:
        self.algo = algo
        self.num_slots = 0

    def reset(self, num_slots: int) -> None:
        dev, latent = self.algo.device, self.algo.cfg.latent
        self.num_slots = num_slots
        self.prec = torch.zeros(num_slots, latent, device=dev)  # [N, latent] sums of factor precisions
        self.prec_mean = torch.zeros(num_slots, latent, device=dev)  # [N, latent] sums of precision * mean
        self.z = torch.zeros(num_slots, latent, device=dev)
        self.prev_obs: torch.Tensor | None = None  # [N, obs_dim] of the previous step (None: trial start)
        self.prev_action = torch.zeros(num_slots, self.algo.spec.act_dim, device=dev)
        self._z_pending = False  # adapt() was called: the next act() draws every slot's z
        self._frozen = False  # adapt() was called with online_after_adapt=False: the posterior stays

    def _sample_z(self, rows: torch.Tensor, noise: SlotNoise | None, active: np.ndarray | None = None) -> None:
        """Draw ``z`` of the slots ``rows`` (``[N]`` bool) from their posteriors (with ``noise``: only
        for ``active`` slots; the others, padding, take the posterior mean)."""
        mean, var = posterior(self.prec[rows], self.prec_mean[rows])
        eps = torch.randn_like(mean) if noise is None else noise.normal(mean.shape[-1], rows, device=mean.device,
                                                                        active=active)
        self.z[rows] = mean + var.sqrt() * eps

    @torch.no_grad()
    def act(self, step: StepInput, deterministic: bool = False) -> ActOutput:
        """Take in each slot's previous transition (not after ``adapt()`` with ``online_after_adapt=False``),
        redraw ``z`` where an episode starts, act on ``[s, z]``."""
        if step.obs.shape[0] != self.num_slots:
            raise RuntimeError("PEARLLearner.act() needs reset(num_slots) with the slot count of the step first")
        algo, dev = self.algo, self.algo.device
        obs = torch.as_tensor(step.obs, device=dev)  # [N, obs_dim]
        if self.prev_obs is not None and not self._frozen:
            reward = torch.as_tensor(step.prev_reward, device=dev)
            prec, prec_mean = algo.encoder.factors(algo.context_input(self.prev_obs, self.prev_action, reward))
            self.prec += prec
            self.prec_mean += prec_mean
        first = torch.as_tensor(step.first, device=dev)
        if self._z_pending:  # adapt() asked for a draw from every slot's full posterior
            self._z_pending = False
            self._sample_z(torch.ones_like(first), step.noise, step.active)
        elif first.any():
            self._sample_z(first, step.noise, step.active)
        # [N, act_dim] in [-1, 1]
        action, _ = algo.policy(torch.cat([obs, self.z], dim=-1), deterministic, step.noise, step.active)
        self.prev_obs, self.prev_action = obs, action
        return ActOutput(algo.to_env_action(action).cpu().numpy(), {})

    @torch.no_grad()
    def observe(self, rollout: Rollout) -> None:
        """Rebuild each slot's posterior from the rollout's valid transitions (all of its context)."""
        algo, dev = self.algo, self.algo.device
        valid = torch.as_tensor(rollout.valid, device=dev).unsqueeze(-1)  # [T, N, 1]
        ctx = algo.context_input(torch.as_tensor(rollout.obs, device=dev),
                                 algo.to_unit_action(torch.as_tensor(rollout.actions, device=dev)),
                                 torch.as_tensor(rollout.rewards, device=dev))  # [T, N, ctx_dim]
        prec, prec_mean = algo.encoder.factors(ctx)
        self.prec, self.prec_mean = (prec * valid).sum(0), (prec_mean * valid).sum(0)
        self.prev_obs = None  # every transition is in; the next act() must not add the last one again

    def adapt(self) -> None:
        """Have the next :meth:`act` draw every slot's ``z`` from its posterior (the one :meth:`observe`
        built), whether or not an episode starts there; later episode starts redraw as usual. The draw
        waits for ``act`` to use its ``StepInput.noise``. With ``online_after_adapt=False`` the posterior
        stays as it is from here on (until ``reset``)."""
        self._z_pending = True
        self._frozen = not self.algo.cfg.online_after_adapt


class _TaskBuffer:
    """FIFO of one task's transitions, as growing NumPy arrays capped at ``capacity`` rows."""

    FIELDS = ("obs", "act", "rew", "next_obs", "term")

    def __init__(self, capacity: int) -> None:
        self.capacity, self.data = capacity, None

    def add(self, rows: dict[str, np.ndarray]) -> None:
        if self.data is None:
            self.data = {k: rows[k][-self.capacity:].copy() for k in self.FIELDS}
        else:
            self.data = {k: np.concatenate([self.data[k], rows[k]])[-self.capacity:] for k in self.FIELDS}

    def __len__(self) -> int:
        return 0 if self.data is None else len(self.data["rew"])


class PEARL:
    """PEARL meta-algorithm: context encoder, SAC policy and twin critics on ``[s, z]``, replay per task."""

    config_class = PEARLConfig
    """Its options (``--agent-opt``) and their defaults, as ``metarl envs`` lists them."""

    def __init__(self, spec: EnvSpec, device: torch.device | str = "cpu", **options: Any) -> None:
        self.cfg = cfg = config_from_options(PEARLConfig, options, "pearl agent")
        if cfg.tau == 0:  # counts and rates are checked by config_from_options; tau in [0, 1] there
            raise UsageError("pearl agent: option tau=0 would never update the target networks: use 0 < tau <= 1")
        self.spec, self.device = spec, torch.device(device)
        self.adapt_episodes, self.post_episodes = cfg.adapt_episodes, cfg.post_episodes
        self.adapts_while_acting = True  # each episode draws z from the posterior of the ones before
        obs_dim, act_dim, latent = spec.obs_dim, spec.act_dim, cfg.latent
        self.encoder = ContextEncoder(obs_dim + act_dim + 1, latent, cfg.encoder_hidden).to(self.device)
        self.policy = TanhGaussianPolicy(obs_dim + latent, act_dim, cfg.hidden).to(self.device)
        self.q = nn.ModuleList(mlp(obs_dim + act_dim + latent, 1, cfg.hidden, act=nn.ReLU)
                               for _ in range(2)).to(self.device)
        self.q_target = nn.ModuleList(mlp(obs_dim + act_dim + latent, 1, cfg.hidden, act=nn.ReLU)
                                      for _ in range(2)).to(self.device)
        self.q_target.load_state_dict(self.q.state_dict())
        self.log_alpha = torch.tensor(math.log(cfg.init_alpha), device=self.device, requires_grad=True)
        self.opt_critic = torch.optim.Adam([*self.q.parameters(), *self.encoder.parameters()], lr=cfg.lr)
        self.opt_policy = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=cfg.lr)
        self._low = torch.as_tensor(spec.action_low, device=self.device)
        self._high = torch.as_tensor(spec.action_high, device=self.device)
        self.replay: dict[str, _TaskBuffer] = {}  # task id -> transitions for the critics and the policy
        self.context: dict[str, _TaskBuffer] = {}  # task id -> its latest pre-adaptation transitions
        self.env_steps, self.updates = 0, 0

    def make_learner(self) -> PEARLLearner:
        return PEARLLearner(self)

    def to_env_action(self, unit: torch.Tensor) -> torch.Tensor:
        """``[-1, 1]`` policy actions -> the env's action box."""
        return self._low + (unit + 1) * 0.5 * (self._high - self._low)

    def to_unit_action(self, action: torch.Tensor) -> torch.Tensor:
        """The env's actions -> ``[-1, 1]`` (what the encoder and the critics see)."""
        return (2 * (action - self._low) / (self._high - self._low) - 1).clamp(-1, 1)

    def context_input(self, obs: torch.Tensor, unit_action: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
        """``[..., obs_dim + act_dim + 1]`` encoder input from ``obs``, ``[-1, 1]`` action and reward ``[...]``."""
        return torch.cat([obs.float(), unit_action.float(), reward.float().unsqueeze(-1)], dim=-1)

    # -- meta-update --------------------------------------------------------------------------
    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        """Store the meta-batch's transitions per task, then ``updates_per_step`` SAC steps per new env step."""
        new_steps = 0
        for ro, is_context in ((batch.pre, True), (batch.post, False)):
            if ro is None:
                continue
            new_steps += ro.num_steps
            if is_context:  # a task's context is its latest pre-adaptation data, from every slot it ran in
                for task in batch.tasks:
                    self.context[task.id] = _TaskBuffer(self.cfg.buffer_per_task)
            for n, task in enumerate(batch.tasks):
                rows = _valid_rows(ro, n)
                self.replay.setdefault(task.id, _TaskBuffer(self.cfg.buffer_per_task)).add(rows)
                if is_context:
                    self.context[task.id].add(rows)
        self.env_steps += new_steps
        if self.env_steps < self.cfg.learning_starts:
            return {"meta/updates": float(self.updates)}
        stats: dict[str, list[float]] = {}
        rate = self.cfg.updates_per_step  # > 0: at least one gradient step per meta-update; 0: none
        for _ in range(max(int(rate > 0), round(rate * new_steps))):
            for k, v in self.update(self.sample()).items():
                stats.setdefault(k, []).append(v)
        return {**{k: float(np.mean(v)) for k, v in stats.items()}, "meta/updates": float(self.updates)}

    def sample(self) -> dict[str, torch.Tensor]:
        """A gradient step's data: ``meta_batch`` tasks (uniform, with replacement, torch's RNG) with a
        context ``[M, C, ctx_dim]`` and transitions ``[M, B, ...]`` each."""
        cfg, ids = self.cfg, sorted(self.context)
        picks = torch.randint(len(ids), (cfg.meta_batch,)).tolist()
        out: dict[str, list[np.ndarray]] = {k: [] for k in ("ctx_obs", "ctx_act", "ctx_rew", *_TaskBuffer.FIELDS)}
        for i in picks:
            ctx, rl = self.context[ids[i]].data, self.replay[ids[i]].data
            c = torch.randint(len(ctx["rew"]), (cfg.context_size,)).numpy()
            b = torch.randint(len(rl["rew"]), (cfg.batch_size,)).numpy()
            for k, src in (("ctx_obs", "obs"), ("ctx_act", "act"), ("ctx_rew", "rew")):
                out[k].append(ctx[src][c])
            for k in _TaskBuffer.FIELDS:
                out[k].append(rl[k][b])
        return {k: torch.as_tensor(np.stack(v), device=self.device) for k, v in out.items()}

    def update(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """One SAC + KL step on ``sample()``'s data; returns ``meta/*`` scalars."""
        cfg = self.cfg
        m, b = data["rew"].shape  # tasks, transitions per task
        ctx = self.context_input(data["ctx_obs"], self.to_unit_action(data["ctx_act"]), data["ctx_rew"])
        prec, prec_mean = self.encoder.factors(ctx)  # [M, C, latent]
        mean, var = posterior(prec.sum(1), prec_mean.sum(1))  # [M, latent]
        z = (mean + var.sqrt() * torch.randn_like(mean)).repeat_interleave(b, dim=0)  # [M*B, latent]
        kl = 0.5 * (var + mean**2 - 1 - var.log()).sum()  # summed over tasks, as PEARL's compute_kl_div
        obs, next_obs = data["obs"].flatten(0, 1).float(), data["next_obs"].flatten(0, 1).float()  # [M*B, obs_dim]
        act = self.to_unit_action(data["act"].flatten(0, 1))
        rew, term = data["rew"].flatten().float(), data["term"].flatten().float()  # [M*B]
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_act, next_log_prob = self.policy(torch.cat([next_obs, z], -1))
            q_next = torch.min(*(q(torch.cat([next_obs, next_act, z], -1)).squeeze(-1) for q in self.q_target))
            target = cfg.reward_scale * rew + cfg.gamma * (1 - term) * (q_next - alpha * next_log_prob)
        q_in = torch.cat([obs, act, z], -1)  # z carries the critic's gradient into the encoder
        q_loss = sum(F.mse_loss(q(q_in).squeeze(-1), target) for q in self.q)
        self.opt_critic.zero_grad()
        (q_loss + cfg.kl_weight * kl).backward()
        self.opt_critic.step()
        zd = z.detach()
        self.q.requires_grad_(False)  # the policy's loss needs gradients w.r.t. actions, not critic weights
        new_act, log_prob = self.policy(torch.cat([obs, zd], -1))
        q_new = torch.min(*(q(torch.cat([obs, new_act, zd], -1)).squeeze(-1) for q in self.q))
        policy_loss = (alpha * log_prob - q_new).mean()
        self.opt_policy.zero_grad()
        policy_loss.backward()
        self.opt_policy.step()
        self.q.requires_grad_(True)
        alpha_loss = -(self.log_alpha * (log_prob.detach() - self.spec.act_dim).mean())
        self.opt_alpha.zero_grad()
        alpha_loss.backward()
        self.opt_alpha.step()
        with torch.no_grad():
            for p, pt in zip(self.q.parameters(), self.q_target.parameters(), strict=True):
                pt.lerp_(p, cfg.tau)
        self.updates += 1
        return {"meta/q_loss": q_loss.item(), "meta/policy_loss": policy_loss.item(), "meta/kl": kl.item() / m,
                "meta/alpha": alpha.item(), "meta/z_var": var.mean().item()}

    # -- checkpoints --------------------------------------------------------------------------
    def learner_state(self) -> dict[str, Any]:
        """What a :class:`PEARLLearner` uses: the encoder and the policy (optional MetaAlgorithm member:
        ``backend="ray"`` sends this to its actors each iteration instead of :meth:`state_dict`, whose
        replay grows to hundreds of MB)."""
        return {"encoder": self.encoder.state_dict(), "policy": self.policy.state_dict()}

    def load_learner_state(self, state: dict[str, Any]) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.policy.load_state_dict(state["policy"])

    def state_dict(self) -> dict[str, Any]:
        nets = {k: getattr(self, k).state_dict() for k in ("encoder", "policy", "q", "q_target", "opt_critic",
                                                           "opt_policy", "opt_alpha")}
        state = {**nets, "log_alpha": self.log_alpha.detach().clone(), "env_steps": self.env_steps,
                 "updates": self.updates, "config": asdict(self.cfg)}
        if self.cfg.checkpoint_replay:
            state["replay"] = {k: v.data for k, v in sorted(self.replay.items())}
            state["context"] = {k: v.data for k, v in sorted(self.context.items())}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in ("encoder", "policy", "q", "q_target", "opt_critic", "opt_policy", "opt_alpha"):
            getattr(self, k).load_state_dict(state[k])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])
        for name in ("replay", "context"):
            table = getattr(self, name)
            table.clear()
            for task_id, data in state.get(name, {}).items():
                buf = table[task_id] = _TaskBuffer(self.cfg.buffer_per_task)
                buf.data = {k: np.asarray(v) for k, v in data.items()}


def _valid_rows(ro: Rollout, n: int) -> dict[str, np.ndarray]:
    """Slot ``n``'s valid transitions as ``[t, ...]`` arrays (what the buffers store)."""
    v = ro.valid[:, n]
    return {"obs": ro.obs[v, n], "act": ro.actions[v, n], "rew": ro.rewards[v, n], "next_obs": ro.next_obs[v, n],
            "term": ro.terminated[v, n]}

"""``rl2``: RL² (Duan et al. 2016, arXiv:1611.02779; Wang et al. 2016, arXiv:1611.05763).

A GRU policy meta-learns to adapt: across all episodes of a *trial* (the same task, ``adapt_episodes``
episodes in a row) it keeps its hidden state and sees, at every step, the observation, its own
previous action, the previous reward and a done flag. What it learns about the task lives in that
hidden state only, so :meth:`RL2Learner.observe` and :meth:`RL2Learner.adapt` do nothing; the state is
cleared only by :meth:`RL2Learner.reset` (new tasks = a new trial). In the held-out evaluation the
trial spans the adaptation *and* the evaluation episodes (two ``collect`` calls, one Learner).

Meta-update: PPO over whole trials, with the trial treated as one episode of the meta-MDP:

* **Advantages** (:func:`trial_gae`): GAE whose recursion runs across episode boundaries and is cut
  only at a slot's trial end (its last valid step), where nothing is bootstrapped. Inside a trial an
  episode end is an ordinary transition of the meta-MDP: the next state is the next episode's first
  observation with the carried hidden state, so its stored value is the bootstrap, for truncated and
  *terminated* episodes alike (an env termination ends the episode, not the trial, whose later
  episodes still earn reward). This is how garage's RL2 does it (each trial's episodes are
  concatenated into a single path).
* **Truncated BPTT**: each slot's trial is cut into chunks of up to ``bptt_len`` steps (padded at the
  end), on a grid that starts at ``bptt_offset``; a chunk is replayed through the GRU from the hidden
  state stored at its first step while acting (detached: no gradient crosses chunk boundaries).
  Minibatches are sets of chunks; padded and invalid steps are masked out of every loss and statistic.
* **Rewards**: rollouts hold raw rewards. The GRU's reward input is ``reward_scale * r`` divided by a
  running std of per-step rewards, clipped to ±10: Meta-World+ (McLean et al. 2025, arXiv:2505.11289)
  shows v1 rewards on a far larger scale than v2's (0, 10) and results that change with it. That
  normaliser is frozen between acting and the update of the same batch (else replayed inputs would
  differ from the acted ones) and is updated after the PPO epochs. The PPO loss uses rewards divided
  by a running std of discounted trial returns (as the ``zero-shot`` agent does per episode).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from metarl.config import config_from_options
from metarl.errors import UsageError
from metarl.returns import RunningMeanStd, gae, normalise_rewards
from metarl.types import ActOutput, MetaBatch, Rollout, StepInput
from metarl.vector import EnvSpec

from .nets import gaussian_act, rescale_output
from .ppo import PPOConfig, PPOTerms, ppo_epochs

REWARD_CLIP = 10.0
"""Bound on the normalised reward input."""


@dataclass(frozen=True)
class RL2Config:
    """RL² hyper-parameters. "As in garage" means the value in garage's RL2-PPO Meta-World ML10 example
    (``src/garage/examples/tf/rl2_ppo_metaworld_ml10.py``); other defaults are our choices."""

    hidden: int = 256
    """GRU hidden size (as in garage: ``hidden_dim=256``)."""
    lr: float = 5e-4
    """Adam learning rate (as in garage)."""
    gamma: float = 0.99
    """Discount over the whole trial (as in garage)."""
    lam: float = 0.95
    """GAE lambda (as in garage)."""
    clip: float = 0.2
    """PPO ratio clip range (as in garage: ``lr_clip_range=0.2``)."""
    epochs: int = 10
    """Passes over each meta-batch (as in garage: ``max_optimization_epochs=10``)."""
    bptt_len: int = 250
    """Truncated-BPTT chunk length in steps (our choice: half a Meta-World episode; garage backpropagates
    through whole trials)."""
    bptt_offset: int = 0
    """Where the chunk grid starts, in steps (``0 <= bptt_offset < bptt_len``): the first chunk holds steps
    ``[0, bptt_offset)`` and the others start at ``bptt_offset + k * bptt_len``. With 0 and a
    ``bptt_len`` that divides the episode length (250 and Meta-World's 500), every episode starts a
    chunk, so no gradient reaches an episode from the one before it; ``bptt_len // 2`` puts each episode
    boundary mid-chunk. On ToySides (``experiments/rl2_bptt/``, 5 seeds) aligned chunks don't adapt
    (45% after vs 42% before), the shifted grid is erratic (0-97% by seed), whole-trial chunks
    (``bptt_len`` >= the trial) adapt (95% vs 58%)."""
    minibatch_chunks: int = 32
    """Chunks (``bptt_len`` steps of one slot) per gradient step."""
    vf_coef: float = 0.5
    """Value loss weight (a common choice)."""
    ent_coef: float = 0.0
    """Entropy bonus weight (garage uses a negligible 5e-6)."""
    max_grad_norm: float = 0.5
    """Gradient clipping norm (a common choice, as in the ``zero-shot`` agent)."""
    trial_episodes: int = 13
    """Episodes per trial in meta-training: the official meta-test trial's 10 adaptation + 3 evaluation
    episodes, all under one hidden state. Garage trains on 10; then episodes 11-13 are outside what
    the GRU was trained on (Driving: trained on 10, 92% after vs 94% before; on 13, 98% vs 90%, and
    96.7% vs 64% in a later run with the value-head rescale; ``benchmarks/results/Driving-rl2*.json``).
    Set 10 to match garage."""
    normalize_rewards: bool = True
    """Divide the reward input by a running reward std and the PPO rewards by a running return std (the
    value head is rescaled whenever that std moves, so its predictions stay in the rewards' units; see
    ``rescale_value``)."""
    rescale_value: bool = True
    """With ``normalize_rewards``: rescale the value head (and the stored values GAE uses) by old/new
    return std when an update moves it (PopArt's output preservation). ``False`` leaves the head in stale
    units (the ablation; on ML1 reach-v3 neither setting wins across seeds yet: docs/agents/rl2.md)."""
    reward_scale: float = 1.0
    """Fixed factor applied to raw rewards before any normalisation."""
    init_log_std: float = -0.5
    """Initial log-std of the Gaussian policy (state-independent, learned)."""


@contextlib.contextmanager
def _ieee_rnn(device: torch.device) -> Iterator[None]:
    """On CUDA, run cuDNN's RNNs in full float32 for the block. PyTorch lets cuDNN run RNNs in TF32 by
    default (Ampere and later: 10-bit mantissas), while acting's ``torch.gru_cell`` multiplies in float32;
    replaying a trial in TF32 would give PPO's first ratio errors of ~1e-4 in log-probability (a
    simulated 256-unit GRU over a 104-step trial), growing with chunk length."""
    rnn = getattr(torch.backends.cudnn, "rnn", None)
    if device.type != "cuda":
        yield
    elif rnn is not None and hasattr(rnn, "fp32_precision"):  # torch >= 2.9
        before = rnn.fp32_precision
        rnn.fp32_precision = "ieee"
        try:
            yield
        finally:
            rnn.fp32_precision = before
    else:
        c = torch.backends.cudnn
        with c.flags(enabled=c.enabled, benchmark=c.benchmark, deterministic=c.deterministic, allow_tf32=False):
            yield


class GRUActorCritic(nn.Module):
    """One GRU shared by a Gaussian policy head (state-independent log-std) and a value head.

    ``forward(x [B, L, in_dim], h0 [B, hidden]) -> (mean [B, L, act_dim], value [B, L], h [B, hidden])``.
    """

    def __init__(self, in_dim: int, act_dim: int, hidden: int, init_log_std: float) -> None:
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, batch_first=True)
        self.pi, self.v = nn.Linear(hidden, act_dim), nn.Linear(hidden, 1)
        for head, gain in ((self.pi, 0.01), (self.v, 1.0)):
            nn.init.orthogonal_(head.weight, gain)
            nn.init.zeros_(head.bias)
        self.log_std = nn.Parameter(torch.full((act_dim,), init_log_std))

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with _ieee_rnn(x.device):
            out, h = self.gru(x, h0.unsqueeze(0).contiguous())  # out: [B, L, hidden]
        return self.pi(out), self.v(out).squeeze(-1), h.squeeze(0)

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step for acting: ``x [B, in_dim]``, ``h [B, hidden]`` -> ``(mean [B, act_dim], value [B],
        h' [B, hidden])``; the same numbers as ``forward`` with ``L = 1``, through ``torch.gru_cell``
        (skips ``nn.GRU``'s sequence wrapper, ~30 µs per env step at 32 slots)."""
        g = self.gru
        h = torch.gru_cell(x, h, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)
        return self.pi(h), self.v(h).squeeze(-1), h

    def dist(self, mean: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(mean, self.log_std.exp())


class RL2Learner:
    """Per-slot GRU state and previous action; adaptation happens in :meth:`act` through the state.

    ``observe`` and ``adapt`` are no-ops: everything learned about the tasks is in the hidden state,
    which persists across episodes and ``collect`` calls until :meth:`reset` starts a new trial.

    Steps a slot takes after its last episode (inactive, invalid steps, when episodes end at different
    times) leave its hidden state and previous action as they were, so the evaluator's second
    ``collect`` continues the trial from the slot's last real step, with that step's reward
    (``collect(prev_reward=...)``): the same inputs as one contiguous trial in training.
    """

    eval_deterministic = False
    """Evaluation episodes sample actions: the GRU was trained on sampled previous actions, and feeding
    it mean actions shifts its input (measured on ML1 reach-v3 held-out goals after 3M steps: 80%
    success in the last stochastic adaptation episodes, 30% with mean actions)."""

    def __init__(self, algo: RL2) -> None:
        self.algo = algo
        self.h: torch.Tensor | None = None  # [N, hidden]
        self.prev_action: torch.Tensor | None = None  # [N, act_dim]

    def reset(self, num_slots: int) -> None:
        dev, cfg = self.algo.device, self.algo.cfg
        self.h = torch.zeros(num_slots, cfg.hidden, device=dev)
        self.prev_action = torch.zeros(num_slots, self.algo.spec.act_dim, device=dev)

    def _inputs(self, step: StepInput) -> torch.Tensor:
        """``[N, in_dim]`` GRU input for ``step``: [obs, previous action, scaled prev reward, first]."""
        if self.h is None or self.h.shape[0] != step.obs.shape[0]:
            raise RuntimeError("RL2Learner.act() needs reset(num_slots) with the slot count of the step first")
        dev = self.algo.device
        return self.algo.features(torch.as_tensor(step.obs, device=dev), self.prev_action,
                                  torch.as_tensor(step.prev_reward, device=dev),
                                  torch.as_tensor(step.first, device=dev))

    @torch.no_grad()
    def act(self, step: StepInput, deterministic: bool = False) -> ActOutput:
        """One batched GRU step for all slots; extras: ``log_prob`` [N], ``value`` [N], ``hidden`` [N, H].

        ``hidden`` is the state *before* this step: the update replays chunks from it.
        """
        net = self.algo.net
        mean, value, h = net.step(self._inputs(step), self.h)  # [N, act_dim], [N], [N, hidden]
        action, log_prob = gaussian_act(mean, net.log_std, deterministic, step.noise, step.active)  # [N, act_dim], [N]
        extras = {"log_prob": log_prob.cpu().numpy(), "value": value.cpu().numpy(),
                  "hidden": self.h.cpu().numpy()}
        if step.active is None or step.active.all():
            self.h, self.prev_action = h, action
        else:  # padding steps of finished slots don't enter their memory
            active = torch.as_tensor(step.active, device=h.device).unsqueeze(-1)  # [N, 1]
            self.h = torch.where(active, h, self.h)
            self.prev_action = torch.where(active, action, self.prev_action)
        return ActOutput(action.cpu().numpy(), extras)

    def observe(self, rollout: Rollout) -> None:
        """No-op: the experience already went into the hidden state while acting."""

    def adapt(self) -> None:
        """No-op: RL² adapts through its hidden state, step by step, inside :meth:`act`."""


def trial_ends(valid: np.ndarray) -> np.ndarray:
    """``[T, N]`` bool: each slot's last valid step (``valid`` is a prefix of every slot's steps)."""
    return valid & ~np.concatenate([valid[1:], np.zeros_like(valid[:1])])


def trial_gae(rewards: np.ndarray, values: np.ndarray, valid: np.ndarray, gamma: float,
              lam: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE over whole trials: ``[T, N]`` arrays -> ``(advantages, returns)`` ``[T, N]``.

    The bootstrap of step ``t`` is ``values[t + 1]``, also across episode ends (terminated or not);
    recursion and bootstrap stop at each slot's last valid step (its trial end). Steps after it
    (invalid) get meaningless numbers and must be masked.
    """
    trial_end = trial_ends(valid)  # [T, N]
    next_values = np.concatenate([values[1:], np.zeros_like(values[:1])])  # [T, N]
    return gae(rewards, values, next_values, trial_end, trial_end, gamma, lam)


class RL2:
    """RL² meta-algorithm: a recurrent policy trained with PPO over trials (see the module docstring)."""

    config_class = RL2Config
    """Its options (``--agent-opt``) and their defaults, as ``metarl envs`` lists them."""

    post_episodes = 0
    adapts_while_acting = True  # the GRU carries the trial

    def __init__(self, spec: EnvSpec, device: torch.device | str = "cpu", **options: Any) -> None:
        self.cfg = cfg = config_from_options(RL2Config, options, "rl2 agent")
        if not 0 <= cfg.bptt_offset < cfg.bptt_len:
            raise UsageError(f"rl2 agent: option bptt_offset={cfg.bptt_offset} must be >= 0 and below "
                             f"bptt_len={cfg.bptt_len} (half of it puts episode boundaries mid-chunk)")
        self.spec, self.device = spec, torch.device(device)
        self.adapt_episodes = cfg.trial_episodes
        in_dim = spec.obs_dim + spec.act_dim + 2
        self.net = GRUActorCritic(in_dim, spec.act_dim, cfg.hidden, cfg.init_log_std).to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, eps=1e-5)
        self.rew_rms, self.ret_rms = RunningMeanStd(), RunningMeanStd()
        self._low = torch.as_tensor(spec.action_low, device=self.device)
        self._high = torch.as_tensor(spec.action_high, device=self.device)
        self._ppo = PPOConfig(lr=cfg.lr, gamma=cfg.gamma, lam=cfg.lam, clip=cfg.clip, epochs=cfg.epochs,
                              minibatch_size=cfg.minibatch_chunks, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
                              max_grad_norm=cfg.max_grad_norm)

    def make_learner(self) -> RL2Learner:
        return RL2Learner(self)

    def reward_input(self, rewards: torch.Tensor) -> torch.Tensor:
        """Raw rewards ``[...]`` -> the GRU's reward input ``[...]`` (scaled, normalised, clipped)."""
        r = rewards.float() * self.cfg.reward_scale
        if self.cfg.normalize_rewards:
            r = (r / self.rew_rms.std).clamp(-REWARD_CLIP, REWARD_CLIP)
        return r

    def features(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor,
                 first: torch.Tensor) -> torch.Tensor:
        """GRU input ``[..., obs_dim + act_dim + 2]`` from obs ``[..., obs_dim]``, previous action
        ``[..., act_dim]`` (clipped to the action bounds), raw previous reward ``[...]`` and
        ``first`` ``[...]`` (a new episode of the trial began)."""
        act = torch.maximum(torch.minimum(prev_action, self._high), self._low)
        return torch.cat([obs.float(), act, self.reward_input(prev_reward).unsqueeze(-1),
                          first.float().unsqueeze(-1)], dim=-1)

    def replay_batch(self, ro: Rollout, per_step: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Cut a trial rollout into truncated-BPTT chunks of up to ``L = min(bptt_len, T)`` steps per slot,
        starting at steps ``0`` and ``bptt_offset + k * L`` (padded at the end to ``L``).

        Returns ``x`` [C, L, in_dim] GRU inputs, ``h0`` [C, hidden] stored hidden state at each chunk's
        first step, ``act`` [C, L, act_dim], ``mask`` [C, L] (valid, not padding) and every
        ``per_step`` array ``[T, N]`` as ``[C, L]``; ``C`` counts the chunks with a valid step. Inputs
        are rebuilt from the rollout as in :meth:`RL2Learner.act`, assuming the rollout starts a trial
        (previous action and reward zero at ``t = 0``, as after ``reset`` + ``collect``).
        """
        T, N = ro.rewards.shape
        L = min(self.cfg.bptt_len, T)
        offset = self.cfg.bptt_offset if self.cfg.bptt_offset < T else 0  # a trial shorter than it: one chunk
        starts = np.r_[[0] if offset else [], np.arange(offset, T, L)].astype(np.int64)  # [K] chunk starts
        steps = starts[:, None] + np.arange(L)  # [K, L]
        inside = torch.as_tensor(steps < np.r_[starts[1:], T][:, None], device=self.device)  # [K, L]
        rows = torch.as_tensor(np.minimum(steps, T - 1), device=self.device)

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), device=self.device)

        def chunk(a: torch.Tensor) -> torch.Tensor:  # [T, N, ...] -> [K * N, L, ...], chunk-major
            a = a[rows]  # [K, L, N, ...]; rows past a chunk's end (the next chunk's, or step T-1) masked below
            return a.transpose(1, 2).reshape(len(starts) * N, L, *a.shape[3:])

        prev_action = np.concatenate([np.zeros_like(ro.actions[:1]), ro.actions[:-1]])  # [T, N, act_dim]
        prev_reward = np.concatenate([np.zeros_like(ro.rewards[:1]), ro.rewards[:-1]])  # [T, N]
        x = self.features(tensor(ro.obs), tensor(prev_action), tensor(prev_reward), tensor(ro.first))
        mask = chunk(tensor(ro.valid)) & inside[:, None, :].expand(-1, N, -1).reshape(-1, L)  # [K * N, L]
        out = {"x": chunk(x), "act": chunk(tensor(ro.actions)), "mask": mask,
               **{k: chunk(tensor(v.astype(np.float32))) for k, v in per_step.items()}}
        out["h0"] = tensor(ro.extras["hidden"][starts]).reshape(len(starts) * N, -1)  # [K * N, hidden]
        keep = out["mask"].any(dim=1)
        return {k: v[keep] for k, v in out.items()}

    def replay(self, data: dict[str, torch.Tensor], idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Current network on chunks ``idx``: ``(log_prob, entropy, value)``, each ``[b_valid]``."""
        mean, value, _ = self.net(data["x"][idx], data["h0"][idx])  # [b, L, act_dim], [b, L]
        m = data["mask"][idx]
        dist = self.net.dist(mean[m])  # batch [b_valid, act_dim]
        return dist.log_prob(data["act"][idx][m]).sum(-1), dist.entropy().sum(-1), value[m]

    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        """PPO over the trials in ``batch.pre``; the reward-input normaliser is updated last."""
        ro, cfg = batch.pre, self.cfg
        if np.any(ro.extras["hidden"][0] != 0):
            raise ValueError("rl2: a meta-batch rollout must start a trial (Learner.reset right before collect)")
        rewards, values = ro.rewards * cfg.reward_scale, ro.extras["value"]  # [T, N]
        norm: dict[str, float] = {}
        if cfg.normalize_rewards:
            rewards, scale, norm = normalise_rewards(self.ret_rms, rewards, trial_ends(ro.valid), ro.valid, cfg.gamma,
                                                     cfg.rescale_value)
            values = values * np.float32(scale)  # the new std's units
            rescale_output(self.net.v, scale)
        adv, ret = trial_gae(rewards, values, ro.valid, cfg.gamma, cfg.lam)
        data = self.replay_batch(ro, {"adv": adv, "ret": ret, "log_prob": ro.extras["log_prob"]})

        def terms(idx: torch.Tensor) -> PPOTerms:  # chunks idx -> their valid steps (row-major, as replay's)
            m = data["mask"][idx]  # [b, L]
            return PPOTerms(*self.replay(data, idx), *(data[k][idx][m] for k in ("log_prob", "adv", "ret")))

        metrics = ppo_epochs(self.net, self.opt, data["mask"].shape[0], terms, self._ppo)
        if cfg.normalize_rewards:
            self.rew_rms.update(ro.rewards[ro.valid] * cfg.reward_scale)
        return {**metrics, **norm, "meta/bptt_chunks": float(data["mask"].shape[0]),
                "meta/reward_input_std": math.sqrt(self.rew_rms.var)}

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "rew_rms": self.rew_rms.state_dict(),
                "ret_rms": self.ret_rms.state_dict(), "config": asdict(self.cfg)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.rew_rms.load_state_dict(state["rew_rms"])
        self.ret_rms.load_state_dict(state["ret_rms"])

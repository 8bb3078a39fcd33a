"""``maml``: Model-Agnostic Meta-Learning with a TRPO meta-update (Finn et al. 2017, arXiv:1703.03400).

A Gaussian MLP policy with parameters θ is meta-trained so that one vanilla policy-gradient (VPG) step on
a task's own experience gives a good policy for that task:

* **Inner loop** (:meth:`MAMLLearner.adapt`): from the ``episodes`` pre-adaptation episodes of each slot,
  ``inner_steps`` VPG steps ``θ'_n = θ - inner_lr · ∇ L_n(θ)``, with ``L_n = -mean_valid log π(a|s) · A``
  and ``A`` the discounted return-to-go minus a linear feature baseline fitted on the same rollout
  (:func:`linear_baseline`, garage's ``LinearFeatureBaseline``). Further inner steps reuse the same data.
* **Outer loop** (:meth:`MAML.meta_update`): the θ'_n are recomputed from ``batch.pre`` as functions of θ
  (second order unless ``first_order``) and TRPO (Schulman et al. 2015, arXiv:1502.05477) maximises the
  mean over slots of the importance-weighted surrogate on ``batch.post`` under a mean-KL constraint
  ``max_kl``: conjugate gradient on Fisher-vector products (Hessian-vector products of the mean KL between
  the acting policies π_θ'(θ_old) and π_θ'(θ), taken w.r.t. θ), then a backtracking line search.
  ``outer="ppo"`` instead takes ``outer_epochs`` Adam steps on PPO's clipped surrogate, with no trust
  region (garage's ``MAMLPPO`` also meta-optimises a clipped surrogate with Adam).

"As in garage" means garage's MAML-TRPO Meta-World ML10 example
(``src/garage/examples/torch/maml_trpo_metaworld_ml10.py``) or the defaults of the classes it uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from metarl.config import config_from_options
from metarl.errors import UsageError
from metarl.returns import discounted_returns
from metarl.types import ActOutput, MetaBatch, Rollout, StepInput
from metarl.vector import EnvSpec

from .nets import gaussian_act, mlp

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class MAMLConfig:
    """MAML-TRPO hyper-parameters."""

    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer sizes of the tanh policy MLP (as in garage: ``hidden_sizes=(128, 128)``, tanh)."""
    inner_lr: float = 1e-4
    """Inner VPG step size (as in garage's Meta-World examples: ``inner_lr=1e-4``)."""
    learn_inner_lr: bool = False
    """Meta-SGD (Li et al. 2017, arXiv:1707.09835): one learned inner step size per parameter entry,
    initialised to ``inner_lr`` and meta-trained with θ by the outer update; ``inner_lr`` then only sets
    the start. Off as in garage."""
    inner_steps: int = 2
    """Inner VPG steps, each on the same pre-adaptation episodes. Garage (``num_grad_updates=1``) and
    Finn et al. 2017 use 1; we default to 2: on ML1 reach-v3 one step left the farthest held-out goals
    short (83–87% held-out success over three runs, and two steps at evaluation alone reached those
    goals but overshot the others), while meta-training through two steps gave 92.7%
    (``benchmarks/results/ML1-reach-v3-maml-is2.json``). Costs ~15% of training steps/s."""
    first_order: bool = False
    """First-order MAML: no gradient through the inner gradient (Finn et al. 2017, section 5.2)."""
    episodes: int = 10
    """Episodes per slot before and after adapting (as in garage: ``rollouts_per_task=10``; also the
    official evaluation protocol's 10 adaptation episodes)."""
    gamma: float = 0.99
    """Discount (as in garage)."""
    max_kl: float = 0.01
    """TRPO mean-KL trust region δ (garage's ``MAMLTRPO`` default ``max_kl_step=0.01``)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations (garage's ``ConjugateGradientOptimizer`` default)."""
    cg_damping: float = 1e-5
    """Damping added to Fisher-vector products (garage's ``hvp_reg_coeff=1e-5``)."""
    backtrack_ratio: float = 0.8
    """Line-search step shrink factor (garage's ``ConjugateGradientOptimizer`` default)."""
    max_backtracks: int = 15
    """Line-search tries (garage's ``ConjugateGradientOptimizer`` default)."""
    baseline_reg: float = 1e-5
    """Ridge coefficient of the linear feature baseline (garage's ``LinearFeatureBaseline`` default)."""
    normalize_inner_adv: bool = False
    """Standardise inner-loop advantages per slot (as in garage's ML10 example: ``center_adv=False``).
    The outer (meta) loss always standardises the post-adaptation advantages per slot (garage's default
    ``center_adv=True``; its ML10 example turns it off in both loops): each slot's surrogate then weighs
    alike in the meta-gradient whatever its task's reward scale."""
    init_log_std: float = 0.0
    """Initial log-std in policy units, state-independent and learned (garage's ``GaussianMLPPolicy``
    ``init_std=1.0``); the env-space std starts at ``exp(init_log_std) / action_scale``."""
    action_scale: float = 1.0
    """The env receives the policy's output divided by this (garage wraps its Meta-World MAML envs in
    ``normalize(env, expected_action_scale=10.)``, which does the same). A reparametrisation that
    changes learning, not the policy class: the env-space std starts ``action_scale`` times smaller, and
    one VPG step moves the env-space mean action ``action_scale²`` times less per unit of ``inner_lr``."""
    outer: str = "trpo"
    """Meta-update: ``"trpo"`` (Finn et al. 2017 use TRPO for RL) or ``"ppo"`` (clipped surrogate, Adam)."""
    outer_lr: float = 1e-3
    """Adam learning rate of the ``ppo`` meta-update (garage's ``MAMLPPO`` default ``outer_lr=1e-3``)."""
    outer_epochs: int = 5
    """Adam steps per meta-batch of the ``ppo`` meta-update (our choice)."""
    clip: float = 0.2
    """Ratio clip range of the ``ppo`` meta-update (PPO's default, Schulman et al. 2017)."""


class GaussianMLP(nn.Module):
    """Tanh MLP mean and state-independent log-std: ``obs [..., obs_dim] -> (mean [..., act_dim], log_std [act_dim])``.

    Both in env units: the network's output and its ``log_std`` parameter are in policy units, divided
    by ``action_scale`` (see :attr:`MAMLConfig.action_scale`).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], init_log_std: float,
                 action_scale: float = 1.0) -> None:
        super().__init__()
        self.mean = mlp(obs_dim, act_dim, hidden, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), init_log_std))
        self.action_scale = float(action_scale)  # a constant, not a parameter or buffer

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._scaled(self.mean(obs), self.log_std)

    def forward_per_slot(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot ``n`` with its own parameters: ``params[name]`` is ``[N, *shape]`` (keys as in
        ``named_parameters()``), ``obs [N, obs_dim]`` -> ``(mean [N, act_dim], log_std [N, act_dim])``.

        What ``vmap`` over ``functional_call`` computes, as one batched matmul per layer (acting after
        adaptation at 32 slots: 563 -> 251 µs, ``experiments/shm_backend/parent_cost.py``; equal to it within float32
        rounding, see tests/test_maml.py).
        """
        x = obs.unsqueeze(1)  # [N, 1, in]
        for i, layer in enumerate(self.mean):
            if isinstance(layer, nn.Linear):  # x @ W^T + b, per slot
                x = torch.baddbmm(params[f"mean.{i}.bias"].unsqueeze(1), x, params[f"mean.{i}.weight"].transpose(1, 2))
            elif next(layer.parameters(), None) is None:
                x = layer(x)  # an activation
            else:
                raise TypeError(f"forward_per_slot handles Linear layers and activations, not {type(layer).__name__}")
        return self._scaled(x[:, 0], params["log_std"])

    def _scaled(self, mean: torch.Tensor, log_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.action_scale == 1.0:
            return mean, log_std
        return mean / self.action_scale, log_std - math.log(self.action_scale)


def policy_dist(policy: nn.Module, params: Params, obs: torch.Tensor) -> torch.distributions.Normal:
    """The policy with ``params`` at ``obs [B, obs_dim]``: a Normal of batch shape ``[B, act_dim]``."""
    mean, log_std = functional_call(policy, params, (obs,))
    return torch.distributions.Normal(mean, log_std.exp().expand_as(mean))


def log_prob(policy: nn.Module, params: Params, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """``[B]`` log π(act | obs) under ``params``; ``obs [B, obs_dim]``, ``act [B, act_dim]``."""
    return policy_dist(policy, params, obs).log_prob(act).sum(-1)


def episode_time(first: np.ndarray) -> np.ndarray:
    """``[T, N]`` step index within the episode, from ``first [T, N]`` (True at episode starts)."""
    t = np.zeros(first.shape, dtype=np.float64)
    for i in range(1, first.shape[0]):
        t[i] = np.where(first[i], 0.0, t[i - 1] + 1.0)
    return t


def linear_baseline(obs: np.ndarray, time: np.ndarray, returns: np.ndarray, valid: np.ndarray,
                    reg: float = 1e-5) -> np.ndarray:
    """garage's ``LinearFeatureBaseline``, fitted per slot on its valid steps and evaluated on all steps.

    Features ``[clip(obs, ±10), clip(obs, ±10)², t/100, (t/100)², (t/100)³, 1]``; ridge least squares with
    ``reg`` (multiplied by 10 up to 4 times if the solve is not finite, as garage does).

    Args:
        obs: ``[T, N, obs_dim]``; time: ``[T, N]`` step within the episode; returns: ``[T, N]``;
        valid: ``[T, N]`` bool, the steps the fit uses.

    Returns:
        ``[T, N]`` float32 baseline values.
    """
    o = np.clip(obs.astype(np.float64), -10, 10)
    al = time[..., None] / 100.0
    feats = np.concatenate([o, o**2, al, al**2, al**3, np.ones_like(al)], axis=-1)  # [T, N, F]
    out = np.zeros(returns.shape, dtype=np.float64)
    eye = np.eye(feats.shape[-1])
    for n in range(returns.shape[1]):
        x, y = feats[valid[:, n], n], returns[valid[:, n], n].astype(np.float64)  # [B, F], [B]
        coef, r = np.zeros(feats.shape[-1]), reg
        for _ in range(5):
            coef = np.linalg.lstsq(x.T @ x + r * eye, x.T @ y, rcond=-1)[0]
            if np.all(np.isfinite(coef)):
                break
            r *= 10
        out[:, n] = feats[:, n] @ coef
    return out.astype(np.float32)


def advantages(ro: Rollout, gamma: float, reg: float, normalize: bool) -> np.ndarray:
    """``[T, N]`` return-to-go minus the linear baseline; standardised per slot over valid steps if ``normalize``."""
    ret = discounted_returns(ro.rewards, ro.dones, gamma)  # [T, N]
    adv = ret - linear_baseline(ro.obs, episode_time(ro.first), ret, ro.valid, reg)
    if normalize:
        v = np.where(ro.valid, 1.0, np.nan)
        adv = (adv - np.nanmean(adv * v, axis=0)) / (np.nanstd(adv * v, axis=0) + 1e-8)
    return adv.astype(np.float32)


def slot_batches(ro: Rollout, adv: np.ndarray, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Per slot, its valid steps: ``obs [B_n, obs_dim]``, ``act [B_n, act_dim]``, ``adv [B_n]``, ``log_prob [B_n]``."""
    out = []
    for n in range(ro.rewards.shape[1]):
        m = ro.valid[:, n]
        data = {"obs": ro.obs[m, n], "act": ro.actions[m, n], "adv": adv[m, n]}
        if "log_prob" in ro.extras:
            data["log_prob"] = ro.extras["log_prob"][m, n].astype(np.float32)
        out.append({k: torch.as_tensor(np.ascontiguousarray(v), device=device) for k, v in data.items()})
    return out


def vpg_loss(policy: nn.Module, params: Params, data: dict[str, torch.Tensor]) -> torch.Tensor:
    """Scalar ``-mean log π(a|s) · A`` over one slot's steps."""
    return -(log_prob(policy, params, data["obs"], data["act"]) * data["adv"]).mean()


def inner_step(policy: nn.Module, params: Params, data: dict[str, torch.Tensor], lr: float | Params,
               create_graph: bool) -> tuple[Params, torch.Tensor]:
    """One VPG step ``θ' = θ - lr ⊙ ∇ vpg_loss(θ)``; returns ``(θ', loss at θ)``.

    ``lr``: a scalar, or per parameter a tensor of its shape (Meta-SGD; θ' is differentiable in it).
    With ``create_graph`` θ' is a differentiable function of θ (second-order MAML); without it the
    gradient is a constant, so ``∂θ'/∂θ = I`` (first-order MAML).
    """
    loss = vpg_loss(policy, params, data)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    return {k: p - (lr[k] if isinstance(lr, dict) else lr) * g
            for (k, p), g in zip(params.items(), grads, strict=True)}, loss


def conjugate_gradient(Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int = 10,
                       residual_tol: float = 1e-10) -> torch.Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given as ``Avp(v) = A v``.

    ``b``: ``[D]``; returns ``x`` ``[D]`` after at most ``iters`` iterations (stops once ``|r|² < residual_tol``).
    """
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < residual_tol:
            break
        Ap = Avp(p)
        alpha = rr / (p @ Ap)
        x, r = x + alpha * p, r - alpha * Ap
        rr_new = r @ r
        p, rr = r + (rr_new / rr) * p, rr_new
    return x


def line_search(evaluate: Callable[[float], tuple[float, float]], surrogate_before: float, max_kl: float,
                backtrack_ratio: float = 0.8, max_backtracks: int = 15) -> tuple[float, int]:
    """Backtracking line search along a full step (garage's ``ConjugateGradientOptimizer`` rule).

    ``evaluate(fraction) -> (surrogate, kl)`` at ``θ + fraction · full_step``. Tries fractions
    ``backtrack_ratio**i``, ``i = 0..max_backtracks-1``, and accepts the first (largest) one with
    ``kl <= max_kl`` that improves the surrogate. Returns ``(fraction, tries)``; fraction 0.0: none accepted.
    """
    for i in range(max_backtracks):
        frac = backtrack_ratio**i
        surr, kl = evaluate(frac)
        if kl <= max_kl and surr > surrogate_before and math.isfinite(surr):
            return frac, i + 1
    return 0.0, max_backtracks


class MAMLLearner:
    """Acts with θ until :meth:`adapt`, then with each slot's adapted (detached) θ'_n."""

    eval_deterministic = False
    """Evaluation episodes sample from the adapted policy π_θ'. That is what the meta-objective
    optimises (post-adaptation rollouts are sampled) and what garage's ``MetaEvaluator`` does (its
    workers call ``policy.get_action``, which samples); the published Meta-World MAML numbers come
    from there. Mean actions are available with ``metarl eval RUN --actions mean``."""

    def __init__(self, algo: MAML) -> None:
        self.algo = algo
        self.rollout: Rollout | None = None
        self.adapted: Params | None = None  # stacked: name -> [N, *shape]

    def reset(self, num_slots: int) -> None:
        self.num_slots, self.rollout, self.adapted = num_slots, None, None

    @torch.no_grad()
    def act(self, step: StepInput, deterministic: bool = False) -> ActOutput:
        """Actions ``[N, act_dim]``; extras ``log_prob`` ``[N]`` (what the outer surrogate divides by)."""
        obs = torch.as_tensor(step.obs, device=self.algo.device)  # [N, obs_dim]
        if self.adapted is None:
            mean, log_std = self.algo.policy(obs)  # [N, act_dim], [act_dim]
        else:
            mean, log_std = self.algo.policy.forward_per_slot(self.adapted, obs)  # [N, act_dim], [N, act_dim]
        action, log_prob = gaussian_act(mean, log_std, deterministic, step.noise, step.active)  # [N, act_dim], [N]
        return ActOutput(action.cpu().numpy(), {"log_prob": log_prob.cpu().numpy()})

    def observe(self, rollout: Rollout) -> None:
        """Keep the pre-adaptation rollout for :meth:`adapt`."""
        self.rollout = rollout

    def adapt(self) -> None:
        """Inner VPG step(s) per slot from the observed rollout; keeps θ'_n detached for acting."""
        if self.rollout is None:
            raise RuntimeError("MAMLLearner.adapt() needs observe(rollout) first")
        with torch.enable_grad():
            adapted, _ = self.algo.adapt_params(self.rollout, create_graph=False)
        self.adapted = {k: torch.stack([p[k].detach() for p in adapted]) for k in adapted[0]}


class MAML:
    """MAML meta-algorithm: a shared Gaussian MLP policy, VPG inner steps and a TRPO meta-update."""

    config_class = MAMLConfig
    """Its options (``--agent-opt``) and their defaults, as ``metarl envs`` lists them."""

    def __init__(self, spec: EnvSpec, device: torch.device | str = "cpu", **options: Any) -> None:
        self.cfg = cfg = config_from_options(MAMLConfig, options, "maml agent")
        self.spec, self.device = spec, torch.device(device)
        self.adapt_episodes = self.post_episodes = cfg.episodes
        self.policy = GaussianMLP(spec.obs_dim, spec.act_dim, cfg.hidden, cfg.init_log_std,
                                  cfg.action_scale).to(self.device)
        # Meta-SGD step sizes, aligned with policy.named_parameters(); None: the scalar inner_lr.
        self.inner_lrs = nn.ParameterList(
            [nn.Parameter(torch.full_like(p.detach(), cfg.inner_lr)) for p in self.policy.parameters()]
        ) if cfg.learn_inner_lr else None
        if cfg.outer not in ("trpo", "ppo"):
            raise UsageError(f"maml agent: outer must be 'trpo' or 'ppo', got {cfg.outer!r}")
        self.opt = torch.optim.Adam(self.meta_parameters(), lr=cfg.outer_lr) if cfg.outer == "ppo" else None

    def make_learner(self) -> MAMLLearner:
        return MAMLLearner(self)

    def params(self) -> Params:
        """θ as a name -> tensor dict (the live parameters: gradients reach them)."""
        return dict(self.policy.named_parameters())

    def meta_parameters(self) -> list[nn.Parameter]:
        """What the meta-update optimises: θ, then the Meta-SGD step sizes if ``learn_inner_lr``."""
        return list(self.policy.parameters()) + (list(self.inner_lrs) if self.inner_lrs is not None else [])

    def step_sizes(self) -> float | Params:
        """The inner step size: ``inner_lr``, or per parameter name the learned Meta-SGD tensor."""
        if self.inner_lrs is None:
            return self.cfg.inner_lr
        return {k: a for (k, _), a in zip(self.policy.named_parameters(), self.inner_lrs, strict=True)}

    def adapt_slots(self, data: list[dict[str, torch.Tensor]], create_graph: bool) -> tuple[list[Params], torch.Tensor]:
        """θ'_n for each slot's batch (``inner_steps`` VPG steps from θ); also the mean first-step loss."""
        adapted, losses, lr = [], [], self.step_sizes()
        for d in data:
            p = self.params()
            for i in range(self.cfg.inner_steps):
                p, loss = inner_step(self.policy, p, d, lr, create_graph)
                if i == 0:
                    losses.append(loss.detach())
            adapted.append(p)
        return adapted, torch.stack(losses).mean()

    def adapt_params(self, ro: Rollout, create_graph: bool) -> tuple[list[Params], torch.Tensor]:
        """θ'_n for the N slots of a pre-adaptation rollout (see :meth:`adapt_slots`)."""
        adv = advantages(ro, self.cfg.gamma, self.cfg.baseline_reg, self.cfg.normalize_inner_adv)
        return self.adapt_slots(slot_batches(ro, adv, self.device), create_graph)

    def objective(self, pre: list[dict], post: list[dict], old: list[torch.distributions.Normal] | None,
                  create_graph: bool, clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(surrogate, mean KL(old ‖ new), inner loss)`` scalars through θ'_n(θ), means over slots.

        ``old``: per slot the acting policy on the post steps (None: KL is 0, not computed).
        ``clip``: PPO's clipped surrogate ``min(r A, clip(r, 1 ± clip) A)`` instead of ``r A``.
        """
        adapted, inner_loss = self.adapt_slots(pre, create_graph)
        surr, kl = [], []
        for n, (p, d) in enumerate(zip(adapted, post, strict=True)):
            dist = policy_dist(self.policy, p, d["obs"])  # [B_n, act_dim]
            ratio = torch.exp(dist.log_prob(d["act"]).sum(-1) - d["log_prob"])  # [B_n]
            gain = ratio * d["adv"]  # [B_n]
            if clip is not None:
                gain = torch.min(gain, ratio.clamp(1 - clip, 1 + clip) * d["adv"])
            surr.append(gain.mean())
            if old is not None:
                kl.append(torch.distributions.kl_divergence(old[n], dist).sum(-1).mean())
        kl_mean = torch.stack(kl).mean() if kl else torch.zeros((), device=self.device)
        return torch.stack(surr).mean(), kl_mean, inner_loss

    def old_dists(self, pre: list[dict], post: list[dict]) -> list[torch.distributions.Normal]:
        """Per slot, the (detached) adapted policy at the current θ on its post steps ``[B_n, act_dim]``."""
        adapted, _ = self.adapt_slots(pre, create_graph=False)
        out = []
        for p, d in zip(adapted, post, strict=True):
            dist = policy_dist(self.policy, p, d["obs"])
            out.append(torch.distributions.Normal(dist.loc.detach(), dist.scale.detach()))
        return out

    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        """One meta-update (TRPO step or PPO epochs, ``outer``) on the post surrogate through θ'_n(θ)."""
        if batch.post is None:
            raise ValueError("maml: meta_update needs the post-adaptation rollout (post_episodes > 0)")
        cfg = self.cfg
        pre_adv = advantages(batch.pre, cfg.gamma, cfg.baseline_reg, cfg.normalize_inner_adv)  # [T, N]
        post_adv = advantages(batch.post, cfg.gamma, cfg.baseline_reg, normalize=True)  # [T, N]
        pre = slot_batches(batch.pre, pre_adv, self.device)
        post = slot_batches(batch.post, post_adv, self.device)
        old = self.old_dists(pre, post)
        return self.ppo_step(pre, post, old) if cfg.outer == "ppo" else self.trpo_step(pre, post, old)

    def trpo_step(self, pre: list[dict], post: list[dict], old: list[torch.distributions.Normal]) -> dict[str, float]:
        """Natural-gradient step (CG on Fisher-vector products) + line search under ``max_kl``."""
        cfg, params = self.cfg, self.meta_parameters()
        surr, kl, inner_loss = self.objective(pre, post, old, create_graph=not cfg.first_order)
        g = parameters_to_vector(torch.autograd.grad(surr, params, retain_graph=True))  # [D]
        grad_kl = parameters_to_vector(torch.autograd.grad(kl, params, create_graph=True))  # [D]

        def fvp(v: torch.Tensor) -> torch.Tensor:  # [D] -> [D]: Hessian of the mean KL times v
            hv = torch.autograd.grad(grad_kl @ v, params, retain_graph=True)
            return parameters_to_vector(hv) + cfg.cg_damping * v

        step = conjugate_gradient(fvp, g, cfg.cg_iters)  # [D]
        shs = float(step @ fvp(step))
        theta0 = parameters_to_vector(params).detach()  # [D]
        surr_before = surr.item()
        full_step = math.sqrt(2 * cfg.max_kl / shs) * step if shs > 0 and math.isfinite(shs) else None
        tried: dict[float, tuple[float, float]] = {0.0: (surr_before, 0.0)}

        def evaluate(frac: float) -> tuple[float, float]:
            vector_to_parameters(theta0 + frac * full_step, params)
            s, k, _ = self.objective(pre, post, old, create_graph=False)
            tried[frac] = (s.item(), k.item())
            return tried[frac]

        frac, tries = 0.0, 0
        if full_step is not None:
            frac, tries = line_search(evaluate, surr_before, cfg.max_kl, cfg.backtrack_ratio, cfg.max_backtracks)
        vector_to_parameters(theta0 + frac * full_step if frac > 0 else theta0, params)
        after, kl_after = tried[frac]
        return {"meta/surrogate_before": surr_before, "meta/surrogate_after": after, "meta/kl": kl_after,
                "meta/line_search_steps": float(tries), "meta/inner_loss": float(inner_loss),
                "meta/step_accepted": float(frac > 0)}

    def ppo_step(self, pre: list[dict], post: list[dict], old: list[torch.distributions.Normal]) -> dict[str, float]:
        """``outer_epochs`` Adam steps on the clipped surrogate through θ'_n(θ) (no trust region)."""
        cfg = self.cfg
        for epoch in range(cfg.outer_epochs):
            surr, _, inner = self.objective(pre, post, None, create_graph=not cfg.first_order, clip=cfg.clip)
            if epoch == 0:
                surr_before, inner_loss = surr.item(), inner.item()
            self.opt.zero_grad()
            (-surr).backward()
            self.opt.step()
        surr, kl, _ = self.objective(pre, post, old, create_graph=False, clip=cfg.clip)
        return {"meta/surrogate_before": surr_before, "meta/surrogate_after": surr.item(), "meta/kl": kl.item(),
                "meta/line_search_steps": 0.0, "meta/inner_loss": inner_loss}

    def state_dict(self) -> dict[str, Any]:
        out = {"policy": self.policy.state_dict(), "config": asdict(self.cfg)}
        if self.inner_lrs is not None:
            out["inner_lrs"] = self.inner_lrs.state_dict()
        return {**out, "opt": self.opt.state_dict()} if self.opt is not None else out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.inner_lrs is not None:
            if "inner_lrs" not in state:
                raise KeyError("inner_lrs: the checkpoint has no learned step sizes (trained without learn_inner_lr)")
            self.inner_lrs.load_state_dict(state["inner_lrs"])
        # A Meta-SGD checkpoint loaded with learn_inner_lr=False adapts with the scalar inner_lr
        # (the ablation `metarl eval RUN --agent-opt learn_inner_lr=False --agent-opt inner_lr=0`).
        if self.opt is not None:
            self.opt.load_state_dict(state["opt"])

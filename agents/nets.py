"""Small network building blocks shared by agents."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from metarl.seeding import SlotNoise


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...], act: type[nn.Module] = nn.Tanh,
        out_gain: float = 1.0) -> nn.Sequential:
    """MLP with orthogonal init (gain sqrt(2) hidden, ``out_gain`` output; Andrychowicz et al. 2021)."""
    layers: list[nn.Module] = []
    dims = (in_dim, *hidden)
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [_init(nn.Linear(a, b), math.sqrt(2)), act()]
    layers.append(_init(nn.Linear(dims[-1], out_dim), out_gain))
    return nn.Sequential(*layers)


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def rescale_output(head: nn.Module, factor: float) -> None:
    """Multiply what ``head`` outputs by ``factor``, for every input: its last ``nn.Linear``'s weight and bias.

    Reward normalisation trains the value function on returns in units of the running return std
    ``sigma``; when ``sigma`` moves from ``old`` to ``new``, ``rescale_output(value_head, old / new)``
    keeps its predictions in the new units (PopArt's "preserving outputs", van Hasselt et al. 2016).
    """
    last = head if isinstance(head, nn.Linear) else [m for m in head.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(factor)
        last.bias.mul_(factor)


_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def gaussian_act(mean: torch.Tensor, log_std: torch.Tensor, deterministic: bool = False,
                 noise: SlotNoise | None = None, active: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Act with a diagonal Gaussian: ``mean [N, act_dim]``, ``log_std`` broadcastable to it ->
    ``(action [N, act_dim], log_prob [N])`` (log-density summed over action dimensions, nats).
    ``noise``: per-slot streams (``StepInput.noise``) to draw row ``i``'s noise from, only for the
    ``active`` rows (``StepInput.active``; the others act with their mean: padding, discarded); None:
    torch's global generator.

    The same numbers as ``Normal(mean, log_std.exp())``'s ``sample()`` (or ``mean`` when
    ``deterministic``) and ``log_prob(action).sum(-1)``, same RNG draws, without building a
    ``torch.distributions`` object per env step (its argument checks and dispatch: ~25 µs per call
    here, part of the parent's serial work between vector steps; ``experiments/shm_backend/parent_cost.py``).
    Like the distribution's checks, it raises ``ValueError`` on non-finite means or a non-positive scale
    (a diverged policy).
    """
    scale = log_std.exp().expand_as(mean)
    if not bool((torch.isfinite(mean).all() & (scale > 0).all()).item()):
        raise ValueError("the policy's action distribution is invalid (non-finite mean or zero scale): "
                         "training diverged; lower the learning rate or resume from an earlier checkpoint")
    if deterministic:
        action = mean
    elif noise is None:
        action = torch.normal(mean, scale)
    else:
        action = mean + scale * noise.normal(mean.shape[-1], device=mean.device, active=active)
    log_prob = -((action - mean) ** 2) / (2 * scale**2) - scale.log() - _LOG_SQRT_2PI
    return action, log_prob.sum(-1)


class GaussianActorCritic(nn.Module):
    """Diagonal Gaussian policy with state-independent log-std, and a separate value MLP.

    Input ``[..., obs_dim]``; ``dist(obs)`` has event shape ``[act_dim]``; ``value(obs)`` is ``[...]``.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (128, 128),
                 init_log_std: float = -0.5) -> None:
        super().__init__()
        self.pi = mlp(obs_dim, act_dim, hidden, out_gain=0.01)
        self.v = mlp(obs_dim, 1, hidden, out_gain=1.0)
        self.log_std = nn.Parameter(torch.full((act_dim,), init_log_std))

    def dist(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.pi(obs), self.log_std.exp())

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v(obs).squeeze(-1)

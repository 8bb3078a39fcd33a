"""A trained Stable-Baselines3 policy as a metarl Learner, so the official held-out protocol measures it.

Plain policies (PPO, A2C, SAC, TD3) don't adapt: they are zero-shot baselines whose ``observe`` and
``adapt`` do nothing. sb3-contrib's ``RecurrentPPO`` keeps its LSTM state across the episodes of a
trial (reset only when a trial starts), which makes it an RL²-style adapter. A model trained with
``with_reward=True`` (:func:`metarl.sb3.make_vec_env`) gets the previous reward and the episode-start
flag appended to its observations here too; which applies is read off the model's observation size.

Sampled actions (adaptation episodes) draw from the evaluator's per-task noise streams where the
policy's action distribution is a (squashed) diagonal Gaussian, as metarl's own agents do, so a task's
result depends on the seed and the weights alone; other distributions (gSDE) sample from torch's
generator. Evaluation episodes take the distribution's mean (``eval_deterministic``).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.errors import UsageError
from metarl.sb3.envs import augment
from metarl.types import ActOutput, MetaBatch, Rollout, StepInput
from metarl.vector import EnvSpec

ALGOS = ("PPO", "A2C", "SAC", "TD3", "RecurrentPPO")
"""Algorithms whose saved models ``--sb3`` loads."""
_BY_POLICY_MODULE = {"stable_baselines3.sac.policies": "SAC", "stable_baselines3.td3.policies": "TD3",
                     "sb3_contrib.common.recurrent.policies": "RecurrentPPO",
                     "stable_baselines3.common.policies": "PPO"}


def detect_algo(path: Path) -> str:
    """The algorithm that saved ``path``, from its policy class's module (``ActorCriticPolicy``: PPO,
    which loads A2C's models too)."""
    if not Path(path).is_file():
        what = "is a directory" if Path(path).is_dir() else "does not exist"
        raise UsageError(f"--sb3 {path} {what}: give the .zip that model.save() wrote")
    try:
        data = json.loads(zipfile.ZipFile(path).read("data"))
        module = data["policy_class"]["__module__"]
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as e:
        raise UsageError(f"--sb3 {path} is not a Stable-Baselines3 model file ({type(e).__name__}): give the "
                         ".zip that model.save() wrote") from None
    if module not in _BY_POLICY_MODULE:
        raise UsageError(f"--sb3 {path}: policy from {module!r}; name its algorithm with --sb3-algo "
                         f"({', '.join(ALGOS)})")
    return _BY_POLICY_MODULE[module]


def load_model(path: str | Path, algo: str | None = None, device: str = "cpu") -> Any:
    """The SB3 model saved at ``path`` (``algo`` None: :func:`detect_algo`)."""
    path = Path(path)
    if algo is not None and algo not in ALGOS:
        raise UsageError(f"--sb3-algo {algo!r} is not one of {', '.join(ALGOS)}")
    saved = detect_algo(path)
    if algo is not None and {algo, saved} != {"PPO", "A2C"} and algo != saved:
        raise UsageError(f"--sb3 {path} was saved by {saved} (its policy class says so), not {algo}: drop "
                         "--sb3-algo or give that one")
    algo = algo or saved
    if algo == "RecurrentPPO":
        try:
            from sb3_contrib import RecurrentPPO as cls
        except ImportError:
            raise UsageError("RecurrentPPO models need sb3-contrib: pip install 'metarl[sb3]'") from None
    else:
        import stable_baselines3

        cls = getattr(stable_baselines3, algo)
    try:
        return cls.load(path, device=device)
    except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, zipfile.BadZipFile) as e:
        raise UsageError(f"--sb3 {path} does not load as {algo} ({type(e).__name__}: {e}): give --sb3-algo the "
                         "algorithm that trained it") from None


class SB3Agent:
    """A MetaAlgorithm-shaped holder of a trained SB3 model (evaluation only: nothing to meta-update)."""

    adapt_episodes, post_episodes = 10, 0

    def __init__(self, model: Any, spec: EnvSpec, algo: str) -> None:
        space = model.observation_space
        sizes = {spec.obs_dim: False, spec.obs_dim + 2: True}
        if getattr(space, "shape", None) is None or len(space.shape) != 1 or space.shape[0] not in sizes:
            raise UsageError(f"the SB3 model observes {space}, the benchmark gives {spec.obs_dim} numbers: "
                             "evaluate it on the benchmark it was trained on")
        if tuple(model.action_space.shape) != (spec.act_dim,):
            raise UsageError(f"the SB3 model acts in {model.action_space}, the benchmark takes {spec.act_dim} "
                             "numbers: evaluate it on the benchmark it was trained on")
        self.model, self.algo, self.with_reward = model, algo, sizes[space.shape[0]]

    def make_learner(self) -> SB3Learner:
        return SB3Learner(self.model, self.algo, self.with_reward)

    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        raise NotImplementedError("an SB3 policy is trained by SB3: metarl only evaluates it")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class SB3Learner:
    """The Learner of :class:`SB3Agent` (see the module docstring)."""

    eval_deterministic = True

    def __init__(self, model: Any, algo: str, with_reward: bool) -> None:
        self.policy, self.algo, self.with_reward = model.policy, algo, with_reward
        self.recurrent = algo == "RecurrentPPO"
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.trial_start = np.ones(0, bool)

    def reset(self, num_slots: int) -> None:
        self.policy.set_training_mode(False)
        self.trial_start = np.ones(num_slots, bool)
        if self.recurrent:  # [layers, N, hidden] each, as RecurrentPPO.predict starts them
            layers, _, hidden = self.policy.lstm_hidden_state_shape
            zeros = torch.zeros(layers, num_slots, hidden, device=self.policy.device)
            self.state = (zeros, zeros.clone())

    def act(self, step: StepInput, deterministic: bool = False) -> ActOutput:
        policy = self.policy
        obs = torch.as_tensor(augment(step.obs, step.prev_reward, step.first, self.with_reward), device=policy.device)
        act_dim = int(np.prod(policy.action_space.shape))
        with torch.no_grad():
            dist = self._distribution(obs, step.active)
            if dist is None:  # TD3: a deterministic actor
                actions = policy.actor(obs)
            elif deterministic or step.noise is None:
                actions = _draw(dist, None if deterministic else torch.randn(len(obs), act_dim), deterministic)
            else:
                actions = _draw(dist, step.noise.normal(act_dim, device=policy.device, active=step.active), False)
        actions = actions.cpu().numpy().reshape(len(obs), act_dim)
        low, high = policy.action_space.low.reshape(-1), policy.action_space.high.reshape(-1)
        if policy.squash_output:
            actions = low + 0.5 * (actions + 1.0) * (high - low)  # SB3's unscale_action
        return ActOutput(np.clip(actions, low, high).astype(np.float32), {})

    def _distribution(self, obs: torch.Tensor, active: np.ndarray | None) -> Any:
        """The policy's action distribution for ``obs`` (None for TD3); a recurrent policy's state moves on
        for the active slots only (padding steps leave it where the trial left it)."""
        policy = self.policy
        if self.recurrent:
            starts = torch.as_tensor(self.trial_start, dtype=torch.float32, device=policy.device)
            dist, state = policy.get_distribution(obs, self.state, starts)
            keep = torch.as_tensor(np.ones(len(obs), bool) if active is None else active, device=policy.device)
            self.state = tuple(torch.where(keep[None, :, None], new, old) for new, old in zip(state, self.state,
                                                                                               strict=True))
            self.trial_start[keep.cpu().numpy()] = False
            return dist
        if self.algo == "TD3":
            return None
        if self.algo == "SAC":
            mean, log_std, kwargs = policy.actor.get_action_dist_params(obs)
            return policy.actor.action_dist.proba_distribution(mean, log_std, **kwargs)
        return policy.get_distribution(obs)

    def observe(self, rollout: Rollout) -> None:
        pass

    def adapt(self) -> None:
        pass


def _draw(dist: Any, eps: torch.Tensor | None, deterministic: bool) -> torch.Tensor:
    """Actions of an SB3 distribution: the mean, or ``mean + std * eps`` (tanh-squashed for SAC's
    distribution) for a diagonal Gaussian; other distributions sample themselves."""
    from stable_baselines3.common.distributions import (
        DiagGaussianDistribution,
        SquashedDiagGaussianDistribution,
    )

    if type(dist) not in (DiagGaussianDistribution, SquashedDiagGaussianDistribution):
        return dist.get_actions(deterministic=deterministic)
    normal = dist.distribution
    x = normal.mean if deterministic else normal.mean + normal.stddev * eps.to(normal.mean.device)
    return torch.tanh(x) if isinstance(dist, SquashedDiagGaussianDistribution) else x

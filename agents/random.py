"""The ``random`` agent: uniform actions, no adaptation, no learning. A floor for every table."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metarl.types import ActOutput, MetaBatch, Rollout, StepInput
from metarl.vector import EnvSpec


class RandomLearner:
    """Uniform actions in the action box, drawn from torch's global RNG (checkpointed by the Trainer).

    Evaluation episodes sample too: a floor acts at random throughout (its mean action, the box's
    centre, would stand still, which succeeds on some families and fails on others)."""

    eval_deterministic = False

    def __init__(self, spec: EnvSpec) -> None:
        self.low = torch.as_tensor(spec.action_low)
        self.high = torch.as_tensor(spec.action_high)

    def reset(self, num_slots: int) -> None:
        pass

    def act(self, step: StepInput, deterministic: bool = False) -> ActOutput:
        n = step.obs.shape[0]
        if deterministic:
            return ActOutput(np.tile(((self.low + self.high) / 2).numpy(), (n, 1)), {})
        d = self.low.shape[0]
        u = torch.rand(n, d) if step.noise is None else step.noise.uniform(d, active=step.active)
        return ActOutput((self.low + u * (self.high - self.low)).numpy(), {})

    def observe(self, rollout: Rollout) -> None:
        pass

    def adapt(self) -> None:
        pass


class RandomAgent:
    """Meta-algorithm that learns nothing; one episode per slot per iteration."""

    adapt_episodes = 1
    post_episodes = 0

    def __init__(self, spec: EnvSpec, device: torch.device | str = "cpu", **options: Any) -> None:
        if options:
            raise TypeError(f"random agent takes no options, got {sorted(options)}")
        self.spec = spec

    def make_learner(self) -> RandomLearner:
        return RandomLearner(self.spec)

    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

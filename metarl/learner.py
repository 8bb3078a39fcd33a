"""The Learner and MetaAlgorithm protocols: what every agent implements.

The split follows meta-RL's two loops. A **Learner** adapts to the tasks in its N slots (RL²:
hidden state carried across a trial; MAML: an inner gradient step; PEARL: a posterior over a
latent). A **MetaAlgorithm** owns the parameters shared across tasks and improves how Learners
learn (the meta-update). The one loop in :mod:`metarl.trainer` drives both; agents never own it.

A Learner never sees task identities, only its slot count: adapting from experience is the point.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from metarl.types import ActOutput, MetaBatch, Rollout, StepInput


@runtime_checkable
class Learner(Protocol):
    """Per-task adaptation state for N env slots."""

    def reset(self, num_slots: int) -> None:
        """Forget everything task-specific (new tasks in the slots); prepare ``num_slots`` slots."""
        ...

    def act(self, step: StepInput, deterministic: bool = False) -> ActOutput:
        """Actions ``[N, act_dim]`` for the observations in ``step`` (one batched forward pass).

        Random draws (action noise, latent samples) should come from ``step.noise`` when it is given
        (``step.noise.normal(size)`` -> ``[N, size]``): the evaluator passes per-task streams so a
        task's result doesn't depend on the other slots; without them, from torch's global generator."""
        ...

    def observe(self, rollout: Rollout) -> None:
        """Take in a finished rollout of the current tasks (MAML: inner-loop data; PEARL: context)."""
        ...

    def adapt(self) -> None:
        """Adapt to the current tasks using what was observed (no-op for agents that adapt in ``act``)."""
        ...


@runtime_checkable
class MetaAlgorithm(Protocol):
    """Shared parameters and the meta-update.

    Attributes:
        adapt_episodes: episodes per slot collected before ``Learner.adapt()`` in meta-training.
        post_episodes: episodes per slot collected after ``adapt()`` (0: none collected).
        adapts_while_acting: optional, default False; True when the Learner adapts during the rollout
            before ``adapt()`` (RL²'s memory, PEARL's posterior), so that rollout's later episodes
            should do better than its first: the Trainer then logs ``adapt/later_success_rate``.

    Optional methods: ``learner_state()`` / ``load_learner_state(state)``, the part of the state a Learner
    uses (weights, normalisers). ``backend="ray"`` sends it to its actors every iteration; without them it
    sends ``state_dict()`` (PEARL defines them so its replay buffer stays on the driver).
    """

    adapt_episodes: int
    post_episodes: int

    def make_learner(self) -> Learner:
        """A Learner sharing this algorithm's current parameters."""
        ...

    def meta_update(self, batch: MetaBatch) -> dict[str, float]:
        """One meta-update on a meta-batch; returns scalar metrics (``meta/*`` keys)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: parameters, optimiser state, normaliser statistics."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...

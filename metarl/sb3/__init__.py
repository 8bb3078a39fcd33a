"""Stable-Baselines3 interop (the ``sb3`` extra): train SB3 agents on metarl's task distributions and
measure any SB3 policy with metarl's held-out protocol.

- :func:`make_vec_env` / :func:`make_env`: an SB3 ``VecEnv`` (on metarl's vector backends) or a single
  gymnasium env over a task distribution, drawing a new task every trial (:mod:`metarl.sb3.envs`).
- :func:`evaluate_model` (``metarl eval BENCHMARK --sb3 model.zip``): a saved SB3 model as a Learner
  (:mod:`metarl.sb3.policy`) through the official protocol, into the same evaluation JSON as metarl's
  agents, so ``metarl compare`` and ``metarl report`` take it.
"""

from __future__ import annotations

try:
    import stable_baselines3  # noqa: F401
except ImportError as e:  # pragma: no cover - the extra is missing
    from metarl.errors import UsageError

    raise UsageError("metarl.sb3 needs Stable-Baselines3: pip install 'metarl[sb3]'") from e

from metarl.sb3.envs import MetaVecEnv, MultiTaskEnv, make_env, make_vec_env
from metarl.sb3.evaluate import evaluate_model
from metarl.sb3.policy import ALGOS, SB3Agent, SB3Learner, detect_algo, load_model

__all__ = ["ALGOS", "MetaVecEnv", "MultiTaskEnv", "SB3Agent", "SB3Learner", "detect_algo", "evaluate_model",
           "load_model", "make_env", "make_vec_env"]

"""Collecting rollouts: the only code in metarl that handles episode boundaries.

``collect`` runs N task slots for ``episodes`` episodes each and returns a :class:`Rollout` of
``[T, N, ...]`` arrays. It handles terminated vs truncated, the true final observation of an episode
(kept in ``next_obs`` before the slot is reset), ``info["success"]``, and slots that finish early
(they keep stepping, since a vector env steps all slots, but those steps are marked invalid).
"""

from __future__ import annotations

import contextlib
import functools
import random
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from metarl.errors import RunError, UsageError
from metarl.learner import Learner
from metarl.seeding import SlotNoise
from metarl.types import Rollout, StepInput


class WorkerRestarted(RuntimeError):
    """A vector env restarted a crashed or hung worker process during :func:`collect`: the slots it
    stepped came back reset mid-episode (``info["worker_restarted"]``), so the trial they were in is lost.
    :func:`retry_trial` collects it again."""


T = TypeVar("T")

MAX_TRIAL_RETRIES = 10
"""Collect attempts after a worker restart before giving up (a vector env's own restart limit,
``max_restarts`` of the ``shm`` backend, usually ends a failing run first)."""


def retry_trial(run: Callable[[], T], what: str) -> T:
    """``run()`` (one whole trial: a fresh Learner state and its collects), again from the start each time
    a worker restart interrupts it (:class:`WorkerRestarted`, with a warning naming ``what``). Each attempt
    starts from the global random state the first one started from (torch's, NumPy's and Python's), so a
    recovered crash replays the same draws and leaves the rest of the run as it would have been."""
    state = _global_random_state()
    for attempt in range(MAX_TRIAL_RETRIES + 1):
        if attempt:
            _set_global_random_state(state)
        try:
            return run()
        except WorkerRestarted as e:
            if attempt == MAX_TRIAL_RETRIES:
                raise RunError(f"{what}: {MAX_TRIAL_RETRIES + 1} attempts each lost slots to env worker "
                               f"restarts ({e}): fix the env (run it with backend='sync' to see its "
                               "traceback)") from e
            again = f" (attempt {attempt + 2})" if attempt else ""  # its own text: Python shows a repeat once
            warnings.warn(f"{what}: {e}; collecting the trial again{again}", RuntimeWarning, stacklevel=2)
    raise AssertionError("unreachable")


def _global_random_state() -> tuple:
    """The global generators' state: torch's (CPU, and CUDA once in use), NumPy's legacy one, Python's."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()


def _set_global_random_state(state: tuple) -> None:
    cpu, cuda, numpy_state, python_state = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
    np.random.set_state(numpy_state)
    random.setstate(python_state)


def collect(envs, learner: Learner, episodes: int, *, deterministic: bool = False,
            seed: list[int] | int | None = None, prev_reward: np.ndarray | None = None,
            noise: SlotNoise | None = None) -> Rollout:
    """Reset every slot, then step until each slot has finished ``episodes`` episodes.

    Args:
        envs: a vector env with autoreset disabled (e.g. :class:`metarl.vector.TaskVectorEnv`)
            whose tasks are already set.
        learner: acts for all slots in one call per step.
        episodes: episodes per slot (``k``).
        deterministic: passed to ``learner.act`` (evaluation episodes use True).
        seed: reset seed(s) for the first reset (None: continue the envs' RNG streams).
        prev_reward: ``[N]`` reward shown with the first observation (default 0); pass the last
            reward of a previous rollout when this one continues the same trial (the evaluator does).
        noise: per-slot random streams handed to ``learner.act`` (``StepInput.noise``; None: the
            Learner draws from torch's global generator).

    Returns:
        A :class:`Rollout` with ``T`` = steps until the slowest slot finished.

    Raises:
        WorkerRestarted: the vector env reported ``info["worker_restarted"]`` (a worker process was
            restarted and its slots' episodes lost); collect the trial again (:func:`retry_trial`).
    """
    mode = envs.metadata.get("autoreset_mode")
    assert mode == AutoresetMode.DISABLED, f"collect() needs autoreset disabled, got {mode}"
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    n = envs.num_envs
    if noise is not None and len(noise) != n:
        raise ValueError(f"collect(): {len(noise)} noise streams for {n} slots")
    low, high = envs.single_action_space.low.reshape(-1), envs.single_action_space.high.reshape(-1)  # [act_size]
    act_size = int(np.prod(envs.single_action_space.shape))
    obs, _ = envs.reset(seed=seed)
    obs = np.asarray(obs, dtype=np.float32).reshape(n, -1)
    _check_finite(envs, "observation", obs, "at reset")
    finished = np.zeros(n, dtype=np.int64)  # episodes completed per slot
    prev_reward = np.zeros(n, np.float32) if prev_reward is None else np.asarray(prev_reward, np.float32).copy()
    first = np.ones(n, dtype=bool)
    cols: dict[str, list] = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminated",
                                             "truncated", "first", "success", "episode")}
    extras: dict[str, list] = {}
    while (finished < episodes).any():
        out = learner.act(StepInput(obs, prev_reward, first, finished < episodes, noise), deterministic)
        actions = _checked_actions(out, n, act_size)
        next_obs, reward, terminated, truncated, info = envs.step(np.clip(actions, low, high).reshape(
            (n, *envs.single_action_space.shape)))
        if "worker_restarted" in info and np.any(info["worker_restarted"]):
            lost = np.flatnonzero(np.asarray(info["worker_restarted"], bool)).tolist()
            raise WorkerRestarted(f"slot(s) {lost} lost their episodes to a worker restart")
        next_obs = np.asarray(next_obs, dtype=np.float32).reshape(n, -1)
        reward = np.asarray(reward, dtype=np.float32)
        _check_finite(envs, "observation", next_obs, "at a step", reward, "reward")
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        for key, val in (("obs", obs), ("actions", actions), ("rewards", reward), ("next_obs", next_obs),
                         ("terminated", terminated), ("truncated", truncated), ("first", first),
                         ("success", _success(info, n)), ("episode", finished.copy())):
            cols[key].append(val)
        for key, val in out.extras.items():
            extras.setdefault(key, []).append(_checked_extra(key, val, n))
        ended = terminated | truncated
        finished += ended
        obs, first, prev_reward = next_obs.copy(), ended, reward
        if ended.any():
            reset_obs, _ = envs.reset(options={"reset_mask": ended})
            obs[ended] = np.asarray(reset_obs, dtype=np.float32).reshape(n, -1)[ended]
            _check_finite(envs, "observation", obs, "at reset")
    arrays = {k: np.stack(v) for k, v in cols.items()}
    episode = np.minimum(arrays["episode"], episodes)
    return Rollout(**{**arrays, "episode": episode}, valid=arrays["episode"] < episodes,
                   extras={k: np.stack(v) for k, v in extras.items()}, episodes=episodes)


def _check_finite(envs, what: str, values: np.ndarray, when: str, more: np.ndarray | None = None,
                  more_what: str = "") -> None:
    """A one-line :class:`RunError` naming the env (its class and task) that returned a NaN or infinite
    ``what`` (and ``more``): refused where it enters, not blamed later on the agent's training (a run
    error, not bad input: a simulator may go unstable hours into a run, and the trainer then saves the last
    whole iteration). Runs every step, so the common case (all finite) costs one dot product per array
    (:func:`_all_finite`)."""
    if _all_finite(values) and (more is None or _all_finite(more)):
        return
    for arr, name in ((values, what), (more, more_what)):
        if arr is None or np.isfinite(arr).all():
            continue
        rows = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
        slot = int(np.flatnonzero(rows)[0])
        tasks = getattr(envs, "tasks", None)
        task = tasks[slot] if tasks else None
        on = f" on task {task.name} #{task.index} ({task.split} split)" if task is not None else ""
        raise RunError(f"the task family's env {_env_name(envs)} returned a non-finite {name} "
                         f"({arr.reshape(len(arr), -1)[slot].tolist()[:4]}) {when} in slot {slot}{on}: fix the env "
                         "(metarl takes only finite observations and rewards)")


def _all_finite(arr: np.ndarray) -> bool:
    """Whether every value of the array ``arr`` is finite, cheaply enough for every step: its dot product
    with zeros (one BLAS call, no temporary array) is 0 for finite values and NaN once one is NaN or
    infinite. 0 * inf sets the invalid-operation flag: NumPy's warning for it is filtered out below (and, where
    warnings are errors in a filter set since, caught), and the exact check then decides."""
    flat = arr.reshape(-1)
    zeros = _ZEROS.get(flat.size)
    if zeros is None:
        if len(_ZEROS) > 64:
            _ZEROS.clear()
        zeros = _ZEROS[flat.size] = np.zeros(flat.size, np.float32)
        zeros.flags.writeable = False
    try:
        if flat.dot(zeros) == 0:
            return True
    except (RuntimeWarning, FloatingPointError):
        pass
    return bool(np.isfinite(flat).all())


_ZEROS: dict[int, np.ndarray] = {}
"""Zero vectors for :func:`_all_finite`, by size (the same few sizes come every step)."""

# NumPy's warning for _all_finite's 0 * inf, from this module only: the error that follows says it better
warnings.filterwarnings("ignore", "invalid value encountered in dot", RuntimeWarning, __name__.replace(".", r"\."))


def _env_name(envs) -> str:
    """``module.Class`` of the envs a vector env steps (its family's env factory), for messages."""
    dist = getattr(envs, "distribution", None)
    factory = getattr(dist, "env_factory", None)
    while isinstance(factory, functools.partial):
        factory = factory.func
    target = factory if factory is not None else type(getattr(envs, "env", envs))
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__name__)}"


def _checked_actions(out, n: int, act_size: int) -> np.ndarray:
    """``out.actions`` as a ``[n, act_size]`` float32 array; a one-line :class:`UsageError` naming
    ``Learner.act`` for anything else (a reshape would otherwise hand one slot's row to several slots)."""
    acts = getattr(out, "actions", None)
    if acts is None or not isinstance(getattr(out, "extras", None), dict):
        raise UsageError(f"Learner.act returned a {type(out).__name__}: return metarl.ActOutput(actions, extras) "
                         f"with actions of shape [N, act_dim] = [{n}, {act_size}]")
    if isinstance(acts, torch.Tensor):
        acts = acts.detach().cpu().numpy()
    try:
        a = np.asarray(acts, dtype=np.float32)
    except (ValueError, TypeError) as e:  # text, a ragged list of rows
        why = (str(e).strip().splitlines() or [""])[0][:100]
        raise UsageError(f"Learner.act returned actions that are not an array of numbers ({type(e).__name__}: "
                         f"{why}): return floats, one row per slot, [N, act_dim] = [{n}, {act_size}]") from None
    if a.ndim == 0 or a.shape[0] != n or a.size != n * act_size:
        raise UsageError(f"Learner.act returned actions of shape {tuple(a.shape)} for {n} slots: give one row "
                         f"per slot, [N, act_dim] = [{n}, {act_size}]")
    a = a.reshape(n, act_size)
    if _all_finite(a):
        return a
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise UsageError(f"Learner.act returned non-finite actions in slot(s) {np.flatnonzero(bad)[:8].tolist()}: "
                         "the policy's outputs are NaN or inf (diverged weights, a log of 0, a division by 0)")
    return a


def _checked_extra(key: str, val, n: int) -> np.ndarray:
    """One ``ActOutput.extras`` entry as an array with one row per slot."""
    if isinstance(val, torch.Tensor):
        val = val.detach().cpu().numpy()
    v = np.asarray(val)
    if v.ndim == 0 or v.shape[0] != n:
        raise UsageError(f"Learner.act extras[{key!r}] has shape {tuple(v.shape)}: give one row per slot, "
                         f"[N, ...] with N = {n}")
    return v


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: unchanged), then restore the previous count.

    Acting is a stream of tiny forward passes (``[N, obs_dim]`` batches) between env steps: extra
    threads buy nothing there but compete for cores with env workers.
    """
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _success(info: dict, n: int) -> np.ndarray:
    """``[n]`` bool from a vector info dict; False where the env reported no ``success``."""
    if "success" not in info:
        return np.zeros(n, dtype=bool)
    vals = np.asarray(info["success"], dtype=np.float64) > 0.5
    mask = np.asarray(info.get("_success", np.ones(n, dtype=bool)), dtype=bool)
    return vals & mask

"""Videos of held-out trials: the same task before and after adaptation, as the evaluation scored it.

:func:`record_trial` runs one meta-test trial (:func:`metarl.evaluator.run_trial`) of one held-out task in
a single in-process slot whose env renders, with the reset seed ``seed + p`` and the noise stream
``(seed, p)`` that the evaluation gives the task at position ``p``, so the video shows the very trial the
evaluation scored (up to the last bits of batched matrix products, as with any slot count: ``metarl video``
compares the recorded returns with the run's evaluation file). Rendering reads the simulation and never
changes it. Frames of the chosen episodes carry a caption (task, episode, step, return, success so far).

A task family opts in the way gymnasium envs do: its env factory takes ``render_mode="rgb_array"`` (and
``width``, ``height``; ``camera`` where it has several) and ``render()`` returns an RGB array. Meta-World
and the classic MuJoCo families draw through MuJoCo's offscreen renderer (:mod:`metarl.offscreen`: EGL or
OSMesa, no display needed), Driving and PointNav with Pillow. Encoding: MP4 through imageio-ffmpeg (the
``video`` extra), else GIF through Pillow (:mod:`metarl.video_io`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.errors import UsageError
from metarl.evaluator import EvalConfig, run_trial, select_tasks
from metarl.learner import MetaAlgorithm
from metarl.tasks import Benchmark, TaskDistribution
from metarl.types import Rollout, Task

PHASES = ("adaptation", "evaluation")
"""A trial's two parts: the episodes before ``adapt()`` and those after."""


@dataclass
class Clip:
    """The frames of one episode of a trial, with what the caption shows at each frame."""

    phase: str
    """``"adaptation"`` or ``"evaluation"``."""
    episode: int
    """0-based within the phase."""
    frames: list[np.ndarray] = field(default_factory=list)
    """``[H, W, 3]`` uint8 each: the state after reset, then after every ``every``-th step and the last."""
    steps: list[tuple[int, float, int | None]] = field(default_factory=list)
    """Per frame: the step, the return so far, the step of the first success (None: none yet)."""


@dataclass
class Trial:
    """One recorded trial: its clips, its rollouts (as the evaluator collects them) and the frame rate."""

    task: Task
    position: int
    """The task's place in the evaluated list (its reset seed is ``seed + position``)."""
    clips: list[Clip]
    pre: Rollout
    post: Rollout
    fps: float
    """Frames per second that play the episode in real time (the env's ``render_fps`` / ``every``)."""
    episodes: tuple[int, int]
    """Adaptation and evaluation episodes of the trial."""


def parse_episodes(text: str, config: EvalConfig) -> list[tuple[str, int]]:
    """``--episodes``: ``adapt`` / ``eval`` (the first of each phase), ``adapt:K`` / ``eval:K`` (the K-th,
    from 1), comma-separated, or ``all``. Returns ``(phase, 0-based episode)`` in the order given."""
    counts = {"adapt": config.adapt_episodes, "eval": config.eval_episodes}
    if text.strip() == "all":
        return [(PHASES[i], k) for i, n in enumerate(counts.values()) for k in range(n)]
    out = []
    for token in (t.strip() for t in text.split(",")):
        name, _, number = token.partition(":")
        if name not in counts:
            raise UsageError(f"--episodes {text!r}: {token!r} is not adapt, eval, adapt:K or eval:K; give e.g. "
                             "--episodes adapt,eval or --episodes all")
        k = int(number) if number.isdigit() else (1 if not number else 0)
        if not 1 <= k <= counts[name]:
            raise UsageError(f"--episodes {token!r}: the trial has {counts[name]} {name} episodes; give K in "
                             f"1..{counts[name]}")
        key = (PHASES[name == "eval"], k - 1)
        if key not in out:
            out.append(key)
    return out


class _Recorder(gym.Wrapper):
    """Keeps the frames of the wanted episodes. A seeded reset starts a phase of the trial (the evaluator
    seeds the first reset of each), an unseeded one the next episode of the phase."""

    def __init__(self, env: gym.Env, wanted: set[tuple[str, int]], every: int) -> None:
        super().__init__(env)
        self.wanted, self.every = wanted, every
        self.clips: dict[tuple[str, int], Clip] = {}
        self._phase, self._episode, self._clip = -1, 0, None
        self._t, self._return, self._success = 0, 0.0, None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._phase, self._episode = (self._phase + 1, 0) if seed is not None else (self._phase, self._episode + 1)
        key = (PHASES[min(self._phase, 1)], self._episode)
        self._clip = self.clips.setdefault(key, Clip(*key)) if key in self.wanted else None
        self._t, self._return, self._success = 0, 0.0, None
        self._frame()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        self._return += float(reward)
        if self._success is None and float(info.get("success", 0.0)) > 0.5:
            self._success = self._t
        if self._t % self.every == 0 or terminated or truncated:
            self._frame()
        if terminated or truncated:
            self._clip = None  # a slot that finished its episodes keeps stepping only as padding
        return obs, reward, terminated, truncated, info

    def _frame(self) -> None:
        if self._clip is not None:
            frame = self.env.render()
            if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
                raise UsageError(f"{type(self.env.unwrapped).__name__}.render() returned "
                                 f"{type(frame).__name__}, not an RGB array [H, W, 3]: fix the family's render()")
            self._clip.frames.append(np.asarray(frame, dtype=np.uint8))
            self._clip.steps.append((self._t, self._return, self._success))


@dataclass(frozen=True)
class _Rendering:
    """The one-slot distribution :func:`record_trial` steps: ``dist``'s envs, rendering and recorded."""

    make: Callable[[], gym.Env]
    vector_factory: None = None

    def make_env(self) -> gym.Env:
        return self.make()


def render_factory(dist: TaskDistribution, label: str, camera: str | None = None,
                   size: tuple[int, int] = (256, 256)) -> Callable[[], gym.Env]:
    """A zero-argument factory of ``dist``'s envs with ``render_mode="rgb_array"`` (and ``camera``, ``width``,
    ``height``); a one-line error if the family's envs don't take them."""
    make = getattr(dist, "env_factory", None) or dist.make_env
    kwargs: dict[str, Any] = {"render_mode": "rgb_array", "width": size[0], "height": size[1]}
    try:
        params = inspect.signature(make).parameters
    except (TypeError, ValueError):
        params = None
    if params is not None and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        if not {"render_mode", "width", "height"} <= set(params):
            raise UsageError(f"{label}'s envs don't render: a family opts in when its env factory takes "
                             "render_mode='rgb_array', width and height (gymnasium's convention; see docs/video.md)")
        if camera is not None and "camera" not in params:
            raise UsageError(f"{label}'s envs have one view: drop --camera")
    if camera is not None:
        kwargs["camera"] = camera
    return lambda: make(**kwargs)


def record_trial(benchmark: Benchmark, agent: MetaAlgorithm, task: int = 0, *, seed: int,
                 eval_config: EvalConfig | None = None, episodes: str | Sequence[tuple[str, int]] = "adapt,eval",
                 camera: str | None = None, size: tuple[int, int] = (256, 256), every: int = 1) -> Trial:
    """Record the held-out trial of the task at position ``task`` of the evaluated list
    (``eval_config.max_tasks_per_class`` selects it, as in :func:`metarl.evaluator.evaluate`) with the
    evaluation's seed ``seed``: frames of ``episodes`` (see :func:`parse_episodes`), one every ``every``
    steps (``eval_config`` None: the official protocol). Torch's global generators are seeded with ``seed``
    for the trial and restored afterwards."""
    from metarl.rollout import torch_threads
    from metarl.seeding import SlotNoise, torch_rng_seeded
    from metarl.vector import make_vector_env

    eval_config = eval_config or EvalConfig()
    tasks = select_tasks(benchmark.test.evaluation_tasks(), eval_config.max_tasks_per_class)
    if not 0 <= task < len(tasks):
        raise UsageError(f"--task {task} is out of range: {benchmark.label}'s evaluation has {len(tasks)} tasks "
                         f"(0..{len(tasks) - 1})")
    if every < 1:
        raise UsageError(f"--every {every} is not positive: give 1 (every step) or more")
    wanted = set(parse_episodes(episodes, eval_config) if isinstance(episodes, str) else episodes)
    make = render_factory(benchmark.test, benchmark.label, camera, size)
    recorders: list[_Recorder] = []

    def recorded() -> gym.Env:
        recorders.append(_Recorder(make(), wanted, every))
        return recorders[-1]

    envs = make_vector_env(_Rendering(recorded), 1, backend="sync")  # type: ignore[arg-type]
    try:
        envs.set_tasks([tasks[task]])
        with torch_rng_seeded(seed), torch_threads(1):
            pre, post = run_trial(envs, agent.make_learner(), eval_config, seed=[seed + task],
                                  noise=SlotNoise([(seed, task)]))
        rec = recorders[-1]
        fps = float(rec.env.metadata.get("render_fps") or 30) / every
    finally:
        envs.close()
    order = parse_episodes(episodes, eval_config) if isinstance(episodes, str) else list(episodes)
    clips = [rec.clips[key] for key in order if key in rec.clips]
    return Trial(tasks[task], task, clips, pre, post, fps, (eval_config.adapt_episodes, eval_config.eval_episodes))


def trial_returns(trial: Trial) -> tuple[float, float]:
    """The numbers the evaluation file keeps for this task: the first adaptation episode's return and the
    evaluation episodes' mean return (``pre_return`` and ``return`` of its ``per_goal`` entry)."""
    return float(trial.pre.episode_returns()[0, 0]), float(trial.post.episode_returns()[:, 0].mean())


@dataclass
class RunVideo:
    """What :func:`video_of_run` wrote."""

    path: Any
    """The file written (a GIF beside an MP4 path where ffmpeg is missing)."""
    trial: Trial
    frames: int
    """Frames in the file (before a GIF keeps every k-th)."""
    fps: float
    check: str
    """How the recorded returns compare with the run's evaluation file (or why they weren't compared)."""


def video_of_run(run_dir: Any, task: int = 0, *, episodes: str = "adapt,eval", out: Any = None,
                 fps: float | None = None, camera: str | None = None, size: tuple[int, int] = (256, 256),
                 every: int = 1, side_by_side: bool = False, eval_seed: int | None = None,
                 device: str = "auto") -> RunVideo:
    """Record the held-out trial of task ``task`` (its position in the run's final evaluation, the order of
    the evaluation file's ``per_goal``) with the run's checkpoint, and write it to ``out`` (default
    ``RUN_DIR/videos/trial-test-<task>.mp4``). ``eval_seed``: the seed of ``metarl eval --eval-seed``
    (default: the run's)."""
    from pathlib import Path

    from metarl.rundir import load_trained
    from metarl.video_io import compose, write_video

    run_dir = Path(run_dir)
    cfg, bench, agent, steps = load_trained(run_dir, device)
    seed = cfg.trainer.seed if eval_seed is None else eval_seed
    config = EvalConfig(max_tasks_per_class=cfg.trainer.final_eval_tasks_per_class)
    trial = record_trial(bench, agent, task, seed=seed, eval_config=config, episodes=episodes, camera=camera,
                         size=size, every=every)
    trained = "" if steps is None else f", {steps:,} env steps"
    frames = compose(trial, f"{cfg.agent} on {bench.label}{trained}, seed {seed}", side_by_side)
    if out is None:
        (run_dir / "videos").mkdir(exist_ok=True)
        out = run_dir / "videos" / f"trial-test-{task}.mp4"
    fps = fps or trial.fps
    path = write_video(frames, out, fps)
    return RunVideo(path, trial, len(frames), fps, _check(run_dir, cfg, bench, trial, seed, steps))


def _check(run_dir: Any, cfg: Any, bench: Benchmark, trial: Trial, seed: int, steps: int | None) -> str:
    """The recorded trial's returns next to the run's evaluation file's for the same task."""
    import json

    from metarl.trainer import eval_file_name

    name = eval_file_name(bench.test, cfg.trainer.final_eval_tasks_per_class,
                          overrides={} if seed == cfg.trainer.seed else {"eval_seed": seed})
    try:
        obj = json.loads((run_dir / name).read_text())
        goal = obj["per_goal"][trial.position]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return f"not compared: no {name} with this task"
    if obj.get("trained_env_steps") != steps or (goal["task"], goal["index"]) != (trial.task.name, trial.task.index):
        return f"not compared: {name} evaluated other weights or tasks"
    pre, post = trial_returns(trial)
    gap = max(abs(pre - goal["pre_return"]), abs(post - goal["return"]))
    scale = max(1.0, abs(goal["pre_return"]), abs(goal["return"]))
    verdict = ("the same trial" if gap <= 1e-6 * scale
               else f"differs by {gap:.3g} (batched float rounding grows in the dynamics)")
    return (f"{name} per_goal[{trial.position}]: pre_return {goal['pre_return']:.3f}, return {goal['return']:.3f}; "
            f"recorded {pre:.3f}, {post:.3f}: {verdict}")


class PeriodicVideo:
    """A :class:`metarl.logging.Logger` writer that records held-out task 0's trial (the one the periodic
    evaluation scores first) every ``every`` env steps during training (``metarl train --video-every``):
    ``RUN_DIR/videos/step-<env steps>.mp4`` (or ``.gif``) and a GIF under the tag ``video/trial`` in
    ``RUN_DIR/tb/videos``. Training's random streams are left as they were."""

    def __init__(self, run: Any, every: int, episodes: str = "adapt,eval", size: tuple[int, int] = (256, 256),
                 camera: str | None = None) -> None:
        if every < 1:
            raise UsageError(f"--video-every {every} is not positive: give a number of env steps")
        self.run, self.every, self.episodes, self.size, self.camera = run, every, episodes, size, camera
        self.config = EvalConfig(max_tasks_per_class=run.config.trainer.eval_tasks_per_class)
        parse_episodes(episodes, self.config)
        render_factory(run.benchmark.test, run.benchmark.label, camera, size)  # a family that can't: now
        self.last = run.trainer.state.env_steps

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if self.last // self.every < step // self.every:
            self.record(step)
        self.last = max(self.last, step)

    def record(self, step: int) -> Any:
        """Record the trial with the current weights; returns the file written."""
        from metarl.video_io import compose, tensorboard_gif, write_video

        cfg, bench = self.run.config, self.run.benchmark
        trial = record_trial(bench, self.run.agent, 0, seed=cfg.trainer.seed, eval_config=self.config,
                             episodes=self.episodes, camera=self.camera, size=self.size)
        frames = compose(trial, f"{cfg.agent} on {bench.label}, {step:,} env steps")
        out = self.run.out / "videos"
        out.mkdir(exist_ok=True)
        path = write_video(frames, out / f"step-{step}.mp4", trial.fps)
        tensorboard_gif(self.run.out / "tb" / "videos", "video/trial", frames, trial.fps, step)
        return path

    def close(self) -> None:
        pass

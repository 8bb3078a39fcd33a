"""`metarl video` and metarl.video: the recorded trial is the one the evaluation scores, frames and files
are what they claim (count, size, motion), and the failure cases are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metarl.cli import main
from metarl.errors import UsageError
from metarl.evaluator import EvalConfig, evaluate
from metarl.factory import make_agent, make_benchmark
from metarl.vector import make_vector_env
from metarl.video import parse_episodes, record_trial, trial_returns
from metarl.video_io import compose, ffmpeg_available, write_video

SHORT = EvalConfig(adapt_episodes=2, eval_episodes=1, max_tasks_per_class=3)


def _read(path):
    import imageio.v2 as imageio

    return [np.asarray(f) for f in imageio.get_reader(path)]


def _episode_steps(rollout, k: int = 0) -> int:
    return int((rollout.valid[:, 0] & (rollout.episode[:, 0] == k)).sum())


def _check_parity(bench, agent, config: EvalConfig, seed: int, positions: list[int], **render) -> list:
    """Recorded trials' returns equal the evaluation's per-goal returns for the same task positions."""
    envs = make_vector_env(bench.test, 3)
    try:
        result = evaluate(bench.test, agent.make_learner(), envs, config, seed)
    finally:
        envs.close()
    trials = []
    for p in positions:
        trial = record_trial(bench, agent, p, seed=seed, eval_config=config, **render)
        goal = result.per_goal[p]
        assert (goal["task"], goal["index"]) == (trial.task.name, trial.task.index)
        assert trial_returns(trial) == pytest.approx((goal["pre_return"], goal["return"]), rel=1e-6, abs=1e-6)
        trials.append(trial)
    return trials


def test_driving_trial_is_the_evaluated_trial_and_frames_follow_the_episodes(tmp_path):
    bench = make_benchmark("Driving", seed=3, horizon=20)
    agent = make_agent("rl2", bench, device="cpu", hidden=16)
    trial = _check_parity(bench, agent, SHORT, seed=7, positions=[0, 2], size=(96, 80))[1]
    assert [(c.phase, c.episode) for c in trial.clips] == [("adaptation", 0), ("evaluation", 0)]
    pre, post = trial.clips
    assert len(pre.frames) == _episode_steps(trial.pre) + 1  # after reset, then after every step
    assert len(post.frames) == _episode_steps(trial.post) + 1
    assert pre.frames[0].shape == (80, 96, 3) and trial.fps == 10
    assert pre.steps[-1][1] == pytest.approx(trial_returns(trial)[0], rel=1e-5)
    frames = compose(trial, "title", side_by_side=True)
    assert len(frames) == max(len(pre.frames), len(post.frames))
    assert all(f.shape[0] % 16 == 0 and f.shape[1] % 16 == 0 and f.shape[1] >= 2 * 96 for f in frames)
    gif = write_video(frames, tmp_path / "trial.gif", trial.fps)
    from PIL import Image

    with Image.open(gif) as img:
        assert img.n_frames == len(frames) and img.size == frames[0].shape[1::-1]


@pytest.mark.metaworld
def test_metaworld_video_of_the_evaluated_trial(tmp_path):
    bench = make_benchmark("ML1", task="reach-v3", seed=0, horizon=10)
    agent = make_agent("rl2", bench, device="cpu", hidden=16)
    config = EvalConfig(adapt_episodes=2, eval_episodes=1, max_tasks_per_class=3)
    trial, = _check_parity(bench, agent, config, seed=1, positions=[1], size=(64, 64), camera="corner")
    assert [len(c.frames) for c in trial.clips] == [11, 11] and trial.fps == 80
    frames = compose(trial)
    assert len(frames) == 22
    path = write_video(frames, tmp_path / "reach.mp4", 20)
    assert path.suffix == (".mp4" if ffmpeg_available() else ".gif")
    if path.suffix == ".mp4":
        back = _read(path)
        assert len(back) == 22 and back[0].shape == frames[0].shape
        moved = [np.abs(back[i].astype(int) - back[0]).mean() for i in (5, 10)]
        assert min(moved) > 0.1  # the arm moves: frames differ over time


def test_episode_choices():
    config = EvalConfig(adapt_episodes=3, eval_episodes=2)
    assert parse_episodes("adapt,eval", config) == [("adaptation", 0), ("evaluation", 0)]
    assert parse_episodes("eval:2, adapt:3", config) == [("evaluation", 1), ("adaptation", 2)]
    assert len(parse_episodes("all", config)) == 5
    for bad in ("adapt:4", "eval:0", "later", "adapt:x"):
        with pytest.raises(UsageError):
            parse_episodes(bad, config)


def test_mp4_falls_back_to_gif_without_ffmpeg(tmp_path, monkeypatch):
    import metarl.video_io as video_io

    monkeypatch.setattr(video_io, "ffmpeg_available", lambda: False)
    frames = [np.full((32, 48, 3), i * 20, np.uint8) for i in range(6)]
    path = video_io.write_video(frames, tmp_path / "v.mp4", 80.0)
    assert path == tmp_path / "v.gif" and path.stat().st_size > 0
    from PIL import Image

    with Image.open(path) as img:  # 80 fps -> every 4th frame, and the last
        assert img.n_frames == 3 and img.info["duration"] == 50


def test_no_gl_backend_is_one_error_naming_the_fix(monkeypatch):
    mujoco = pytest.importorskip("mujoco")
    import metarl.offscreen as offscreen

    class Glfw:
        __module__ = "mujoco.glfw"

    monkeypatch.setattr(mujoco.gl_context, "GLContext", Glfw)
    monkeypatch.setattr(offscreen.ctypes.util, "find_library", lambda name: None)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UsageError, match="MUJOCO_GL=egl"):
        offscreen._context_class()


def test_a_mujoco_gl_that_breaks_mujocos_import_is_named(tmp_path, monkeypatch, capsys):
    import sys

    import metarl.offscreen as offscreen
    import metarl.video

    def broken(name):  # what importing mujoco does with MUJOCO_GL=osmesa and no libOSMesa
        raise AttributeError("'NoneType' object has no attribute 'glGetError'")

    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.setitem(sys.modules, "mujoco", None)  # not imported yet
    monkeypatch.setattr(offscreen.importlib, "import_module", broken)

    def family_fails(*args, **kwargs):
        raise UsageError("benchmark 'ML1' failed to load: AttributeError: ...; reinstall metarl")

    monkeypatch.setattr(metarl.video, "video_of_run", family_fails)
    assert main(["video", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "MuJoCo does not start with MUJOCO_GL=osmesa" in err and "apt-get install" in err
    assert "reinstall" not in err and len(err.strip().splitlines()) == 1


def test_families_without_frames_are_refused(tmp_path, capsys):
    from metarl.video import render_factory

    bench = make_benchmark("Toy", seed=0)
    with pytest.raises(UsageError, match="don't render"):
        render_factory(bench.test, bench.label)
    with pytest.raises(UsageError, match="one view"):
        render_factory(make_benchmark("Driving").test, "Driving", camera="corner")
    out = tmp_path / "toy"
    assert main(["train", "Toy", "--agent", "random", "--steps", "100", "--video-every", "50", "--out", str(out)]) == 2
    assert "--video-every: Toy's envs don't render" in capsys.readouterr().err
    assert main(["train", "Toy", "--agent", "random", "--steps", "100", "--out", str(out), "--force"]) == 0


def test_cli_video_and_periodic_videos_of_a_driving_run(tmp_path, capsys):
    from metarl import runs
    from metarl.trainer import TrainerConfig
    from metarl.video import PeriodicVideo

    trainer = TrainerConfig(steps=400, num_envs=2, seed=4, final_eval_tasks_per_class=2, eval_tasks_per_class=1,
                            progress=False)
    config = runs.RunConfig("Driving", "rl2", trainer=trainer, device="cpu", agent_options={"hidden": 16},
                            env_options={"horizon": 20, "num_tasks": 4})
    run = runs.create(config, tmp_path / "run")
    run.trainer.logger.writers.append(PeriodicVideo(run, every=300, size=(64, 64)))
    run.train()  # one iteration of 2 slots x 10 episodes of <= 20 steps: past 300 steps once
    steps = run.trainer.state.env_steps
    suffix = ".mp4" if ffmpeg_available() else ".gif"
    assert [p.name for p in (tmp_path / "run" / "videos").iterdir()] == [f"step-{steps}{suffix}"]
    assert list((tmp_path / "run" / "tb" / "videos").glob("events.out.tfevents.*"))
    out = tmp_path / "trial.gif"
    assert main(["video", str(tmp_path / "run"), "--task", "1", "--out", str(out), "--size", "64",
                 "--episodes", "adapt:2,eval"]) == 0
    printed = capsys.readouterr().out
    assert "the same trial" in printed and out.stat().st_size > 0
    goal = json.loads((tmp_path / "run" / "eval-first2.json").read_text())["per_goal"][1]
    assert f"pre_return {goal['pre_return']:.3f}" in printed
    assert main(["video", str(tmp_path / "run"), "--out", str(tmp_path / "x.avi")]) == 2
    assert main(["video", str(tmp_path / "run"), "--task", "2"]) == 2
    assert "out of range" in capsys.readouterr().err

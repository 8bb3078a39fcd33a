"""metarl.sb3: SB3 envs over task distributions (checked by SB3's own checker, trained on by PPO, SAC and
RecurrentPPO) and SB3 models through the held-out protocol (`metarl eval --sb3`, into files `metarl
compare` takes)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from stable_baselines3 import PPO, SAC  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402

from metarl.cli import main  # noqa: E402
from metarl.factory import make_benchmark  # noqa: E402
from metarl.report import load  # noqa: E402
from metarl.sb3 import SB3Agent, evaluate_model, load_model, make_env, make_vec_env  # noqa: E402
from metarl.types import StepInput  # noqa: E402
from metarl.vector import EnvSpec  # noqa: E402
from tests.conftest import scripted_benchmark  # noqa: E402


@pytest.fixture(scope="module")
def driving():
    return make_benchmark("Driving", seed=0, horizon=20, num_tasks=6)


@pytest.mark.parametrize("trial", [{}, {"trial_episodes": 3, "with_reward": True}])
def test_single_env_passes_sb3_env_checker(driving, trial):
    env = make_env(driving.train, **trial)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker warns about what it dislikes
        check_env(env)
    env.reset(seed=3)
    assert env.observation_space.shape == (6 + 2 * bool(trial),)


def test_vec_env_trials_tasks_and_infos():
    # length 3 truncating with success at step 2; length 2 terminating, never successful
    bench = scripted_benchmark([(3, False, 2), (2, True, -1)])
    venv = make_vec_env(bench.train, 2, backend="sync", seed=1, trial_episodes=2, with_reward=True)
    obs = venv.reset()
    tasks = list(venv.tasks)
    assert {t.index for t in tasks} == {0, 1}  # a balanced draw
    np.testing.assert_array_equal(obs[:, 2:], [[0, 1], [0, 1]])  # prev reward 0, episode start
    lengths = [t.params[0] for t in tasks]
    history: list[tuple] = []
    for _ in range(2 * max(lengths)):
        obs, rewards, dones, infos = venv.step(np.zeros((2, 1), np.float32))
        history.append((obs.copy(), rewards.copy(), dones.copy(), infos))
    for i, length in enumerate(lengths):
        done_steps = [k + 1 for k, h in enumerate(history) if h[2][i]]
        assert done_steps[0] == 2 * length  # SB3 sees the trial (2 episodes) as one episode
        inner = history[length - 1][0][i]  # the inner episode end: reset, flagged, previous reward shown
        assert inner[3] == 1 and inner[2] == history[length - 1][1][i]
        info = history[2 * length - 1][3][i]
        assert info["terminal_observation"][0] == length  # the true last observation, not the reset one
        assert info["TimeLimit.truncated"] == (not tasks[i].params[1])
        assert info["is_success"] == (tasks[i].params[2] > 0)
        assert info["episode"]["l"] == 2 * length
        assert info["episode"]["r"] == pytest.approx(sum(h[1][i] for h in history[:2 * length]))
        assert history[2 * length - 1][0][i][2:].tolist() == [0, 1]  # a new trial starts from reward 0
    venv.close()


def test_vec_env_seed_makes_tasks_and_resets_reproducible(driving):
    def first_steps(venv, seed_call=None):
        if seed_call is not None:
            venv.seed(seed_call)
        obs = [venv.reset()]
        tasks = [t.index for t in venv.tasks]
        for _ in range(25):  # past the first episodes' ends (horizon 20): new tasks drawn
            obs.append(venv.step(np.full((3, 2), 0.3, np.float32))[0])
        venv.close()
        return np.stack(obs), tasks + [t.index for t in venv.tasks]

    a, b = (first_steps(make_vec_env(driving.train, 3, seed=4)) for _ in range(2))
    np.testing.assert_array_equal(a[0], b[0])  # the first reset is seeded by seed, without SB3's seed()
    assert a[1] == b[1]
    c = first_steps(make_vec_env(driving.train, 3, seed=0), seed_call=4)  # SB3's seed(4) before the reset
    np.testing.assert_array_equal(a[0], c[0])
    assert not np.array_equal(a[0][0], first_steps(make_vec_env(driving.train, 3, seed=5))[0][0])


@pytest.mark.spawn
def test_a_script_that_never_closes_its_shm_vec_env_exits(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text("import metarl\nfrom metarl.sb3 import make_vec_env\nif __name__ == '__main__':\n"
                      "    dist = metarl.make_benchmark('Driving', horizon=10).train\n"
                      "    make_vec_env(dist, 2, backend='shm', num_workers=2).reset()\n    print('end')\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "end\n", proc.stderr  # it waited forever for its workers


def test_sampled_actions_follow_each_tasks_noise_stream(driving, tmp_path):
    model = PPO("MlpPolicy", make_vec_env(driving.train, 2, backend="sync"), seed=0, device="cpu")
    model.save(tmp_path / "ppo.zip")
    one = evaluate_model(driving, tmp_path / "ppo.zip", num_envs=1, eval_tasks=3, eval_seed=5)[1]
    three = evaluate_model(driving, tmp_path / "ppo.zip", num_envs=3, eval_tasks=3, eval_seed=5)[1]
    assert [g["pre_return"] for g in one["per_goal"]] == pytest.approx([g["pre_return"] for g in three["per_goal"]])
    assert one["sb3"] == {"model": str(tmp_path / "ppo.zip"), "algo": "PPO", "with_reward": False,
                          "num_timesteps": 0}
    (tmp_path / "ppo-eval.json").write_text(json.dumps({**one, "sb3": {**one["sb3"], "num_timesteps": 64}}))
    run, = load([tmp_path / "ppo-eval.json"])[0]  # metarl report names the algorithm and its training steps
    assert (run.agent, run.env_steps) == ("sb3-PPO", 64)


def test_recurrent_ppo_keeps_its_lstm_state_across_a_trials_episodes(driving, tmp_path):
    from sb3_contrib import RecurrentPPO

    venv = make_vec_env(driving.train, 2, backend="sync", trial_episodes=2, with_reward=True)
    RecurrentPPO("MlpLstmPolicy", venv, seed=0, device="cpu",
                 policy_kwargs={"lstm_hidden_size": 8}).save(tmp_path / "rppo.zip")
    model = load_model(tmp_path / "rppo.zip")
    learner = SB3Agent(model, EnvSpec.from_distribution(driving.test), "RecurrentPPO").make_learner()
    obs = np.random.default_rng(0).normal(size=(3, 1, 6)).astype(np.float32)
    learner.reset(1)
    first = learner.act(StepInput(obs[0], np.zeros(1, np.float32), np.ones(1, bool)), True).actions
    fresh, state = model.predict(np.c_[obs[0], [[0, 1]]], episode_start=np.ones(1), deterministic=True)
    np.testing.assert_allclose(first, fresh, atol=1e-6)
    # the next episode's first step: RecurrentPPO's state goes on (episode_start False), it is not reset
    nxt = learner.act(StepInput(obs[1], np.full(1, 0.5, np.float32), np.ones(1, bool)), True).actions
    carried, _ = model.predict(np.c_[obs[1], [[0.5, 1]]], state=state, episode_start=np.zeros(1), deterministic=True)
    reset, _ = model.predict(np.c_[obs[1], [[0.5, 1]]], episode_start=np.ones(1), deterministic=True)
    np.testing.assert_allclose(nxt, carried, atol=1e-6)
    assert not np.allclose(nxt, reset, atol=1e-6)
    learner.reset(1)  # a new trial starts from a fresh state
    again = learner.act(StepInput(obs[0], np.zeros(1, np.float32), np.ones(1, bool)), True).actions
    np.testing.assert_allclose(again, first, atol=1e-6)


def test_sb3_eval_refusals(driving, tmp_path, capsys):
    model = PPO("MlpPolicy", make_vec_env(driving.train, 1, backend="sync"), seed=0, device="cpu")
    model.save(tmp_path / "ppo.zip")
    cases = [(["eval", "Driving", "--sb3", str(tmp_path / "none.zip")], "does not exist"),
             (["eval", "Driving", "--sb3", str(tmp_path)], "is a directory"),
             (["eval", "Driving", "--agent", "random", "--sb3-algo", "PPO"], "add --sb3 MODEL.zip"),
             (["eval", "Driving", "--sb3", str(tmp_path / "ppo.zip"), "--agent", "random"], "drop --agent"),
             (["eval", "Driving", "--sb3", str(tmp_path / "ppo.zip"), "--sb3-algo", "SAC"], "saved by PPO"),
             (["eval", "PointNav", "--sb3", str(tmp_path / "ppo.zip")], "the benchmark gives 2 numbers")]
    for argv, message in cases:
        assert main(argv) == 2
        assert message in capsys.readouterr().err


@pytest.mark.spawn
def test_ppo_and_sac_train_through_make_vec_env_and_are_evaluated_into_comparable_files(tmp_path, capsys):
    bench_opts = ["--env-opt", "horizon=20", "--env-opt", "num_tasks=6", "--eval-tasks", "3", "--num-envs", "3"]
    driving = make_benchmark("Driving", seed=0, horizon=20, num_tasks=6)
    venv = make_vec_env(driving.train, 4, backend="shm", num_workers=2, seed=1)
    try:
        ppo = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, seed=0, device="cpu")
        ppo.learn(2048)
    finally:
        venv.close()
    assert ppo.num_timesteps == 2048 and len(ppo.ep_info_buffer) > 0
    ppo.save(tmp_path / "ppo.zip")
    sac = SAC("MlpPolicy", make_vec_env(driving.train, 2, backend="sync", seed=2), learning_starts=100, batch_size=64,
              seed=0, device="cpu")
    sac.learn(600)
    sac.save(tmp_path / "sac.zip")
    for name in ("ppo", "sac"):
        assert main(["eval", "Driving", "--sb3", str(tmp_path / f"{name}.zip"), *bench_opts]) == 0
        saved = json.loads((tmp_path / f"{name}-eval-first3.json").read_text())
        assert saved["sb3"]["algo"] == name.upper() and len(saved["per_goal"]) == 3
    assert main(["eval", "Driving", "--agent", "random", *bench_opts, "--out", str(tmp_path / "random.json")]) == 0
    capsys.readouterr()
    for name in ("ppo", "sac"):
        assert main(["compare", str(tmp_path / "random.json"), str(tmp_path / f"{name}-eval-first3.json")]) == 0
        assert "B - A" in capsys.readouterr().out


@pytest.mark.metaworld
def test_the_documented_ml1_example_runs_at_a_tiny_budget(tmp_path, monkeypatch, capsys):
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sb3_ml1.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--steps", "200", "--horizon", "10", "--eval-tasks", "1",
                                      "--num-envs", "2", "--backend", "sync", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(script), run_name="__main__")
    assert stop.value.code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["algo"] for row in summary["rows"]] == ["PPO", "RecurrentPPO"]
    assert summary["benchmark"] == "ML1/reach-v3" and "git_commit" in summary
    files = [str(tmp_path / f"{algo}-eval-first1.json") for algo in ("PPO", "RecurrentPPO")]
    assert json.loads(Path(files[1]).read_text())["sb3"]["with_reward"] is True
    assert main(["compare", *files]) == 0

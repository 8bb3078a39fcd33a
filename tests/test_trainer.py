import csv

import numpy as np
import pytest
import torch

import metarl
from metarl import checkpoint
from metarl.logging import CSVWriter, Logger

from .conftest import state_tensors

SMALL = {"zero-shot": {"epochs": 2, "minibatch_size": 8},
         "pearl": {"hidden": (16,), "encoder_hidden": (16,), "meta_batch": 2, "batch_size": 8, "context_size": 4,
                   "learning_starts": 0, "updates_per_step": 0.1}}


def _run(tmp_path, steps, resume_from=None, seed=3, agent="zero-shot", eval_every=0):
    bench = metarl.make_benchmark("Toy", seed=seed, num_tasks=6, horizon=5)
    torch.manual_seed(seed)
    algo = metarl.make_agent(agent, bench, **SMALL.get(agent, {}))
    cfg = metarl.TrainerConfig(steps=steps, num_envs=2, seed=seed, final_eval=True, checkpoint_every=1,
                               progress=False, eval_every=eval_every)
    logger = Logger([CSVWriter(tmp_path / "progress.csv")])
    trainer = metarl.Trainer(bench, algo, cfg, run_dir=tmp_path, logger=logger)
    if resume_from is not None:
        trainer.resume(resume_from)
    result = trainer.train()
    logger.close()
    return algo, result


def _metrics(path):
    with open(path) as f:
        return [(row["step"], row["key"], row["value"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("agent", ["zero-shot", "pearl"])  # on-policy; off-policy with replay in the agent
def test_same_seed_same_metrics_and_parameters(tmp_path, agent):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a, ra = _run(tmp_path / "a", 40, agent=agent)
    b, rb = _run(tmp_path / "b", 40, agent=agent)
    strip = lambda rows: [r for r in rows if not r[1].startswith("time/")]  # noqa: E731
    assert strip(_metrics(tmp_path / "a/progress.csv")) == strip(_metrics(tmp_path / "b/progress.csv"))
    for pa, pb in zip(state_tensors(a), state_tensors(b), strict=True):
        assert torch.equal(pa, pb)
    assert ra.per_goal == rb.per_goal


def test_evaluating_during_training_does_not_change_training(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a, ra = _run(tmp_path / "a", 40)
    b, rb = _run(tmp_path / "b", 40, eval_every=10)  # held-out evaluations, sampling actions, in between
    assert any(key.startswith("eval/") and int(step) < 40 for step, key, _ in _metrics(tmp_path / "b/progress.csv"))
    for pa, pb in zip(state_tensors(a), state_tensors(b), strict=True):
        assert torch.equal(pa, pb)
    assert ra.per_goal == rb.per_goal


def test_python_api_seeded_as_the_readme_says_repeats_exactly():
    runs = []
    for _ in range(2):
        torch.rand(3)  # whatever ran before
        bench = metarl.make_benchmark("Toy", seed=0, num_tasks=6, horizon=5)
        metarl.seed_everything(0)
        agent = metarl.make_agent("zero-shot", bench, **SMALL["zero-shot"])
        metarl.Trainer(bench, agent, metarl.TrainerConfig(steps=40, num_envs=2, seed=0, final_eval=False,
                                                          progress=False)).train()
        runs.append(state_tensors(agent))
    for pa, pb in zip(*runs, strict=True):
        assert torch.equal(pa, pb)


def test_periodic_evaluation_runs_once_per_interval_crossed_even_after_a_resume():
    from types import SimpleNamespace

    bench = metarl.make_benchmark("Toy", seed=0, num_tasks=6, horizon=5)
    algo = metarl.make_agent("zero-shot", bench, episodes=1, **SMALL["zero-shot"])  # 2 slots x 5 steps a batch
    cfg = metarl.TrainerConfig(steps=150, num_envs=2, seed=0, final_eval=False, progress=False, eval_every=25)
    trainer = metarl.Trainer(bench, algo, cfg)
    trainer.state.env_steps = 100  # as resumed from a run trained without eval_every
    at = []
    trainer.evaluate = lambda config: at.append(trainer.state.env_steps) or SimpleNamespace(metrics=dict)
    trainer.train()
    assert at == [130, 150]  # past 125 and 150; not one evaluation per batch until a counter caught up
    # with the final evaluation on, the last batch's quick one is skipped: one set of eval/* rows per step
    trainer = metarl.Trainer(bench, algo, metarl.TrainerConfig(**{**vars(cfg), "final_eval": True}))
    trainer.state.env_steps = 100
    at, final = [], SimpleNamespace(metrics=dict)
    trainer.evaluate = lambda config: at.append((trainer.state.env_steps, config.max_tasks_per_class)) or final
    trainer.train()
    assert at == [(130, 5), (150, None)]


@pytest.mark.parametrize("agent", ["zero-shot", "pearl"])
def test_resume_equals_uninterrupted(tmp_path, agent):
    # PEARL: fails if the checkpoint drops the replay (checkpoint_replay=False).
    for d in ("full", "part"):
        (tmp_path / d).mkdir()
    full, _ = _run(tmp_path / "full", 40, agent=agent)
    _run(tmp_path / "part", 20, agent=agent)
    resumed, _ = _run(tmp_path / "part", 40, resume_from=tmp_path / "part" / checkpoint.CHECKPOINT_NAME, agent=agent)
    if agent == "pearl":
        assert full.updates == resumed.updates > 0 and set(full.replay) == set(resumed.replay)
    for pa, pb in zip(state_tensors(full), state_tensors(resumed), strict=True):
        assert torch.equal(pa, pb)


def test_checkpoint_is_weights_only_and_atomic(tmp_path):
    state = {"a": np.arange(3), "n": np.float32(2.5), "nested": [torch.ones(2)]}
    checkpoint.save(tmp_path / "c.pt", state)
    out = torch.load(tmp_path / "c.pt", weights_only=True)
    assert torch.equal(out["a"], torch.arange(3)) and out["n"] == 2.5
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind

    class Boom:
        pass

    with pytest.raises(metarl.UsageError, match=r"checkpoint state\['bad'\] is a .*Boom, which a weights-only"):
        checkpoint.save(tmp_path / "c.pt", {"bad": Boom()})  # refused before writing: it would not load back
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
    assert torch.equal(checkpoint.load(tmp_path / "c.pt")["a"], torch.arange(3))


def test_training_steps_respect_budget_and_log_namespaces(tmp_path):
    _, result = _run(tmp_path, 30, agent="random")
    keys = {k for _, k, _ in _metrics(tmp_path / "progress.csv")}
    assert {"train/return", "train/success_rate", "time/steps_per_s", "eval/success_rate"} <= keys
    rows = _metrics(tmp_path / "progress.csv")
    timing = {k: [float(v) for _, key, v in rows if key == k] for k in ("time/collect_s", "time/update_s")}
    elapsed = max(float(v) for _, k, v in rows if k == "time/elapsed_s")
    assert all(t and min(t) > 0 for t in timing.values())
    assert sum(map(sum, timing.values())) <= elapsed  # parts of the iterations' time
    steps = sorted({int(s) for s, _, _ in _metrics(tmp_path / "progress.csv")})
    assert steps[0] == 10 and steps[-1] >= 30  # 2 slots x 5 steps per iteration
    logged = [float(v) for _, k, v in rows if k == "eval/success_rate"]
    assert logged == [pytest.approx(result.success_rate)]  # the final evaluation, logged once


def test_progress_bar_shares_the_metric_lines_console_and_counts_down_to_the_time_limit():
    import time
    from types import SimpleNamespace

    from metarl.logging import ConsoleWriter
    from metarl.trainer import TrainerConfig, _progress, _TimeLeft

    # one Console: a metric line printed while the bar is live goes above it (a second one wrote into it)
    assert _progress(TrainerConfig()).console is ConsoleWriter().console
    col = _TimeLeft()
    steps_eta = SimpleNamespace(time_remaining=3600.0, fields={"deadline": None})
    assert col.render(steps_eta).plain == "1:00:00"
    limited = SimpleNamespace(time_remaining=3600.0, fields={"deadline": time.monotonic() + 90.5})
    assert col.render(limited).plain in ("0:01:30", "0:01:29")  # --max-minutes comes first
    assert col.render(SimpleNamespace(time_remaining=None, fields={"deadline": None})).plain == "-:--:--"


def test_rollout_metrics_split_first_episode_success_from_the_later_ones():
    from metarl.trainer import _rollout_metrics
    from metarl.types import Rollout

    # 2 slots, 3 episodes of 2 steps; successes: slot 0 in episodes 1 and 2, slot 1 in episode 0 only
    T, N = 6, 2
    episode = np.repeat(np.arange(3), 2)[:, None].repeat(N, axis=1)
    success = np.zeros((T, N), bool)
    success[3, 0] = success[5, 0] = success[0, 1] = True
    rewards = np.arange(T * N, dtype=np.float32).reshape(T, N)
    z = np.zeros((T, N), bool)
    ro = Rollout(obs=np.zeros((T, N, 1)), actions=np.zeros((T, N, 1)), rewards=rewards, next_obs=np.zeros((T, N, 1)),
                 terminated=z, truncated=z, first=z, success=success, episode=episode, valid=~z, extras={},
                 episodes=3)
    m = _rollout_metrics(ro, None, adapts_while_acting=True)
    assert m["train/success_rate"] == pytest.approx(3 / 6)
    assert m["adapt/pre_success_rate"] == pytest.approx(0.5)  # slot 1 only
    assert m["adapt/later_success_rate"] == pytest.approx(2 / 4)  # slot 0 twice out of 2 slots x 2 episodes
    assert m["adapt/pre_return"] == pytest.approx((0 + 2 + 1 + 3) / 2)
    one = Rollout(**{**ro.__dict__, "episode": np.zeros((T, N), int), "episodes": 1})
    assert "adapt/later_success_rate" not in _rollout_metrics(one, None, adapts_while_acting=True)
    assert "adapt/later_success_rate" not in _rollout_metrics(ro, None)  # MAML's unadapted episodes: noise


def test_only_agents_that_adapt_while_acting_log_later_episode_success():
    bench = metarl.make_benchmark("Toy", seed=0, num_tasks=6, horizon=5)
    flags = {name: getattr(metarl.make_agent(name, bench), "adapts_while_acting", False)
             for name in ("rl2", "pearl", "maml", "zero-shot", "random")}
    assert flags == {"rl2": True, "pearl": True, "maml": False, "zero-shot": False, "random": False}
    cfg = metarl.TrainerConfig(steps=1, num_envs=2, seed=0, final_eval=False, progress=False)
    logged = {}
    for name, options in (("rl2", {"hidden": 8, "trial_episodes": 2}), ("maml", {"hidden": (8,), "episodes": 2})):
        trainer = metarl.Trainer(bench, metarl.make_agent(name, bench, **options), cfg)
        try:
            logged[name] = {k for k in trainer.iteration() if k.startswith("adapt/")}
        finally:
            trainer.close()
    assert {"adapt/pre_success_rate", "adapt/later_success_rate"} <= logged["rl2"]
    assert "adapt/later_success_rate" not in logged["maml"]  # two episodes per slot, none adapted to


def test_logger_for_a_run_dir_that_does_not_exist_yet_makes_it(tmp_path):
    from metarl.logging import Logger

    log = Logger.for_run(tmp_path / "new" / "run", console=False)
    log.log(5, {"train/return": 1.0})
    log.close()
    assert (tmp_path / "new" / "run" / "progress.csv").read_text().splitlines()[1:] == ["5,train/return,1.0"]


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler, as in a terminal: a test run in the background of a shell script
    starts with SIGINT ignored, which the Trainer rightly leaves alone."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupting_trainer(tmp_path, signals_in_first_update):
    import os
    import signal

    bench = metarl.make_benchmark("Toy", num_tasks=6, horizon=5)
    algo = metarl.make_agent("zero-shot", bench, **SMALL["zero-shot"])
    real, calls = algo.meta_update, []

    def meta_update(batch):  # Ctrl-C arriving in the middle of the first iteration
        calls.append(batch)
        for _ in range(signals_in_first_update if len(calls) == 1 else 0):
            os.kill(os.getpid(), signal.SIGINT)
        return real(batch)

    algo.meta_update = meta_update
    cfg = metarl.TrainerConfig(steps=1000, num_envs=2, checkpoint_every=100, progress=False)
    return metarl.Trainer(bench, algo, cfg, run_dir=tmp_path, logger=Logger([CSVWriter(tmp_path / "progress.csv")]))


def test_ctrl_c_finishes_the_iteration_saves_and_skips_the_final_evaluation(tmp_path, default_sigint):
    import signal

    from metarl.trainer import TrainingInterrupted

    before = signal.getsignal(signal.SIGINT)
    trainer = _interrupting_trainer(tmp_path, 1)
    with pytest.raises(TrainingInterrupted, match="stopped by Ctrl-C at 10 env steps, checkpoint saved") as stop:
        trainer.train()  # a KeyboardInterrupt: a script's loop over seeds stops too
    assert isinstance(stop.value, KeyboardInterrupt) and stop.value.saved and trainer.interrupted
    assert trainer.state.iteration == 1 and trainer.state.env_steps == 10  # the iteration in progress completed
    saved = checkpoint.load(tmp_path / checkpoint.CHECKPOINT_NAME)
    assert saved["trainer"]["iteration"] == 1 and not list(tmp_path.glob("eval*.json"))
    assert signal.getsignal(signal.SIGINT) is before  # the handler is gone after training


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path, default_sigint):
    trainer = _interrupting_trainer(tmp_path, 2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert not (tmp_path / checkpoint.CHECKPOINT_NAME).exists()


def test_cli_reports_an_interrupted_run_and_how_to_continue(tmp_path, capsys, monkeypatch, default_sigint):
    import os
    import shlex
    import signal

    from metarl.cli import main
    from metarl.cli.train import metarl_command
    from metarl.trainer import Trainer

    real = Trainer.iteration

    def iteration(self):
        if self.state.iteration == 0:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self)

    monkeypatch.setattr(Trainer, "iteration", iteration)
    out = tmp_path / "run"
    args = ["train", "Toy", "--agent", "random", "--steps", "200", "--num-envs", "2", "--out", str(out),
            "--no-final-eval"]
    assert main(args) == 130
    err = capsys.readouterr().err  # the command keeps --no-final-eval, which a resume does not inherit
    resume = shlex.join([*metarl_command(), "train", "Toy", "--agent", "random", "--out", str(out), "--resume",
                         "--no-final-eval"])  # metarl_command: `metarl`, or this python -m metarl off PATH
    assert f"continue with `{resume}`" in err
    monkeypatch.setattr(Trainer, "iteration", real)
    assert main([*args, "--resume"]) == 0


def test_ctrl_c_handling_leaves_an_ignored_or_custom_sigint_alone(tmp_path):
    import signal

    for handler in (signal.SIG_IGN, lambda signum, frame: None):
        previous = signal.signal(signal.SIGINT, handler)
        try:
            trainer = _interrupting_trainer(tmp_path, 1)
            trainer.config = type(trainer.config)(**{**trainer.config.__dict__, "steps": 20})
            trainer.train()  # the SIGINT went to the caller's handler: training ran to its budget
            assert not trainer.interrupted and trainer.state.env_steps == 20
            assert signal.getsignal(signal.SIGINT) is handler
        finally:
            signal.signal(signal.SIGINT, previous)


def test_cli_ctrl_c_in_the_final_evaluation_points_to_metarl_eval(tmp_path, capsys, monkeypatch):
    from metarl.cli import main
    from metarl.trainer import Trainer

    def evaluate(self, config):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    out = tmp_path / "run"
    assert main(["train", "Toy", "--agent", "random", "--steps", "20", "--num-envs", "2", "--out", str(out)]) == 130
    assert (f"interrupted during the final evaluation: {out}/checkpoint.pt holds the trained weights"
            in capsys.readouterr().err)
    assert (out / "checkpoint.pt").exists()


def test_training_interrupted_pickles():
    import pickle

    from metarl.trainer import TrainingInterrupted

    again = pickle.loads(pickle.dumps(TrainingInterrupted(120, saved=True)))
    assert (again.env_steps, again.saved, str(again)) == (
        120, True, "training stopped by Ctrl-C at 120 env steps, checkpoint saved")


def test_resume_refuses_a_checkpoint_trained_on_other_tasks(tmp_path):
    (tmp_path / "a").mkdir()
    _run(tmp_path / "a", 20)
    bench = metarl.make_benchmark("Toy", seed=3, num_tasks=7, horizon=5)  # num_tasks=6 made the checkpoint
    trainer = metarl.Trainer(bench, metarl.make_agent("zero-shot", bench, **SMALL["zero-shot"]),
                             metarl.TrainerConfig(steps=40, num_envs=2, seed=3, progress=False))
    with pytest.raises(metarl.UsageError, match="trained on other train tasks than Toy gives now"):
        trainer.resume(tmp_path / "a" / checkpoint.CHECKPOINT_NAME)


def test_a_time_limit_ending_the_run_skips_the_periodic_evaluation_before_the_final_one(tmp_path):
    bench = metarl.make_benchmark("Toy", seed=3, num_tasks=6, horizon=5)
    cfg = metarl.TrainerConfig(steps=10_000, max_seconds=1e-9, num_envs=2, seed=3, eval_every=1, progress=False)
    logger = Logger([CSVWriter(tmp_path / "progress.csv")])
    metarl.Trainer(bench, metarl.make_agent("random", bench), cfg, logger=logger).train()
    logger.close()
    rows = [(step, key) for step, key, _ in _metrics(tmp_path / "progress.csv") if key == "eval/success_rate"]
    assert len(rows) == 1  # the final evaluation only (one iteration ran out of the time)

"""`metarl report`: the statistics against hand computations and rliable's numbers, the inputs it reads,
the pooling it refuses, and the files it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metarl.cli import main
from metarl.errors import UsageError
from metarl.report import group_runs, load, stats, write_report
from metarl.report.plots import _curve_panels

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- statistics by hand ---

def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # cuts 1, 2 and 7, 8
    assert stats.iqm([[0.0, 10.0], [1.0, 2.0]]) == pytest.approx(1.5)  # runs x tasks, flattened: middle 1, 2
    assert stats.iqm([0.2, 0.9]) == stats.iqm([[0.2], [0.9]]) == pytest.approx(0.55)  # 2 or 3: plain mean
    assert stats.iqm([0.0, 0.3, 0.9]) == pytest.approx(0.4)
    assert stats.iqm([0, 0, 0, 0, 100]) == 0  # one outlying seed of five moves it not at all
    assert stats.mean([[0.0, 10.0], [1.0, 2.0]]) == pytest.approx(3.25)
    # 5 scores: int(5 / 4) = 1 cut from each end, whole (rliable, scipy.stats.trim_mean), not 1.25 in part
    assert stats.iqm([0.0, 1.0, 2.0, 3.0, 10.0]) == pytest.approx(2.0)


def test_bootstrap_interval_matches_the_enumerated_distribution():
    # 3 runs scoring 0, 0, 1: a resample's mean is k/3 with k ~ Binomial(3, 1/3): P(0) = 8/27 = 0.30,
    # P(1/3) = 0.44, P(2/3) = 0.22, P(1) = 0.04; so the 10th percentile is 0 and the 90th is 2/3
    lo, hi = stats.bootstrap_ci([0.0, 0.0, 1.0], "mean", rng(), reps=40_000, confidence=0.8)
    assert (lo, hi) == (pytest.approx(0.0), pytest.approx(2 / 3))
    # 95%: P(1) = 1/27 > 2.5%, so the interval reaches 1
    assert stats.bootstrap_ci([0.0, 0.0, 1.0], "mean", rng(), reps=40_000) == (0.0, pytest.approx(1.0))


def test_bootstrap_is_stratified_by_task():
    # each task's runs agree, so every stratified resample has the same mean; an unstratified one would not
    scores = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    assert stats.bootstrap_ci(scores, "mean", rng()) == (0.5, 0.5)
    assert stats.bootstrap_ci(scores, "iqm", rng()) == (0.5, 0.5)
    resamples = stats.stratified_resamples(np.array([[1.0, 10.0], [2.0, 20.0]]), 500, rng())
    assert set(np.unique(resamples[:, :, 0])) == {1.0, 2.0} and set(np.unique(resamples[:, :, 1])) == {10.0, 20.0}


def test_one_run_has_no_interval():
    assert stats.bootstrap_ci([[0.7, 0.1]], "iqm", rng()) is None
    assert stats.probability_of_improvement_ci([[0.5]], [[0.1], [0.2]], rng()) is None
    assert stats.performance_profile_ci([[0.5]], rng()) is None


def test_probability_of_improvement_by_hand():
    # x > y in 4 of 9 pairs (1>0, 2>0, 3>0, 3>2), one tie (2 = 2) counts half: 4.5 / 9
    assert stats.probability_of_improvement([1, 2, 3], [0, 2, 4]) == pytest.approx(0.5)
    assert stats.probability_of_improvement([3, 4], [1, 2]) == 1.0
    # averaged over tasks: task 0 always better (1), task 1 always worse (0)
    assert stats.probability_of_improvement([[3, 0], [4, 1]], [[1, 5], [2, 6]]) == pytest.approx(0.5)
    assert stats.probability_of_improvement([0.3, 0.3], [0.3]) == 0.5
    with pytest.raises(ValueError):
        stats.probability_of_improvement([[1, 2]], [[1]])


def test_equal_fractions_tie_whatever_their_last_bit():
    # 28/30 as two evaluations computed it (the ToySides sweep's RL² and MAML seeds): a tie, not a win
    a, b = 0.9333333333333333, 0.9333333333333332
    assert a > b and stats.probability_of_improvement([a], [b]) == 0.5
    assert stats.probability_of_improvement([[1.0], [a]], [[0.9], [b]]) == pytest.approx(3.5 / 4)
    assert stats.performance_profile([0.1 + 0.2], [0.3]).tolist() == [0.0]  # 0.30000000000000004 is 0.3
    lo, hi = stats.performance_profile_ci([[0.1 + 0.2], [0.3]], rng(), [0.3], reps=200)
    assert (lo.tolist(), hi.tolist()) == ([0.0], [0.0])


def test_performance_profile_by_hand():
    assert stats.performance_profile([[0.0, 0.5], [1.0, 0.5]], [0.0, 0.4, 0.5, 0.99, 1.0]).tolist() == [
        0.75, 0.75, 0.25, 0.25, 0.0]


def test_curve_band_is_the_iqm_of_the_runs_at_each_point():
    values = np.array([[0.0, 0.5], [0.2, 0.5], [0.4, 1.0]])
    centre, lo, hi = stats.curve_band(values, rng())
    assert centre.tolist() == pytest.approx([0.2, 2 / 3])
    assert lo[0] == 0.0 and hi[0] == pytest.approx(0.4) and lo[1] == 0.5
    assert stats.curve_band(values[:1], rng())[1] is None


def test_same_seed_same_numbers_other_seed_other_draws():
    x = np.random.default_rng(7).uniform(size=(5, 3))
    a = stats.bootstrap_ci(x, "iqm", stats.rng_for(0, "g", "success"), reps=2000)
    assert a == stats.bootstrap_ci(x, "iqm", stats.rng_for(0, "g", "success"), reps=2000)
    assert a != stats.bootstrap_ci(x, "iqm", stats.rng_for(1, "g", "success"), reps=2000)
    assert a != stats.bootstrap_ci(x, "iqm", stats.rng_for(0, "g", "pre_success"), reps=2000)


# --- against rliable ---

X = np.array([[0.9, 0.2, 0.55], [0.7, 0.0, 0.6], [1.0, 0.1, 0.3], [0.8, 0.3, 0.45], [0.4, 0.05, 0.5]])
Y = np.array([[0.6, 0.2, 0.5], [0.9, 0.1, 0.2], [0.5, 0.0, 0.35], [0.7, 0.15, 0.4]])
RLIABLE = {  # rliable 1.2.0 (NumPy 2.4, pandas 2.3, arch 7.2), np.random.seed(0), reps 50,000 (profile 20,000)
    "iqm": 0.4444444444444444, "mean": 0.4566666666666667, "poi": 0.65,
    "iqm_ci": (0.35555555555555557, 0.5277777777777778), "mean_ci": (0.38, 0.5266666666666667),
    "poi_ci": (0.4333333333333333, 0.85),
    "profile": [14 / 15, 0.8, 11 / 15, 0.6, 8 / 15, 0.4, 4 / 15, 0.2, 2 / 15, 1 / 15, 0.0],
    "profile_lo": [0.8, 10 / 15, 10 / 15, 7 / 15, 5 / 15, 0.2, 2 / 15, 1 / 15, 0.0, 0.0, 0.0],
    "profile_hi": [1.0, 14 / 15, 13 / 15, 10 / 15, 10 / 15, 0.6, 5 / 15, 5 / 15, 4 / 15, 0.2, 0.0],
}
"""rliable's numbers on X and Y, from its ``metrics.aggregate_iqm``/``aggregate_mean``/
``probability_of_improvement``, ``library.get_interval_estimates`` and ``create_performance_profile``
(taus 0, 0.1, ..., 1). Its intervals are percentile intervals of a resampling distribution that, on 15
scores, sits on a lattice of values: ours, with other random draws, must land on the same ends."""


def test_matches_rliable_on_a_fixed_example():
    taus = np.linspace(0, 1, 11)
    assert stats.iqm(X) == pytest.approx(RLIABLE["iqm"]) and stats.mean(X) == pytest.approx(RLIABLE["mean"])
    assert stats.probability_of_improvement(X, Y) == pytest.approx(RLIABLE["poi"])
    assert stats.bootstrap_ci(X, "iqm", rng(), reps=50_000) == pytest.approx(RLIABLE["iqm_ci"])
    assert stats.bootstrap_ci(X, "mean", rng(), reps=50_000) == pytest.approx(RLIABLE["mean_ci"])
    assert stats.probability_of_improvement_ci(X, Y, rng(), reps=50_000) == pytest.approx(RLIABLE["poi_ci"])
    assert stats.performance_profile(X, taus) == pytest.approx(RLIABLE["profile"])
    lo, hi = stats.performance_profile_ci(X, rng(), taus, reps=20_000)
    assert lo == pytest.approx(RLIABLE["profile_lo"]) and hi == pytest.approx(RLIABLE["profile_hi"])


def test_matches_rliable_itself_when_it_imports():
    try:
        from rliable import library, metrics
    except Exception as e:  # not installed, or its arch dependency fails to import (pandas 3)
        pytest.skip(f"rliable does not import here ({type(e).__name__}: {e})")
    np.random.seed(0)
    _, ci = library.get_interval_estimates({"x": X}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=20_000)
    assert stats.iqm(X) == pytest.approx(metrics.aggregate_iqm(X))
    assert stats.probability_of_improvement(X, Y) == pytest.approx(metrics.probability_of_improvement(X, Y))
    assert stats.bootstrap_ci(X, "iqm", rng(), reps=20_000) == pytest.approx(tuple(ci["x"][:, 0]))


# --- inputs, pooling and the files written ---

def per_task(success: dict[str, float], pre: float = 0.1, num_tasks: int = 10) -> dict:
    return {c: {"success_rate": s, "pre_success_rate": pre, "return": 0.0, "pre_return": 0.0, "num_tasks": num_tasks}
            for c, s in success.items()}


def learning_file(path: Path, rows: list[tuple[int, float]], benchmark="ML1", task="reach-v3", agent="rl2",
                  reward_version="v2", num_tasks=50) -> Path:
    """A results file as benchmarks/learning.py writes it: ``rows`` of (seed, success)."""
    seeds = [{"seed": s, "env_steps": 1000, "train_seconds": 60.0, "reward_version": reward_version,
              "success_rate": v, "pre_success_rate": 0.1, "per_task": per_task({task or "c": v}, num_tasks=num_tasks)}
             for s, v in rows]
    path.write_text(json.dumps({"command": ["x"], "settings": {"benchmark": benchmark, "task": task, "agent": agent,
                                                               "agent_options": {}, "env_options": {}},
                                "seeds": seeds}))
    return path


def eval_obj(seed: int, success: float, digest: str | None = None, benchmark="ML1/reach-v3",
             classes=("reach-v3",), reward_version="v2", num_tasks=50, **extra) -> dict:
    obj = {"benchmark": benchmark, "reward_version": reward_version, "seed": seed, "success_rate": success,
           "pre_success_rate": 0.1, "per_task": per_task(dict.fromkeys(classes, success), num_tasks=num_tasks),
           "per_goal": [], **extra}
    return {**obj, "tasks_digest": digest} if digest else obj


def from_run_file(path: Path, seed: int, evaluations: dict, agent="rl2") -> Path:
    """A results file as benchmarks/from_run.py writes it."""
    config = {"benchmark": "ML1", "task": "reach-v3", "agent": agent, "trainer": {"seed": seed},
              "agent_options": {}, "env_options": {}}
    path.write_text(json.dumps({"config": config, "budget": {"env_steps": 2000, "train_seconds": 120.0},
                                "training_curve": {"1000": {"train/success_rate": 0.2},
                                                   "2000": {"train/success_rate": 0.4}},
                                "evaluations": evaluations}))
    return path


def test_both_results_formats_pool_by_label_and_variants_stay_apart(tmp_path):
    learning_file(tmp_path / "ML1-reach-v3-rl2-x.json", [(0, 0.5)])
    from_run_file(tmp_path / "ML1-reach-v3-rl2-x-s1.json", 1,
                  {"eval.json": eval_obj(1, 0.9), "eval-inner_lr=0.json": eval_obj(1, 0.2, agent_overrides={"a": 0})})
    (tmp_path / "bench.json").write_text(json.dumps({"command": [], "rows": []}))
    runs, skipped = load([tmp_path])
    assert len(skipped) == 1 and "bench.json" in skipped[0]
    groups = {g.label: g for g in group_runs(runs)}
    assert set(groups) == {"x", "x [inner_lr=0]"}
    assert [r.seed for r in groups["x"].runs] == [0, 1]
    assert groups["x"].scores("success").tolist() == [[0.5], [0.9]]
    assert groups["x"].scores("gain").ravel() == pytest.approx([0.4, 0.8])
    assert groups["x"].runs[1].curves["train/success_rate"] == [(1000, 0.2), (2000, 0.4)]


@pytest.mark.parametrize(("second", "message"), [
    (dict(reward_version="v1"), "reward versions v2"),
    (dict(num_tasks=10), "different held-out task sets"),
    (dict(seed=0), "seed 0 appears twice"),
])
def test_refuses_to_pool_in_one_line(tmp_path, second, message):
    learning_file(tmp_path / "a.json", [(0, 0.5)])
    learning_file(tmp_path / "a-s1.json", [(second.pop("seed", 1), 0.7)], **second)
    with pytest.raises(UsageError, match=message) as e:
        group_runs(load([tmp_path])[0])
    assert "\n" not in str(e.value)


def test_reward_versions_are_reported_and_compared_apart(tmp_path):
    for name, version, rows in (("a", "v2", [(0, 0.5), (1, 0.6)]), ("b", "v1", [(0, 0.7), (1, 0.8)]),
                                ("c", "v2", [(0, 0.1), (1, 0.2)])):
        learning_file(tmp_path / f"{name}.json", rows, reward_version=version)
    report = write_report([tmp_path], tmp_path / "rep", reps=200)
    sets = {ts["reward_version"]: ts for ts in report.summary["task_sets"]}
    assert {v: [g["label"] for g in ts["groups"]] for v, ts in sets.items()} == {"v2": ["a", "c"], "v1": ["b"]}
    assert [(c["x"], c["y"]) for c in sets["v2"]["comparisons"]] == [("rl2 a", "rl2 c")]
    assert not sets["v1"]["comparisons"]


def test_runs_of_other_budgets_pool_with_a_note(tmp_path):
    learning_file(tmp_path / "a.json", [(0, 0.5)])
    path = learning_file(tmp_path / "a-s1.json", [(1, 0.7)])
    obj = json.loads(path.read_text())
    obj["seeds"][0]["env_steps"] = 5000
    path.write_text(json.dumps(obj))
    (g,) = group_runs(load([tmp_path])[0])
    assert g.notes == ["ML1/reach-v3 rl2 a: the runs trained 1,000 to 5,000 env steps (per-seed table); pooled "
                       "because they share a label (a --max-minutes budget, or seeds resumed with another --steps)"]


def test_refuses_evaluations_of_one_seed_on_different_tasks(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(eval_obj(0, 0.5, digest="aaaa")))
    (tmp_path / "b.json").write_text(json.dumps(eval_obj(0, 0.6, digest="bbbb")))
    (tmp_path / "c.json").write_text(json.dumps(eval_obj(1, 0.6, digest="cccc")))  # seed 1 draws other tasks
    with pytest.raises(UsageError, match="different tasks"):
        group_runs(load([tmp_path / "a.json", tmp_path / "b.json"])[0])
    assert len(group_runs(load([tmp_path / "a.json", tmp_path / "c.json"])[0])) == 2  # labels a and c


def test_report_on_committed_results(tmp_path):
    files = sorted(RESULTS.glob("ML1-reach-v3-rl2-trial13*.json"))
    report = write_report(files, tmp_path / "rep", reps=2000)
    (ts,) = report.summary["task_sets"]
    groups = {g["label"]: g for g in ts["groups"]}
    pooled = groups["trial13"]  # trial13.json (seed 0, 4.81M steps) and trial13-s1.json (seed 1)
    assert pooled["seeds"] == [0, 1] and [r["env_steps"] for r in pooled["runs"]] == [4_810_000, 6_045_000]
    assert pooled["metrics"]["success"]["iqm"] == pytest.approx((0.70667 + 0.96667) / 2, abs=1e-4)
    assert pooled["metrics"]["success"]["iqm_ci"] == pytest.approx([0.70667, 0.96667], abs=1e-4)
    assert groups["trial13-6.5M"]["metrics"]["success"]["iqm_ci"] is None  # one seed: no interval
    assert "trial13-6.5M [at-4.81M]" in groups
    assert groups["trial13-6.5M"]["curves"]["train/success_rate"]["num_runs"] == 1
    md = report.markdown.read_text()
    assert "| rl2 | trial13 | 2 (seeds 0, 1) | 83.7 [70.7, 96.7] |" in md
    for image in report.images:
        assert image.read_bytes()[:4] == b"\x89PNG" and f"]({image.name})" in md
    saved = json.loads(report.json.read_text())
    assert {"command", "git_commit", "date_utc", "task_sets"} <= set(saved)
    again = write_report(files, tmp_path / "again", reps=2000)
    assert again.markdown.read_text() == md and again.summary == report.summary  # seeded: same report


def test_multi_class_benchmark_gets_per_class_rows_and_bars(tmp_path):
    classes = ("door-close-v3", "drawer-open-v3", "lever-pull-v3")
    for seed, success in ((0, 0.3), (1, 0.5), (2, 0.4)):
        (tmp_path / f"ML10-rl2-s{seed}.json").write_text(json.dumps(
            eval_obj(seed, success, benchmark="ML10", classes=classes, digest=f"d{seed}")))
    report = write_report([tmp_path], tmp_path / "rep", reps=500)
    (ts,) = report.summary["task_sets"]
    (g,) = ts["groups"]
    assert g["label"] == "ML10-rl2" and g["num_runs"] == 3 and set(g["per_class"]) == set(classes)
    assert g["per_class"]["door-close-v3"]["success"]["mean"] == pytest.approx(0.4)
    assert any(p.name.endswith("-classes.png") for p in report.images)
    assert "10.0 → 40.0" in report.markdown.read_text()


def test_a_training_split_evaluation_is_a_task_set_of_its_own(tmp_path):
    """`metarl eval RUN --split train` beside the held-out evaluation: two task sets, the training one
    named as such, never pooled."""
    run = fake_run_dir(tmp_path / "Toy-rl2-s0", 0, 0.5)
    (run / "eval-split=train.json").write_text(json.dumps(eval_obj(0, 0.9, benchmark="Toy", classes=("point-goal",),
                                                                   reward_version=None, num_tasks=20, digest="train",
                                                                   split="train")))
    report = write_report([run], tmp_path / "rep", reps=200)
    sets = {ts["env_options"].get("split", "test"): ts for ts in report.summary["task_sets"]}
    assert set(sets) == {"test", "train"}
    assert [g["num_runs"] for g in sets["train"]["groups"]] == [1]
    text = report.markdown.read_text()
    assert "## Toy (split=train), 20 training tasks" in text and "## Toy, 20 held-out tasks" in text


def fake_run_dir(path: Path, seed: int, success: float, steps=(1000, 2000, 3000)) -> Path:
    """A run directory as `metarl train` leaves it, with a progress.csv of a few iterations."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"benchmark": "Toy", "agent": "rl2", "task": None,
                                                  "trainer": {"seed": seed}, "agent_options": {}, "env_options": {}}))
    (path / "eval.json").write_text(json.dumps(eval_obj(seed, success, benchmark="Toy", classes=("point-goal",),
                                                        reward_version=None, num_tasks=20, digest=f"t{seed}",
                                                        trained_env_steps=steps[-1])))
    rows = ["step,key,value"] + [f"{s},{k},{v}" for i, s in enumerate(steps) for k, v in (
        ("train/success_rate", success * (i + 1) / len(steps)), ("time/elapsed_s", 30.0 * (i + 1) * (seed + 1)))]
    rows.append(f"{steps[-1]},eval/success_rate,{success}")
    (path / "progress.csv").write_text("\n".join(rows) + "\n")
    return path


def test_sweep_folder_pools_its_seeds_with_learning_curves(tmp_path, capsys):
    sweep = tmp_path / "toy-rl2"
    for seed in range(3):
        fake_run_dir(sweep / f"seed-{seed}", seed, 0.3 * (seed + 1))
    fake_run_dir(sweep / "seed-3", 3, 0.5, steps=(1000, 2000))  # stopped early: curves end at 2000
    assert main(["report", str(sweep), "--out", str(tmp_path / "rep"), "--reps", "500"]) == 0
    out = capsys.readouterr()
    assert "| rl2 | toy-rl2 | 4 (seeds 0, 1, 2, 3) |" in out.out and "wrote" in out.err
    g = json.loads((tmp_path / "rep" / "report.json").read_text())["task_sets"][0]["groups"][0]
    curve = g["curves"]["train/success_rate"]
    assert curve["steps"] == [1000, 2000] and curve["num_runs"] == 4 and curve["lo"] is not None
    assert g["curves"]["minutes"]["minutes"][0] == pytest.approx(30 * (1 + 2 + 3 + 4) / 4 / 60)
    assert (tmp_path / "rep" / "1-Toy-rl2-toy-rl2-curves.png").exists()
    # the final evaluation alone (one step) is no curve: only the training panel is drawn
    assert "eval/success_rate" in g["curves"] and _curve_panels(g["curves"]) == [("training", ["train/success_rate"])]
    assert "| rl2 | toy-rl2 | 0 | 3,000 | 1.5 |" in (tmp_path / "rep" / "report.md").read_text()  # 90 s


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "speed.json").write_text(json.dumps({"command": [], "rows": []}))
    for argv in (["report", str(tmp_path / "nothing")], ["report", str(tmp_path / "speed.json")],
                 ["report", str(tmp_path / "speed.json"), "--reps", "5"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


def test_json_output_and_a_real_toy_run(tmp_path, capsys):
    out = tmp_path / "sweep"
    for seed in (0, 1):
        assert main(["train", "Toy", "--agent", "zero-shot", "--steps", "200", "--num-envs", "2", "--seed", str(seed),
                     "--out", str(out / f"seed-{seed}"), "--agent-opt", "hidden=(16, 16)"]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "rep"), "--json", "--reps", "500"]) == 0
    obj = json.loads(capsys.readouterr().out)
    (g,) = obj["task_sets"][0]["groups"]
    assert (g["agent"], g["label"], g["seeds"]) == ("zero-shot", "sweep", [0, 1])
    evals = [json.loads((out / f"seed-{s}" / "eval.json").read_text()) for s in (0, 1)]
    assert [r["success"] for r in g["runs"]] == pytest.approx([e["success_rate"] for e in evals])
    assert "train/success_rate" in g["curves"] and "minutes" in g["curves"]

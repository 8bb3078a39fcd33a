"""``backend="ray"``: whole trials on Ray actors give the results of one process, survive actor deaths,
spread over nodes, and leave no Ray processes behind. Marked ``ray`` and ``spawn``; skipped without Ray."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from metarl.envs.toy import PointGoalEnv
from metarl.errors import RunError, UsageError
from metarl.evaluator import EvalConfig
from metarl.factory import make_agent, make_benchmark
from metarl.seeding import seed_everything
from metarl.tasks import Benchmark, TaskSet
from metarl.trainer import Trainer, TrainerConfig
from metarl.trials import TrialBatch, block_sizes, merge_rollouts, split_batch
from metarl.vector import check_backend

ROOT = Path(__file__).resolve().parents[1]
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
ray_test = [needs_ray, pytest.mark.ray, pytest.mark.spawn]
AGENTS = ["random", "zero-shot", "rl2", "maml", "pearl"]


def test_without_ray_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(UsageError, match=r"pip install -e '\.\[ray\]'"):
        check_backend(make_benchmark("Toy").train, "ray")


def test_split_and_merge_keep_slot_order():
    from metarl.rollout import collect
    from metarl.seeding import SlotNoise
    from metarl.vector import make_vector_env
    from tests.conftest import ConstantLearner, scripted_benchmark

    bench = scripted_benchmark([(2, False, -1), (5, True, 3), (3, False, 1), (4, False, -1)])
    assert block_sizes(4, 3) == [1, 2, 1] and block_sizes(2, 5) == [1, 1]
    batch = TrialBatch(list(bench.train.tasks), [0, 1, 2, 3], [0, 1, 2, 3])

    def run(b: TrialBatch):
        envs = make_vector_env(bench.train, len(b.tasks), "sync")
        envs.set_tasks(b.tasks)
        return collect(envs, ConstantLearner(1), 2, seed=b.seeds, noise=SlotNoise(b.noise))

    whole = run(batch)
    merged = merge_rollouts([run(p) for p in split_batch(batch, [1, 2, 1])])
    assert merged.obs.shape == whole.obs.shape
    np.testing.assert_array_equal(merged.valid, whole.valid)
    v = whole.valid
    for name in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "first", "success"):
        np.testing.assert_array_equal(getattr(merged, name)[v], getattr(whole, name)[v])
    np.testing.assert_array_equal(merged.episode_returns(), whole.episode_returns())
    np.testing.assert_array_equal(merged.episode_successes(), whole.episode_successes())


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (3 CPUs) for the module's pools (each test starts only actors, not a cluster)."""
    import ray

    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}})
    yield ray
    ray.shutdown()


def _bench() -> Benchmark:
    # episodes end at success: slots finish at different steps, so blocks differ in length
    return make_benchmark("Toy", seed=0, horizon=6, terminate_on_success=True, num_tasks=6)


def _train(agent: str, backend: str, workers: int | None = None, bench: Benchmark | None = None,
           iterations: int = 2, run_dir: Path | None = None):
    bench = bench or _bench()
    seed_everything(0)
    algo = make_agent(agent, bench)
    cfg = TrainerConfig(steps=10**6, num_envs=5, seed=0, backend=backend, num_workers=workers, progress=False)
    trainer = Trainer(bench, algo, cfg, run_dir=run_dir)
    try:
        metrics = [trainer.iteration() for _ in range(iterations)]
        result = trainer.evaluate(EvalConfig(max_tasks_per_class=4, adapt_episodes=2, eval_episodes=1))
        nodes = list(trainer._ray.nodes) if trainer._ray is not None else []
    finally:
        trainer.close()
    return metrics, result, nodes


def _assert_same(a, b, loose: tuple[str, ...] = ()) -> None:
    (ma, ra, _), (mb, rb, _) = a, b
    for it, (x, y) in enumerate(zip(ma, mb, strict=True)):
        assert set(x) == set(y)
        for k in x:
            if not k.startswith("time/"):
                rtol = 5e-2 if k in loose and it > 0 else 1e-4
                assert np.isclose(x[k], y[k], rtol=rtol, atol=1e-6), (it, k, x[k], y[k])
    assert [(g["task"], g["index"], g["success"], g["pre_success"]) for g in ra.per_goal] == [
        (g["task"], g["index"], g["success"], g["pre_success"]) for g in rb.per_goal]
    for key in ("return", "pre_return"):
        np.testing.assert_allclose([g[key] for g in ra.per_goal], [g[key] for g in rb.per_goal], rtol=1e-3)
    for key in ("success_rate", "pre_success_rate"):
        assert getattr(ra, key) == getattr(rb, key)
    assert ra.mean_return == pytest.approx(rb.mean_return, rel=1e-3)


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.usefixtures("local_ray")
def test_same_results_as_sync(agent):
    """2 iterations and an evaluation: sync, 1 actor, 3 actors. One actor runs the batch as sync does;
    three run blocks of 2, 1, 2 slots, whose forward passes round the last bits differently (batched
    matrix products). MAML's TRPO step (conjugate gradient on a near-singular Fisher matrix) grows those
    bits to ~1% in the second iteration's surrogate and KL, hence its looser check there."""
    sync = _train(agent, "sync")
    one = _train(agent, "ray", 1)
    three = _train(agent, "ray", 3)
    _assert_same(sync, one)
    _assert_same(sync, three, loose=("meta/surrogate_after", "meta/kl") if agent == "maml" else ())


class KillerEnv(PointGoalEnv):
    """Toy's point env that kills its process at its first step where ``flag`` exists, if that process
    is not the test's (a Ray actor); ``once``: it deletes the flag first, so only one process dies."""

    def __init__(self, flag: str, once: bool, driver: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.flag, self.once, self.driver = flag, once, driver

    def step(self, action):
        if os.getpid() != self.driver and os.path.exists(self.flag):
            try:
                if self.once:
                    os.remove(self.flag)
                os.kill(os.getpid(), 9)
            except FileNotFoundError:  # another actor took it
                pass
        return super().step(action)


def _killer_bench(flag: Path, once: bool) -> Benchmark:
    base = _bench()
    make = functools.partial(KillerEnv, str(flag), once, os.getpid(), horizon=6, terminate_on_success=True)
    return Benchmark("Toy", TaskSet("train", base.train.tasks, make, 6), TaskSet("test", base.test.tasks, make, 6),
                     seed=0)


@pytest.mark.usefixtures("local_ray")
def test_actor_killed_mid_trial_is_replaced(tmp_path):
    """An actor process killed during its trial: replaced, its block run again; the metrics are those of
    a run without the death (nothing lost or counted twice)."""
    flag = tmp_path / "kill"
    flag.touch()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        killed = _train("rl2", "ray", 2, bench=_killer_bench(flag, once=True))
    assert not flag.exists()  # an actor did die
    assert any("died" in str(w.message) and "replaced" in str(w.message) for w in caught)
    _assert_same(_train("rl2", "sync"), killed)


@pytest.mark.usefixtures("local_ray")
def test_repeated_deaths_stop_after_checkpoint(tmp_path):
    flag = tmp_path / "kill"
    flag.touch()
    bench = _killer_bench(flag, once=False)  # every actor dies at its first step
    seed_everything(0)
    cfg = TrainerConfig(steps=10**6, num_envs=5, seed=0, backend="ray", num_workers=2, progress=False)
    trainer = Trainer(bench, make_agent("rl2", bench), cfg, run_dir=tmp_path / "run")
    with warnings.catch_warnings(), pytest.raises(RunError, match="Ray actors died.*checkpoint saved"):
        warnings.simplefilter("ignore")
        trainer.train()
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def _ray_processes() -> set[int]:
    out = set()
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and Path(f"/proc/{pid}/comm").read_text().strip() in ("raylet", "gcs_server"):
                out.add(int(pid))
        except OSError:
            pass
    return out


def _metarl(*args: str, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "metarl", *args], cwd=cwd, env=env, check=True, capture_output=True,
                   text=True, timeout=600)


@pytest.mark.usefixtures("local_ray")
def test_cli_ray_equals_sync_and_resumes_across_backends(tmp_path):
    """`metarl train ToySides --agent rl2 --backend ray --num-workers 2` writes the final evaluation a sync
    run writes; a run begun on ray and resumed on sync (and the reverse) ends there too; no Ray process
    outlives a command."""
    before = _ray_processes()
    common = ["train", "ToySides", "--agent", "rl2", "--steps", "960", "--checkpoint-every", "1"]
    _metarl(*common, "--backend", "sync", "--out", "sync", cwd=tmp_path)
    _metarl(*common, "--backend", "ray", "--num-workers", "2", "--out", "ray", cwd=tmp_path)
    half = ["--steps", "480", "--no-final-eval"]
    _metarl(*common, *half, "--backend", "ray", "--num-workers", "2", "--out", "r2s", cwd=tmp_path)
    _metarl(*common, "--resume", "--backend", "sync", "--out", "r2s", cwd=tmp_path)
    assert _ray_processes() <= before  # the commands' local Rays are gone

    def evaluation(name: str) -> dict:
        obj = json.loads((tmp_path / name / "eval.json").read_text())
        return {k: obj[k] for k in ("success_rate", "pre_success_rate", "per_task", "env_steps")} | {
            "returns": [g["return"] for g in obj["per_goal"]]}

    ref = evaluation("sync")
    for name in ("ray", "r2s"):
        got = evaluation(name)
        assert got["returns"] == pytest.approx(ref["returns"], rel=1e-4)
        assert {k: v for k, v in got.items() if k != "returns" and k != "per_task"} == {
            k: v for k, v in ref.items() if k != "returns" and k != "per_task"}
        assert {c: r["success_rate"] for c, r in got["per_task"].items()} == {
            c: r["success_rate"] for c, r in ref["per_task"].items()}


def test_multi_node_cluster():
    """A head and two worker nodes on loopback (Ray's cluster utilities): the actors spread over the nodes,
    so an iteration's trials come from at least two of them, and training equals a sync run."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)  # the Trainer's pool joins the Ray this process is connected to
        metrics, result, nodes = _train("rl2", "ray", 3)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(set(nodes)) >= 2, nodes
    _assert_same(_train("rl2", "sync"), (metrics, result, nodes))


for _test in (test_same_results_as_sync, test_actor_killed_mid_trial_is_replaced,
              test_repeated_deaths_stop_after_checkpoint, test_cli_ray_equals_sync_and_resumes_across_backends,
              test_multi_node_cluster):
    for _mark in ray_test:
        _mark(_test)

"""``backend="ray"``: whole trials on Ray actors give the results of one process, survive actor deaths,
spread over nodes, stop cleanly on signals and leave no Ray processes behind. Tests that start Ray are
marked ``ray`` and ``spawn``; all are skipped without Ray.

Starting an actor (a process importing torch) is most of these tests' time, so they share one cluster for
the module (a head and two worker nodes of one CPU each, on loopback) and start few actors: every agent
runs on Ray once against sync here (one actor, or three on three nodes), and tests/test_trials.py checks
every agent's trials cut into blocks of slots in one process."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest

from metarl.cli import main
from metarl.envs.toy import PointGoalEnv
from metarl.errors import RunError, UsageError
from metarl.evaluator import EvalConfig
from metarl.factory import make_agent
from metarl.seeding import seed_everything
from metarl.tasks import Benchmark, TaskSet
from metarl.trainer import Trainer, TrainerConfig
from metarl.trials import TrialBatch, block_sizes, merge_rollouts, split_batch
from metarl.vector import EnvSpec, check_backend
from tests.test_trials import assert_same, toy

ROOT = Path(__file__).resolve().parents[1]
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
ray_test = [needs_ray, pytest.mark.ray, pytest.mark.spawn]


def test_without_ray_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(UsageError, match=r"pip install -e '\.\[ray\]'"):
        check_backend(toy().train, "ray")


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


def _one_line(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@needs_ray
def test_ray_address_errors_are_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
    """An address where no cluster answers, an unparsable one, 'auto' without a cluster, and
    --ray-address without --backend ray: one line, exit 2, no run directory (ray.init would retry an
    address where nothing answers for minutes)."""
    train = ["train", "Toy", "--agent", "random", "--steps", "100", "--out", str(tmp_path / "run")]
    err = _one_line([*train, "--backend", "ray", "--ray-address", "127.0.0.1:1"], capsys)
    assert "nothing answers" in err and "ray start --head" in err
    assert "Invalid address" in _one_line([*train, "--backend", "ray", "--ray-address", "nonsense"], capsys)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # what 'auto' finds first
    assert "nothing answers" in _one_line([*train, "--backend", "ray", "--ray-address", "auto"], capsys)
    assert "add --backend ray" in _one_line([*train, "--ray-address", "auto"], capsys)
    assert not (tmp_path / "run").exists()
    import ray

    if not ray.is_initialized():  # from Python too (a process connected to Ray would use that one)
        bench = toy()
        cfg = TrainerConfig(num_envs=2, backend="ray", ray_address="127.0.0.1:1", progress=False)
        with pytest.raises(UsageError, match="nothing answers"):
            Trainer(bench, make_agent("random", bench), cfg).iteration()


@pytest.fixture(scope="module")
def cluster():
    """A head and two worker nodes, one CPU each, on loopback (Ray's cluster utilities); this process is
    connected to it, so the Trainers' pools join it (and leave it running)."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    # ray.init installs its own SIGTERM/SIGINT handlers in this process and leaves them after shutdown:
    # later tests (tests/test_reliability.py signals itself) must meet the handlers they would without Ray
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(2):
            nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        _connect(nodes)
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()
        for s, handler in handlers.items():
            signal.signal(s, handler)


def _connect(nodes) -> None:
    """Connect this process to the test cluster (its actors import this repository's tests package too)."""
    import ray

    ray.init(address=nodes.address, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}})


def _train(agent: str, backend: str, workers: int | None = None, bench: Benchmark | None = None,
           eval_tasks: int | None = 4, before_eval=None, address: str | None = None):
    """2 iterations and an evaluation on 5 slots. Returns ((metrics, evaluation), pool facts)."""
    bench = bench or toy()
    seed_everything(0)
    cfg = TrainerConfig(steps=10**6, num_envs=5, seed=0, backend=backend, num_workers=workers, ray_address=address,
                        progress=False)
    trainer = Trainer(bench, make_agent(agent, bench), cfg)
    try:
        metrics = [trainer.iteration() for _ in range(2)]
        if before_eval is not None:
            before_eval()
        result = trainer.evaluate(EvalConfig(max_tasks_per_class=eval_tasks, adapt_episodes=2, eval_episodes=1))
        pool = trainer._ray
        facts = {"env_steps": trainer.state.env_steps}
        if pool is not None:
            facts.update(nodes=list(pool.nodes), deaths=pool.deaths)
    finally:
        trainer.close()
    return (metrics, result), facts


@functools.cache
def _sync(agent: str, eval_tasks: int | None = 4):
    """:func:`_train` on sync (each once per module)."""
    return _train(agent, "sync", eval_tasks=eval_tasks)


@pytest.mark.parametrize("agent, actors", [("random", 1), ("zero-shot", 1), ("pearl", 1), ("maml", 3)])
@pytest.mark.usefixtures("cluster")
def test_same_results_as_sync(agent, actors):
    """2 iterations and an evaluation on Ray equal sync's: with one actor to the bit (the same batch on the
    same CPU); with three (blocks of 2, 1, 2 slots on three nodes) up to the last bits of batched matrix
    products, which MAML's TRPO step grows to ~1% of the second iteration's surrogate and KL
    (tests/test_trials.py shows that is all). RL² runs on three actors in test_multi_node_cluster."""
    got, facts = _train(agent, "ray", actors)
    if actors == 1:
        assert_same(_sync(agent)[0], got, rtol=0)
    else:
        assert_same(_sync(agent)[0], got, loose=("meta/surrogate_after", "meta/kl") if agent == "maml" else ())
        assert len(set(facts["nodes"])) >= 2, facts


def test_multi_node_cluster(cluster):
    """A Trainer given the address of a running cluster (a head and two worker nodes) joins it and leaves
    it running; its three actors spread over the nodes, so an evaluation's trials come from at least two
    of them, and RL²'s training and evaluation equal a sync run's."""
    import ray

    ray.shutdown()  # this process joins through the Trainer's ray_address
    try:
        got, facts = _train("rl2", "ray", 3, address=cluster.address)
        # joined, and left the cluster running
        assert ray.is_initialized() and sum(n["Alive"] for n in ray.nodes()) == 3
    finally:
        ray.shutdown()
        _connect(cluster)
    assert len(set(facts["nodes"])) >= 2, facts
    assert_same(_sync("rl2")[0], got)


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
    return _toy_of(functools.partial(KillerEnv, str(flag), once, os.getpid()))


def _toy_of(env) -> Benchmark:
    """:func:`toy` with its point env replaced by ``env`` (a subclass taking the same keywords)."""
    base = toy()
    make = functools.partial(env, horizon=6, terminate_on_success=True)
    return Benchmark("Toy", TaskSet("train", base.train.tasks, make, 6), TaskSet("test", base.test.tasks, make, 6),
                     seed=0)


@pytest.mark.usefixtures("cluster")
def test_actor_killed_mid_trial_is_replaced(tmp_path):
    """An actor process killed during a training trial, and another during an evaluation where each
    actor has two blocks queued: each death is one warning (the dead actor's queued block goes to the same
    replacement), its blocks run again, and training and evaluation equal a run without deaths (nothing
    lost or counted twice, env steps included)."""
    flag = tmp_path / "kill"
    flag.touch()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        killed, facts = _train("rl2", "ray", 2, bench=_killer_bench(flag, once=True), eval_tasks=None,
                               before_eval=lambda: (not flag.exists()) and flag.touch())
    assert not flag.exists()  # the second actor did die
    died = [str(w.message) for w in caught if "died" in str(w.message)]
    assert len(died) == 2 and all("replaced" in m and "death 1 of" in m for m in died), died
    assert facts["deaths"] == 2
    sync, sync_facts = _sync("rl2", None)
    assert_same(sync, killed)
    assert (facts["env_steps"], killed[1].env_steps) == (sync_facts["env_steps"], sync[1].env_steps)


class StrandedEnv(PointGoalEnv):
    """Toy's point env whose first step in a worker node's process (not the head's) claims ``claim``
    (created exclusively, so one process wins), writes its node id there and waits for that node to be
    taken out of the cluster, which ends the process; every other process steps as usual."""

    def __init__(self, claim: str, head: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.claim, self.head = claim, head

    def step(self, action):
        import ray

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else self.head
        if node != self.head:
            try:
                fd = os.open(self.claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return super().step(action)
            os.write(fd, node.encode())
            os.close(fd)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(0.05)
            raise RuntimeError("the test did not take this node out of the cluster")
        return super().step(action)


@pytest.mark.usefixtures("cluster")
def test_node_leaving_the_cluster_is_survived(cluster, tmp_path):
    """A worker node that leaves the cluster mid-trial (its raylet and processes stopped, as when a machine
    is lost): the actor it held is one death, replaced on a node with a free CPU, its trials run again
    there; training and evaluation equal a sync run's. (The node goes for good: another joins after.)"""
    import ray

    claim, left = tmp_path / "claim", []

    def take_out() -> None:  # the node whose actor claimed the file leaves (ungracefully: a lost machine)
        while not claim.exists() or not claim.read_text():
            time.sleep(0.05)
        node = next(n for n in cluster.worker_nodes if n.node_id == claim.read_text())
        cluster.remove_node(node, allow_graceful=False)
        left.append(node.node_id)

    watcher = threading.Thread(target=take_out, daemon=True)
    watcher.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bench = _toy_of(functools.partial(StrandedEnv, str(claim), ray.get_runtime_context().get_node_id()))
        # two actors on the three one-CPU nodes, so one is on a worker node; its node leaves, two CPUs remain
        got, facts = _train("rl2", "ray", 2, bench=bench, eval_tasks=None)
    watcher.join(timeout=5)
    cluster.add_node(num_cpus=1)  # the module's cluster has three live nodes again
    assert left and left[0] not in facts["nodes"], (left, facts)
    died = [str(w.message) for w in caught if "died" in str(w.message)]
    assert len(died) == 1 and "replaced" in died[0], died
    assert facts["deaths"] == 1
    sync, sync_facts = _sync("rl2", None)
    assert_same(sync, got)
    assert (facts["env_steps"], got[1].env_steps) == (sync_facts["env_steps"], sync[1].env_steps)


@pytest.mark.usefixtures("cluster")
def test_repeated_deaths_stop_after_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr("metarl.distributed.MAX_DEATHS", 1)
    flag = tmp_path / "kill"
    flag.touch()
    bench = _killer_bench(flag, once=False)  # every actor dies at its first step
    seed_everything(0)
    cfg = TrainerConfig(steps=10**6, num_envs=5, seed=0, backend="ray", num_workers=1, progress=False)
    trainer = Trainer(bench, make_agent("rl2", bench), cfg, run_dir=tmp_path / "run")
    with warnings.catch_warnings(), pytest.raises(RunError, match="2 Ray actors died.*checkpoint saved"):
        warnings.simplefilter("ignore")
        trainer.train()
    assert (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.usefixtures("cluster")
def test_an_error_in_an_actors_trial_is_the_one_line_error_of_one_process():
    """A family's env returning NaN on an actor: the driver raises the one-line error a local run raises
    (naming the env and the task), not Ray's error wrapping the actor's traceback."""
    from tests.faulty import faulty_family

    bench = faulty_family(nan_obs_at=3)
    cfg = TrainerConfig(steps=10**6, num_envs=2, seed=0, backend="ray", num_workers=1, progress=False)
    trainer = Trainer(bench, make_agent("random", bench), cfg)
    with pytest.raises((UsageError, RunError)) as raised:
        trainer.iteration()
    trainer.close()
    assert type(raised.value) in (UsageError, RunError) and "non-finite observation" in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.usefixtures("cluster")
def test_a_learner_drawing_from_torch_is_reproducible_on_an_actor():
    """A Learner that ignores its noise streams (the faulty agent draws from torch's global generator)
    acts the same each time an actor runs the same block: the actor seeds its generators per block. (An
    actor's body, run here in the driver: no actor to start.)"""
    import ray
    import torch

    from metarl.distributed import TrialWorker, _algorithm_bytes, learner_state
    from metarl.trials import TrialPlan
    from tests.faulty import FaultyAgent, faulty_family

    bench = faulty_family()
    algo = FaultyAgent(EnvSpec.from_distribution(bench.train))
    worker = TrialWorker(bench, _algorithm_bytes(algo))
    weights = [ray.put(learner_state(algo))]
    batch = TrialBatch(list(bench.train.tasks[:2]), [1, 2], [1, 2])
    state = torch.get_rng_state()
    first, second = (worker.run("train", batch, TrialPlan(1, 0), weights, 1, "trial")[0][0] for _ in range(2))
    np.testing.assert_array_equal(first.actions, second.actions)
    assert torch.equal(torch.get_rng_state(), state)  # and the caller's stream goes on untouched
    worker.close()


def _evaluation(run: Path) -> dict:
    obj = json.loads((run / "eval.json").read_text())
    return {k: obj[k] for k in ("success_rate", "pre_success_rate", "env_steps")} | {
        "per_task": {c: r["success_rate"] for c, r in obj["per_task"].items()},
        "returns": [g["return"] for g in obj["per_goal"]]}


def _assert_same_evaluation(got: dict, ref: dict) -> None:
    assert got["returns"] == pytest.approx(ref["returns"], rel=1e-4)
    assert {k: v for k, v in got.items() if k != "returns"} == {k: v for k, v in ref.items() if k != "returns"}


TOYSIDES = ["train", "ToySides", "--agent", "rl2", "--steps", "960", "--checkpoint-every", "1"]
"""The issue's `metarl train ToySides --agent rl2` at a tiny budget (8 iterations of 10 slots)."""


@pytest.fixture(scope="module")
def toysides_sync(tmp_path_factory) -> dict:
    """The final evaluation of TOYSIDES on sync, in this process."""
    out = tmp_path_factory.mktemp("sync") / "run"
    assert main([*TOYSIDES, "--backend", "sync", "--out", str(out)]) == 0
    return _evaluation(out)


@pytest.mark.usefixtures("cluster")
def test_resume_across_backends(tmp_path, toysides_sync):
    """Half a run on ray resumed on sync, and half a run on sync resumed on ray (actors of the module's
    cluster), end with the evaluation an uninterrupted sync run writes."""
    half = ["--steps", "480", "--no-final-eval"]
    for first, then in ((["--backend", "ray", "--num-workers", "1"], ["--backend", "sync"]),
                        (["--backend", "sync"], ["--backend", "ray", "--num-workers", "1"])):
        out = str(tmp_path / f"{first[1]}-then-{then[1]}")
        assert main([*TOYSIDES, *half, *first, "--out", out]) == 0
        assert main([*TOYSIDES, "--resume", *then, "--out", out]) == 0
        _assert_same_evaluation(_evaluation(Path(out)), toysides_sync)


def _ray_processes(mark: str) -> list[str]:
    """Processes that carry ``METARL_TEST_RAY=mark`` in their environment: a command's Ray (its GCS,
    raylet, workers and actors inherit it)."""
    out = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and f"METARL_TEST_RAY={mark}\0".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                out.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            pass
    return out


def _command(module: str, argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, list[str], set[str]]:
    """``python -m module ARGV`` in a process (and session) of its own that starts its own local Ray; the
    processes of that Ray still alive and the /dev/shm names added once it has returned."""
    mark, shm = uuid.uuid4().hex, set(os.listdir("/dev/shm"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "METARL_TEST_RAY": mark}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, start_new_session=True)
    return done, _ray_processes(mark), set(os.listdir("/dev/shm")) - shm


def test_cli_ray_equals_sync_and_leaves_nothing(tmp_path, toysides_sync):
    """`metarl train ToySides --agent rl2 --backend ray --num-workers 2` writes the final evaluation a sync
    run writes, and the local Ray it started is gone when it returns (no process, no /dev/shm name)."""
    done, left, shm = _command("metarl", [*TOYSIDES, "--backend", "ray", "--num-workers", "2", "--out", "ray"],
                               tmp_path)
    assert done.returncode == 0, done.stderr
    assert not left and not shm, (left, shm)
    _assert_same_evaluation(_evaluation(tmp_path / "ray"), toysides_sync)


def test_sigterm_with_ray_saves_and_exits_143(tmp_path):
    """SIGTERM to the driver (a scheduler's preemption) on --backend ray: as on the other backends, the
    iteration in progress ends, the checkpoint is saved, exit 143 (ray.init's own SIGTERM handler, an exit
    without saving, and its crash handler's abort are undone); the local Ray is gone afterwards."""
    import torch

    argv = ["train", "Faulty", "--agent", "faulty", "--num-envs", "4", "--steps", "1600", "--out", "run",
            "--backend", "ray", "--num-workers", "1", "--agent-opt", "sigterm_at=3"]
    done, left, shm = _command("tests.faulty", argv, tmp_path)
    assert done.returncode == 143 and "Traceback" not in done.stderr, done.stderr
    assert "SIGTERM: stopping after this iteration" in done.stderr
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["trainer"]["iteration"] == 3
    assert not left and not shm, (left, shm)


for _test in (test_same_results_as_sync, test_multi_node_cluster, test_actor_killed_mid_trial_is_replaced,
              test_node_leaving_the_cluster_is_survived, test_repeated_deaths_stop_after_checkpoint,
              test_resume_across_backends,
              test_an_error_in_an_actors_trial_is_the_one_line_error_of_one_process,
              test_a_learner_drawing_from_torch_is_reproducible_on_an_actor,
              test_cli_ray_equals_sync_and_leaves_nothing, test_sigterm_with_ray_saves_and_exits_143):
    for _mark in ray_test:
        _mark(_test)

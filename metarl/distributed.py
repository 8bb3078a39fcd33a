"""Whole trials on Ray actors: ``backend="ray"`` (docs/ray.md).

A :class:`RayPool` holds ``num_workers`` actors (:class:`TrialWorker`). Each gets the benchmark and a CPU
copy of the algorithm once, builds its own vector envs (the family's batched env, else in-process ones),
and per call runs whole trials (:func:`metarl.trials.trial`: adaptation episodes, ``observe``/``adapt``,
post-adaptation episodes) for the block of slots it is handed, with a Learner made from the weights the
driver put in the object store once per iteration. The driver keeps the loop and the meta-update.

Results equal a one-process run's (:mod:`metarl.trials`): every slot carries its own reset and noise
seeds, and the blocks' rollouts are merged in slot order. An actor that dies is replaced and its block run
again; more than ``max_deaths`` deaths in one call end it with a :class:`~metarl.errors.RunError` (the
Trainer saves its checkpoint first).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from metarl.errors import RunError, UsageError
from metarl.tasks import Benchmark
from metarl.trials import (
    TrialBatch,
    TrialPlan,
    TrialResult,
    block_sizes,
    merge_results,
    run_batch,
    split_batch,
)

INSTALL = "pip install -e '.[ray]'"
MAX_DEATHS = 3
"""Actor deaths one call survives (each replaced, its trials run again); one more is a RunError."""


def import_ray():
    """The ``ray`` module, or a one-line :class:`UsageError` naming the install command."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--backend ray needs Ray, which is not installed: {INSTALL} (or pip install "
                         "'ray>=2.9,<3')") from None
    return ray


def learner_state(algorithm: Any) -> dict:
    """What a Learner needs of ``algorithm`` (its optional ``learner_state()``, else ``state_dict()``), on
    the CPU: what is sent to the actors each iteration."""
    get = getattr(algorithm, "learner_state", None)
    return _to_cpu(get() if callable(get) else algorithm.state_dict())


def load_learner_state(algorithm: Any, state: dict) -> None:
    load = getattr(algorithm, "load_learner_state", None)
    (load if callable(load) else algorithm.load_state_dict)(state)


def _to_cpu(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(v) for v in x)
    return x


def _algorithm_bytes(algorithm: Any) -> bytes:
    """``algorithm`` pickled by torch (so an actor maps GPU tensors to its CPU) with Ray's cloudpickle
    (so what plain pickle refuses, e.g. a function defined in a function, still goes)."""
    from ray import cloudpickle

    buf = io.BytesIO()
    torch.save(algorithm, buf, pickle_module=cloudpickle)
    return buf.getvalue()


class TrialWorker:
    """A Ray actor's body: env slots and a CPU copy of the algorithm; runs blocks of trials."""

    def __init__(self, benchmark: Benchmark, algorithm: bytes, backend: str = "auto") -> None:
        torch.set_num_threads(1)  # acting is tiny forward passes; one core per actor
        self.benchmark, self.backend = benchmark, backend
        self.algorithm = torch.load(io.BytesIO(algorithm), map_location="cpu", weights_only=False)
        if isinstance(getattr(self.algorithm, "device", None), (str, torch.device)):
            self.algorithm.device = torch.device("cpu")
        self.version = -1
        self.envs: dict[tuple[str, int], Any] = {}

    def where(self) -> tuple[str, int]:
        """(Ray node id, process id) of this actor."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def run(self, split: str, batch: TrialBatch, plan: TrialPlan, weights: list, version: int,
            what: str) -> tuple[TrialResult, str, float]:
        """``batch``'s trials with the weights of ``version`` (``weights``: [ObjectRef], fetched only when
        the version changed). Returns the rollouts, this actor's node id and the seconds the trials took."""
        import ray

        start = time.perf_counter()
        if version != self.version:
            load_learner_state(self.algorithm, ray.get(weights[0]))
            self.version = version
        key = (split, len(batch.tasks))
        if key not in self.envs:
            from metarl.vector import make_vector_env

            dist = self.benchmark.train if split == "train" else self.benchmark.test
            self.envs[key] = make_vector_env(dist, len(batch.tasks), self.backend)
        result = run_batch(self.envs[key], self.algorithm, batch, plan, what)
        return result, ray.get_runtime_context().get_node_id(), time.perf_counter() - start

    def close(self) -> None:
        for envs in self.envs.values():
            envs.close()
        self.envs.clear()


class RayPool:
    """``num_workers`` trial actors on a Ray cluster (``address``; None: a local Ray this pool starts and
    stops). :meth:`trials` gives the runner for a split; :meth:`close` stops the actors (and a local Ray)."""

    def __init__(self, benchmark: Benchmark, algorithm: Any, num_workers: int | None = None,
                 address: str | None = None, max_deaths: int = MAX_DEATHS) -> None:
        ray = self.ray = import_ray()
        self.num_workers = num_workers or max(1, (os.cpu_count() or 1))
        self.max_deaths = max_deaths
        self.started = False
        if not ray.is_initialized():
            if address is None:
                ray.init(address="local", num_cpus=self.num_workers, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", configure_logging=False,
                         runtime_env={"env_vars": {"PYTHONPATH": _python_path()}})
                self.started = True
            else:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR", configure_logging=False)
        self.algorithm = algorithm
        self._blob = ray.put(_algorithm_bytes(algorithm))
        self._bench = ray.put(benchmark)
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(TrialWorker)
        self.actors = [self._new_actor() for _ in range(self.num_workers)]
        self.version, self._weights = 0, None
        self.deaths = 0
        self.nodes: list[str] = []
        self.timing: dict[str, float] = {}
        """Node id of the actor that ran each block of the last call (tests check spreading)."""

    def _new_actor(self):
        return self._remote.options(scheduling_strategy="SPREAD").remote(self._bench, self._blob)

    def trials(self, split: str, num_slots: int) -> RayTrials:
        return RayTrials(self, split, num_slots)

    def broadcast(self, algorithm: Any) -> list:
        """Put the current weights in the object store (once per call); returns them boxed (not resolved
        by Ray when passed as an argument, so an actor fetches them only when their version is new)."""
        self.version += 1
        self._weights = [self.ray.put(learner_state(algorithm))]
        return self._weights

    def run(self, split: str, source: Any, batches: Sequence[TrialBatch], plan: TrialPlan,
            what: str) -> list[TrialResult]:
        """Every batch cut into one block per actor; blocks dealt to actors in turn, dead actors replaced
        and their blocks run again. Results merged back per batch in slot order."""
        if not hasattr(source, "make_learner"):
            raise UsageError("backend 'ray' runs trials from a MetaAlgorithm (its weights go to the actors), "
                             f"not from a {type(source).__name__}")
        start = time.perf_counter()
        ray, weights = self.ray, self.broadcast(source)
        blocks = [(b, piece) for b, batch in enumerate(batches)
                  for piece in split_batch(batch, block_sizes(len(batch.tasks), len(self.actors)))]
        pending = {self._submit(i, split, piece, plan, weights, what): i for i, (_, piece) in enumerate(blocks)}
        done: dict[int, tuple[TrialResult, str, float]] = {}
        deaths = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            try:
                done[i] = ray.get(ready[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                deaths += 1
                self.deaths += 1
                if deaths > self.max_deaths:
                    raise RunError(f"{what}: {deaths} Ray actors died in one call (more than {self.max_deaths}); "
                                   f"last: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"
                                   ) from None
                slot = i % len(self.actors)
                self.actors[slot] = self._new_actor()
                warnings.warn(f"{what}: Ray actor {slot} died ({type(e).__name__}); replaced, its trials run "
                              f"again (death {deaths} of at most {self.max_deaths})", RuntimeWarning, stacklevel=2)
                pending[self._submit(i, split, blocks[i][1], plan, weights, what)] = i
        self.nodes = [done[i][1] for i in range(len(blocks))]
        busy = {}  # actor -> seconds of trials it ran in this call
        for i in range(len(blocks)):
            busy[i % len(self.actors)] = busy.get(i % len(self.actors), 0.0) + done[i][2]
        self.timing = {"call_s": time.perf_counter() - start, "actor_max_s": max(busy.values())}
        """The last call's wall time and its busiest actor's trial time (the rest: transfer, scheduling)."""
        out = []
        for b in range(len(batches)):
            out.append(merge_results([done[i][0] for i in range(len(blocks)) if blocks[i][0] == b]))
        return out

    def _submit(self, i: int, split: str, piece: TrialBatch, plan: TrialPlan, weights: list, what: str):
        return self.actors[i % len(self.actors)].run.remote(split, piece, plan, weights, self.version, what)

    def close(self) -> None:
        """Stop the actors and, if this pool started Ray, Ray itself."""
        ray = self.ray
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already dead
                ray.kill(actor)
        self.actors = []
        if self.started and ray.is_initialized():
            ray.shutdown()
            self.started = False


class RayTrials:
    """The trial runner (:class:`metarl.trials.TrialRunner`) of a :class:`RayPool` for one split."""

    def __init__(self, pool: RayPool, split: str, num_slots: int) -> None:
        self.pool, self.split, self.num_slots = pool, split, num_slots

    def run_trials(self, source: Any, batches: Sequence[TrialBatch], plan: TrialPlan,
                   what: str = "trial") -> list[TrialResult]:
        return self.pool.run(self.split, source, batches, plan, what)


def _python_path() -> str:
    """This process's import path, for a local Ray's workers: they then import what the driver can
    (an editable install, a user's family defined next to the script)."""
    return os.pathsep.join(p for p in (os.getcwd(), *__import__("sys").path) if p)

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
import signal
import socket
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from metarl.errors import RunError, UsageError
from metarl.seeding import torch_rng_seeded
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


def check_ray_address(backend: str, address: str | None) -> None:
    """One-line :class:`UsageError` s for ``--ray-address``: only with ``--backend ray``, and only to a
    running cluster (:func:`check_address`)."""
    if address is not None and backend != "ray":
        raise UsageError(f"--ray-address {address} joins a Ray cluster for --backend ray; the backend here is "
                         f"{backend!r}: add --backend ray or drop --ray-address")
    check_address(address)


def check_address(address: str | None) -> None:
    """A one-line :class:`UsageError` unless ``address`` (``--ray-address``) leads to a running Ray cluster:
    ``"auto"`` finds one (``RAY_ADDRESS``, else the last ``ray start`` on this machine), ``HOST:PORT``
    answers on that port within 5 s. None or ``"local"`` (start a local Ray) pass. Checked before a run
    directory is written: ``ray.init`` itself retries an address where nothing answers for minutes."""
    if address is None or address == "local":
        return
    import_ray()
    fix = ("start it first (`ray start --head` on the head node, docs/ray.md), or leave --ray-address out to "
           "start a local Ray")
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die as find
    except ImportError:  # another Ray's private layout: leave the check to ray.init
        return
    try:
        found = find(address)
    except (ConnectionError, ValueError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"--ray-address {address}: no Ray cluster there ({why}); {fix}") from None
    host, _, port = found.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or e
        raise UsageError(f"--ray-address {address}: nothing answers there ({found}: {why}); {fix}") from None


@contextlib.contextmanager
def _signals_kept():
    """Keep this process's SIGINT and SIGTERM handlers across the block: ``ray.init`` makes SIGTERM
    ``sys.exit`` (and its core worker's crash handler would abort with a stack dump), which would end
    training unsaved instead of letting the Trainer checkpoint and exit 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in kept.items():
            if handler is not None:  # None: set from C, not by Python; leave Ray's
                signal.signal(s, handler)


def _init(ray, num_workers: int, address: str | None) -> bool:
    """Connect to Ray (``address``) or start a local one sized ``num_workers`` CPUs; True if started here.
    An address without a running cluster is a one-line :class:`UsageError`."""
    local = address is None or address == "local"
    if not local:
        check_address(address)  # a one-line error now, not minutes of ray.init's retries
    with _signals_kept():
        try:
            if local:
                ray.init(address="local", num_cpus=num_workers, include_dashboard=False, log_to_driver=False,
                         # Ray runs its workers at nice 15, so any other process on the core (even the
                         # driver) starves the actors that do all the env stepping: measured 10x slower
                         _system_config={"worker_niceness": 0},
                         logging_level="ERROR", configure_logging=False,
                         runtime_env={"env_vars": {"PYTHONPATH": _python_path()}})
            else:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR", configure_logging=False)
        except ConnectionError as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UsageError(f"--ray-address {address}: could not join a Ray cluster ({why})") from None
    return local


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


def block_seed(batch: TrialBatch) -> int:
    """A seed for an actor's global generators while it runs ``batch``, from its slots' noise seeds. The
    shipped Learners draw from their slots' streams only; one that draws from torch's global generator
    then still acts the same each run with the same actors (not as in one process, where it continues the
    driver's stream)."""
    words = [w for s in batch.noise for w in (s if isinstance(s, tuple) else (s,))]
    return int(np.random.SeedSequence([int(w) % 2**64 for w in words]).generate_state(1)[0])


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
        with torch_rng_seeded(block_seed(batch)):  # for Learners that draw from torch anyway
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
                 address: str | None = None, max_deaths: int | None = None) -> None:
        ray = self.ray = import_ray()
        self.num_workers = num_workers or max(1, (os.cpu_count() or 1))
        self.max_deaths = MAX_DEATHS if max_deaths is None else max_deaths
        self.started = False
        if not ray.is_initialized():
            self.started = _init(ray, self.num_workers, address)
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
        weights = self.broadcast(source)
        blocks = [(b, piece) for b, batch in enumerate(batches)
                  for piece in split_batch(batch, block_sizes(len(batch.tasks), len(self.actors)))]
        done = self._gather([piece for _, piece in blocks], split, plan, weights, what)
        self.nodes = [done[i][1] for i in range(len(blocks))]
        busy: dict[int, float] = {}  # actor slot -> seconds of trials it ran in this call
        for i in range(len(blocks)):
            busy[i % len(self.actors)] = busy.get(i % len(self.actors), 0.0) + done[i][2]
        self.timing = {"call_s": time.perf_counter() - start, "actor_max_s": max(busy.values())}
        """The last call's wall time and its busiest actor's trial time (the rest: transfer, scheduling)."""
        return [merge_results([done[i][0] for i in range(len(blocks)) if blocks[i][0] == b])
                for b in range(len(batches))]

    def _gather(self, pieces: list[TrialBatch], split: str, plan: TrialPlan, weights: list,
                what: str) -> dict[int, tuple[TrialResult, str, float]]:
        """Run block ``i`` on actor slot ``i % actors`` and wait for all. A block whose actor died runs
        again on that slot's replacement; a death counts once however many of its blocks were queued
        (the others fail too and go to the same replacement). An error raised by the trial's own code
        (the env, the Learner) is raised here as it would be in one process."""
        ray = self.ray
        pending: dict[Any, tuple[int, Any]] = {}  # ObjectRef -> (block, actor it was given to)

        def submit(i: int) -> None:
            actor = self.actors[i % len(self.actors)]
            ref = actor.run.remote(split, pieces[i], plan, weights, self.version, what)
            pending[ref] = (i, actor)

        for i in range(len(pieces)):
            submit(i)
        done: dict[int, tuple[TrialResult, str, float]] = {}
        deaths = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i, actor = pending.pop(ready[0])
            try:
                done[i] = ray.get(ready[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                slot = i % len(self.actors)
                if self.actors[slot] is actor:  # a new death (not a block queued on an actor replaced already)
                    deaths += 1
                    self._replace(slot, e, deaths, what)
                submit(i)
            except ray.exceptions.RayTaskError as e:
                raise _cause(e) from None
        return done

    def _replace(self, slot: int, error: Exception, deaths: int, what: str) -> None:
        """Replace the dead actor in ``slot`` (``deaths``: this call's so far; more than ``max_deaths``:
        a :class:`RunError`)."""
        self.deaths += 1
        why = (str(error).strip().splitlines() or [""])[0]
        if deaths > self.max_deaths:
            raise RunError(f"{what}: {deaths} Ray actors died in one call (more than {self.max_deaths}); last: "
                           f"{type(error).__name__}: {why}")
        with contextlib.suppress(Exception):  # dead already; a node that left may still hold it
            self.ray.kill(self.actors[slot])
        self.actors[slot] = self._new_actor()
        warnings.warn(f"{what}: Ray actor {slot} died ({type(error).__name__}); replaced, its trials run "
                      f"again (death {deaths} of at most {self.max_deaths} in this call)", RuntimeWarning,
                      stacklevel=4)

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


def _cause(error: Exception) -> BaseException:
    """The exception a trial raised on an actor, for the driver to raise: metarl's one-line errors
    (:class:`UsageError`, :class:`RunError`) and interrupts as they are; anything else as Ray's error, whose
    message holds the actor's traceback."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, (UsageError, RunError, KeyboardInterrupt)) else error


def _python_path() -> str:
    """This process's import path, for a local Ray's workers: they then import what the driver can
    (an editable install, a user's family defined next to the script)."""
    return os.pathsep.join(p for p in (os.getcwd(), *__import__("sys").path) if p)

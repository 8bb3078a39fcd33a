"""Building task families and agents from the registry, with the checks that make a bad name,
option or factory a one-line :class:`~metarl.errors.UsageError` instead of a traceback from deep inside.

Torch-free: env worker processes import ``metarl`` (and so this module) to unpickle their env factories.
"""

from __future__ import annotations

from typing import Any

from metarl.errors import UsageError
from metarl.learner import MetaAlgorithm
from metarl.registry import agent_factory, benchmark_factory
from metarl.tasks import Benchmark, TaskDistribution
from metarl.vector import EnvSpec


def make_benchmark(name: str, task: str | None = None, seed: int = 0, **options: Any) -> Benchmark:
    """Build a registered benchmark (``"ML1"``, ``"ML10"``, ``"ML45"``, ``"Toy"``, or your own).

    Args:
        name: registered benchmark name (``metarl envs`` lists them).
        task: task class for single-task benchmarks such as ML1 (e.g. ``"reach-v3"``).
        seed: fixes the generated tasks (goals) of both splits.
        **options: family options, e.g. ``reward_version="v1"`` or ``horizon=200`` for Meta-World.
    """
    factory = benchmark_factory(name)
    if task is not None:
        options["task"] = task
    check_options(f"benchmark {name!r}", factory, options)
    try:
        bench = factory(seed=seed, **options)
    except TypeError as e:  # only a factory taking **kwargs judges option names itself; else it is a bug
        if not options or not _takes_any_keyword(factory):
            raise
        raise UsageError(f"benchmark {name!r} rejected its options ({e}): check `metarl envs` for its "
                         "options") from e
    return validate_benchmark(name, bench)


def _takes_any_keyword(factory: Any) -> bool:
    """``factory`` has a ``**kwargs`` parameter, or a signature that can't be read."""
    import inspect

    try:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return True


_FLAGS = {"task": "--task", "reward_version": "--reward-version"}  # options the CLI gives flags of their own


def check_options(owner: str, factory: Any, options: dict[str, Any]) -> None:
    """Check ``options`` against ``factory``'s signature before calling it: an option it doesn't take,
    or a value of another kind than its default (text for a number, a float for a count), is a
    one-line :class:`UsageError` naming the option and the ones it takes. Factories taking ``**kwargs``
    are only type-checked."""
    import inspect

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: let the factory judge
        return
    named = {k: p for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in options:
            if key in named:
                continue
            takes = ", ".join(k for k in named if k not in ("seed", "task")) or "none"
            if key == "task":
                raise UsageError(f"{owner} has a single task class: drop --task")
            raise UsageError(f"{owner} takes no option {_FLAGS.get(key, key)} (its options: {takes}; "
                             "`metarl envs` describes them)")
    _check_kinds(owner, named, options)


def _check_kinds(owner: str, params: Any, options: dict[str, Any]) -> None:
    """Each option's value is of the kind of its parameter's default, where that is a bool, number or
    text (``params``: name -> ``inspect.Parameter``)."""
    from metarl.config import check_option

    for key, value in options.items():
        default = params[key].default if key in params else None
        if isinstance(default, (bool, int, float, str)):
            check_option(owner, key, value, default, ranges=False)


def validate_benchmark(name: str, bench: Any) -> Benchmark:
    """Check what a factory returned: both splits present, task distributions with a positive whole
    horizon, each task labelled with the split it is in. Test tasks that are also training tasks
    (same class and params) give a warning unless ``bench.info["shared_tasks"]`` says why they are
    meant to be (``HalfCheetahDir``: only two directions exist)."""
    import numbers
    import warnings

    from metarl.tasks import tasks_overlap

    for split in ("train", "test"):
        dist = getattr(bench, split, None)
        if dist is None:
            raise UsageError(f"benchmark {name!r} has no {split!r} split: its factory must return train and "
                             "test")
        if not isinstance(dist, TaskDistribution):
            raise UsageError(f"benchmark {name!r}: {split} is a {type(dist).__name__}, not a "
                             "TaskDistribution (use metarl.TaskSet)")
        horizon = dist.horizon
        if not isinstance(horizon, numbers.Integral) or isinstance(horizon, bool) or horizon < 1:
            raise UsageError(f"benchmark {name!r}: the {split} split's horizon is {horizon!r}: give a whole "
                             "number of steps >= 1 (the episode length the env truncates at)")
        stray = next((t for t in dist.tasks if t.split != split), None)
        if stray is not None:
            raise UsageError(f"benchmark {name!r}: the {split} split holds task {stray.id} (Task.split "
                             f"{stray.split!r}): give each Task the split it is in, "
                             f"Task(name, index, {split!r}, params)")
    try:
        shared = tasks_overlap(bench.train.tasks, bench.test.tasks)
    except Exception:  # params the comparison can't handle: no warning rather than no benchmark
        shared = []
    if shared and not (getattr(bench, "info", None) or {}).get("shared_tasks"):
        warnings.warn(f"benchmark {name!r}: {len(shared)} test task(s) are also training tasks (same class "
                      f"and params, e.g. {shared[0]}), so held-out results measure no generalisation to new "
                      "tasks: "
                      "draw the test tasks apart, or say why in Benchmark.info['shared_tasks']", stacklevel=3)
    return bench


def make_agent(name: str, benchmark: Benchmark, device: str = "cpu", **options: Any) -> MetaAlgorithm:
    """Build a registered agent for ``benchmark``'s spaces (``metarl envs`` lists agents too)."""
    factory = agent_factory(name)
    spec = EnvSpec.from_distribution(benchmark.train)
    test_spec = EnvSpec.from_distribution(benchmark.test)
    if (spec.obs_dim, spec.act_dim) != (test_spec.obs_dim, test_spec.act_dim):
        raise UsageError(f"benchmark {benchmark.label}: train and test spaces differ "
                         f"(obs {spec.obs_dim} vs {test_spec.obs_dim}, "
                         f"act {spec.act_dim} vs {test_spec.act_dim})")
    _check_agent_options(name, factory, spec, device, options)
    try:
        agent = factory(spec, device, **options)
    except TypeError as e:  # as in make_benchmark: the user's TypeError only where options went unchecked
        if not options or not _takes_any_keyword(factory):
            raise
        raise UsageError(f"agent {name!r}: {e}") from e
    return check_agent(name, agent)


def _check_agent_options(name: str, factory: Any, spec: EnvSpec, device: str,
                         options: dict[str, Any]) -> None:
    """Before the factory runs: it must take ``(spec, device)`` first; option names it doesn't take, and
    values of another kind than a named option's default (text for a number), are one-line
    :class:`UsageError` s (factories with ``**kwargs`` check those names themselves)."""
    import inspect

    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    second = positional[1] if len(positional) > 1 else None  # the device: any name, no default but text
    if not any(p.kind is p.VAR_POSITIONAL for p in params) and (second is None or (
            second.name != "device" and second.default is not second.empty
            and not isinstance(second.default, str) and second.default is not None)):
        shown = ", ".join(p.name for p in params)
        raise UsageError(f"agent {name!r}: an agent factory is factory(spec, device, **options), but it "
                         f"takes ({shown}): make the device its second parameter")
    try:
        sig.bind(spec, device, **options)
    except TypeError as e:
        takes = [p.name for p in params[2:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise UsageError(f"agent {name!r} does not take these options ({e}); its options: "
                         f"{', '.join(takes) or 'none'}") from None
    _check_kinds(f"agent {name!r}", sig.parameters, options)


def check_agent(name: str, agent: Any) -> MetaAlgorithm:
    """What an agent factory returned has the :class:`MetaAlgorithm` members, whole episode counts
    (``adapt_episodes >= 1``, ``post_episodes >= 0``), and a ``make_learner()`` with the
    :class:`Learner` methods: else a one-line :class:`UsageError` listing what is missing."""
    import numbers

    def missing(obj: Any, names: tuple[str, ...]) -> list[str]:
        return [m for m in names if not hasattr(obj, m)]

    gaps = missing(agent, ("adapt_episodes", "post_episodes", "make_learner", "meta_update", "state_dict",
                           "load_state_dict"))
    if gaps:
        raise UsageError(f"agent {name!r} ({type(agent).__name__}) lacks {', '.join(gaps)}: a MetaAlgorithm "
                         "has adapt_episodes, post_episodes, make_learner, meta_update, state_dict and "
                         "load_state_dict (metarl.learner)")
    for attr, low in (("adapt_episodes", 1), ("post_episodes", 0)):
        value = getattr(agent, attr)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
            raise UsageError(f"agent {name!r}: {attr} is {value!r}: give a whole number >= {low}")
    learner = agent.make_learner()
    gaps = missing(learner, ("reset", "act", "observe", "adapt"))
    if gaps:
        raise UsageError(f"agent {name!r}: its learner ({type(learner).__name__}) lacks {', '.join(gaps)}: a "
                         "Learner has reset, act, observe and adapt (metarl.learner)")
    return agent

"""Registries of benchmarks (task families) and agents.

Both are filled from the entry-point groups ``metarl.benchmarks`` and ``metarl.agents`` (so a
separate pip package can add its own) and by :func:`register_benchmark` / :func:`register_agent`
at run time. The core never imports ``metarl.envs`` or ``metarl.agents`` directly.

A benchmark factory is ``factory(seed: int = 0, **options) -> Benchmark``. It may also carry a
``describe()`` function returning ``{"train": [class names], "test": [class names],
"tasks_per_class": int, "options": {name: help}}`` so ``metarl envs`` can list it without building.

An agent factory is ``factory(spec: EnvSpec, device: str, **options) -> MetaAlgorithm`` (``device``
e.g. ``"cpu"`` or ``"cuda"``).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from metarl.errors import UsageError

_BENCHMARKS: dict[str, Callable[..., Any]] = {}
_AGENTS: dict[str, Callable[..., Any]] = {}
_LOADED: set[str] = set()


def _load_entry_points(group: str, into: dict[str, Callable[..., Any]]) -> None:
    if group in _LOADED:
        return
    _LOADED.add(group)
    kind = group.rsplit(".", 1)[1].rstrip("s")
    for ep in entry_points(group=group):
        old = into.get(ep.name)
        if old is None:
            into[ep.name] = _Lazy(ep, kind)
        elif isinstance(old, _Lazy) and old.ep.value != ep.value:  # two packages claim one name
            keep, drop = (ep, old.ep) if _package(ep) == "metarl" else (old.ep, ep)
            warnings.warn(f"{kind} {ep.name!r} is defined by two entry points, {keep.value!r} (package "
                          f"{_package(keep)}) and {drop.value!r} (package {_package(drop)}): using the first; "
                          "rename the other one", stacklevel=3)
            into[ep.name] = _Lazy(keep, kind)


def _names(ep: Any, factory: Any) -> bool:
    """``ep`` (``module:attr``) names ``factory``: defined in that module or one below it (a package
    re-exporting it), under that name."""
    module, _, attr = ep.value.partition(":")
    where = getattr(factory, "__module__", "") or ""
    return attr.strip() == getattr(factory, "__qualname__", None) and (
        where == module.strip() or where.startswith(module.strip() + "."))


def _package(ep: Any) -> str | None:
    return getattr(getattr(ep, "dist", None), "name", None)


class _Lazy:
    """Imports an entry point on first use, so listing names stays cheap. A plug-in that fails to
    import, or names something that isn't callable, is a one-line :class:`UsageError` naming the
    entry point and its package, raised only when that name is used."""

    def __init__(self, ep: Any, kind: str = "benchmark") -> None:
        self.ep, self.kind = ep, kind
        self._obj: Any = None

    def resolve(self) -> Any:
        if self._obj is None:
            ep = self.ep
            dist = _package(ep)
            where = f"{self.kind} {ep.name!r} (entry point {ep.value!r}" + (f" of package {dist})" if dist else ")")
            try:
                obj = ep.load()
            except Exception as e:  # a plug-in's bug must not read as ours: name it, where, and the way out
                import traceback

                frames = [f for f in traceback.extract_tb(e.__traceback__)  # the plug-in's own lines only
                          if not f.filename.startswith("<") and "importlib" not in f.filename
                          and f.filename != __file__]
                at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
                hint = ("; an entry point names module:attribute, e.g. 'my_package.families:my_family'"
                        if ":" not in ep.value else "")
                fix = ("unset MUJOCO_GL, or set it to egl, osmesa or glfw" if "MUJOCO_GL" in str(e) else
                       "reinstall metarl with its dependencies (scripts/install.sh)" if dist == "metarl" else
                       f"fix that package (`python -c \"import {ep.value.split(':')[0]}\"` shows the traceback; "
                       "after editing its entry points, reinstall it) or uninstall it")
                raise UsageError(f"{where} failed to load: {type(e).__name__}: {e}{at}{hint}; {fix}") from e
            if not callable(obj):
                raise UsageError(f"{where} is a {type(obj).__name__}, not a factory: point it at the function")
            self._obj = obj
        return self._obj


def _resolve(obj: Any) -> Any:
    return obj.resolve() if isinstance(obj, _Lazy) else obj


def register_benchmark(name: str, factory: Callable[..., Any], *, overwrite: bool = False) -> None:
    """Make ``factory`` available as benchmark ``name`` to the CLI and :func:`metarl.make_benchmark`."""
    _register(_BENCHMARKS, "metarl.benchmarks", "benchmark", name, factory, overwrite)


def register_agent(name: str, factory: Callable[..., Any], *, overwrite: bool = False) -> None:
    """Make ``factory`` available as agent ``name`` (``metarl train ... --agent name``)."""
    _register(_AGENTS, "metarl.agents", "agent", name, factory, overwrite)


def _register(table: dict, group: str, kind: str, name: str, factory: Any, overwrite: bool) -> None:
    _load_entry_points(group, table)
    if not callable(factory):
        raise UsageError(f"{kind} {name!r}: factory must be callable, got {type(factory).__name__}")
    old = table.get(name)
    if isinstance(old, _Lazy) and _names(old.ep, factory):
        return  # a plug-in module registering the factory its own entry point names: already there
    if name in table and not overwrite:
        raise UsageError(f"{kind} {name!r} is already registered: pick another name or pass overwrite=True")
    table[name] = factory


def benchmark_names() -> list[str]:
    """Sorted names of every registered benchmark."""
    _load_entry_points("metarl.benchmarks", _BENCHMARKS)
    return sorted(_BENCHMARKS)


def agent_names() -> list[str]:
    """Sorted names of every registered agent."""
    _load_entry_points("metarl.agents", _AGENTS)
    return sorted(_AGENTS)


def benchmark_factory(name: str) -> Callable[..., Any]:
    """The factory registered as ``name``; a :class:`UsageError` listing the choices if unknown."""
    names = benchmark_names()
    if name not in _BENCHMARKS:
        raise UsageError(f"unknown benchmark {name!r}{did_you_mean(name, names)}; choose one of: {', '.join(names)}")
    return _resolve(_BENCHMARKS[name])


def agent_factory(name: str) -> Callable[..., Any]:
    """The agent factory registered as ``name``; a :class:`UsageError` listing the choices if unknown."""
    names = agent_names()
    if name not in _AGENTS:
        raise UsageError(f"unknown agent {name!r}{did_you_mean(name, names)}; choose one of: {', '.join(names)}")
    return _resolve(_AGENTS[name])


def did_you_mean(name: str, names: list[str]) -> str:
    """' (did you mean 'X'?)' for the closest of ``names`` (case-insensitive match first), or ''."""
    folded = {n.lower(): n for n in names}
    close = [folded[name.lower()]] if name.lower() in folded else difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

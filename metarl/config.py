"""Helpers for frozen-dataclass configs."""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass
from typing import Any, TypeVar

C = TypeVar("C")


def config_from_options(cls: type[C], options: dict[str, Any], owner: str) -> C:
    """``cls(**options)``, rejecting unknown keys with a TypeError that lists the known ones."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"{owner}: unknown options {unknown}; known: {sorted(known)}")
    return cls(**options)


def agent_config(agent: Any) -> dict[str, Any] | None:
    """The agent's whole config (defaults included) as a dict, or None for agents without a dataclass ``cfg``.

    Results files record it next to the command line's options, so they still say what ran after a
    default changes.
    """
    cfg = getattr(agent, "cfg", None)
    return asdict(cfg) if is_dataclass(cfg) and not isinstance(cfg, type) else None

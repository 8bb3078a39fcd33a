"""Helpers for frozen-dataclass configs."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

C = TypeVar("C")


def config_from_options(cls: type[C], options: dict[str, Any], owner: str) -> C:
    """``cls(**options)``, rejecting unknown keys with a TypeError that lists the known ones."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"{owner}: unknown options {unknown}; known: {sorted(known)}")
    return cls(**options)

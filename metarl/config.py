"""Helpers for frozen-dataclass configs."""

from __future__ import annotations

import math
import numbers
from dataclasses import MISSING, asdict, fields, is_dataclass
from typing import Any, TypeVar

import numpy as np

from metarl.errors import UsageError

C = TypeVar("C")

# Ranges of the option names the agents share; a name not listed here has no range check.
_POSITIVE = {"lr", "outer_lr", "clip", "epochs", "minibatch_size", "episodes", "bptt_len", "minibatch_chunks",
             "trial_episodes", "adapt_episodes", "hidden", "encoder_hidden", "latent", "meta_batch", "batch_size",
             "context_size", "buffer_per_task", "reward_scale", "max_kl", "cg_iters", "outer_epochs", "action_scale",
             "init_alpha", "max_grad_norm", "inner_steps"}
_NON_NEGATIVE = {"ent_coef", "vf_coef", "inner_lr", "learning_starts", "updates_per_step",
                 "cg_damping", "baseline_reg", "max_backtracks", "kl_weight", "post_episodes"}
_UNIT = {"gamma", "lam", "tau", "backtrack_ratio"}  # in [0, 1]
_HINTS = {"inner_steps": "; for the policy without adaptation give inner_lr=0"}


def config_from_options(cls: type[C], options: dict[str, Any], owner: str) -> C:
    """``cls(**options)``: an unknown key is a :class:`UsageError` listing the known ones; a value of the wrong
    kind for its default (text for a number, a float for a count, ...) or out of its range (a negative
    learning rate, zero epochs, a discount above 1) is a :class:`UsageError` naming the option."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UsageError(f"{owner}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                         f"it takes: {', '.join(sorted(known))}")
    options = dict(options)
    for name, value in options.items():
        default = _default(known[name])
        if isinstance(default, (tuple, list)) and _is_whole(value):
            value = options[name] = (value,)  # hidden=128: one layer of 128
        check_option(owner, name, value, default)
    return cls(**options)


def option_defaults(factory: Any) -> dict[str, Any] | None:
    """``{option: default}`` of an agent factory with a dataclass ``config_class`` (None without one)."""
    cls = getattr(factory, "config_class", None)
    if not (isinstance(cls, type) and is_dataclass(cls)):
        return None
    return {f.name: _default(f) for f in fields(cls)}


def _default(f: Any) -> Any:
    """A dataclass field's default value (None for a required field)."""
    return f.default if f.default is not MISSING else f.default_factory() if f.default_factory is not MISSING else None


def check_option(owner: str, name: str, value: Any, default: Any, ranges: bool = True) -> None:
    """A :class:`UsageError` if ``value`` is not of ``default``'s kind, or (``ranges``) outside the range
    the option name implies (learning rates > 0, discounts in [0, 1], ...)."""
    def bad(what: str) -> UsageError:
        return UsageError(f"{owner}: option {name}={value!r} {what} (default {default!r}){_HINTS.get(name, '')}")

    # NumPy scalars count (np.int64 from an np.arange sweep is a whole number); bools are not numbers
    is_int = _is_whole(value)
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise bad("must be True or False")
        return
    if isinstance(default, int):
        if not is_int:
            raise bad("must be a whole number")
        values = [value]
    elif isinstance(default, float):
        real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
        if not real or not math.isfinite(value):
            raise bad("must be a finite number")
        values = [value]
    elif isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list)) or not all(_is_whole(v) for v in value):
            raise bad(f"must be whole numbers, e.g. {name}=128,128 (one layer: {name}=128)")
        values = list(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise bad("must be text")
        return
    else:
        return
    if not ranges:
        return
    if name in _POSITIVE and not all(v > 0 for v in values):
        raise bad("must be > 0")
    if name in _NON_NEGATIVE and not all(v >= 0 for v in values):
        raise bad("must be >= 0")
    if name in _UNIT and not all(0 <= v <= 1 for v in values):
        raise bad("must be between 0 and 1")


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def agent_config(agent: Any) -> dict[str, Any] | None:
    """The agent's whole config (defaults included) as a dict, or None for agents without a dataclass ``cfg``.

    Results files record it next to the command line's options, so they still say what ran after a
    default changes.
    """
    cfg = getattr(agent, "cfg", None)
    return asdict(cfg) if is_dataclass(cfg) and not isinstance(cfg, type) else None

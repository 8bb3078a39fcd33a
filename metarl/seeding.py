"""Explicit randomness: one seed makes the task-sampling Generator and seeds torch and Python."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's ``random`` and torch (CPU and CUDA); return the Generator for task sampling.

    Env seeds are drawn from the returned Generator each iteration, so same seed -> same tasks,
    same resets, same actions (on the same device and library versions).
    """
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextlib.contextmanager
def torch_rng_seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global generators seeded with ``seed``, then restore their state.

    For side computations that draw from torch (held-out evaluation): their draws then depend on
    ``seed`` alone, not on what ran before, and the caller's stream (training) continues as if the block
    had not run. CUDA generators are forked where CUDA is in use (initialised)."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        torch.manual_seed(seed)
        yield


def rng_state(rng: np.random.Generator) -> dict:
    """Checkpointable state of ``rng`` and of torch's global generators."""
    state = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without a GPU is a usage error."""
    from metarl.errors import UsageError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda but torch sees no CUDA GPU: use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)

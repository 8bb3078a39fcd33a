"""Explicit randomness: one seed makes the task-sampling Generator and seeds torch and Python."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's ``random``, NumPy's legacy global generator and torch (CPU and CUDA); return the
    Generator for task sampling.

    Env seeds are drawn from the returned Generator each iteration, so same seed -> same tasks,
    same resets, same actions (on the same device and library versions). NumPy's global generator
    (``np.random.normal``) is seeded for plug-in code that draws from it, but not checkpointed: a
    resumed run starts it again from ``seed``. Agents draw from ``StepInput.noise`` or torch.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextlib.contextmanager
def torch_rng_seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's (and NumPy's legacy) global generators seeded with ``seed``, then
    restore their state.

    For side computations that draw from torch (held-out evaluation): their draws then depend on
    ``seed`` alone, not on what ran before, and the caller's stream (training) continues as if the block
    had not run. CUDA generators are forked where CUDA is in use (initialised)."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    np_state = np.random.get_state()  # NumPy's global generator too, for plug-ins that draw from it
    try:
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        np.random.set_state(np_state)


EVAL_PHASE_TAG = 0x6576616C
"""Mixed into a slot's reset seed for the reset that starts a trial's evaluation episodes."""


def phase_seeds(seeds: Sequence[int] | int | None, num_slots: int, tag: int = EVAL_PHASE_TAG) -> list[int] | None:
    """Reset seeds for a later phase of the trials that :func:`collect` started with ``seeds`` (a list:
    one per slot; an int ``s``: ``s + i``; None: None), each a 32-bit number mixed from the slot's seed
    and ``tag`` by NumPy's ``SeedSequence``.

    A slot that finished its episodes keeps stepping (and resetting) while slower slots finish theirs;
    without a seed of its own, the next phase's first reset would continue the env's RNG from wherever
    that padding left it, which depends on the other slots' episode lengths."""
    if seeds is None:
        return None
    base = [seeds + i for i in range(num_slots)] if isinstance(seeds, (int, np.integer)) else list(seeds)
    return [int(np.random.SeedSequence([int(s) % 2**64, tag]).generate_state(1)[0]) for s in base]


NOISE_STREAM_TAG = 0x6E6F6973
"""Mixed into a slot's seed for its noise stream, so it differs from the env RNG seeded with the same number."""


class SlotNoise:
    """One random stream per vector-env slot, for a Learner's draws (action noise, latent samples).

    Slot ``i``'s draws depend on ``seeds[i]`` (an int or a tuple of ints, mixed by NumPy's
    ``SeedSequence``) and on the draws that slot made before, not on the other slots nor on how many
    there are. The evaluator gives task ``p`` the seed ``(seed, p)``, so a task's trial is the same
    whichever batch and slot it lands in and whatever the slot count (up to the last bits of batched
    matrix products, which can differ between batch sizes and then grow in an env's dynamics), and two
    checkpoints evaluated with one seed act on the same noise (common random numbers: their per-task
    differences are the policies', not the draws').

    Each slot's stream is read in blocks of ``block`` numbers drawn on the CPU (one generator call per
    slot per block, not per step: a step's draw for 50 slots is one gather), then moved to the requested
    device. A draw that doesn't fit in what is left of a slot's block starts its next block.
    """

    def __init__(self, seeds: Sequence[int | tuple[int, ...]], block: int = 1024) -> None:
        self.seeds = [tuple(int(x) for x in s) if isinstance(s, tuple) else int(s) for s in seeds]
        self.block = block
        self.generators = [torch.Generator().manual_seed(int(np.random.SeedSequence(
            [*(s if isinstance(s, tuple) else (s,)), NOISE_STREAM_TAG]).generate_state(1, np.uint64)[0]))
            for s in self.seeds]
        n = len(self.seeds)
        # per kind: [N, block] numbers and [N] read positions (a full position: the block must be drawn)
        self._blocks = {kind: np.empty((n, block), np.float32) for kind in ("normal", "uniform")}
        self._pos = {kind: np.full(n, block) for kind in ("normal", "uniform")}
        self._steps = np.arange(block)

    def __len__(self) -> int:
        return len(self.generators)

    def _draw(self, kind: str, size: int, rows: torch.Tensor | None, device: torch.device | str,
              active: np.ndarray | None) -> torch.Tensor:
        if not 0 < size <= self.block:
            raise ValueError(f"SlotNoise: draws of {size} numbers per slot; a block holds {self.block}")
        if rows is None:
            idx = np.arange(len(self))
        else:
            rows = rows.cpu().numpy()
            idx = rows.nonzero()[0] if rows.dtype == bool else rows.astype(np.int64)
        out = np.zeros((len(idx), size), np.float32)
        draw = np.ones(len(idx), bool) if active is None else np.asarray(active, bool)[idx]
        idx = idx[draw]
        blocks, pos = self._blocks[kind], self._pos[kind]
        for i in idx[pos[idx] + size > self.block]:
            fill = torch.randn if kind == "normal" else torch.rand
            blocks[i] = fill(self.block, generator=self.generators[i]).numpy()
            pos[i] = 0
        out[draw] = blocks[idx[:, None], pos[idx][:, None] + self._steps[:size]]  # [n drawing, size]
        pos[idx] += size
        return torch.from_numpy(out).to(device)

    def normal(self, size: int, rows: torch.Tensor | None = None, device: torch.device | str = "cpu", *,
               active: np.ndarray | None = None) -> torch.Tensor:
        """Standard normal draws ``[n, size]`` float32: one row per slot in ``rows`` (a ``[N]`` bool mask
        or slot indices; None: every slot), in slot order. ``active`` (``[N]`` bool, ``StepInput.active``):
        slots outside it get zeros and don't advance their streams, so the padding steps a finished slot
        takes while slower ones run don't shift its later draws."""
        return self._draw("normal", size, rows, device, active)

    def uniform(self, size: int, rows: torch.Tensor | None = None, device: torch.device | str = "cpu", *,
                active: np.ndarray | None = None) -> torch.Tensor:
        """Uniform draws in ``[0, 1)``, ``[n, size]`` float32, ``rows`` and ``active`` as in :meth:`normal`
        (inactive rows: zeros)."""
        return self._draw("uniform", size, rows, device, active)


def slot_noise(seed: Sequence[int] | int | None, num_slots: int) -> SlotNoise | None:
    """Noise streams matching a vector reset's ``seed``: a list gives one seed per slot, an int ``s``
    seeds slot ``i`` with ``s + i`` (as gymnasium's vector ``reset(seed=s)`` does); None: no streams
    (Learners draw from torch's global generator)."""
    if seed is None:
        return None
    seeds = [seed + i for i in range(num_slots)] if isinstance(seed, int) else list(seed)
    if len(seeds) != num_slots:
        raise ValueError(f"{len(seeds)} seeds for {num_slots} slots")
    return SlotNoise(seeds)


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

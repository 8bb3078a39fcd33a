"""Atomic, safe checkpoints.

Files are written to a temporary name in the same directory, flushed and renamed over the target
(``os.replace`` is atomic on POSIX and Windows), so a crash never leaves a half-written checkpoint.
Loading uses ``torch.load(weights_only=True)``: no arbitrary pickled code runs. NumPy arrays are
stored as tensors for that reason. Each checkpoint records the SHA-256 of its contents, checked on load.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.errors import UsageError
from metarl.files import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"


def to_safe(obj: Any) -> Any:
    """Recursively convert NumPy arrays/scalars to tensors/Python numbers for weights-only loading."""
    if isinstance(obj, dict):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_safe(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


_LEAVES = (bool, int, float, complex, str, bytes, type(None))  # exact types: an IntEnum is an int, yet refused
_CONTAINERS = (dict, OrderedDict, list, tuple, set, torch.Size)


def check_loadable(obj: Any, where: str = "state") -> None:
    """A one-line :class:`UsageError` naming the first value or key (by its key path) that weights-only
    loading could not read back: checkpoints hold tensors, numbers, text, and dicts, lists, tuples and
    sets of them. Run on what :func:`to_safe` returns (NumPy is converted by then)."""
    if type(obj) in (dict, OrderedDict):
        for k, v in obj.items():
            check_loadable(k, f"{where} key {k!r}")
            check_loadable(v, f"{where}[{k!r}]")
    elif type(obj) in _CONTAINERS:
        for i, v in enumerate(obj):
            check_loadable(v, f"{where}[{i}]")
    elif not (type(obj) in _LEAVES or isinstance(obj, (torch.Tensor, torch.dtype, torch.device))):
        raise UsageError(f"checkpoint {where} is a {type(obj).__module__}.{type(obj).__qualname__}, which a "
                         "weights-only checkpoint cannot hold: have state_dict() return tensors, NumPy arrays, "
                         "numbers, text, and dicts/lists of them (a NumPy Generator: its .bit_generator.state)")


def check_state_dict(algorithm: Any) -> None:
    """The agent's ``state_dict()`` is a dict a weights-only checkpoint holds and reads back: checked by
    key path, then by a round trip through ``torch.save`` / ``torch.load(weights_only=True)`` in
    memory (torch's own allow-list decides). A one-line :class:`UsageError` if not."""
    name = f"{type(algorithm).__name__}.state_dict()"
    state = algorithm.state_dict()
    if not isinstance(state, dict):
        raise UsageError(f"{name} returned a {type(state).__name__}: return a dict (of tensors, arrays, numbers, "
                         "text) that load_state_dict takes back")
    safe = to_safe(state)
    check_loadable(safe, name)
    buf = io.BytesIO()
    torch.save(safe, buf)
    buf.seek(0)
    try:
        torch.load(buf, map_location="cpu", weights_only=True)
    except Exception as e:
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
        why = next((line.strip() for line in first if "Unsupported" in line or "global" in line.lower()),
                   first[0] if first else type(e).__name__)
        raise UsageError(f"{name} holds something a weights-only checkpoint cannot read back ({why[:200]}): "
                         "store tensors, arrays, numbers, text, and dicts/lists of them") from None


def first_nan(obj: Any, where: str = "state") -> str | None:
    """The key path of the first floating tensor in ``obj`` holding a NaN (a diverged agent's weights), or
    None. Infinity is allowed: masks hold it on purpose."""
    if isinstance(obj, torch.Tensor):
        found = (obj.is_floating_point() or obj.is_complex()) and bool(torch.isnan(obj).any())
        return where if found else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for k, v in items:
        found = first_nan(v, f"{where}[{k!r}]")
        if found is not None:
            return found
    return None


CHECKSUM_KEY = "checksum"
"""The key :func:`save` adds: the SHA-256 of everything else in the checkpoint (:func:`content_digest`)."""


def content_digest(obj: Any) -> str:
    """SHA-256 of ``obj`` as a checkpoint holds it: the structure, keys, numbers and every tensor's dtype,
    shape and bytes, in order. The same before :func:`save` and after :func:`load`, so a byte changed in
    between (a disk or copy error) is found: torch's zip reader does not check its CRCs."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"(" if isinstance(obj, tuple) else b"[")
        for v in obj:
            _feed(h, v)
        h.update(b")")
    elif isinstance(obj, (set, frozenset)):
        h.update(repr(sorted(map(repr, obj))).encode())
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def save(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file + fsync + rename), with its :func:`content_digest`
    under :data:`CHECKSUM_KEY` (:func:`load` checks it); NumPy arrays are stored as tensors (and load back as
    tensors). A value weights-only loading could not read is refused first."""
    path = Path(path)
    state = to_safe(state)
    check_loadable(state)
    state = {**state, CHECKSUM_KEY: content_digest(state)}
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save` (weights-only: tensors, numbers, strings, containers).

    A file that isn't one (truncated, another format) is a one-line :class:`UsageError`."""
    try:
        with warnings.catch_warnings():  # a plain pickle: torch's warning would precede the one line below
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch's readers fail on damaged files with many types (KeyError for text)
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in first:
            first = "not a weights-only torch file"  # torch's own text suggests weights_only=False: not for this
        elif isinstance(e, OSError):
            first = f"{type(e).__name__}: {e.strerror or first}"
        raise UsageError(f"{path} is not a readable metarl checkpoint ({first[:200]}): it may be truncated or "
                         "overwritten; retrain, or restore it from a copy") from None
    if not isinstance(state, dict):
        raise UsageError(f"{path} is not a metarl checkpoint (it holds a {type(state).__name__}, not a dict): pass "
                         "the checkpoint.pt that `metarl train` wrote")
    recorded = state.pop(CHECKSUM_KEY, None)  # checkpoints written before checksums have none
    if recorded is not None and recorded != content_digest(state):
        raise UsageError(f"{path} fails its checksum: its contents changed after it was written (a disk or copy "
                         "error); restore it from a copy, or retrain")
    return state

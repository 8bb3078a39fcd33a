"""Metric logging with pluggable writers: console, CSV and TensorBoard.

Metrics have one namespace (``train/*``, ``adapt/*``, ``meta/*``, ``eval/*``, ``time/*``) and the
x-axis is always the number of env steps.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Protocol

from rich.console import Console

from metarl.files import atomic_write

STDERR = Console(stderr=True)
"""The console for run-time output (metric lines, the progress bar): one instance, so a line printed
while the bar is live goes above it instead of into it (a second Console bypasses rich's redirection)."""


class Writer(Protocol):
    def write(self, step: int, metrics: dict[str, float]) -> None: ...
    def close(self) -> None: ...


class ConsoleWriter:
    """A compact line with the headline metrics, at most every ``interval`` s (always for eval/*)."""

    KEYS = ("train/return", "train/success_rate", "eval/success_rate", "eval/pre_success_rate",
            "meta/policy_loss", "time/steps_per_s")

    def __init__(self, console: Console | None = None, interval: float = 10.0) -> None:
        self.console = console or STDERR
        self.interval = interval
        self._last = -math.inf

    def write(self, step: int, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and not any(k.startswith("eval/") for k in metrics):
            return
        self._last = now
        parts = [f"{k}={metrics[k]:.4g}" for k in self.KEYS if k in metrics]
        if parts:
            self.console.print(f"[bold]step {step:>10,}[/bold]  " + "  ".join(parts), highlight=False, soft_wrap=True)

    def close(self) -> None:
        pass


class CSVWriter:
    """``progress.csv`` in long format (``step,key,value``): new keys never break the header."""

    def __init__(self, path: Path) -> None:
        new = not path.exists()
        self.path = path
        self._f = path.open("a", newline="")
        self._w = csv.writer(self._f)
        if new:  # flushed at once: a run killed before its first row must not leave a file without it
            self._w.writerow(["step", "key", "value"])
            self._f.flush()

    def write(self, step: int, metrics: dict[str, float]) -> None:
        for k in sorted(metrics):
            self._w.writerow([step, k, metrics[k]])
        self._f.flush()

    def rewind(self, step: int) -> None:
        """Drop rows after ``step`` (a resumed run logs the iterations after its checkpoint again)."""
        self._f.close()
        with self.path.open(newline="") as f:
            rows = list(csv.reader(f))
        keep = rows[:1] + [r for r in rows[1:] if r and float(r[0]) <= step]
        if len(keep) < len(rows):
            with atomic_write(self.path, newline="") as f:
                csv.writer(f).writerows(keep)
        self._f = self.path.open("a", newline="")
        self._w = csv.writer(self._f)

    def close(self) -> None:
        self._f.close()


class TensorBoardWriter:
    """TensorBoard event files in ``run_dir/tb``."""

    def __init__(self, path: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = path
        self._w = SummaryWriter(str(path))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self._w.add_scalar(k, v, step)
        self._w.flush()

    def rewind(self, step: int) -> None:
        """Hide what was logged after ``step`` (a resumed run logs those iterations again).

        Event files are append-only: a new writer records a restart at ``step + 1`` (``purge_step``).
        TensorBoard's Python event reader (``EventAccumulator``; ``tensorboard --load_fast=false``)
        drops the older events at or after it; the default fast loader (``tensorboard_data_server``)
        doesn't read the marker, so view a resumed run with ``--load_fast=false``.
        """
        from torch.utils.tensorboard import SummaryWriter

        self._w.close()
        self._w = SummaryWriter(str(self.path), purge_step=step + 1)

    def close(self) -> None:
        self._w.close()


class Logger:
    """Fans metrics out to writers."""

    def __init__(self, writers: list[Writer]) -> None:
        self.writers = writers

    @classmethod
    def for_run(cls, run_dir: Path | None, console: bool = True) -> Logger:
        """Console, plus CSV and TensorBoard when there is a run directory."""
        writers: list[Writer] = [ConsoleWriter()] if console else []
        if run_dir is not None:
            run_dir = Path(run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            writers += [CSVWriter(run_dir / "progress.csv"), TensorBoardWriter(run_dir / "tb")]
        return cls(writers)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write ``metrics`` at env step ``step``. Values must be numbers: NumPy scalars and one-element
        tensors become floats, None becomes NaN (a gap); anything else, text included, is a one-line
        :class:`~metarl.errors.UsageError` naming the key (text in ``progress.csv`` would break plotting,
        and TensorBoard drops it silently)."""
        metrics = {k: _number(k, v) for k, v in metrics.items()}
        for w in self.writers:
            w.write(step, metrics)

    def rewind(self, step: int) -> None:
        """Forget what every writer logged after ``step``: the CSV's rows; TensorBoard's events as its
        Python reader sees them (see :meth:`TensorBoardWriter.rewind`)."""
        for w in self.writers:
            if hasattr(w, "rewind"):
                w.rewind(step)

    def close(self) -> None:
        for w in self.writers:
            w.close()


def _number(key: str, value: object) -> int | float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if value is None:  # undefined this iteration (e.g. a standard error of one task): a gap, not a crash
        return math.nan
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError):
        from metarl.errors import UsageError

        raise UsageError(f"metric {key!r} is a {type(value).__name__} ({str(value)[:40]!r}), not a number: return "
                         "plain floats from meta_update (e.g. loss.item(), not loss)") from None

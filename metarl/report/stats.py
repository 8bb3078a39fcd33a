"""Statistics over training runs, after Agarwal et al. (NeurIPS 2021), "Deep Reinforcement Learning at the
Edge of the Statistical Precipice", and its library rliable, on NumPy and SciPy alone.

Scores are matrices ``[num_runs, num_tasks]``: one row per training run (seed), one column per held-out
task class (ML10's five test classes; one column for ML1 or Driving). The interquartile mean (IQM) is the
mean of the middle half of all ``runs x tasks`` scores (``scipy.stats.trim_mean(..., 0.25)``, as rliable):
robust to one lucky or broken seed, less noisy than the median. Confidence intervals are percentile
intervals of the *stratified* bootstrap: each resample redraws, for every task separately, as many runs
as there are, with replacement; so a resample never trades a hard task's scores for an easy task's, and the
interval holds the spread over training seeds (rliable's ``task_bootstrap=False``).

Every random draw comes from a ``numpy.random.Generator`` the caller passes (:func:`rng_for` makes one per
statistic from the report's seed and the statistic's name): the same scores and seed give the same
intervals, and one group's intervals don't change when another group joins the report.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.stats import trim_mean

REPS = 10_000
"""Bootstrap resamples for aggregate intervals (rliable's default is 50,000; at 10,000 the Monte Carlo
error of a 95% interval's ends is ~0.005 on success rates, below what we print)."""

CONFIDENCE = 0.95


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator for one statistic: from ``seed`` and ``names`` (e.g. the group and the metric), so each
    statistic's draws are fixed by what it is, not by how many statistics were drawn before it."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def as_scores(scores) -> np.ndarray:
    """``scores`` as a float matrix ``[runs, tasks]`` (a vector is one task)."""
    x = np.asarray(scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"scores must be a non-empty [runs, tasks] matrix, got shape {x.shape}")
    return x


def iqm(scores) -> float:
    """Interquartile mean over all runs and tasks: the 25% trimmed mean of the flattened scores, as
    rliable's ``aggregate_iqm`` computes it (``scipy.stats.trim_mean``): ``int(n / 4)`` whole scores are cut
    from each end, none in part, so 2 or 3 scores give their plain mean and 5 their middle 3 (an IQM that
    cut n / 4 = 1.25 with fractional weights would count the 2nd and 4th at 0.75 and differ slightly)."""
    return float(trim_mean(as_scores(scores), 0.25, axis=None))


def mean(scores) -> float:
    """Mean over runs and tasks (tasks weighted equally: every task has every run)."""
    return float(as_scores(scores).mean())


STATISTICS = {"iqm": lambda x: trim_mean(x.reshape(len(x), -1), 0.25, axis=1),
              "mean": lambda x: x.reshape(len(x), -1).mean(axis=1)}
"""Statistic name -> its function over a stack of resampled matrices ``[reps, runs, tasks]`` -> ``[reps]``."""


def stratified_resamples(scores, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``[reps, runs, tasks]``: each resample draws, for every task (column) on its own, ``runs`` of that
    task's scores with replacement."""
    x = as_scores(scores)
    runs, tasks = x.shape
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    return x[idx, np.arange(tasks)]


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap ``samples`` (percentile method)."""
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_ci(scores, statistic: str, rng: np.random.Generator, reps: int = REPS,
                 confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Stratified bootstrap interval of ``statistic`` (``"iqm"`` or ``"mean"``) over runs; None with one
    run (nothing to resample: an interval of zero width would claim a certainty one seed can't give)."""
    x = as_scores(scores)
    if len(x) < 2:
        return None
    return percentile_interval(STATISTICS[statistic](stratified_resamples(x, reps, rng)), confidence)


TIE_DECIMALS = 9
"""Scores are compared (with each other, with thresholds) rounded to this many decimals: success rates
are fractions of trials, and the same fraction computed two ways (28/30 as a mean of per-goal rates, or
directly) can differ in the last bit (0.9333333333333333 vs ...332), which must be a tie, not a win."""


def comparable_scores(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to :data:`TIE_DECIMALS`, for comparisons: equal fractions compare equal."""
    return np.round(x, TIE_DECIMALS)


def probability_of_improvement(x, y) -> float:
    """P(X > Y): for each task, the chance that a run of X scores above a run of Y (ties count half: the
    Mann-Whitney U statistic over ``runs_x * runs_y`` pairs), averaged over tasks. X and Y need the same
    tasks, not the same number of runs. Scores equal to :data:`TIE_DECIMALS` decimals tie."""
    return float(_poi(as_scores(x)[None], as_scores(y)[None])[0])


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`probability_of_improvement` over stacks ``[reps, runs_x, tasks]``, ``[reps, runs_y, tasks]``."""
    if x.shape[2] != y.shape[2]:
        raise ValueError(f"X and Y must score the same tasks, got {x.shape[2]} and {y.shape[2]} columns")
    a, b = comparable_scores(x)[:, :, None, :], comparable_scores(y)[:, None, :, :]  # [reps, rx, ry, tasks]
    wins = (a > b).mean(axis=(1, 2)) + 0.5 * (a == b).mean(axis=(1, 2))  # [reps, tasks]
    return wins.mean(axis=1)


def probability_of_improvement_ci(x, y, rng: np.random.Generator, reps: int = REPS,
                                  confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Interval of P(X > Y) with X's and Y's runs resampled independently, each stratified by task
    (rliable's ``StratifiedIndependentBootstrap``); None unless both have two runs or more."""
    x, y = as_scores(x), as_scores(y)
    if min(len(x), len(y)) < 2:
        return None
    samples = _poi(stratified_resamples(x, reps, rng), stratified_resamples(y, reps, rng))
    return percentile_interval(samples, confidence)


TAUS = np.linspace(0.0, 1.0, 101)
"""Success thresholds of a performance profile."""


def performance_profile(scores, taus=TAUS) -> np.ndarray:
    """Fraction of ``runs x tasks`` scores above each threshold (rliable's score distribution; a score
    equal to a threshold to :data:`TIE_DECIMALS` decimals is not above it)."""
    x = comparable_scores(as_scores(scores).ravel())
    return (x[None, :] > comparable_scores(np.asarray(taus, dtype=float))[:, None]).mean(axis=1)


def performance_profile_ci(scores, rng: np.random.Generator, taus=TAUS, reps: int = 2_000,
                           confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise stratified bootstrap band of :func:`performance_profile` (lower, upper); None with one
    run."""
    x = as_scores(scores)
    if len(x) < 2:
        return None
    flat = np.sort(comparable_scores(stratified_resamples(x, reps, rng).reshape(reps, -1)), axis=1)
    n, taus = flat.shape[1], comparable_scores(np.asarray(taus, dtype=float))  # flat: [reps, runs * tasks]
    above = np.stack([n - np.searchsorted(row, taus, side="right") for row in flat]) / n  # [reps, taus]
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(above, [tail, 100 - tail], axis=0)
    return lo, hi


def curve_band(values, rng: np.random.Generator, reps: int = 2_000,
               confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """IQM over runs at each point of ``values`` ``[runs, points]`` (runs' learning curves on a shared
    x-grid), with a bootstrap band over runs (one draw of runs serves every point, so the band follows
    whole curves); the band is None with one run."""
    v = np.asarray(values, dtype=float)
    centre = trim_mean(v, 0.25, axis=0)
    if len(v) < 2:
        return centre, None, None
    idx = rng.integers(0, len(v), size=(reps, len(v)))
    boot = trim_mean(v[idx], 0.25, axis=1)  # [reps, points]
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail], axis=0)
    return centre, lo, hi

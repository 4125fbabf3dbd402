"""Bootstrap intervals: one resampler (`bootstrap`) for every interval the study reports.

A draw resamples the members of each stratum (identities, enrolled pets, strangers, pairs) with
replacement and hands the statistic how often each member was drawn; the statistic weights or repeats
its items by those counts. Not measurable in a draw (NaN) means left out of that figure's interval.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np



def bootstrap(stat: Callable[..., Sequence[float]], sizes: Sequence[int], n: int, seed) -> np.ndarray:
    """(n, n_stats) statistics of n draws; each draw passes one count array per stratum of `sizes`
    (member i drawn counts[i] times). `seed` may be a numpy Generator, whose stream it continues."""
    rng = np.random.default_rng(seed)
    rows = [stat(*[np.bincount(rng.integers(0, m, m), minlength=m) for m in sizes]) for _ in range(n)]
    return np.array(rows, dtype=np.float64).reshape(n, -1)


def interval(draws: np.ndarray, level: float = 0.95) -> np.ndarray:
    """(2, n_stats) percentile interval of bootstrap draws, NaN for a statistic never measurable."""
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = np.full((2, draws.shape[1]), np.nan)
    for c in range(draws.shape[1]):
        v = draws[:, c][~np.isnan(draws[:, c])]
        if len(v):
            out[:, c] = [np.percentile(v, lo), np.percentile(v, hi)]
    return out


def repeat_by(counts: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Indices of items repeated as often as their group was drawn."""
    return np.repeat(np.arange(len(group)), counts[group])

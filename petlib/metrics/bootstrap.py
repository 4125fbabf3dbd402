"""Bootstrap intervals: one resampler (`bootstrap`) for every interval the study reports.

A draw resamples the members of each stratum (identities, enrolled pets, strangers, pairs) with
replacement and hands the statistic how often each member was drawn; the statistic weights or repeats
its items by those counts. Not measurable in a draw (NaN) means left out of that figure's interval.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..constants import far_key
from .open_set import dir_at_far
from .retrieval import Queries
from .verification import pair_ranking


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


INTERVAL_KEYS = ("recall@1", "mrr", "roc_auc", "eer", f"tar@far={far_key(1e-3)}", f"dir@far={far_key(1e-2)}")


def headline_intervals(q: Queries, scores: np.ndarray, pairs: np.ndarray, labels: np.ndarray,
                       open_scores: dict | None = None, n: int = 200, seed: int = 42, level: float = 0.95) -> dict:
    """95% intervals of the figures whose spec says `identities` (metrics.json `ci95`), resampling test
    identities. Retrieval: queries weighted by their identity's count. Pairs: each belongs to the
    identity of its first image. Open set: mated and non-mated probes by their identity."""
    labels = np.asarray(labels)
    uniq = np.unique(labels)
    group = lambda lab: np.searchsorted(uniq, lab)
    qg, pg, y = group(q.label), group(labels[pairs[:, 0]]), pairs[:, 2].astype(bool)
    og = {k: group(v["label"]) for k, v in open_scores.items()} if open_scores is not None else None

    def stat(c: np.ndarray) -> list[float]:
        out = [math.nan] * len(INTERVAL_KEYS)
        wq = c[qg]
        if wq.sum():
            out[0], out[1] = float((q.hit1 * wq).sum() / wq.sum()), float((q.rr * wq).sum() / wq.sum())
        rep = repeat_by(c, pg)
        if y[rep].any() and (~y[rep]).any():
            m = pair_ranking(scores[rep], y[rep], fars=(1e-3,))
            out[2:5] = m["roc_auc"], m["eer"], m[INTERVAL_KEYS[4]]
        if og is not None:
            mi, ni = repeat_by(c, og["mated"]), repeat_by(c, og["nonmated"])
            mated, nonmated = open_scores["mated"], open_scores["nonmated"]
            out[5] = dir_at_far(mated["score"][mi], mated["correct"][mi], nonmated["score"][ni], 1e-2)
        return out

    ci = interval(bootstrap(stat, [len(uniq)], n, seed), level)
    return {k: ci[:, i].tolist() for i, k in enumerate(INTERVAL_KEYS)}

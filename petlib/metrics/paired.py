"""Paired comparison of two models measured on one test set: the same identity draws for both, their
training repeats (seeds) resampled too, and Holm's step-down over the rows of a block.

Each draw resamples the test identities (and the degraded images) once and applies the draw to both
models, so what the two share (hard pets, easy pets) cancels in the difference; where a model has
training repeats, each draw also resamples its repeats with replacement and takes their mean, so the
interval counts training variance as well as the test set's. A row's two-sided p-value compares
the observed difference with the bootstrap standard error of the draws (Student's t with the test
identities less one degrees of freedom); rows are taken in order of p and row i of m (from 0) is called
different when its interval at level 1 - alpha / (m - i) excludes zero and every row before it was
called (Holm 1979), which bounds the chance of any false call in a block by alpha. (The percentile
bootstrap's tails, 1 - alpha / m of 200 draws, were measured to call too often: benchmarks/error_rates.py.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .bootstrap import interval
from .resample import CLUSTER_DRAWS, figures, n_images


@dataclass
class RowTest:
    name: str
    difference: float  # observed: mean over A's repeats minus mean over B's
    ci95: list[float]  # unadjusted 95% interval of the difference
    adjusted_ci: list[float]  # at Holm's level for this row's rank
    level: float
    p: float
    called: bool


def _over_repeats(per: dict[int, dict], picks, name: str) -> float:
    """The mean of a figure over the picked repeats that measure it (triplets and robustness are measured
    on repeat 0 only: then repeat 0's value)."""
    have = [per[r][name] for r in picks if name in per[r]]
    return float(np.mean(have)) if have else per[0].get(name, math.nan)


def model_values(samples: list[dict]) -> dict[str, float]:
    """A model's figures: the mean over its training repeats of each full-sample figure."""
    per = {r: figures(s, np.ones(len(s["uniq"]), np.int64)) for r, s in enumerate(samples)}
    return {k: _over_repeats(per, range(len(samples)), k) for k in per[0]}


def paired_draws(samples_a: list[dict], samples_b: list[dict], names: list[str], n: int, seed,
                 cluster_draws: int = CLUSTER_DRAWS) -> np.ndarray:
    """(n, len(names)) differences A - B over paired draws (identities, images; repeats of each model);
    clustering rows in the first `cluster_draws` draws only."""
    rng = np.random.default_rng(seed)
    n_id, n_img = len(samples_a[0]["uniq"]), n_images(samples_a[0])
    out = np.full((n, len(names)), np.nan)
    clusters = any(k.startswith("clustering.") for k in names)
    for b in range(n):
        clusters_now = clusters and b < cluster_draws
        counts = np.bincount(rng.integers(0, n_id, n_id), minlength=n_id)
        img = np.bincount(rng.integers(0, n_img, n_img), minlength=n_img) if n_img else None
        sides = []
        for samples in (samples_a, samples_b):
            picks = rng.integers(0, len(samples), len(samples))
            f = {r: figures(samples[r], counts, img, clusters_now) for r in {0, *picks.tolist()}}
            sides.append([_over_repeats(f, picks, k) for k in names])
        out[b] = np.array(sides[0]) - np.array(sides[1])
    return out


def _reference(method: str, df: int | None):
    """The distribution of difference / bootstrap standard error: Student's t with the test identities
    less one degrees of freedom (`student`, the rule's), or the normal (`normal`)."""
    from scipy.stats import norm, t

    return t(df) if method == "student" and df else norm


def p_value(d: np.ndarray, observed: float, method: str = "student", df: int | None = None) -> float:
    """Two-sided p-value of a difference from its bootstrap draws: from the bootstrap standard error
    (`student`, `normal`: observed / sd against `_reference`), or from the share of draws on either side
    of zero (`percentile`)."""
    d = d[~np.isnan(d)]
    if len(d) < 2 or math.isnan(observed):
        return math.nan
    if method == "percentile":
        return float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))
    sd = float(d.std(ddof=1))
    return 1.0 if sd == 0 else float(2 * _reference(method, df).sf(abs(observed) / sd))


def _interval(d: np.ndarray, observed: float, level: float, method: str, df: int | None) -> list[float]:
    d = d[~np.isnan(d)]
    if len(d) < 2 or math.isnan(observed):
        return [math.nan, math.nan]
    if method == "percentile":
        return interval(d[:, None], level)[:, 0].tolist()
    half = float(_reference(method, df).ppf(0.5 + level / 2)) * float(d.std(ddof=1))
    return [observed - half, observed + half]


def holm(names: list[str], observed: dict[str, float], draws: np.ndarray, alpha: float = 0.05,
         method: str = "student", df: int | None = None) -> list[RowTest]:
    """Holm's step-down over the rows (see the module docstring); rows without a measurable draw are
    never called but count in m. `df`: the test identities less one (for `student`)."""
    p = [p_value(draws[:, i], observed[names[i]], method, df) for i in range(len(names))]
    order = sorted(range(len(names)), key=lambda i: (math.isnan(p[i]), p[i]))
    m, still = len(names), True
    tests = {}
    for rank, i in enumerate(order):
        level = 1 - alpha / (m - rank)
        obs = observed[names[i]]
        adj = _interval(draws[:, i], obs, level, method, df)
        excludes = not math.isnan(adj[0]) and (adj[0] > 0 or adj[1] < 0)
        still = still and excludes
        tests[i] = RowTest(names[i], obs, _interval(draws[:, i], obs, 0.95, method, df), adj, level, p[i], still)
    return [tests[i] for i in range(len(names))]


def compare_models(samples_a: list[dict], samples_b: list[dict], names: list[str], n: int = 200, seed: int = 0,
                   alpha: float = 0.05, methods: tuple[str, ...] = ("student",)) -> dict[str, list[RowTest]]:
    """Every row of `names` tested A against B (see the module docstring), by each method on the same draws."""
    draws = paired_draws(samples_a, samples_b, names, n, seed)
    va, vb = model_values(samples_a), model_values(samples_b)
    observed = {k: va.get(k, math.nan) - vb.get(k, math.nan) for k in names}
    df = len(samples_a[0]["uniq"]) - 1
    return {m: holm(names, observed, draws, alpha, m, df) for m in methods}


def latency_draws(times_a: np.ndarray, times_b: np.ndarray, n: int, seed) -> np.ndarray:
    """(n,) differences of median latency A - B (ms), resampling the interleaved rounds (paired: round k
    of A and of B ran side by side)."""
    rng = np.random.default_rng(seed)
    k = min(len(times_a), len(times_b))
    idx = rng.integers(0, k, (n, k))
    return (np.median(times_a[:k][idx], axis=1) - np.median(times_b[:k][idx], axis=1)) * 1000

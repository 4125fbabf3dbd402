"""Paired comparison of two models measured on one test set: the same identity draws for both, and
Holm's step-down over the rows of a block.

Each draw resamples the test identities once and applies the draw to both models (each model's figure
is the mean over its training repeats), so what the two share (hard pets, easy pets) cancels in the
difference. Training variance is a random-effects term, not a resample of 2-3 seeds (which undercounts
it by (S - 1)/S): where both models have at least two repeats, the difference's variance is the draws'
plus s_A^2/S_A + s_B^2/S_B (s: the sample sd of the figure across a model's repeats), and the row is a
comparison of the two recipes; where either has one, the row compares the trained models and says so
(`recipe_level`). A row's two-sided p-value compares the observed difference with that standard error,
by Student's t with the test identities less one degrees of freedom, or, for a recipe row, with
Satterthwaite's (s^2/S rests on S - 1 of them, so three seeds widen the interval more than their variance
alone says). Rows are taken in order of p and row i of m (from 0) is called different when its interval
at level 1 - alpha / (m - i) excludes zero and every row before it was called (Holm 1979), which bounds
the chance of any false call in a block by alpha. (The percentile bootstrap's tails need thousands of
draws at Holm's first levels: at B = 2,000 they call about as often as this rule, at 200 they called 9%
of blocks; benchmarks/error_rates.py.)
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .bootstrap import interval
from .resample import CLUSTER_DRAWS, clustered_identities, figures, widen_clustering


@dataclass
class RowTest:
    name: str
    difference: float  # observed: mean over A's repeats minus mean over B's
    ci95: list[float]  # unadjusted 95% interval of the difference
    adjusted_ci: list[float]  # at Holm's level for this row's rank
    level: float
    p: float
    called: bool
    excludes: bool = False  # its own adjusted interval excludes 0 (not called only if the step-down stopped first)
    mde: float = math.nan  # the smallest true difference this row calls with 80% power at its level


def minimum_detectable(d: np.ndarray, level: float, method: str = "student", df: int | None = None,
                       extra: float = 0.0, power: float = 0.8) -> float:
    """(quantile of the two-sided level + z of the power) x the difference's standard error: below this
    size a real difference is missed more often than 1 - power, so "not called" is not "no difference"."""
    from scipy.stats import norm

    d = d[~np.isnan(d)]
    if len(d) < 2:
        return math.nan
    se = math.sqrt(float(d.var(ddof=1)) + (0.0 if math.isnan(extra) else extra))
    ref = _reference("normal" if method == "percentile" else method, df)
    return float((ref.ppf(0.5 + level / 2) + norm.ppf(power)) * se)


def _over_repeats(per: dict[int, dict], name: str) -> float:
    """The mean of a figure over the repeats that measure it."""
    have = [v[name] for v in per.values() if name in v and not math.isnan(v[name])]
    return float(np.mean(have)) if have else math.nan


def _clusters(names: list[str]) -> bool:
    return any(k.startswith("clustering.") for k in names)


def model_values(samples: list[dict], clusters: bool = True) -> dict[str, float]:
    """A model's figures: the mean over its training repeats of each full-sample figure (clustering, the
    slow one, only with `clusters`)."""
    per = {r: figures(s, np.ones(len(s["uniq"]), np.int64), clusters) for r, s in enumerate(samples)}
    return {k: _over_repeats(per, k) for k in per[0]}


def recipe_level(samples_a: list[dict], samples_b: list[dict]) -> bool:
    """Whether a row compares two recipes (each side trained at least twice) or two trained models."""
    return len(samples_a) >= 2 and len(samples_b) >= 2


def seed_terms(samples: list[dict], names: list[str]) -> dict[str, tuple[float, int]]:
    """(s^2 / S, S - 1) per figure: the variance of the mean over the S repeats that measure it, and the
    degrees of freedom it rests on (NaN, 0 with one repeat)."""
    per = [figures(s, np.ones(len(s["uniq"]), np.int64), _clusters(names)) for s in samples]
    out = {}
    for k in names:
        v = np.array([f.get(k, math.nan) for f in per], float)
        v = v[~np.isnan(v)]
        out[k] = (float(v.var(ddof=1) / len(v)), len(v) - 1) if len(v) > 1 else (math.nan, 0)
    return out


def paired_draws(samples_a: list[dict], samples_b: list[dict], names: list[str], n: int, seed,
                 cluster_draws: int = CLUSTER_DRAWS) -> np.ndarray:
    """(n, len(names)) differences A - B over paired identity draws, each side the mean over its repeats;
    clustering rows in the first `cluster_draws` draws only, widened by `resample.subsample_scale`."""
    rng = np.random.default_rng(seed)
    n_id = len(samples_a[0]["uniq"])
    out = np.full((n, len(names)), np.nan)
    clusters = _clusters(names)
    for b in range(n):
        counts = np.bincount(rng.integers(0, n_id, n_id), minlength=n_id)
        sides = []
        for samples in (samples_a, samples_b):
            f = {r: figures(s, counts, clusters and b < cluster_draws) for r, s in enumerate(samples)}
            sides.append([_over_repeats(f, k) for k in names])
        out[b] = np.array(sides[0]) - np.array(sides[1])
    return widen_clustering(out, names, clustered_identities(samples_a[0]))


@functools.lru_cache(maxsize=256)
def _reference(method: str, df: float | None):
    """The distribution of difference / standard error: Student's t with `df` degrees of freedom
    (`student`, the rule's), or the normal (`normal`); cached, as freezing one costs a millisecond."""
    from scipy.stats import norm, t

    return t(df) if method == "student" and df and math.isfinite(df) else norm


def satterthwaite(parts: list[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of variance estimates, each (variance, its df)."""
    parts = [(v, d) for v, d in parts if v > 0 and d > 0 and not math.isnan(v)]
    denom = sum(v * v / d for v, d in parts)
    return sum(v for v, _ in parts) ** 2 / denom if denom else math.inf


def row_df(draws: np.ndarray, names: list[str], df: int | None, terms: dict[str, list[tuple[float, float]]]) -> dict:
    """Each row's degrees of freedom: the draws' variance (on `df`, the test identities less one) plus its
    seed terms (`training_terms`), by `satterthwaite`; `df` unchanged for a row without seed terms."""
    out = {}
    for i, k in enumerate(names):
        d = draws[:, i][~np.isnan(draws[:, i])]
        seeds = [p for p in terms.get(k, []) if p[0] > 0]
        out[k] = satterthwaite([(float(d.var(ddof=1)), df or math.inf)] + seeds) if seeds and len(d) > 1 else df
    return out


def _widened(d: np.ndarray, extra: float) -> np.ndarray:
    """Draws whose spread also holds `extra` variance (the seeds'), for the percentile rule."""
    sd = float(d.std(ddof=1))
    if not extra or math.isnan(extra) or sd == 0:
        return d
    return d.mean() + (d - d.mean()) * math.sqrt((sd ** 2 + extra) / sd ** 2)


def p_value(d: np.ndarray, observed: float, method: str = "student", df: int | None = None, extra: float = 0.0) -> float:
    """Two-sided p-value of a difference from its bootstrap draws: from the standard error (the draws'
    sd with `extra` variance added; `student`, `normal`: observed / se against `_reference`), or from the
    share of draws on either side of zero (`percentile`)."""
    d = d[~np.isnan(d)]
    if len(d) < 2 or math.isnan(observed):
        return math.nan
    if method == "percentile":
        d = _widened(d, extra)
        return float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))
    se = math.sqrt(float(d.var(ddof=1)) + (0.0 if math.isnan(extra) else extra))
    return 1.0 if se == 0 else float(2 * _reference(method, df).sf(abs(observed) / se))


def _interval(d: np.ndarray, observed: float, level: float, method: str, df: int | None,
              extra: float = 0.0) -> list[float]:
    d = d[~np.isnan(d)]
    if len(d) < 2 or math.isnan(observed):
        return [math.nan, math.nan]
    if method == "percentile":
        return interval(_widened(d, extra)[:, None], level)[:, 0].tolist()
    se = math.sqrt(float(d.var(ddof=1)) + (0.0 if math.isnan(extra) else extra))
    half = float(_reference(method, df).ppf(0.5 + level / 2)) * se
    return [observed - half, observed + half]


def holm(names: list[str], observed: dict[str, float], draws: np.ndarray, alpha: float = 0.05,
         method: str = "student", df: int | dict | None = None, extra: dict[str, float] | None = None) -> list[RowTest]:
    """Holm's step-down over the rows (see the module docstring); rows without a measurable draw are
    never called but count in m. `df` (for `student`): the test identities less one, or each row's
    (`row_df`); `extra`: each row's training-variance term (recipe-level rows)."""
    extra = extra or {}
    dfs = df if isinstance(df, dict) else {k: df for k in names}
    p = [p_value(draws[:, i], observed[k], method, dfs[k], extra.get(k, 0.0)) for i, k in enumerate(names)]
    order = sorted(range(len(names)), key=lambda i: (math.isnan(p[i]), p[i]))
    m, still = len(names), True
    tests = {}
    for rank, i in enumerate(order):
        level = 1 - alpha / (m - rank)
        obs = observed[names[i]]
        e = extra.get(names[i], 0.0)
        d = dfs[names[i]]
        adj = _interval(draws[:, i], obs, level, method, d, e)
        excludes = not math.isnan(adj[0]) and (adj[0] > 0 or adj[1] < 0)
        still = still and excludes
        tests[i] = RowTest(names[i], obs, _interval(draws[:, i], obs, 0.95, method, d, e), adj, level, p[i], still,
                           excludes, minimum_detectable(draws[:, i], level, method, d, e))
    return [tests[i] for i in range(len(names))]


def compare_models(samples_a: list[dict], samples_b: list[dict], names: list[str], n: int = 200, seed: int = 0,
                   alpha: float = 0.05, methods: tuple[str, ...] = ("student",),
                   cluster_draws: int = CLUSTER_DRAWS) -> dict[str, list[RowTest]]:
    """Every row of `names` tested A against B (see the module docstring), by each method on the same draws."""
    draws = paired_draws(samples_a, samples_b, names, n, seed, cluster_draws)
    va, vb = (model_values(s, _clusters(names)) for s in (samples_a, samples_b))
    observed = {k: va.get(k, math.nan) - vb.get(k, math.nan) for k in names}
    extra, dfs = seed_adjustment(samples_a, samples_b, draws, names, len(samples_a[0]["uniq"]) - 1)
    return {m: holm(names, observed, draws, alpha, m, dfs, extra) for m in methods}


def training_terms(samples_a: list[dict], samples_b: list[dict], names: list[str]) -> dict[str, list[tuple[float, float]]]:
    """Each row's seed terms [(s_A^2/S_A, S_A - 1), (s_B^2/S_B, S_B - 1)] when the rows are recipe-level, else []."""
    if not recipe_level(samples_a, samples_b):
        return {k: [] for k in names}
    ta, tb = seed_terms(samples_a, names), seed_terms(samples_b, names)
    return {k: [t for t in (ta[k], tb[k]) if not math.isnan(t[0])] for k in names}


def seed_adjustment(samples_a: list[dict], samples_b: list[dict], draws: np.ndarray, names: list[str],
                    df: int | None) -> tuple[dict[str, float], dict]:
    """What `holm` takes as `extra` and `df`: each row's training-variance term s_A^2/S_A + s_B^2/S_B (0 for
    rows of trained models) and its degrees of freedom (`row_df`, from the draws' `df`)."""
    terms = training_terms(samples_a, samples_b, names)
    return {k: sum(v for v, _ in terms[k]) for k in names}, row_df(draws, names, df, terms)


def latency_draws(times_a: np.ndarray, times_b: np.ndarray, n: int, seed) -> np.ndarray:
    """(n,) differences of median latency A - B (ms), resampling the interleaved rounds (paired: round k
    of A and of B ran side by side)."""
    rng = np.random.default_rng(seed)
    k = min(len(times_a), len(times_b))
    idx = rng.integers(0, k, (n, k))
    return (np.median(times_a[:k][idx], axis=1) - np.median(times_b[:k][idx], axis=1)) * 1000

"""The comparison rule's coverage and false calls, measured on a null that looks like the data (issue 33):
`benchmarks/error_rates.py` prints the tables, `tests/test_paired.py` keeps a fast version.

A simulated study has two recipes A and B drawn from one distribution. A test set has `n_ids` identities
of 3-22 images each (design §3.2), in look-alike families (as breeds: an impostor pair within a family
scores high, so a pair's score depends on both its identities). An image's embedding is its identity's
centre plus noise, and part of that noise (`shared`) is the image's own, the same for every model: hard
images are hard for both, so their per-query errors correlate as real models' do (the share is matched to
the demo's two cat models, `hit_correlation`). Each training seed scales its model's noise by
exp(`seed_sd` x N(0, 1)), so trained models differ by more than their test set. Degraded images move an
embedding by noise of their identity's fragility, again partly shared. Every row of 04_compare's block
that identity draws resample is tested by `paired.compare_models`, exactly as the study does.

What a row's interval must cover: for recipes (both sides trained at least twice) the recipes' true
difference, zero here; for trained models (a side trained once) the difference the very models would
show on a fresh test set of this size, `truth` (from `n_truth` fresh test sets per seed scale).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import DEGRADATIONS
from . import paired
from .pairs import sample_pairs
from .resample import build_sample, figures
from .spec import compared
from .triplets import triplet_items

# how far each degradation moves an embedding, relative to the image noise (any spread of sizes will do)
_DEGRADE = dict(zip(DEGRADATIONS, (0.5, 0.7, 0.35, 0.25, 0.9)))


@dataclass(frozen=True)
class Null:
    n_ids: int = 80  # test identities (the demo's cat test split)
    sizes: tuple[int, int] = (3, 22)  # images per identity, uniform in this range
    dim: int = 32
    # as the demo's cat models (2026-12-03): Recall@1 0.08-0.23, its sd over mnv3's 3 seeds 0.027, the
    # two models' hits correlating 0.06-0.17 over the same queries
    noise: float = 2.0  # image noise: Recall@1 about 0.16 on these test sets
    shared: float = 0.2  # share of an image's noise variance every model has (hard images)
    seed_sd: float = 0.04  # sd of log noise between training seeds: Recall@1's sd over seeds about 0.03
    seeds_a: int = 3
    seeds_b: int = 3
    n_pairs: int = 2500
    n_triplets: int = 2000
    n_degraded: int = 200
    effect: float = 1.0  # B's noise over A's: 1 is the null; above 1, B is worse (for power)
    family: int = 4  # identities per look-alike family (breeds: impostors within one look alike)
    family_share: float = 0.5  # share of an identity centre's variance its family has in common


@dataclass
class TestSet:
    labels: np.ndarray
    centres: np.ndarray
    hard: np.ndarray  # the image noise every model shares
    fragility: np.ndarray  # per identity: how far degradations move its images
    degraded: np.ndarray  # indices of the degraded images
    hard_degrade: np.ndarray  # the degradation noise every model shares


def draw_test_set(null: Null, rng) -> TestSet:
    sizes = rng.integers(null.sizes[0], null.sizes[1] + 1, null.n_ids)
    labels = np.repeat(np.arange(null.n_ids), sizes)
    n = len(labels)
    families = rng.normal(size=(-(-null.n_ids // null.family), null.dim))[np.arange(null.n_ids) // null.family]
    centres = np.sqrt(null.family_share) * families + np.sqrt(1 - null.family_share) * rng.normal(size=families.shape)
    return TestSet(labels, centres, rng.normal(size=(n, null.dim)),
                   np.exp(0.3 * rng.normal(size=null.n_ids)), np.sort(rng.choice(n, min(n, null.n_degraded), False)),
                   rng.normal(size=(len(DEGRADATIONS), min(n, null.n_degraded), null.dim)))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def model_sample(ts: TestSet, null: Null, scale: float, rng, pairs: np.ndarray, triplet_seed: int = 42) -> dict:
    """One trained model's resample data on a test set: noise `scale` x null.noise, its own share fresh."""
    a, b = np.sqrt(null.shared), np.sqrt(1 - null.shared)
    raw = ts.centres[ts.labels] + null.noise * scale * (a * ts.hard + b * rng.normal(size=ts.hard.shape))
    emb = _unit(raw)
    frag = ts.fragility[ts.labels[ts.degraded]][:, None]
    drops = {}
    for k, (name, size) in enumerate(_DEGRADE.items()):
        move = a * ts.hard_degrade[k] + b * rng.normal(size=ts.hard_degrade[k].shape)
        deg = _unit(raw[ts.degraded] + null.noise * size * frag * move)
        drops[name] = 1.0 - (emb[ts.degraded] * deg).sum(1)
    tri = triplet_items(emb, ts.labels, null.n_triplets, triplet_seed)
    return build_sample(emb, ts.labels, pairs, 0.5, triplet_seed, tri, drops,
                        robustness_labels=ts.labels[ts.degraded])


def row_names(sample: dict, clusters: bool) -> list[str]:
    """04_compare's resampled rows (`spec.compared`) that this sample measures."""
    have = figures(sample, np.ones(len(sample["uniq"]), np.int64), clusters)
    return [s.name for s in compared() if s.name in have]


def truth_curve(null: Null, names: list[str], scales: np.ndarray, n_truth: int, seed: int,
                clusters: bool) -> np.ndarray:
    """(len(scales), len(names)): each figure's mean over `n_truth` fresh test sets, per noise scale; a
    quadratic in log scale through them (what `truth` reads) smooths the Monte Carlo error."""
    rng = np.random.default_rng(seed)
    vals = np.zeros((len(scales), len(names)))
    for _ in range(n_truth):
        ts = draw_test_set(null, rng)
        pairs = sample_pairs(ts.labels, null.n_pairs, seed=42)
        for i, s in enumerate(scales):
            f = figures(model_sample(ts, null, s, rng, pairs), np.ones(null.n_ids, np.int64), clusters)
            vals[i] += [f[k] for k in names]
    return vals / n_truth


def truth(curve_scales: np.ndarray, curve: np.ndarray, scales_a, scales_b) -> np.ndarray:
    """Mean over A's trained models minus B's of the figure expected on a fresh test set."""
    x = np.log(curve_scales)
    fits = [np.polyfit(x, curve[:, j], 2) for j in range(curve.shape[1])]
    at = lambda s: np.array([[np.polyval(f, np.log(v)) for f in fits] for v in s]).mean(0)  # noqa: E731
    return at(scales_a) - at(scales_b)


def simulate_once(null: Null, i: int, n_boot: int, methods: tuple[str, ...], clusters: bool, cluster_draws: int,
                  seed: int = 0) -> dict:
    """One simulated comparison: the scales of each side's seeds and, per method, each row's RowTest."""
    rng = np.random.default_rng([seed, i])
    ts = draw_test_set(null, rng)
    pairs = sample_pairs(ts.labels, null.n_pairs, seed=42)
    scales = {side: np.exp(null.seed_sd * rng.normal(size=n)) for side, n in (("a", null.seeds_a), ("b", null.seeds_b))}
    worse = {"a": 1.0, "b": null.effect}
    samples = {side: [model_sample(ts, null, s * worse[side], rng, pairs) for s in sc] for side, sc in scales.items()}
    names = row_names(samples["a"][0], clusters)
    tests = paired.compare_models(samples["a"], samples["b"], names, n_boot, [seed, i, 1], methods=methods,
                                  cluster_draws=cluster_draws if clusters else 0)
    return {"names": names, "scales": scales, "tests": tests}


def summarise(runs: list[dict], target: np.ndarray | None) -> dict:
    """Per method: each row's 95% coverage of its target (zero for recipes; `target`, (sims, rows), for
    trained models) over the simulations where it has an interval, and the share of blocks with a false
    call (a call where the target is 0, or one against the target's sign), each with its Wilson 95%
    interval."""
    names = runs[0]["names"]
    out = {}
    for m in runs[0]["tests"]:
        hit = np.zeros((len(runs), len(names)), bool)
        measured = np.zeros((len(runs), len(names)), bool)  # a row without an interval is not measurable there
        false = np.zeros(len(runs), bool)
        for s, r in enumerate(runs):
            t = np.zeros(len(names)) if target is None else target[s]
            for j, row in enumerate(r["tests"][m]):
                lo, hi = row.ci95
                measured[s, j] = np.isfinite(lo) and np.isfinite(hi) and np.isfinite(t[j])
                hit[s, j] = lo <= t[j] <= hi
                false[s] |= row.called and (t[j] == 0 or np.sign(row.difference) != np.sign(t[j]))
        out[m] = {"sims": len(runs), "false_blocks": wilson(int(false.sum()), len(runs)),
                  "coverage": {k: wilson(int(hit[:, j].sum()), int(measured[:, j].sum()))
                               for j, k in enumerate(names) if measured[:, j].any()}}
    return out


def wilson(k: int, n: int, z: float = 1.959964) -> dict:
    """A share with its Wilson score 95% interval."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"k": k, "n": n, "rate": p, "low": float(max(0.0, centre - half)), "high": float(min(1.0, centre + half))}


def hit_correlation(a: dict, b: dict) -> float:
    """The correlation of two models' Recall@1 hits over the same queries (their resample data): how much
    their errors fall on the same images."""
    x, y = np.asarray(a["q_hit1"], float), np.asarray(b["q_hit1"], float)
    return float(np.corrcoef(x, y)[0, 1]) if x.std() and y.std() else float("nan")


def simulated_hit_correlation(null: Null, n: int = 5, seed: int = 0) -> float:
    """`hit_correlation` of two models of the null on `n` test sets (to match `shared` to real models)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ts = draw_test_set(null, rng)
        pairs = sample_pairs(ts.labels, 200, seed=42)
        out.append(hit_correlation(*(model_sample(ts, null, 1.0, rng, pairs) for _ in range(2))))
    return float(np.mean(out))

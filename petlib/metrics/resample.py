"""What an evaluation keeps so that its figures can be recomputed on resampled test identities: per-item
values (queries, pairs, probes, triplets, degraded images) with the identity each item belongs to.

`build_sample` makes it from one embedding of the test split; `figures(sample, counts)` recomputes the
figures with identity g drawn `counts[g]` times (an item counts as often as its identity), so that the
interval of every figure (`intervals`) and the paired difference of two models on the same draws
(`petlib.metrics.paired`) come from one code path. Clustering is recomputed on the identities a draw
holds, each once (k-means on duplicated points is not a clustering of more pets): a draw is then a
subsample of about 63% of the identities, whose spread is sqrt(1/m - 1/n) times the figure's sd rather
than 1/sqrt(n), so `subsample_scale` widens those draws around their mean by sqrt(m / (n - m)).
Robustness resamples the degraded images' identities, as every other figure does (drops within one pet
are correlated); a verification pair follows both of its identities (`pair_draw`).
"""
from __future__ import annotations

import math

import numpy as np

from ..constants import DEGRADATIONS, far_key
from .bootstrap import bootstrap, interval, repeat_by
from .clustering import cluster_subset, clustering
from .open_set import dir_at_far, open_set_scores, open_set_split
from .retrieval import leave_one_out, ndcg_at
from .spec import CLUSTER_DRAWS
from .verification import best_threshold, pair_ranking, pair_scores


def _group(uniq: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.searchsorted(uniq, labels).astype(np.int64)


def build_sample(emb: np.ndarray, labels: np.ndarray, pairs: np.ndarray, gallery_frac: float, seed: int,
                 triplets: dict | None = None, robustness: dict | None = None, queries=None,
                 open_scores: dict | None = None, robustness_labels: np.ndarray | None = None,
                 cluster_identities: int | None = None) -> dict[str, np.ndarray]:
    """Per-item arrays of one embedding of the test split. `triplets`: {label, sp, sn} of the triplet
    check; `robustness`: {name: per-image similarity drop} of the degraded images, whose identities are
    `robustness_labels`; `queries` and `open_scores`: the leave-one-out ranking and open-set scores where
    they are computed already; the embeddings kept (for clustering) are `cluster_subset`'s."""
    labels = np.asarray(labels)
    uniq = np.unique(labels)
    q = queries if queries is not None else leave_one_out(emb, labels)
    r = q.ranking
    os_ = open_scores if open_scores is not None else open_set_scores(emb, labels,
                                                                      open_set_split(labels, seed, gallery_frac))
    keep = cluster_subset(labels, cluster_identities, seed)
    s = {"uniq": uniq, "emb": np.asarray(emb, np.float32)[keep], "labels": labels[keep], "seed": np.int64(seed),
         "q_group": _group(uniq, q.label), "q_hit1": q.hit1, "q_hit5": r.topk_rel[:, :5].any(1).astype(float),
         "q_hit10": r.topk_rel[:, :10].any(1).astype(float), "q_rr": q.rr, "q_apr": r.ap_r,
         "q_ndcg": ndcg_at(r.topk_rel, r.n_rel, 10),
         "p_group": _group(uniq, labels[pairs[:, 0]]), "p_group2": _group(uniq, labels[pairs[:, 1]]),
         "p_same": pairs[:, 2].astype(bool),
         "p_score": np.asarray(pair_scores(emb, pairs), np.float64)}
    for kind in ("mated", "nonmated"):
        s[f"o{kind[0]}_group"] = _group(uniq, os_[kind]["label"])
        s[f"o{kind[0]}_score"] = np.asarray(os_[kind]["score"], np.float64)
        s[f"o{kind[0]}_correct"] = np.asarray(os_[kind]["correct"], bool)
    if triplets is not None:
        s.update(t_group=_group(uniq, triplets["label"]), t_sp=triplets["sp"], t_sn=triplets["sn"])
    for name, drop in (robustness or {}).items():
        s[f"rb_{name}"] = np.asarray(drop, np.float64)
    if robustness:
        if robustness_labels is None:
            raise ValueError("build_sample: robustness drops need robustness_labels (their images' identities)")
        s["rb_group"] = _group(uniq, np.asarray(robustness_labels))
    return s


def _mean(values: np.ndarray, w: np.ndarray) -> float:
    return float((values * w).sum() / w.sum()) if w.sum() else math.nan


def figures(s: dict, counts: np.ndarray, clusters: bool = True) -> dict[str, float]:
    """The figures of a sample with identity g drawn counts[g] times (all ones: the sample itself);
    `clusters=False` leaves out clustering, which costs 20x all the others together."""
    out: dict[str, float] = {}
    wq = counts[s["q_group"]]
    for key, col in (("recall@1", "q_hit1"), ("recall@5", "q_hit5"), ("recall@10", "q_hit10"), ("mrr", "q_rr"),
                     ("map@r", "q_apr"), ("ndcg@10", "q_ndcg")):
        out[f"retrieval.{key}"] = _mean(s[col], wq)
    rep = pair_draw(s, counts)
    y, sc = s["p_same"][rep], s["p_score"][rep]
    if y.any() and (~y).any():
        rank = pair_ranking(sc, y)
        out.update({f"ranking.{k}": rank[k] for k in ("roc_auc", "eer", "spearman")})
        out.update({f"ranking.{k}": v for k, v in rank.items() if k.startswith("tar@")})
        ver = best_threshold(sc, y)
        out.update({f"verification.{k}": ver[k] for k in ("accuracy", "precision", "recall", "f1")})
    mi, ni = repeat_by(counts, s["om_group"]), repeat_by(counts, s["on_group"])
    out["open_set.rank1_identification"] = float(s["om_correct"][mi].mean()) if len(mi) else math.nan
    for far in (1e-2, 1e-3):
        out[f"open_set.dir@far={far_key(far)}"] = dir_at_far(s["om_score"][mi], s["om_correct"][mi],
                                                              s["on_score"][ni], far)
    if "t_group" in s:
        wt = counts[s["t_group"]]
        out["triplets.violation_rate"] = _mean((s["t_sn"] >= s["t_sp"]).astype(float), wt)
        out["triplets.avg_margin"] = _mean(s["t_sp"] - s["t_sn"], wt)
    held = np.isin(s["labels"], s["uniq"][counts > 0])
    if clusters and held.sum() > 1 and len(np.unique(s["labels"][held])) > 1:
        clu = clustering(s["emb"][held], s["labels"][held], seed=int(s["seed"]))
        out.update({f"clustering.{k}": clu[k] for k in ("nmi", "ari", "purity")})
    for name in DEGRADATIONS:
        if f"rb_{name}" in s:
            out[f"robustness.{name}.sim_drop"] = _mean(s[f"rb_{name}"], counts[s["rb_group"]])
    return out


def pair_draw(s: dict, counts: np.ndarray) -> np.ndarray:
    """Indices of the verification pairs in a draw, two-way (Owen 2007): an impostor pair counts once per
    drawn copy of each of its two identities (counts[a] x counts[b]), a genuine pair once per copy of its
    identity, so that resampling moves the impostor side too."""
    if "p_group2" not in s:  # resample data written before the two-way draw
        raise KeyError("resample data without the pairs' second identities (p_group2): evaluate again")
    first = counts[s["p_group"]]
    w = np.where(s["p_same"], first, first * counts[s["p_group2"]])
    return np.repeat(np.arange(len(w)), w)


def subsample_scale(n: int) -> float:
    """sqrt(m / (n - m)) for m = n(1 - (1 - 1/n)^n), the distinct identities a draw of n holds on average:
    what turns a clustering draw's spread (a subsample's) into the full test set's."""
    m = n * (1 - (1 - 1 / n) ** n)
    return math.sqrt(m / (n - m)) if n > m else 1.0


def clustered_identities(s: dict) -> int:
    """How many identities a sample's clustering holds (`build_sample`'s `cluster_identities`)."""
    return len(np.unique(s["labels"]))


def widen_clustering(draws: np.ndarray, names: list[str], n_identities: int) -> np.ndarray:
    """`draws` with each clustering column's deviations from its mean scaled by `subsample_scale`."""
    out, k = draws.copy(), subsample_scale(n_identities)
    for i, name in enumerate(names):
        if name.startswith("clustering."):
            mean = np.nanmean(out[:, i]) if np.isfinite(out[:, i]).any() else math.nan
            out[:, i] = mean + (out[:, i] - mean) * k
    return out


def intervals(s: dict, n: int, seed, level: float = 0.95, cluster_draws: int = CLUSTER_DRAWS) -> dict[str, list[float]]:
    """95% interval of every figure `figures` computes, identities resampled; clustering in the first
    `cluster_draws` draws only (a k-means each), widened by `subsample_scale`."""
    point = figures(s, np.ones(len(s["uniq"]), np.int64))
    names = sorted(point)
    drawn = [0]

    def stat(c):
        f = figures(s, c, clusters=drawn[0] < cluster_draws)
        drawn[0] += 1
        return [f.get(k, math.nan) for k in names]

    draws = widen_clustering(bootstrap(stat, [len(s["uniq"])], n, seed), names, clustered_identities(s))
    ci = interval(draws, level)
    for i, k in enumerate(names):
        if k.startswith("clustering.") and not np.isnan(ci[0, i]):
            # a draw clusters fewer pets (each once), which shifts the figure itself: keep the draws'
            # spread around the full test set's figure
            ci[:, i] += point[k] - np.nanmean(draws[:, i])
    return {k: ci[:, i].tolist() for i, k in enumerate(names)}

"""Leave-one-out retrieval (design §6.2 A): every test image queries all others; and the overfitting
check (design §6.2 E), Recall@1 on train against test at the same gallery size."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .bootstrap import bootstrap, interval
from .ranking import Ranking, rank_queries
from .spec import count, declare

declare("retrieval", "recall@1", "Recall@1", interval="identities", per_repeat=True, category="Retrieval",
        doc="the nearest other image is of the same identity")
declare("retrieval", "recall@5", "Recall@5", interval="identities", per_repeat=True, category="Retrieval")
declare("retrieval", "mrr", "MRR", interval="identities", per_repeat=True, category="Retrieval",
        doc="mean reciprocal rank of the first relevant image")
declare("retrieval", "map@r", "mAP@R", interval="identities", per_repeat=True, category="Retrieval",
        doc="average precision at R = the query's relevant images")
declare("retrieval", "recall@10", "Recall@10", interval="identities")
declare("retrieval", "ndcg@10", "NDCG@10", interval="identities")
count("retrieval", "n_queries", "images with another image of their identity")
count("retrieval", "n_excluded", "images without one (no relevant item: not queried)")
declare("overfitting", "train_recall@1", "Recall@1 on train", interval="identities",
        doc="on about n images of whole train identities")
declare("overfitting", "test_recall@1", "Recall@1 on test", interval="identities", doc="on as many test images")
declare("overfitting", "gap", "train - test Recall@1", higher=False, interval="identities",
        doc="train and test identities resampled apart")
count("overfitting", "n_train")
count("overfitting", "n_test")


@dataclass
class Queries:
    """A leave-one-out ranking: the queried images (`index` into the set, `label`) and their `Ranking`."""
    index: np.ndarray
    label: np.ndarray
    ranking: Ranking
    n_images: int

    @property
    def hit1(self) -> np.ndarray:
        return self.ranking.topk_rel[:, 0].astype(float)

    @property
    def rr(self) -> np.ndarray:
        return 1.0 / self.ranking.first_rank


def leave_one_out(emb: np.ndarray, labels: np.ndarray, k: int = 10) -> Queries:
    """Every image whose identity has another image queries all others (itself excluded)."""
    labels = np.asarray(labels)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = np.flatnonzero(counts[inv] > 1)
    return Queries(keep, labels[keep], rank_queries(emb[keep], labels[keep], emb, labels, exclude=keep, k=k),
                   len(labels))


def ndcg_at(topk_rel: np.ndarray, n_rel: np.ndarray, k: int = 10) -> np.ndarray:
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (topk_rel[:, :k] * disc[None, :]).sum(1)
    ideal = np.r_[0.0, np.cumsum(disc)][np.minimum(n_rel, k)]
    return np.where(ideal > 0, dcg / np.maximum(ideal, 1e-12), 0.0)


def retrieval_figures(q: Queries, ks=(1, 5, 10)) -> dict:
    """Recall@k, MRR, NDCG@10 and mAP@R of a leave-one-out ranking (NaN with no query)."""
    r, n = q.ranking, len(q.index)
    out = {f"recall@{kk}": float(r.topk_rel[:, :kk].any(1).mean()) if n else math.nan for kk in ks}
    out.update({"mrr": float(q.rr.mean()) if n else math.nan,
                "ndcg@10": float(ndcg_at(r.topk_rel, r.n_rel, 10).mean()) if n else math.nan,
                "map@r": float(r.ap_r.mean()) if n else math.nan,
                "n_queries": int(n), "n_excluded": int(q.n_images - n)})
    return out


def retrieval(emb: np.ndarray, labels: np.ndarray, ks=(1, 5, 10)) -> dict:
    """Leave-one-out retrieval figures; queries whose identity has no other image are counted in
    `n_excluded`."""
    return retrieval_figures(leave_one_out(emb, labels, k=max(max(ks), 10)), ks)


def cmc(first_rank: np.ndarray, max_rank: int = 20) -> np.ndarray:
    """Cumulative match characteristic: fraction of queries whose first correct match is within rank r."""
    return np.array([(first_rank <= r).mean() for r in range(1, max_rank + 1)])


def sample_by_identity(labels: np.ndarray, n: int, seed: int = 42) -> np.ndarray:
    """Indices of whole identities, drawn at random until about n images: every sampled image can query."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.unique(labels))
    out, total = [], 0
    for lab in ids:
        idx = np.flatnonzero(labels == lab)
        if len(idx) < 2:
            continue
        out.append(idx)
        total += len(idx)
        if total >= n:
            break
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def overfitting_queries(train_emb, train_labels, test_emb, test_labels, n: int = 2000,
                        seed: int = 42) -> tuple[Queries, Queries]:
    """Leave-one-out rankings of about n train images and about n test images (whole identities each).

    Recall@1 falls as the gallery grows, so both samples get the same size: n is capped by the
    smaller split (a 322-image test split is compared with ~322 train images, not 2,000)."""
    n = min(n, len(train_labels), len(test_labels))
    a = sample_by_identity(train_labels, n, seed)
    b = sample_by_identity(test_labels, n, seed)
    return (leave_one_out(train_emb[a], np.asarray(train_labels)[a]),
            leave_one_out(test_emb[b], np.asarray(test_labels)[b]))


def overfitting(train_emb, train_labels, test_emb, test_labels, n: int = 2000, seed: int = 42) -> dict:
    """Recall@1 on about n train images vs about n test images (`overfitting_queries`)."""
    return overfitting_figures(*overfitting_queries(train_emb, train_labels, test_emb, test_labels, n, seed))


def overfitting_figures(qa: Queries, qb: Queries) -> dict:
    tr, te = retrieval_figures(qa, ks=(1,))["recall@1"], retrieval_figures(qb, ks=(1,))["recall@1"]
    return {"train_recall@1": tr, "test_recall@1": te, "gap": tr - te, "n_train": qa.n_images, "n_test": qb.n_images}


def overfitting_intervals(qa: Queries, qb: Queries, n: int, seed) -> dict[str, list[float]]:
    """95% intervals of the overfitting figures, the train and the test identities each resampled."""
    groups = [np.unique(q.label, return_inverse=True)[1] for q in (qa, qb)]

    def stat(ca, cb):
        tr, te = ((q.hit1 * c[g]).sum() / c[g].sum() for q, c, g in zip((qa, qb), (ca, cb), groups))
        return [tr, te, tr - te]

    ci = interval(bootstrap(stat, [int(g.max()) + 1 if len(g) else 0 for g in groups], n, seed))
    return {f"overfitting.{k}": ci[:, i].tolist() for i, k in enumerate(("train_recall@1", "test_recall@1", "gap"))}

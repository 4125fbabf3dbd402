"""Verification (design §6.2 C): pairs of images scored by cosine, judged same or different.

One rule sets every threshold at a false-accept rate (`threshold_over`): TAR@FAR, DIR@FAR, FNIR@FPIR and
the thresholds shipped in an export's metadata all call it. FAR keys are spelled by `constants.far_key`.
"""
from __future__ import annotations

import math

import numpy as np

from ..constants import FARS, far_key
from .spec import count, declare

THRESHOLDS = np.round(np.arange(-0.5, 1.0 + 1e-9, 0.01), 2)

declare("ranking", "roc_auc", "ROC-AUC", interval="identities", per_repeat=True, category="Ranking")
declare("ranking", "eer", "EER", higher=False, interval="identities", per_repeat=True, category="Ranking",
        doc="equal error rate, interpolated on the ROC")
declare("ranking", f"tar@far={far_key(1e-3)}", "TAR@FAR=1e-3", interval="identities", per_repeat=True,
        category="Ranking", doc="NaN = too few negatives to measure that FAR")
declare("ranking", f"tar@far={far_key(1e-2)}", "TAR@FAR=1e-2", interval="identities")
declare("ranking", f"tar@far={far_key(1e-4)}", "TAR@FAR=1e-4", interval="identities")
declare("ranking", "spearman", "Spearman (score vs same)", interval="identities")
count("ranking", "n_pos", "balanced sampled pairs: n_rank_pairs / 2 of each class")
count("ranking", "n_neg")
declare("verification", "accuracy", "Accuracy (best threshold)", interval="identities", per_repeat=True,
        category="Verification",
        doc="at the best threshold of the sweep -0.5..1.0 (design §3.5), on the ranking's pairs")
declare("verification", "threshold", "best threshold", higher=None)
declare("verification", "precision", "precision", interval="identities")
declare("verification", "recall", "recall", interval="identities")
declare("verification", "f1", "F1", interval="identities")


def pair_scores(emb: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine of each pair's two embeddings (rows of `pairs` start with two indices into `emb`)."""
    return (emb[pairs[:, 0]] * emb[pairs[:, 1]]).sum(1)


def best_threshold(scores: np.ndarray, is_same: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> dict:
    """Verification accuracy at the best threshold of a sweep (design §3.5: -0.5 to 1.0, step 0.01).

    A pair is predicted "same" when its score is >= the threshold. Ties between thresholds go to the
    lowest one. Precision is 0 when nothing is predicted "same".
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_same).astype(bool)
    t = np.asarray(thresholds, dtype=np.float64)
    # Counts of scores >= each threshold from sorted scores: O(n log n), where a pairs x thresholds
    # comparison matrix was O(151 n) and most of 04_compare's bootstrap time. The same integers.
    pos, neg = s[y & ~np.isnan(s)], s[~y & ~np.isnan(s)]  # a NaN score is >= no threshold
    tp = len(pos) - np.searchsorted(np.sort(pos), t, side="left")
    fp = len(neg) - np.searchsorted(np.sort(neg), t, side="left")
    fn = y.sum() - tp
    tn = (~y).sum() - fp
    acc = (tp + tn) / len(s)
    k = int(np.argmax(acc))
    precision = tp[k] / (tp[k] + fp[k]) if tp[k] + fp[k] else 0.0
    recall = tp[k] / (tp[k] + fn[k]) if tp[k] + fn[k] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float(acc[k]), "threshold": float(thresholds[k]), "precision": float(precision),
            "recall": float(recall), "f1": float(f1)}


def roc(scores: np.ndarray, is_same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), one point per distinct score, highest threshold first."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_same).astype(bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last]
    fps = np.cumsum(~y)[last]
    tpr = np.r_[0.0, tps / max(y.sum(), 1)]
    fpr = np.r_[0.0, fps / max((~y).sum(), 1)]
    return fpr, tpr, np.r_[np.inf, s[last]]


def eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Equal error rate: where FPR = FNR on the ROC, linearly interpolated between points."""
    fnr = 1 - tpr
    d = fpr - fnr
    i = int(np.flatnonzero(d >= 0)[0])
    if i == 0 or d[i] == 0:
        return float(fpr[i])
    t = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def threshold_over(negatives: np.ndarray, far: float) -> float:
    """The lowest threshold that accepts (score >= t) at most `far` of these negative scores: just above
    the (floor(far·n) + 1)-th highest. NaN with fewer than 1/far negatives (not measurable)."""
    neg = np.sort(np.asarray(negatives, dtype=np.float64))[::-1]
    if len(neg) < 1.0 / far:
        return math.nan
    allowed = int(math.floor(far * len(neg) + 1e-9))
    return float(np.nextafter(neg[allowed], np.inf)) if allowed < len(neg) else float(neg[-1])


def accepted(scores: np.ndarray, threshold: float) -> np.ndarray:
    """score >= threshold, compared in float64 (a float32 score must not be rounded against it)."""
    return np.asarray(scores, dtype=np.float64) >= threshold


def tar_at_far(scores: np.ndarray, is_same: np.ndarray, far: float) -> float:
    """True-accept rate at `threshold_over` the negatives; NaN when that FAR cannot be measured here."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(is_same).astype(bool)
    t = threshold_over(s[~y], far)
    return math.nan if math.isnan(t) or not y.any() else float(accepted(s[y], t).mean())


def threshold_at_far(scores: np.ndarray, is_same: np.ndarray, far: float) -> float:
    """`threshold_over` the negative pairs of scored pairs."""
    return threshold_over(np.asarray(scores)[~np.asarray(is_same).astype(bool)], far)


def far_thresholds(negatives: np.ndarray, fars=FARS) -> dict:
    """FAR -> threshold map over impostor scores (keys `far_key`; None where there are too few)."""
    out = {}
    for far in fars:
        t = threshold_over(negatives, far)
        out[far_key(far)] = None if math.isnan(t) else t
    return out


def average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their mean rank (scipy's `rankdata(method="average")`), from one
    sort: `pair_ranking` runs inside every bootstrap draw, where scipy's array-API wrapper was slower."""
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def pair_ranking(scores: np.ndarray, is_same: np.ndarray, fars=FARS) -> dict:
    """ROC-AUC (Mann-Whitney), EER, Spearman and TAR at fixed FARs for scored pairs.

    Spearman's rho is Pearson's r of the ranks; a binary label's ranks are its two mean ranks."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_same).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    ranks = average_ranks(s)
    auc = (ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg) if n_pos and n_neg else math.nan
    fpr, tpr, _ = roc(s, y)
    label_ranks = np.where(y, n_neg + (n_pos + 1) / 2, (n_neg + 1) / 2)
    spearman = float(np.corrcoef(ranks, label_ranks)[0, 1]) if n_pos and n_neg and np.ptp(s) > 0 else math.nan
    out = {"roc_auc": float(auc), "eer": eer(fpr, tpr), "spearman": spearman, "n_pos": n_pos, "n_neg": n_neg}
    for far in fars:
        out[f"tar@far={far_key(far)}"] = tar_at_far(s, y, far)
    return out


def rates_at(scores: np.ndarray, is_same: np.ndarray, threshold: float) -> dict:
    """True- and false-accept rates of `score >= threshold`."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(is_same).astype(bool)
    return {"tar": float((s[y] >= threshold).mean()) if y.any() else math.nan,
            "far": float((s[~y] >= threshold).mean()) if (~y).any() else math.nan}


def petface_auc(scores: np.ndarray, is_same: np.ndarray) -> float:
    """ROC-AUC exactly as PetFace's `compute_auc.py`: negative similarities are set to 0 first (which
    ties every negative-scored pair at 0), then scikit-learn's `roc_auc_score`."""
    from sklearn.metrics import roc_auc_score

    s = np.asarray(scores, dtype=np.float64)
    return float(roc_auc_score(np.asarray(is_same).astype(int), (s > 0) * s))


def impostor_scores(emb: np.ndarray, labels: np.ndarray, max_images: int = 4000, seed: int = 42) -> np.ndarray:
    """Similarities of every pair of photos of two different identities (of at most `max_images` photos,
    drawn with the seed): far more negatives than balanced pairs, for thresholds at small FARs."""
    keep = np.sort(np.random.default_rng(seed).choice(len(emb), min(len(emb), max_images), replace=False))
    e, lab = emb[keep], np.asarray(labels)[keep]
    return (e @ e.T)[np.triu(lab[:, None] != lab[None, :], 1)]

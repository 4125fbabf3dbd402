"""Open-set identification (design §6.3): some identities are enrolled in a gallery, the others never
are; a probe must find its pet or raise no alarm. One split (`open_set_split`) serves the headline
figures, enrolment by number of photos and gallery growth; identification by class scores serves the
data sets' own protocols."""
from __future__ import annotations

import math

import numpy as np

from ..constants import far_key
from .ranking import rank_queries
from .spec import count, declare
from .verification import accepted, threshold_over

declare("open_set", f"dir@far={far_key(1e-2)}", "DIR@FAR=1e-2", interval="identities", per_repeat=True,
        category="Open set", doc="mated probes identified and above the threshold at which 1% of non-mated alarm")
declare("open_set", "rank1_identification", "Rank-1 identification", interval="identities", per_repeat=True)
declare("open_set", f"dir@far={far_key(1e-3)}", "DIR@FAR=1e-3", interval="identities")
count("open_set", "n_gallery")
count("open_set", "n_mated")
count("open_set", "n_nonmated")


def open_set_split(labels: np.ndarray, seed, gallery_frac: float = 0.5, per_identity: int | None = None,
                   min_photos: int = 1) -> dict:
    """Enrol `gallery_frac` of the identities with at least `min_photos` photos, `per_identity` photos
    each (None: half of theirs, at least one); the rest of their photos are mated probes, and every photo
    of the other identities is a non-mated probe. An enrolled identity with no photo left to probe is
    left out. `enrolled` keeps the draw order (galleries that grow take them in it). `seed` may be a
    numpy Generator, whose stream it continues."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    ids, counts = np.unique(labels, return_counts=True)
    ids = rng.permutation(ids[counts >= min_photos])
    enrolled = ids[: int(round(gallery_frac * len(ids)))]
    is_enrolled = set(enrolled.tolist())
    gallery, mated, nonmated, kept = [], [], [], []
    for lab in np.sort(ids):
        idx = rng.permutation(np.flatnonzero(labels == lab))
        g = per_identity or max(1, len(idx) // 2)
        if lab in is_enrolled and len(idx) > g:
            gallery += idx[:g].tolist()
            mated += idx[g:].tolist()
            kept.append(lab)
        elif lab not in is_enrolled:
            nonmated += idx.tolist()
    kept = set(kept)
    as_idx = lambda v: np.sort(np.asarray(v, dtype=np.int64))
    return {"gallery": as_idx(gallery), "mated": as_idx(mated), "nonmated": as_idx(nonmated),
            "enrolled": np.array([lab for lab in enrolled if lab in kept], dtype=labels.dtype)}


def open_set_scores(emb: np.ndarray, labels: np.ndarray, split: dict) -> dict:
    """Top-1 gallery match per probe: its score and whether it is the right identity."""
    labels = np.asarray(labels)
    g = split["gallery"]
    out = {}
    for kind in ("mated", "nonmated"):
        p = split[kind]
        if len(p) == 0:
            out[kind] = {"score": np.zeros(0), "correct": np.zeros(0, bool), "label": np.zeros(0, np.int64)}
            continue
        top = rank_queries(emb[p], labels[p], emb[g], labels[g], k=1).topk[:, 0]
        out[kind] = {"score": (emb[p] * emb[g][top]).sum(1), "correct": labels[g][top] == labels[p],
                     "label": labels[p]}
    return out


def dir_at_far(mated_score, mated_correct, nonmated_score, far: float) -> float:
    """Detection-and-identification rate: mated probes whose top-1 is right and whose score passes
    `threshold_over` the non-mated probes' scores. NaN if too few non-mated probes or no mated one."""
    t = threshold_over(nonmated_score, far)
    if math.isnan(t) or len(mated_score) == 0:
        return math.nan
    return float((np.asarray(mated_correct) & accepted(mated_score, t)).mean())


def open_set(emb: np.ndarray, labels: np.ndarray, gallery_frac: float = 0.5, seed: int = 42,
             fars=(1e-2, 1e-3)) -> dict:
    split = open_set_split(labels, seed, gallery_frac)
    s = open_set_scores(emb, labels, split)
    out = {"rank1_identification": float(s["mated"]["correct"].mean()) if len(split["mated"]) else math.nan,
           "n_gallery": int(len(split["gallery"])), "n_mated": int(len(split["mated"])),
           "n_nonmated": int(len(split["nonmated"]))}
    for far in fars:
        out[f"dir@far={far_key(far)}"] = dir_at_far(s["mated"]["score"], s["mated"]["correct"],
                                                    s["nonmated"]["score"], far)
    return out


def class_max_scores(query: np.ndarray, gallery: np.ndarray, g_labels: np.ndarray, n_classes: int,
                     chunk: int = 1024) -> np.ndarray:
    """(n_query, n_classes): each query's highest similarity to any gallery item of each class (-inf where
    a class has none): nearest-neighbour identification scores, in chunks."""
    order = np.argsort(g_labels, kind="stable")
    labs = np.asarray(g_labels)[order]
    starts = np.flatnonzero(np.r_[True, labs[1:] != labs[:-1]])
    gal = np.ascontiguousarray(gallery[order], dtype=np.float32)
    out = np.full((len(query), n_classes), -np.inf, np.float32)
    for s in range(0, len(query), chunk):
        sims = np.asarray(query[s:s + chunk], dtype=np.float32) @ gal.T
        out[s:s + chunk, labs[starts]] = np.maximum.reduceat(sims, starts, axis=1)
    return out


def topk_identification(class_scores: np.ndarray, truth: np.ndarray, ks=(1, 5)) -> dict:
    """Closed-set top-k accuracy: the true class is among the k highest-scoring classes (ties to the
    lower class index, as a stable sort puts them)."""
    kmax = min(max(ks), class_scores.shape[1])
    top = np.argsort(-class_scores, axis=1, kind="stable")[:, :kmax]
    hit = top == np.asarray(truth)[:, None]
    return {f"top{k}": float(hit[:, :k].any(1).mean()) if len(truth) else math.nan for k in ks}

"""The data sets' own evaluation protocols, run beside the design's seven categories (design §6):
PetFace's verification and re-identification as its code computes them, and DogFaceNet's verification
accuracy and one-shot identification. Each returns the `protocol` block of metrics.json."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import metrics
from .embed import embed_images


def verification(scores: np.ndarray, is_same: np.ndarray, threshold: float) -> dict:
    """Pairs scored by cosine: ROC-AUC with PetFace's clipping and without, EER, TAR@FAR, and accuracy
    at the threshold chosen on validation (same pair when score >= threshold)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(is_same).astype(bool)
    rank = metrics.pair_ranking(scores, y)
    return {"n_pairs": int(len(y)), "roc_auc_petface": metrics.petface_auc(scores, y),
            "roc_auc": float(roc_auc_score(y, scores)), "eer": rank["eer"],
            **{k: v for k, v in rank.items() if k.startswith("tar@")}, "val_threshold": float(threshold),
            "accuracy_at_val_threshold": float(((np.asarray(scores) >= threshold) == y).mean())}


def petface(embedder, centres: np.ndarray, splits: dict, proto: dict, threshold: float, size: int, kw: dict) -> dict:
    """PetFace: cosine on the official pairs (`verification.csv`), and closed-set top-1/top-5 of the
    re-identification photos by the trained ArcFace class centres (as `src/reidentification.py`) and by
    the nearest training image of each identity."""
    root: Path = splits["train"].root
    files = sorted({f for a, b, _ in proto["pairs"] for f in (a, b)})
    pos = {f: i for i, f in enumerate(files)}
    emb = embed_images(embedder, [root / f for f in files], size, **kw)
    pairs = np.array([[pos[a], pos[b], lab] for a, b, lab in proto["pairs"]], dtype=np.int64).reshape(-1, 3)
    out = {"name": "petface", "family": proto.get("family"),
           "verification": {**verification(metrics.pair_scores(emb, pairs), pairs[:, 2], threshold),
                            "pairs_dropped": proto.get("pairs_dropped", 0)}}
    reid, train = splits.get("reid"), splits["train"]
    if reid is not None and len(reid.paths):
        cls = {n: i for i, n in enumerate(train.identities)}
        # an animal whose training photos the scan skipped has no class: its re-id photos cannot be scored
        keep = [i for i, l in enumerate(reid.labels) if reid.identities[int(l)] in cls]
        truth = np.array([cls[reid.identities[int(reid.labels[i])]] for i in keep], dtype=np.int64)
        if not keep:
            return {**out, "reidentification": {"n_queries": 0, "n_dropped": int(len(reid.paths))}}
        q = embed_images(embedder, [reid.paths[i] for i in keep], size, **kw)
        g = embed_images(embedder, train.paths, size, **kw)
        out["reidentification"] = {
            "n_queries": int(len(truth)), "n_dropped": int(len(reid.paths) - len(keep)), "n_classes": int(len(cls)),
            "arcface_centres": metrics.topk_identification(q @ centres.T, truth),
            "nearest_training_image": metrics.topk_identification(
                metrics.class_max_scores(q, g, train.labels, len(cls)), truth)}
    return out


def one_shot_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One enrolled photo per identity with at least two (drawn with the seed), the rest as probes."""
    rng = np.random.default_rng(seed)
    gallery, probes = [], []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        if len(idx) < 2:
            continue
        g = rng.choice(idx)
        gallery.append(g)
        probes += [i for i in idx if i != g]
    return np.array(gallery, dtype=np.int64), np.array(probes, dtype=np.int64)


def dogfacenet(emb: np.ndarray, labels: np.ndarray, pairs: np.ndarray, threshold: float, seed: int) -> dict:
    """DogFaceNet's open set (its test identities, never trained on): verification accuracy on pairs at
    the validation threshold, and one-shot identification rank-1/rank-5 (one enrolled photo per dog)."""
    g, p = one_shot_split(labels, seed)
    ident = metrics.topk_identification(metrics.class_max_scores(emb[p], emb[g], np.arange(len(g)), len(g)),
                                      np.searchsorted(labels[g], labels[p]))
    return {"name": "dogfacenet",
            "verification": verification(metrics.pair_scores(emb, pairs), pairs[:, 2], threshold),
            "one_shot": {"n_gallery": int(len(g)), "n_probes": int(len(p)), "rank1": ident["top1"],
                         "rank5": ident["top5"]}}

"""Benchmark metrics: numpy arrays in, dicts of floats out. No files, no network, no torch."""
from __future__ import annotations

import numpy as np

THRESHOLDS = np.round(np.arange(-0.5, 1.0 + 1e-9, 0.01), 2)


def best_threshold(scores: np.ndarray, is_same: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> dict:
    """Verification accuracy at the best threshold of a sweep (seed 3.5: -0.5 to 1.0, step 0.01).

    A pair is predicted "same" when its score is >= the threshold. Ties between thresholds go to the
    lowest one. Precision is 0 when nothing is predicted "same".
    """
    s = np.asarray(scores, dtype=np.float64)[:, None]
    y = np.asarray(is_same).astype(bool)[:, None]
    pred = s >= np.asarray(thresholds)[None, :]
    tp = (pred & y).sum(0)
    fp = (pred & ~y).sum(0)
    fn = (~pred & y).sum(0)
    tn = (~pred & ~y).sum(0)
    acc = (tp + tn) / len(s)
    k = int(np.argmax(acc))
    precision = tp[k] / (tp[k] + fp[k]) if tp[k] + fp[k] else 0.0
    recall = tp[k] / (tp[k] + fn[k]) if tp[k] + fn[k] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float(acc[k]), "threshold": float(thresholds[k]), "precision": float(precision),
            "recall": float(recall), "f1": float(f1)}

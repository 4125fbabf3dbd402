"""Robustness (design §6.2 F): how far each degradation moves an image's embedding, and what it costs
Recall@1 when degraded images query the clean gallery."""
from __future__ import annotations

import math

import numpy as np

from ..constants import DEGRADATIONS
from .ranking import rank_queries
from .spec import declare

declare("robustness", "clean_recall@1", "clean Recall@1", doc="the clean sample queried against itself")
for _name, _label in DEGRADATIONS.items():
    declare("robustness", f"{_name}.sim_drop", _label, higher=False, interval="images", category="Robustness (sim drop)",
            doc="mean 1 - cos(clean, degraded)")
for _name, _label in DEGRADATIONS.items():
    declare("robustness", f"{_name}.recall@1", f"{_label}: Recall@1")
    declare("robustness", f"{_name}.recall@1_drop", f"{_label}: Recall@1 drop", higher=False)


def robustness(clean: np.ndarray, degraded: dict[str, np.ndarray], labels: np.ndarray) -> dict:
    """Per degradation: mean similarity drop 1 - cos(clean_i, degraded_i) and the Recall@1 drop when the
    degraded images query the clean gallery (their own clean copy excluded)."""
    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    base = rank_queries(clean, labels, clean, labels, exclude=idx, k=1)
    has = base.n_rel > 0
    clean_r1 = float(base.topk_rel[has, 0].mean()) if has.any() else math.nan
    out = {"clean_recall@1": clean_r1}
    for name, d in degraded.items():
        r = rank_queries(d, labels, clean, labels, exclude=idx, k=1)
        r1 = float(r.topk_rel[has, 0].mean()) if has.any() else math.nan
        out[name] = {"sim_drop": float((1 - (clean * d).sum(1)).mean()), "recall@1": r1,
                     "recall@1_drop": clean_r1 - r1}
    return out

"""Triplets (design §6.2 D): is an image closer to another image of its pet than to a stranger's?"""
from __future__ import annotations

import numpy as np

from .spec import count, declare

declare("triplets", "violation_rate", "Violation rate", higher=False, interval="identities", category="Triplet",
        doc="the negative at least as similar as the positive")
declare("triplets", "avg_margin", "Avg margin", interval="identities", category="Triplet",
        doc="mean cos(a, p) - cos(a, n)")
count("triplets", "n")


def triplets(emb: np.ndarray, labels: np.ndarray, n: int = 20000, seed: int = 42) -> dict:
    """Random (anchor, positive, negative) triplets: violation = negative at least as similar as positive."""
    return triplet_figures(triplet_items(emb, labels, n, seed))


def triplet_figures(t: dict) -> dict:
    sp, sn = t["sp"], t["sn"]
    return {"violation_rate": float((sn >= sp).mean()), "avg_margin": float((sp - sn).mean()), "n": int(len(sp))}


def triplet_items(emb: np.ndarray, labels: np.ndarray, n: int = 20000, seed: int = 42) -> dict:
    """The triplets themselves: anchor identity `label`, cos(anchor, positive) `sp`, cos(anchor, negative) `sn`."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    multi = np.flatnonzero(counts[inv] > 1)
    groups = {lab: np.flatnonzero(labels == lab) for lab in np.unique(labels)}
    a = rng.choice(multi, n)
    p = np.array([rng.choice(groups[labels[i]][groups[labels[i]] != i]) for i in a])
    neg = rng.integers(0, len(labels), n)
    bad = labels[neg] == labels[a]
    while bad.any():
        neg[bad] = rng.integers(0, len(labels), int(bad.sum()))
        bad = labels[neg] == labels[a]
    return {"label": labels[a], "sp": (emb[a] * emb[p]).sum(1), "sn": (emb[a] * emb[neg]).sum(1)}

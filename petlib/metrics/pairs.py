"""Verification pairs drawn from a split's labels (design §3.5): the validation pairs (`make_pairs`) and
the test split's ranking pairs (`sample_pairs`); why the two rules differ is in `sample_pairs`."""
from __future__ import annotations

import numpy as np


def make_pairs(labels: np.ndarray, n_pairs: int = 2500, seed: int = 42) -> np.ndarray:
    """Deterministic, balanced verification pairs (design §3.5) as an int array of rows (i, j, is_same).

    n positives are drawn without replacement from all same-identity pairs and n negatives are distinct
    random pairs of different identities, n = min(n_pairs, positive pairs available): a small split
    gets fewer pairs but stays 50/50, so accuracy 0.5 remains the chance level.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == l) for l in np.unique(labels)]
    pos = np.array([(a, b) for g in groups for k, a in enumerate(g) for b in g[k + 1:]], dtype=np.int64).reshape(-1, 2)
    if len(pos) > n_pairs:
        pos = pos[np.sort(rng.choice(len(pos), n_pairs, replace=False))]
    n = len(labels)
    n_neg_possible = (n * (n - 1) - sum(len(g) * (len(g) - 1) for g in groups)) // 2
    n_neg = min(len(pos), n_neg_possible)
    seen: set[tuple[int, int]] = set()
    neg: list[tuple[int, int]] = []
    while len(neg) < n_neg:
        a, b = rng.integers(0, n, size=(2, max(64, 2 * (n_neg - len(neg)))))
        for x, y in zip(a.tolist(), b.tolist()):
            if labels[x] == labels[y]:
                continue
            key = (min(x, y), max(x, y))
            if key not in seen:
                seen.add(key)
                neg.append(key)
                if len(neg) == n_neg:
                    break
    neg_arr = np.array(neg, dtype=np.int64).reshape(-1, 2)
    return np.concatenate([np.c_[pos, np.ones(len(pos), np.int64)], np.c_[neg_arr, np.zeros(len(neg_arr), np.int64)]])


def sample_pairs(labels: np.ndarray, n: int, seed: int = 42) -> np.ndarray:
    """n/2 positive and n/2 negative pairs drawn with replacement, as rows (i, j, is_same): the test
    split's ranking pairs (design §6.2 C). Random pairs of a large set are almost all negatives, so the
    classes are sampled separately. Unlike `make_pairs`, the negatives are not capped at the number of
    distinct positive pairs: a small test split (480 positive pairs in the demo) still has the 1/FAR
    negatives TAR@FAR=1e-3 needs."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    multi = np.flatnonzero(counts[inv] > 1)
    half = n // 2
    a = rng.choice(multi, half)
    groups = {lab: np.flatnonzero(labels == lab) for lab in np.unique(labels[multi])}
    b = np.array([rng.choice(groups[labels[i]][groups[labels[i]] != i]) for i in a], dtype=np.int64)
    na = rng.integers(0, len(labels), half * 2)
    nb = rng.integers(0, len(labels), half * 2)
    ok = labels[na] != labels[nb]
    na, nb = na[ok][:half], nb[ok][:half]
    return np.concatenate([np.c_[a, b, np.ones(len(a), np.int64)], np.c_[na, nb, np.zeros(len(na), np.int64)]])

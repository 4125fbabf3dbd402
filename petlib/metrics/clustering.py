"""Clustering (design §6.2 B): k-means with k = the number of identities, against the identity labels."""
from __future__ import annotations

import numpy as np

from .spec import count, declare

declare("clustering", "nmi", "NMI", interval="clusters", per_repeat=True, category="Clustering",
        doc="normalised mutual information")
declare("clustering", "purity", "Purity", interval="clusters", per_repeat=True, category="Clustering",
        doc="share of images in their cluster's majority identity")
declare("clustering", "ari", "ARI", interval="clusters", doc="adjusted Rand index")
count("clustering", "k", "clusters = identities")


def kmeans(x: np.ndarray, k: int, seed: int = 42, niter: int = 25) -> np.ndarray:
    """Cluster assignment of each row of `x` (float32) by k-means: k-means++ seeds, then Lloyd iterations.

    Initialisation is scikit-learn's greedy k-means++ (`kmeans_plusplus`, 2 + ln k candidates per
    centre), the init of its `KMeans` that the design's figures come from. Random initialisation puts
    several seeds in one identity and none in another, and with many small identities Lloyd never
    repairs it (faiss's random init: NMI 0.958 on perfectly separable data); plain k-means++ with one
    candidate per centre still merged some (0.988-0.991 where greedy gives scikit-learn's 0.999). The
    init costs (2 + ln k)·n·k·d, the Lloyd iterations (faiss, BLAS, all cores) n·k·d each: the init
    bounds it at scale (benchmarks/scale.py)."""
    import faiss
    from sklearn.cluster import kmeans_plusplus

    x = np.ascontiguousarray(x, dtype=np.float32)
    centres, _ = kmeans_plusplus(x, k, random_state=seed)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, verbose=False, min_points_per_centroid=1,
                      max_points_per_centroid=1 << 30)
    km.train(x, init_centroids=np.ascontiguousarray(centres, dtype=np.float32))
    return km.index.search(x, 1)[1][:, 0]


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of samples that belong to their cluster's majority identity."""
    total = 0
    for c in np.unique(clusters):
        _, counts = np.unique(np.asarray(labels)[clusters == c], return_counts=True)
        total += counts.max()
    return float(total / len(labels))


def cluster_subset(labels: np.ndarray, identities: int | None, seed: int = 42) -> np.ndarray:
    """Mask of the images of `identities` identities drawn once by `seed` (every image with None): the
    seeding costs (2 + ln k)·n·k·d, so a test set sized for Recall@1's power is clustered on a part of it."""
    labels = np.asarray(labels)
    uniq = np.unique(labels)
    if identities is None or identities >= len(uniq):
        return np.ones(len(labels), bool)
    keep = np.random.default_rng([seed, 7]).choice(uniq, identities, replace=False)
    return np.isin(labels, keep)


def clustering(emb: np.ndarray, labels: np.ndarray, seed: int = 42, niter: int = 25,
               identities: int | None = None) -> dict:
    """k-means with k = number of identities (`kmeans`) against the identity labels: NMI, ARI, purity;
    on the images of `identities` identities (`cluster_subset`), all with None."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    keep = cluster_subset(labels, identities, seed)
    emb, labels = np.asarray(emb)[keep], np.asarray(labels)[keep]
    k = len(np.unique(labels))
    assign = kmeans(emb, k, seed, niter)
    return {"nmi": float(normalized_mutual_info_score(labels, assign)),
            "ari": float(adjusted_rand_score(labels, assign)), "purity": purity(labels, assign),
            "k": int(k)}

"""The ranking code petlib used until issue 13 (a dozen full-width passes per chunk), kept
verbatim as the reference the faster `metrics.rank_queries` must equal."""
import numpy as np


def old_rank_queries(query: np.ndarray, q_labels: np.ndarray, gallery: np.ndarray, g_labels: np.ndarray,
                 exclude: np.ndarray | None = None, k: int = 10, chunk: int = 512) -> dict:
    """Per-query ranking facts, computed chunk by chunk.

    `exclude[i]` is a gallery index query i must not see (itself, in leave-one-out), or -1.
    Returns per query: `first_rank` (1-based rank of the first relevant item, inf if none),
    `n_rel` (relevant items in the gallery), `topk_rel` (bool, k columns), `ap_r` (average precision
    at R = n_rel) and `topk` (gallery indices of the k nearest). Ties are broken by gallery index.
    """
    q_labels, g_labels = np.asarray(q_labels), np.asarray(g_labels)
    n = len(query)
    _, g_counts = np.unique(g_labels, return_counts=True)
    r_max = int(g_counts.max()) if len(g_counts) else 0
    kk = min(len(gallery), max(k, r_max))
    first = np.full(n, np.inf)
    n_rel = np.zeros(n, np.int64)
    topk_rel = np.zeros((n, k), bool)
    topk = np.full((n, k), -1, np.int64)
    ap_r = np.zeros(n)
    gal = np.ascontiguousarray(gallery, dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        sims = np.asarray(query[s:e], dtype=np.float32) @ gal.T
        rel = q_labels[s:e, None] == g_labels[None, :]
        if exclude is not None:
            rows = np.flatnonzero(exclude[s:e] >= 0)
            sims[rows, exclude[s:e][rows]] = -np.inf
            rel[rows, exclude[s:e][rows]] = False
        n_rel[s:e] = rel.sum(1)
        # first relevant rank: 1 + items strictly more similar than the best relevant one
        # (+ equally similar ones with a lower index, the tie rule of the ordering below)
        best_rel = np.where(rel, sims, -np.inf).max(1)
        has = n_rel[s:e] > 0
        idx = np.arange(gal.shape[0])[None, :]
        first_idx = np.where(rel & (sims == best_rel[:, None]), idx, gal.shape[0]).min(1)
        ahead = (sims > best_rel[:, None]) | ((sims == best_rel[:, None]) & (idx < first_idx[:, None]))
        first[s:e] = np.where(has, ahead.sum(1) + 1, np.inf)
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < gal.shape[0] else np.tile(
            np.arange(gal.shape[0]), (e - s, 1))
        psims = np.take_along_axis(sims, part, 1)
        order = np.lexsort((part, -psims), axis=1)
        ranked = np.take_along_axis(part, order, 1)
        rrel = np.take_along_axis(rel, ranked, 1)
        kc = min(k, kk)
        topk[s:e, :kc] = ranked[:, :kc]
        topk_rel[s:e, :kc] = rrel[:, :kc]
        prec = np.cumsum(rrel, 1) / np.arange(1, kk + 1)[None, :]
        r = n_rel[s:e]
        within = np.arange(1, kk + 1)[None, :] <= r[:, None]
        ap_r[s:e] = np.where(r > 0, (prec * rrel * within).sum(1) / np.maximum(r, 1), 0.0)
    return {"first_rank": first, "n_rel": n_rel, "topk_rel": topk_rel, "ap_r": ap_r, "topk": topk}


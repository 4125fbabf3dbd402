"""Ranking a query set against a gallery: the one primitive under retrieval, open set and robustness.

numpy arrays in, a `Ranking` of per-query arrays out. Embeddings are assumed L2-normalised, so cosine
similarity is a dot product. Nothing here builds an N x N matrix: queries are ranked in chunks against
the gallery (exact, BLAS); torch is used only for its multi-threaded top-k (and the GPU when there is one).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Ranking:
    """Per query: `first_rank` (1-based rank of the first relevant item, inf if none), `n_rel` (relevant
    items in the gallery), `topk_rel` (bool, k columns), `ap_r` (average precision at R = n_rel) and
    `topk` (gallery indices of the k nearest, -1 past the gallery's end)."""
    first_rank: np.ndarray
    n_rel: np.ndarray
    topk_rel: np.ndarray
    ap_r: np.ndarray
    topk: np.ndarray


def _members(g_labels: np.ndarray, q_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gallery indices of each identity as a padded table (-1 = none) and each query's row in it (the
    last row, all -1, for an identity the gallery lacks): a query's relevant items without a full pass."""
    uniq, inv = np.unique(g_labels, return_inverse=True)
    counts = np.bincount(inv, minlength=len(uniq))
    order = np.argsort(inv, kind="stable")
    table = np.full((len(uniq) + 1, max(int(counts.max()) if len(counts) else 0, 1)), -1, np.int64)
    table[inv[order], np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)] = order
    row = np.searchsorted(uniq, q_labels)
    found = row < len(uniq)
    found[found] = uniq[row[found]] == q_labels[found]
    return table, np.where(found, row, len(uniq))


def _top_ranked(vals: np.ndarray, idx: np.ndarray, kk: int, n: int, row) -> np.ndarray:
    """The kk most similar gallery items per query, ordered by similarity then gallery index, from an
    unsorted top-(kk + 1) selection (`vals`, `idx`): the extra value shows whether the kk-th place is tied,
    and those rare rows are ranked exactly from their full similarity row (`row(r)`)."""
    order = np.lexsort((idx, -vals), axis=1)
    vals, ranked = np.take_along_axis(vals, order, 1), np.take_along_axis(idx, order, 1)[:, :kk]
    if kk < n:
        for r in np.flatnonzero(vals[:, kk] == vals[:, kk - 1]):
            sims = row(r)
            cand = np.flatnonzero(sims >= vals[r, kk - 1])
            ranked[r] = cand[np.lexsort((cand, -sims[cand]))[:kk]]
    return ranked


def _chunk_numpy(q: np.ndarray, gal: np.ndarray, rel_idx: np.ndarray, valid: np.ndarray, excl: np.ndarray | None,
                 kk: int) -> tuple:
    """One chunk on the CPU: one BLAS product, one counting pass, one top-k (see `rank_queries`)."""
    import torch

    sims = q @ gal.T
    if excl is not None:
        rows = np.flatnonzero(excl >= 0)
        sims[rows, excl[rows]] = -np.inf
    rel_sims = np.where(valid, np.take_along_axis(sims, np.maximum(rel_idx, 0), 1), -np.inf)
    best = rel_sims.max(1)
    first_idx = np.where(valid & (rel_sims == best[:, None]), rel_idx, len(gal)).min(1)
    # 1 + items more similar than the best relevant one + equal ones before it: >= before its index and
    # > after it, one pass over each row
    ahead = np.array([np.count_nonzero(s[:f] >= b) + np.count_nonzero(s[f:] > b)
                      for s, f, b in zip(sims, first_idx, best)], dtype=np.int64)
    vals, idx = torch.topk(torch.from_numpy(sims), min(kk + 1, len(gal)), dim=1, sorted=False) if kk else (None, None)
    return ahead, (vals.numpy(), idx.numpy()) if kk else None, lambda r: sims[r]


def _chunk_torch(q: np.ndarray, gal, rel_idx: np.ndarray, valid: np.ndarray, excl: np.ndarray | None, kk: int) -> tuple:
    """The same chunk with torch on `gal`'s device (a GPU): full-width work stays there, O(k) comes back."""
    import torch

    dev = gal.device
    sims = torch.from_numpy(q).to(dev) @ gal.T
    if excl is not None:
        rows = torch.from_numpy(np.flatnonzero(excl >= 0)).to(dev)
        sims[rows, torch.from_numpy(excl).to(dev)[rows]] = -torch.inf
    rel = torch.from_numpy(np.maximum(rel_idx, 0)).to(dev)
    ok = torch.from_numpy(valid).to(dev)
    rel_sims = torch.where(ok, torch.gather(sims, 1, rel), -torch.inf)
    best = rel_sims.max(1).values
    first_idx = torch.where(ok & (rel_sims == best[:, None]), rel, len(gal)).min(1).values
    col = torch.arange(sims.shape[1], device=dev)[None, :]
    before = col < first_idx[:, None]
    ahead = ((sims >= best[:, None]) & before).sum(1) + ((sims > best[:, None]) & ~before).sum(1)
    top = None
    if kk:
        vals, idx = torch.topk(sims, min(kk + 1, len(gal)), dim=1, sorted=False)
        top = (vals.cpu().numpy(), idx.cpu().numpy())
    return ahead.cpu().numpy(), top, lambda r: sims[r].cpu().numpy()


def rank_queries(query: np.ndarray, q_labels: np.ndarray, gallery: np.ndarray, g_labels: np.ndarray,
                 exclude: np.ndarray | None = None, k: int = 10, chunk: int = 512, device=None) -> Ranking:
    """Per-query ranking facts (a `Ranking`), computed chunk by chunk.

    `exclude[i]` is a gallery index query i must not see (itself, in leave-one-out), or -1.
    Ties are broken by gallery index.
    Per chunk: one similarity product, one top-k selection (of k or the largest identity, whichever is
    more: AP@R needs no more) and one counting pass for the first relevant rank; the relevant items come
    from a per-identity index, so no full-width label, index or float temporaries are made on the CPU.
    `device`: None ranks on the GPU when there is one (torch), else with numpy; a torch device forces
    the torch path (the tests run it on the CPU against the numpy one).
    """
    import torch

    if device is None and torch.cuda.is_available():
        device = "cuda"
    q_labels, g_labels = np.asarray(q_labels), np.asarray(g_labels)
    n, m = len(query), len(gallery)
    table, row = _members(g_labels, q_labels)
    kk = min(m, max(k, table.shape[1] if m else 0))
    first = np.full(n, np.inf)
    n_rel = np.zeros(n, np.int64)
    topk_rel = np.zeros((n, k), bool)
    topk = np.full((n, k), -1, np.int64)
    ap_r = np.zeros(n)
    gal = np.ascontiguousarray(gallery, dtype=np.float32)
    if device is not None:
        gal = torch.from_numpy(gal).to(device)
    run = _chunk_numpy if device is None else _chunk_torch
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        rel_idx = table[row[s:e]]
        valid = rel_idx >= 0
        excl = None if exclude is None else np.asarray(exclude[s:e])
        if excl is not None:
            valid &= rel_idx != excl[:, None]
        n_rel[s:e] = valid.sum(1)
        ahead, top, sims_row = run(np.ascontiguousarray(query[s:e], dtype=np.float32), gal, rel_idx, valid, excl, kk)
        first[s:e] = np.where(n_rel[s:e] > 0, ahead + 1, np.inf)
        if kk == 0:
            continue
        ranked = _top_ranked(*top, kk, m, sims_row)
        rrel = g_labels[ranked] == q_labels[s:e, None]
        if excl is not None:
            rrel &= ranked != excl[:, None]
        kc = min(k, kk)
        topk[s:e, :kc] = ranked[:, :kc]
        topk_rel[s:e, :kc] = rrel[:, :kc]
        prec = np.cumsum(rrel, 1) / np.arange(1, kk + 1)[None, :]
        r = n_rel[s:e]
        within = np.arange(1, kk + 1)[None, :] <= r[:, None]
        ap_r[s:e] = np.where(r > 0, (prec * rrel * within).sum(1) / np.maximum(r, 1), 0.0)
    return Ranking(first_rank=first, n_rel=n_rel, topk_rel=topk_rel, ap_r=ap_r, topk=topk)

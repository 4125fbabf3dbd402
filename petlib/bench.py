"""Benchmark metrics (design §6 plus open-set identification and bootstrap intervals).

numpy arrays in, dicts of floats out. No files, no network; torch only inside ranking (its top-k on a
zero-copy view of each similarity chunk is multi-threaded). Embeddings are assumed
L2-normalised, so cosine similarity is a dot product. Nothing here builds an N x N matrix: ranking
works on query chunks against the gallery (exact, BLAS), and clustering is k-means++ seeded k-means.
"""
from __future__ import annotations

import math

import numpy as np

THRESHOLDS = np.round(np.arange(-0.5, 1.0 + 1e-9, 0.01), 2)
FARS = (1e-2, 1e-3, 1e-4)


# --------------------------------------------------------------------------- verification
def best_threshold(scores: np.ndarray, is_same: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> dict:
    """Verification accuracy at the best threshold of a sweep (design §3.5: -0.5 to 1.0, step 0.01).

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


# --------------------------------------------------------------------------- retrieval
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
                 exclude: np.ndarray | None = None, k: int = 10, chunk: int = 512, device=None) -> dict:
    """Per-query ranking facts, computed chunk by chunk.

    `exclude[i]` is a gallery index query i must not see (itself, in leave-one-out), or -1.
    Returns per query: `first_rank` (1-based rank of the first relevant item, inf if none),
    `n_rel` (relevant items in the gallery), `topk_rel` (bool, k columns), `ap_r` (average precision
    at R = n_rel) and `topk` (gallery indices of the k nearest). Ties are broken by gallery index.
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
    return {"first_rank": first, "n_rel": n_rel, "topk_rel": topk_rel, "ap_r": ap_r, "topk": topk}


def _ndcg_at(topk_rel: np.ndarray, n_rel: np.ndarray, k: int = 10) -> np.ndarray:
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (topk_rel[:, :k] * disc[None, :]).sum(1)
    ideal = np.r_[0.0, np.cumsum(disc)][np.minimum(n_rel, k)]
    return np.where(ideal > 0, dcg / np.maximum(ideal, 1e-12), 0.0)


def retrieval(emb: np.ndarray, labels: np.ndarray, ks=(1, 5, 10), per_query: bool = False) -> dict:
    """Leave-one-out retrieval: every image queries all others. Queries whose identity has no other
    image are excluded and counted in `n_excluded`."""
    labels = np.asarray(labels)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = np.flatnonzero(counts[inv] > 1)
    k = max(max(ks), 10)
    r = rank_queries(emb[keep], labels[keep], emb, labels, exclude=keep, k=k)
    out = {f"recall@{kk}": float(r["topk_rel"][:, :kk].any(1).mean()) if len(keep) else math.nan for kk in ks}
    rr = 1.0 / r["first_rank"]
    ndcg = _ndcg_at(r["topk_rel"], r["n_rel"], 10)
    out.update({"mrr": float(rr.mean()) if len(keep) else math.nan,
                "ndcg@10": float(ndcg.mean()) if len(keep) else math.nan,
                "map@r": float(r["ap_r"].mean()) if len(keep) else math.nan,
                "n_queries": int(len(keep)), "n_excluded": int(len(labels) - len(keep))})
    if per_query:
        out["_per_query"] = {"index": keep, "label": labels[keep], "hit@1": r["topk_rel"][:, 0].astype(float),
                             "rr": rr, "first_rank": r["first_rank"], "topk": r["topk"]}
    return out


def cmc(first_rank: np.ndarray, max_rank: int = 20) -> np.ndarray:
    """Cumulative match characteristic: fraction of queries whose first correct match is within rank r."""
    return np.array([(first_rank <= r).mean() for r in range(1, max_rank + 1)])


# --------------------------------------------------------------------------- clustering
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


def clustering(emb: np.ndarray, labels: np.ndarray, seed: int = 42, niter: int = 25) -> dict:
    """k-means with k = number of identities (`kmeans`) against the identity labels: NMI, ARI, purity."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = np.asarray(labels)
    k = len(np.unique(labels))
    assign = kmeans(emb, k, seed, niter)
    return {"nmi": float(normalized_mutual_info_score(labels, assign)),
            "ari": float(adjusted_rand_score(labels, assign)), "purity": purity(labels, assign),
            "k": int(k)}


def purity(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of samples that belong to their cluster's majority identity."""
    total = 0
    for c in np.unique(clusters):
        _, counts = np.unique(np.asarray(labels)[clusters == c], return_counts=True)
        total += counts.max()
    return float(total / len(labels))


# --------------------------------------------------------------------------- pair ranking
def sample_pairs(labels: np.ndarray, n: int, seed: int = 42) -> np.ndarray:
    """n/2 positive and n/2 negative pairs (with replacement) as rows (i, j, is_same). Random pairs of a
    large set are almost all negatives, so the classes are sampled separately (design §6.2 C)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    multi = np.flatnonzero(counts[inv] > 1)
    half = n // 2
    a = rng.choice(multi, half)
    groups = {l: np.flatnonzero(labels == l) for l in np.unique(labels[multi])}
    b = np.array([rng.choice(groups[labels[i]][groups[labels[i]] != i]) for i in a], dtype=np.int64)
    na = rng.integers(0, len(labels), half * 2)
    nb = rng.integers(0, len(labels), half * 2)
    ok = labels[na] != labels[nb]
    na, nb = na[ok][:half], nb[ok][:half]
    return np.concatenate([np.c_[a, b, np.ones(len(a), np.int64)], np.c_[na, nb, np.zeros(len(na), np.int64)]])


def pair_scores(emb: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine of each pair's two embeddings (rows of `pairs` start with two indices into `emb`)."""
    return (emb[pairs[:, 0]] * emb[pairs[:, 1]]).sum(1)


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


def tar_at_far(scores: np.ndarray, is_same: np.ndarray, far: float) -> float:
    """True-accept rate at the threshold that accepts at most `far` of the negatives (score > t).

    NaN when there are fewer than 1/far negatives: that FAR cannot be measured on this sample.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_same).astype(bool)
    neg = np.sort(s[~y])[::-1]
    if len(neg) < 1.0 / far or not y.any():
        return math.nan
    allowed = int(math.floor(far * len(neg) + 1e-9))
    t = neg[allowed] if allowed < len(neg) else -np.inf
    return float((s[y] > t).mean())


def pair_ranking(scores: np.ndarray, is_same: np.ndarray, fars=FARS) -> dict:
    """ROC-AUC (Mann-Whitney), EER, Spearman and TAR at fixed FARs for scored pairs."""
    from scipy.stats import rankdata, spearmanr

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_same).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    ranks = rankdata(s)
    auc = (ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg) if n_pos and n_neg else math.nan
    fpr, tpr, _ = roc(s, y)
    out = {"roc_auc": float(auc), "eer": eer(fpr, tpr), "spearman": float(spearmanr(s, y.astype(float))[0]),
           "n_pos": n_pos, "n_neg": n_neg}
    for far in fars:
        out[f"tar@far={far:.0e}".replace("e-0", "e-")] = tar_at_far(s, y, far)
    return out


# --------------------------------------------------------------------------- triplets and overfitting
def triplets(emb: np.ndarray, labels: np.ndarray, n: int = 20000, seed: int = 42) -> dict:
    """Random (anchor, positive, negative) triplets: violation = negative at least as similar as positive."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    multi = np.flatnonzero(counts[inv] > 1)
    groups = {l: np.flatnonzero(labels == l) for l in np.unique(labels)}
    a = rng.choice(multi, n)
    p = np.array([rng.choice(groups[labels[i]][groups[labels[i]] != i]) for i in a])
    neg = rng.integers(0, len(labels), n)
    bad = labels[neg] == labels[a]
    while bad.any():
        neg[bad] = rng.integers(0, len(labels), int(bad.sum()))
        bad = labels[neg] == labels[a]
    sp = (emb[a] * emb[p]).sum(1)
    sn = (emb[a] * emb[neg]).sum(1)
    return {"violation_rate": float((sn >= sp).mean()), "avg_margin": float((sp - sn).mean()), "n": int(n)}


def sample_by_identity(labels: np.ndarray, n: int, seed: int = 42) -> np.ndarray:
    """Indices of whole identities, drawn at random until about n images: every sampled image can query."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.unique(labels))
    out, total = [], 0
    for l in ids:
        idx = np.flatnonzero(labels == l)
        if len(idx) < 2:
            continue
        out.append(idx)
        total += len(idx)
        if total >= n:
            break
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def overfitting(train_emb, train_labels, test_emb, test_labels, n: int = 2000, seed: int = 42) -> dict:
    """Recall@1 on about n train images vs about n test images (whole identities each).

    Recall@1 falls as the gallery grows, so both samples get the same size: n is capped by the
    smaller split (a 322-image test split is compared with ~322 train images, not 2,000)."""
    n = min(n, len(train_labels), len(test_labels))
    a = sample_by_identity(train_labels, n, seed)
    b = sample_by_identity(test_labels, n, seed)
    tr = retrieval(train_emb[a], np.asarray(train_labels)[a], ks=(1,))["recall@1"]
    te = retrieval(test_emb[b], np.asarray(test_labels)[b], ks=(1,))["recall@1"]
    return {"train_recall@1": tr, "test_recall@1": te, "gap": tr - te, "n_train": int(len(a)), "n_test": int(len(b))}


# --------------------------------------------------------------------------- robustness
def robustness(clean: np.ndarray, degraded: dict[str, np.ndarray], labels: np.ndarray) -> dict:
    """Per degradation: mean similarity drop 1 - cos(clean_i, degraded_i) and the Recall@1 drop when the
    degraded images query the clean gallery (their own clean copy excluded)."""
    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    base = rank_queries(clean, labels, clean, labels, exclude=idx, k=1)
    has = base["n_rel"] > 0
    clean_r1 = float(base["topk_rel"][has, 0].mean()) if has.any() else math.nan
    out = {"clean_recall@1": clean_r1}
    for name, d in degraded.items():
        r = rank_queries(d, labels, clean, labels, exclude=idx, k=1)
        r1 = float(r["topk_rel"][has, 0].mean()) if has.any() else math.nan
        out[name] = {"sim_drop": float((1 - (clean * d).sum(1)).mean()), "recall@1": r1,
                     "recall@1_drop": clean_r1 - r1}
    return out


# --------------------------------------------------------------------------- open-set identification
def open_set_split(labels: np.ndarray, gallery_frac: float = 0.5, seed: int = 42) -> dict:
    """Enrol `gallery_frac` of the identities with ~half of their images; the rest of their images are
    mated probes and every image of the other identities is a non-mated probe."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.unique(labels))
    enrolled = set(ids[: int(round(gallery_frac * len(ids)))].tolist())
    gallery, mated, nonmated = [], [], []
    for l in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == l))
        if l in enrolled and len(idx) >= 2:
            g = max(1, len(idx) // 2)
            gallery += idx[:g].tolist()
            mated += idx[g:].tolist()
        elif l not in enrolled:
            nonmated += idx.tolist()
    return {"gallery": np.sort(gallery).astype(np.int64), "mated": np.sort(mated).astype(np.int64),
            "nonmated": np.sort(nonmated).astype(np.int64)}


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
        r = rank_queries(emb[p], labels[p], emb[g], labels[g], k=1)
        top = r["topk"][:, 0]
        out[kind] = {"score": (emb[p] * emb[g][top]).sum(1), "correct": labels[g][top] == labels[p],
                     "label": labels[p]}
    return out


def dir_at_far(mated_score, mated_correct, nonmated_score, far: float) -> float:
    """Detection-and-identification rate: mated probes whose top-1 is right and scores above the
    threshold at which at most `far` of the non-mated probes raise an alarm. NaN if too few non-mated."""
    neg = np.sort(np.asarray(nonmated_score, dtype=np.float64))[::-1]
    if len(neg) < 1.0 / far or len(mated_score) == 0:
        return math.nan
    allowed = int(math.floor(far * len(neg) + 1e-9))
    t = neg[allowed] if allowed < len(neg) else -np.inf
    return float((np.asarray(mated_correct) & (np.asarray(mated_score) > t)).mean())


def open_set(emb: np.ndarray, labels: np.ndarray, gallery_frac: float = 0.5, seed: int = 42,
             fars=(1e-2, 1e-3)) -> dict:
    split = open_set_split(labels, gallery_frac, seed)
    s = open_set_scores(emb, labels, split)
    out = {"rank1_identification": float(s["mated"]["correct"].mean()) if len(split["mated"]) else math.nan,
           "n_gallery": int(len(split["gallery"])), "n_mated": int(len(split["mated"])),
           "n_nonmated": int(len(split["nonmated"]))}
    for far in fars:
        out[f"dir@far={far:.0e}".replace("e-0", "e-")] = dir_at_far(s["mated"]["score"], s["mated"]["correct"],
                                                                    s["nonmated"]["score"], far)
    return out


# --------------------------------------------------------------------------- bootstrap
def bootstrap_ci(per_query: dict, pair_scores: np.ndarray, pairs: np.ndarray, labels: np.ndarray,
                 open_scores: dict | None = None, n: int = 200, seed: int = 42, level: float = 0.95) -> dict:
    """95% intervals for the headline metrics, resampling identities with replacement.

    Retrieval: queries weighted by how often their identity is drawn. Pairs: each pair belongs to the
    identity of its first image. Open set: mated and non-mated probes by their identity.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    uniq = np.unique(labels)
    q_lab = per_query["label"]
    p_lab = labels[pairs[:, 0]]
    y = pairs[:, 2].astype(bool)
    stats: dict[str, list[float]] = {k: [] for k in ("recall@1", "mrr", "roc_auc", "eer", "tar@far=1e-3",
                                                     "dir@far=1e-2")}
    for _ in range(n):
        draw = rng.choice(uniq, len(uniq))
        ids, counts = np.unique(draw, return_counts=True)
        w = np.zeros(int(uniq.max()) + 1)
        w[ids] = counts
        wq = w[q_lab]
        if wq.sum():
            stats["recall@1"].append(float((per_query["hit@1"] * wq).sum() / wq.sum()))
            stats["mrr"].append(float((per_query["rr"] * wq).sum() / wq.sum()))
        rep = np.repeat(np.arange(len(pairs)), w[p_lab].astype(int))
        if y[rep].any() and (~y[rep]).any():
            m = pair_ranking(pair_scores[rep], y[rep], fars=(1e-3,))
            stats["roc_auc"].append(m["roc_auc"])
            stats["eer"].append(m["eer"])
            stats["tar@far=1e-3"].append(m["tar@far=1e-3"])
        if open_scores is not None:
            mi = np.repeat(np.arange(len(open_scores["mated"]["label"])), w[open_scores["mated"]["label"]].astype(int))
            ni = np.repeat(np.arange(len(open_scores["nonmated"]["label"])),
                           w[open_scores["nonmated"]["label"]].astype(int))
            stats["dir@far=1e-2"].append(dir_at_far(open_scores["mated"]["score"][mi],
                                                    open_scores["mated"]["correct"][mi],
                                                    open_scores["nonmated"]["score"][ni], 1e-2))
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    out = {}
    for k, v in stats.items():
        v = np.array([x for x in v if not math.isnan(x)])
        out[k] = [float(np.percentile(v, lo)), float(np.percentile(v, hi))] if len(v) else [math.nan, math.nan]
    return out


# --------------------------------------------------------------------------- data sets' own protocols
def petface_auc(scores: np.ndarray, is_same: np.ndarray) -> float:
    """ROC-AUC exactly as PetFace's `compute_auc.py`: negative similarities are set to 0 first (which
    ties every negative-scored pair at 0), then scikit-learn's `roc_auc_score`."""
    from sklearn.metrics import roc_auc_score

    s = np.asarray(scores, dtype=np.float64)
    return float(roc_auc_score(np.asarray(is_same).astype(int), (s > 0) * s))


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


# --------------------------------------------------------------------------- what an app team decides
FAR_KEYS = {1e-2: "1e-2", 1e-3: "1e-3", 1e-4: "1e-4"}


def threshold_over(negatives: np.ndarray, far: float) -> float:
    """The lowest threshold that accepts (score >= t) at most `far` of these negative scores: just above
    the (floor(far·n) + 1)-th highest. NaN with fewer than 1/far negatives (not measurable)."""
    neg = np.sort(np.asarray(negatives, dtype=np.float64))[::-1]
    if len(neg) < 1.0 / far:
        return math.nan
    allowed = int(math.floor(far * len(neg) + 1e-9))
    return float(np.nextafter(neg[allowed], np.inf)) if allowed < len(neg) else float(neg[-1])


def threshold_at_far(scores: np.ndarray, is_same: np.ndarray, far: float) -> float:
    """`threshold_over` the negative pairs of scored pairs."""
    return threshold_over(np.asarray(scores)[~np.asarray(is_same).astype(bool)], far)


def far_thresholds(negatives: np.ndarray, fars=tuple(FAR_KEYS)) -> dict:
    """FAR -> threshold map over impostor scores (keys "1e-2", ...; None where there are too few)."""
    out = {}
    for far in fars:
        t = threshold_over(negatives, far)
        out[FAR_KEYS.get(far, f"{far:g}")] = None if math.isnan(t) else t
    return out


def rates_at(scores: np.ndarray, is_same: np.ndarray, threshold: float) -> dict:
    """True- and false-accept rates of `score >= threshold`."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(is_same).astype(bool)
    return {"tar": float((s[y] >= threshold).mean()) if y.any() else math.nan,
            "far": float((s[~y] >= threshold).mean()) if (~y).any() else math.nan}


def _ci95(boot: np.ndarray) -> np.ndarray:
    """(2, columns) 2.5th and 97.5th percentiles of bootstrap draws, NaN for a column never measurable."""
    out = np.full((2, boot.shape[1] if boot.ndim == 2 else 0), np.nan)
    for c in range(out.shape[1]):
        v = boot[:, c][np.isfinite(boot[:, c])]
        if len(v):
            out[:, c] = np.percentile(v, [2.5, 97.5])
    return out


def thresholds_on_test(thresholds: dict, scores: np.ndarray, is_same: np.ndarray, n_boot: int = 200,
                       seed: int = 42) -> dict:
    """TAR and FAR on test pairs at each validation threshold, with 95% bootstrap intervals (pairs resampled)."""
    rng = np.random.default_rng(seed)
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(is_same).astype(bool)
    draws = [rng.integers(0, len(s), len(s)) for _ in range(n_boot)]
    out = {}
    for key, t in thresholds.items():
        if t is None:
            out[key] = {"threshold": None, "tar": None, "far": None}
            continue
        r = rates_at(s, y, t)
        boot = np.array([[v for v in rates_at(s[d], y[d], t).values()] for d in draws])
        ci = _ci95(boot) if n_boot else np.full((2, 2), np.nan)
        out[key] = {"threshold": t, **r, "tar_ci95": ci[:, 0].tolist(), "far_ci95": ci[:, 1].tolist()}
    return out


def identity_scores(probes: np.ndarray, enrolled: list[np.ndarray], how: str) -> np.ndarray:
    """(n_probes, n_identities) match scores against each enrolled identity's photos: `max` (best photo),
    `mean` (mean of the similarities) or `centroid` (cosine with the re-normalised mean embedding)."""
    if how == "centroid":
        c = np.stack([e.mean(0) for e in enrolled])
        c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        return probes @ c.T
    sims = [probes @ e.T for e in enrolled]
    return np.stack([s.max(1) if how == "max" else s.mean(1) for s in sims], axis=1)


def enrolment_split(labels: np.ndarray, k: int, seed: int) -> dict | None:
    """Identities with at least k + 1 photos, half enrolled with k photos each (the rest of theirs are
    mated probes), half never enrolled (all their photos are non-mated probes); drawn with the seed."""
    rng = np.random.default_rng([seed, k])
    ids = [l for l in np.unique(labels) if np.count_nonzero(labels == l) > k]
    if len(ids) < 4:
        return None
    ids = rng.permutation(ids)
    enrolled_ids, stranger_ids = ids[: len(ids) // 2], ids[len(ids) // 2:]
    gallery, mated, mated_truth = [], [], []
    for j, l in enumerate(enrolled_ids):
        idx = rng.permutation(np.flatnonzero(labels == l))
        gallery.append(idx[:k])
        mated += idx[k:].tolist()
        mated_truth += [j] * (len(idx) - k)
    nonmated = np.flatnonzero(np.isin(labels, stranger_ids))
    return {"gallery": gallery, "mated": np.array(mated, dtype=np.int64), "truth": np.array(mated_truth, dtype=np.int64),
            "nonmated": nonmated, "nonmated_identity": labels[nonmated]}


def _open_set_figures(ms: np.ndarray, truth: np.ndarray, ns: np.ndarray, far: float) -> tuple[float, float]:
    best, top = ms.max(1), ms.argmax(1)
    return float((top == truth).mean()), dir_at_far(best, top == truth, ns.max(1), far)


def enrolment(emb: np.ndarray, labels: np.ndarray, ks=(1, 2, 3, 4, 5), hows=("max", "mean", "centroid"),
              far: float = 1e-2, n_boot: int = 200, seed: int = 42) -> list[dict]:
    """Open-set rank-1 and DIR@FAR by photos enrolled per pet (k) and how a probe is matched, with 95%
    bootstrap intervals (identities resampled, enrolled and strangers alike)."""
    rows = []
    for k in ks:
        sp = enrolment_split(labels, k, seed)
        if sp is None:
            continue
        rng = np.random.default_rng([seed, k, 1])
        n_id = len(sp["gallery"])
        strangers = np.unique(sp["nonmated_identity"])
        for how in hows:
            g = [emb[i] for i in sp["gallery"]]
            ms, ns = identity_scores(emb[sp["mated"]], g, how), identity_scores(emb[sp["nonmated"]], g, how)
            rank1, dir_ = _open_set_figures(ms, sp["truth"], ns, far)
            boot = []
            for _ in range(n_boot):
                pick = rng.integers(0, n_id, n_id)
                m = np.concatenate([np.flatnonzero(sp["truth"] == j) for j in pick])
                n = np.concatenate([np.flatnonzero(sp["nonmated_identity"] == s)
                                    for s in rng.choice(strangers, len(strangers))])
                boot.append(_open_set_figures(ms[m], sp["truth"][m], ns[n], far))
            lo, hi = _ci95(np.array(boot)) if boot else np.full((2, 2), np.nan)
            rows.append({"k": k, "match": how, "n_identities": n_id, "n_mated": int(len(sp["mated"])),
                         "n_nonmated": int(len(sp["nonmated"])), "rank1": rank1,
                         f"dir@far={FAR_KEYS.get(far, far)}": dir_, "rank1_ci95": [lo[0], hi[0]],
                         f"dir@far={FAR_KEYS.get(far, far)}_ci95": [lo[1], hi[1]]})
    return rows


def smallest_sufficient_k(rows: list[dict], how: str, key: str = "rank1", within: float = 0.01) -> int | None:
    """The smallest k whose figure is within `within` of the largest k's, for one way of matching."""
    mine = sorted((r for r in rows if r["match"] == how), key=lambda r: r["k"])
    if not mine:
        return None
    top = mine[-1][key]
    return next((r["k"] for r in mine if r[key] >= top - within), mine[-1]["k"])


def impostor_scores(emb: np.ndarray, labels: np.ndarray, max_images: int = 4000, seed: int = 42) -> np.ndarray:
    """Similarities of every pair of photos of two different identities (of at most `max_images` photos,
    drawn with the seed): far more negatives than balanced pairs, for thresholds at small FARs."""
    keep = np.sort(np.random.default_rng(seed).choice(len(emb), min(len(emb), max_images), replace=False))
    e, l = emb[keep], np.asarray(labels)[keep]
    return (e @ e.T)[np.triu(l[:, None] != l[None, :], 1)]


def nearest_impostors(emb: np.ndarray, labels: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each photo, the most similar photo of another identity: (its index, the similarity)."""
    idx, val = np.zeros(len(emb), np.int64), np.zeros(len(emb))
    for s in range(0, len(emb), chunk):
        sims = emb[s:s + chunk] @ emb.T
        sims[labels[s:s + chunk, None] == labels[None, :]] = -np.inf
        idx[s:s + chunk], val[s:s + chunk] = sims.argmax(1), sims.max(1)
    return idx, val


def impostor_study(genuine: np.ndarray, random_neg: np.ndarray, lookalike_neg: dict[str, np.ndarray],
                   threshold: float, fars=(1e-2, 1e-3)) -> list[dict]:
    """Verification against random impostors and against look-alike ones, side by side: TAR at each FAR
    (the threshold set on that kind of impostor) and the false-match rate at the recommended threshold."""
    rows = []
    for name, neg in {"random": random_neg, **lookalike_neg}.items():
        row = {"impostors": name, "n": int(len(neg)),
               "false_match_rate@recommended": float((np.asarray(neg) >= threshold).mean()) if len(neg) else math.nan}
        for far in fars:
            t = threshold_over(neg, far)
            row[f"tar@far={FAR_KEYS.get(far, far)}"] = math.nan if math.isnan(t) else float((genuine >= t).mean())
        rows.append(row)
    return rows


def gallery_growth(emb: np.ndarray, labels: np.ndarray, distractors: np.ndarray | None, threshold: float,
                   sizes=(10, 20, 50, 100, 200, 500, 1000, 2000, 5000), fpir: float = 1e-2, seed: int = 42) -> list[dict]:
    """1:N identification as the gallery grows: one enrolled photo per pet for `size` pets (test pets,
    then distractor pets from other splits), mated probes of the test pets, non-mated probes of test pets
    kept out of the gallery; FNIR at FPIR and the false-alarm rate at the recommended threshold."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation([l for l in np.unique(labels) if np.count_nonzero(labels == l) >= 2])
    half = len(ids) // 2
    enrolled, strangers = ids[:half], ids[half:]
    first = {l: rng.choice(np.flatnonzero(labels == l)) for l in enrolled}
    mated = np.array([i for l in enrolled for i in np.flatnonzero(labels == l) if i != first[l]])
    nonmated = np.flatnonzero(np.isin(labels, strangers))
    pos = {l: i for i, l in enumerate(enrolled)}
    pool = [emb[first[l]] for l in enrolled] + ([] if distractors is None else list(distractors))
    rows = []
    for n in [s for s in sizes if s <= len(pool)] + ([len(pool)] if len(pool) not in sizes else []):
        if n < 2:
            continue
        keep = enrolled[: min(n, len(enrolled))]
        g = np.stack(pool[:n])
        m = mated[np.isin(labels[mated], keep)]
        truth = np.array([pos[l] for l in labels[m]], dtype=np.int64)
        ms, ns = emb[m] @ g.T, emb[nonmated] @ g.T
        nm_best = ns.max(1)
        t_fpir = threshold_over(nm_best, fpir)
        hit = (ms.argmax(1) == truth)
        best = ms.max(1)
        rows.append({"gallery_size": int(n), "n_mated": int(len(m)), "n_nonmated": int(len(nonmated)),
                     "fnir@fpir=" + FAR_KEYS.get(fpir, str(fpir)): float(1 - (hit & (best >= t_fpir)).mean())
                     if not math.isnan(t_fpir) else math.nan,
                     "false_alarm_rate@recommended": float((nm_best >= threshold).mean()),
                     "fnir@recommended": float(1 - (hit & (best >= threshold)).mean())})
    return rows

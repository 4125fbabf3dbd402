"""Every metric against an independent computation: scikit-learn, brute-force loops, hand-computed cases."""
import importlib
import math

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score

from petlib import metrics


def _emb(n_ids=25, per=(1, 5), dim=16, noise=0.7, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    labels = np.concatenate([[i] * rng.integers(per[0], per[1] + 1) for i in range(n_ids)])
    x = centres[labels] + noise * rng.normal(size=(len(labels), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def _brute_retrieval(emb, labels):
    """Loops over a full similarity matrix: the reference for recall@k, MRR, NDCG@10, mAP@R."""
    n = len(labels)
    sims = emb @ emb.T
    out = {"r1": [], "r5": [], "r10": [], "mrr": [], "ndcg": [], "map": []}
    for i in range(n):
        others = [j for j in range(n) if j != i]
        rel_total = sum(labels[j] == labels[i] for j in others)
        if rel_total == 0:
            continue
        ranked = sorted(others, key=lambda j: (-sims[i, j], j))
        rel = [labels[j] == labels[i] for j in ranked]
        for k in (1, 5, 10):
            out[f"r{k}"].append(any(rel[:k]))
        out["mrr"].append(1.0 / (rel.index(True) + 1))
        dcg = sum(r / math.log2(p + 2) for p, r in enumerate(rel[:10]))
        idcg = sum(1 / math.log2(p + 2) for p in range(min(rel_total, 10)))
        out["ndcg"].append(dcg / idcg)
        hits, ap = 0, 0.0
        for p in range(rel_total):
            if rel[p]:
                hits += 1
                ap += hits / (p + 1)
        out["map"].append(ap / rel_total)
    return {k: float(np.mean(v)) for k, v in out.items()}, len(out["mrr"])


def test_retrieval_matches_brute_force():
    emb, labels = _emb()
    got = metrics.retrieval(emb, labels)
    ref, nq = _brute_retrieval(emb, labels)
    assert got["n_queries"] == nq and got["n_excluded"] == len(labels) - nq
    for a, b in [("recall@1", "r1"), ("recall@5", "r5"), ("recall@10", "r10"), ("mrr", "mrr"),
                 ("ndcg@10", "ndcg"), ("map@r", "map")]:
        assert got[a] == pytest.approx(ref[b], abs=1e-9), a


def test_retrieval_chunking_does_not_change_results():
    emb, labels = _emb(40, seed=3)
    idx = np.arange(len(labels))
    a = metrics.rank_queries(emb, labels, emb, labels, exclude=idx, k=10, chunk=7)
    b = metrics.rank_queries(emb, labels, emb, labels, exclude=idx, k=10, chunk=1000)
    for k in ("first_rank", "n_rel", "topk_rel", "ap_r", "topk"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k


def test_retrieval_hand_case():
    # four 1-d "embeddings": ids A A B B at +1, +0.9, -0.9... normalised 2-d vectors
    emb = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1])
    r = metrics.retrieval(emb, labels, ks=(1,))
    # query0: nearest is 1 (wrong), then 2 (right): rr 1/2 ; query1: nearest 2 (0.96, wrong), then 0 (0.8), 3 (0.6, right): rr 1/3
    # query2: nearest 1 (0.96 wrong), 3 (0.8 wrong), 0 (0.6 right): rr 1/3 ; query3: nearest 2 (0.8 wrong), 1 (0.6 right): rr 1/2
    assert r["recall@1"] == 0.0
    assert r["mrr"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 3 + 1 / 2) / 4)


def test_clustering_against_sklearn_and_purity_hand_case():
    emb, labels = _emb(12, per=(4, 6), noise=0.2)
    got = metrics.clustering(emb, labels, seed=1)
    assert got["nmi"] > 0.9 and got["k"] == 12
    # purity by hand: clusters [0,0,1] and [1,1,1,0] -> (2 + 3) / 7
    assert metrics.purity(np.array([0, 0, 1, 1, 1, 1, 0]), np.array([5, 5, 5, 9, 9, 9, 9])) == pytest.approx(5 / 7)


def test_clustering_scores_equal_sklearn_on_the_same_assignment(monkeypatch):
    emb, labels = _emb(10, per=(3, 5), noise=0.9, seed=5)
    captured = {}
    real = metrics.kmeans

    def spy(*a, **k):
        captured["assign"] = real(*a, **k)
        return captured["assign"]
    monkeypatch.setattr(importlib.import_module("petlib.metrics.clustering"), "kmeans", spy)
    got = metrics.clustering(emb, labels, seed=2)
    a = captured["assign"]
    assert got["nmi"] == pytest.approx(normalized_mutual_info_score(labels, a))
    assert got["ari"] == pytest.approx(adjusted_rand_score(labels, a))


def _separable(n_ids: int, seed: int):
    """Tight, far-apart clusters of 1-7 points on the unit sphere (the case random init got wrong)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_ids), rng.integers(1, 8, n_ids))
    emb = centres[labels] + rng.normal(scale=0.01, size=(len(labels), 128))
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32), labels


def test_clustering_is_exact_on_separable_data():
    emb, labels = _separable(150, seed=0)
    got = metrics.clustering(emb, labels, seed=0)
    assert got["nmi"] >= 0.99 and got["ari"] >= 0.99 and got["purity"] >= 0.99, got


def test_clustering_agrees_with_sklearn_kmeans():
    """Against scikit-learn's KMeans (k-means++, n_init=1) on overlapping identities: within 0.01 NMI.
    (benchmarks/scale.py repeats this at the design's test scale, 8,600 images of 2,000 identities.)"""
    from sklearn.cluster import KMeans

    emb, labels = _emb(300, per=(2, 7), noise=0.6, seed=4)
    k = len(np.unique(labels))
    ref = KMeans(k, n_init=1, random_state=0).fit_predict(emb)
    got = metrics.clustering(emb, labels, seed=0)
    assert abs(got["nmi"] - normalized_mutual_info_score(labels, ref)) < 0.01


def test_pair_ranking_auc_against_sklearn_and_spearman():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.4
    s = np.round(rng.normal(y * 0.8, 1.0), 2)  # rounding creates ties
    got = metrics.pair_ranking(s, y)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    from scipy.stats import spearmanr
    assert got["spearman"] == pytest.approx(spearmanr(s, y)[0])


def test_eer_hand_case():
    # positives 0.9 0.8 0.3, negatives 0.7 0.2 0.1: at t in (0.3, 0.7]: FNR 1/3, FPR 0... at t in (0.2,0.3]: FNR 0, FPR 1/3
    # ROC points: (0,0),(0,1/3),(0,2/3),(1/3,2/3),(1/3,1),(2/3,1),(1,1); FPR=FNR crosses between (0,2/3) and (1/3,2/3)
    # d = FPR - FNR: -1/3 at (0,2/3), 0 at (1/3,2/3) -> EER = 1/3
    s = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0], bool)
    assert metrics.pair_ranking(s, y)["eer"] == pytest.approx(1 / 3)
    # perfectly separated -> EER 0
    assert metrics.pair_ranking(np.array([0.9, 0.8, 0.1, 0.0]), np.array([1, 1, 0, 0], bool))["eer"] == 0.0


def test_tar_at_far_hand_case_and_nan():
    neg = np.linspace(0, 0.99, 100)  # 100 negatives: FAR 1e-2 allows one false accept -> threshold 0.98
    pos = np.array([0.985, 0.99, 0.5, 0.999])
    s = np.r_[pos, neg]
    y = np.r_[np.ones(4, bool), np.zeros(100, bool)]
    assert metrics.tar_at_far(s, y, 1e-2) == pytest.approx(3 / 4)  # 0.985, 0.99, 0.999 > 0.98
    assert math.isnan(metrics.tar_at_far(s, y, 1e-3)), "100 negatives cannot measure FAR 1e-3"
    r = metrics.pair_ranking(s, y)
    assert math.isnan(r["tar@far=1e-3"]) and math.isnan(r["tar@far=1e-4"])


def test_triplets_hand_case():
    emb = np.array([[1, 0], [0.6, 0.8], [0.8, 0.6], [0, 1]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    r = metrics.triplets(emb, labels, n=4000, seed=0)
    # enumerate every (a, p, n) triplet by hand: anchors 0..3, single positive each, two negatives each
    viol, margins = [], []
    for a in range(4):
        p = [i for i in range(4) if labels[i] == labels[a] and i != a][0]
        for n in [i for i in range(4) if labels[i] != labels[a]]:
            sp, sn = emb[a] @ emb[p], emb[a] @ emb[n]
            viol.append(sn >= sp)
            margins.append(sp - sn)
    assert r["violation_rate"] == pytest.approx(np.mean(viol), abs=0.03)
    assert r["avg_margin"] == pytest.approx(np.mean(margins), abs=0.03)


def test_overfitting_gap():
    tr, trl = _emb(30, noise=0.1, seed=1)
    te, tel = _emb(30, noise=1.5, seed=2)
    r = metrics.overfitting(tr, trl, te, tel, n=60)
    assert r["train_recall@1"] > r["test_recall@1"] and r["gap"] == pytest.approx(r["train_recall@1"] - r["test_recall@1"])
    assert r["n_train"] >= 60


def test_dir_at_far_hand_case():
    mated_score = np.array([0.9, 0.8, 0.6, 0.95])
    mated_correct = np.array([True, True, True, False])
    non = np.linspace(0.0, 0.7, 100)  # FAR 1e-2 -> threshold is the 2nd highest non-mated score
    t = np.sort(non)[::-1][1]
    expect = np.mean(mated_correct & (mated_score > t))
    assert metrics.dir_at_far(mated_score, mated_correct, non, 1e-2) == pytest.approx(expect) == pytest.approx(0.5)
    assert math.isnan(metrics.dir_at_far(mated_score, mated_correct, non, 1e-3))


def test_open_set_split_is_disjoint_and_sensible():
    emb, labels = _emb(40, per=(3, 6), noise=0.3)
    sp = metrics.open_set_split(labels, 0, 0.5)
    assert not set(sp["gallery"]) & set(sp["mated"]) and not set(sp["nonmated"]) & set(sp["gallery"])
    assert set(labels[sp["mated"]]) <= set(labels[sp["gallery"]])
    assert not set(labels[sp["nonmated"]]) & set(labels[sp["gallery"]])
    r = metrics.open_set(emb, labels, 0.5, seed=0)
    assert r["rank1_identification"] > 0.8


def test_robustness_drops():
    emb, labels = _emb(20, per=(3, 4), noise=0.3)
    rng = np.random.default_rng(0)
    noisy = emb + 0.8 * rng.normal(size=emb.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    r = metrics.robustness(emb, {"same": emb.copy(), "noisy": noisy}, labels)
    assert r["same"]["sim_drop"] == pytest.approx(0, abs=1e-6) and r["same"]["recall@1_drop"] == 0
    assert r["noisy"]["sim_drop"] > 0.1 and r["noisy"]["recall@1_drop"] > 0
    manual = float((1 - (emb * noisy).sum(1)).mean())
    assert r["noisy"]["sim_drop"] == pytest.approx(manual)


def test_sample_pairs_balanced():
    _, labels = _emb(30)
    p = metrics.sample_pairs(labels, 1000, seed=1)
    pos, neg = p[p[:, 2] == 1], p[p[:, 2] == 0]
    assert len(pos) == len(neg) == 500
    assert (labels[pos[:, 0]] == labels[pos[:, 1]]).all() and (pos[:, 0] != pos[:, 1]).all()
    assert (labels[neg[:, 0]] != labels[neg[:, 1]]).all()


def test_bootstrap_intervals_contain_the_estimate():
    emb, labels = _emb(40, per=(3, 6), noise=0.8)
    q = metrics.leave_one_out(emb, labels)
    r = metrics.retrieval_figures(q)
    pairs = metrics.sample_pairs(labels, 2000)
    scores = (emb[pairs[:, 0]] * emb[pairs[:, 1]]).sum(1)
    os_ = metrics.open_set_scores(emb, labels, metrics.open_set_split(labels, 42))
    sample = metrics.build_sample(emb, labels, pairs, 0.5, 42, queries=q, open_scores=os_)
    ci = metrics.intervals(sample, 100, 0)
    assert ci["retrieval.recall@1"][0] <= r["recall@1"] <= ci["retrieval.recall@1"][1]
    assert ci["retrieval.recall@1"][1] - ci["retrieval.recall@1"][0] > 0
    auc = metrics.pair_ranking(scores, pairs[:, 2])["roc_auc"]
    assert ci["ranking.roc_auc"][0] <= auc <= ci["ranking.roc_auc"][1]
    assert ci["clustering.nmi"][0] <= metrics.clustering(emb, labels)["nmi"] <= ci["clustering.nmi"][1] + 0.05


def test_resampled_figures_of_the_whole_sample_are_the_figures():
    """figures(sample, every identity once) equals each metric function on the same data: one code path
    for the point estimate and for its intervals and paired differences."""
    emb, labels = _emb(30, per=(2, 5), noise=0.8, seed=4)
    pairs = metrics.sample_pairs(labels, 1000, seed=3)
    tri = metrics.triplet_items(emb, labels, 500, 1)
    sample = metrics.build_sample(emb, labels, pairs, 0.5, 7, triplets=tri, robustness={"brightness": np.ones(9)},
                                  robustness_labels=labels[:9])
    got = metrics.figures(sample, np.ones(30, np.int64))
    scores = metrics.pair_scores(emb, pairs)
    want = {**{f"retrieval.{k}": v for k, v in metrics.retrieval(emb, labels).items()},
            **{f"ranking.{k}": v for k, v in metrics.pair_ranking(scores, pairs[:, 2]).items()},
            **{f"verification.{k}": v for k, v in metrics.best_threshold(scores, pairs[:, 2]).items()},
            **{f"open_set.{k}": v for k, v in metrics.open_set(emb, labels, 0.5, 7).items()},
            **{f"clustering.{k}": v for k, v in metrics.clustering(emb, labels, seed=7).items()},
            **{f"triplets.{k}": v for k, v in metrics.triplet_figures(tri).items()},
            "robustness.brightness.sim_drop": 1.0}
    for k, v in got.items():
        assert v == pytest.approx(want[k], nan_ok=True), k
    resampled = {s.name for s in metrics.specs() if s.interval in ("identities", "clusters", "images")}
    assert set(got) - {"robustness.brightness.sim_drop"} <= resampled
    counts = np.zeros(30, np.int64)
    counts[:10] = 2
    twice = metrics.figures(sample, counts)
    in_draw = np.isin(sample["q_group"], np.arange(10))
    assert twice["retrieval.recall@1"] == pytest.approx(sample["q_hit1"][in_draw].mean())


def test_threshold_sweep_hand_computed():
    # positives 0.9, 0.35, 0.1; negatives 0.4, 0.2, -0.3. Accuracy by threshold t (same if score >= t):
    #   t <= -0.3: 3/6 | -0.29..0.10: 4/6 (TP3 FP2) | 0.11..0.20: 3/6 | 0.21..0.35: 4/6 | 0.36..0.40: 3/6
    #   0.41..0.90: 4/6 | above: 3/6.  Best 4/6, lowest threshold -0.29: precision 3/5, recall 1, F1 0.75.
    r = metrics.best_threshold(np.array([0.9, 0.35, 0.1, 0.4, 0.2, -0.3]), np.array([1, 1, 1, 0, 0, 0]))
    assert r["accuracy"] == 4 / 6
    assert r["threshold"] == -0.29
    assert r["precision"] == 3 / 5 and r["recall"] == 1.0
    assert abs(r["f1"] - 0.75) < 1e-12


def test_threshold_sweep_separable():
    r = metrics.best_threshold(np.array([0.8, 0.7, 0.2, 0.1]), np.array([1, 1, 0, 0]))
    assert r["accuracy"] == 1.0 and 0.2 < r["threshold"] <= 0.7 and r["f1"] == 1.0
    assert r["threshold"] == 0.21


def test_threshold_sweep_matches_brute_force():
    rng = np.random.default_rng(0)
    s = rng.uniform(-0.6, 1.0, 300)
    y = rng.random(300) < 0.5
    r = metrics.best_threshold(s, y)
    best = max((np.mean((s >= t) == y), -t) for t in np.round(np.arange(-0.5, 1.0001, 0.01), 2))
    assert abs(r["accuracy"] - best[0]) < 1e-12 and abs(r["threshold"] + best[1]) < 1e-9


def test_threshold_counts_from_sorted_scores_equal_a_comparison_per_threshold():
    """Scores on the thresholds themselves (ties), NaN scores (same at no threshold) and float32 input:
    every field equals a direct count of `score >= t` at each threshold."""
    rng = np.random.default_rng(3)
    for case in range(200):
        n = int(rng.integers(1, 200))
        s = np.round(rng.uniform(-0.7, 1.1, n), 2 if case % 2 else 6)
        s[rng.random(n) < (0.1 if case % 3 == 0 else 0)] = np.nan
        s = s.astype(np.float32 if case % 5 == 0 else np.float64)
        y = rng.random(n) < rng.random()
        r = metrics.best_threshold(s, y)
        ts = metrics.verification.THRESHOLDS
        pred = [np.asarray(s, np.float64) >= t for t in ts]
        acc = [np.mean(p == y) for p in pred]
        k = int(np.argmax(acc))
        tp, fp = int((pred[k] & y).sum()), int((pred[k] & ~y).sum())
        assert (r["accuracy"], r["threshold"]) == (acc[k], float(ts[k])), case
        assert r["precision"] == (tp / (tp + fp) if tp + fp else 0.0) and r["recall"] == (tp / y.sum() if y.any() else 0.0)


def test_average_ranks_are_scipys():
    from scipy.stats import rankdata

    rng = np.random.default_rng(4)
    for n in (1, 2, 7, 300):
        s = np.round(rng.uniform(-1, 1, n), 1)  # many ties
        assert np.array_equal(metrics.verification.average_ranks(s), rankdata(s))


def test_pair_scores_are_the_cosines_of_the_pairs():
    emb, _ = _emb(n_ids=5)
    pairs = np.array([[0, 1, 1], [2, 3, 0], [4, 4, 1]])
    want = [float(emb[i] @ emb[j]) for i, j, _ in pairs]
    assert np.allclose(metrics.pair_scores(emb, pairs), want, atol=1e-6)


def test_fast_ranking_equals_the_previous_code_with_ties():
    """5,000 random 128-d embeddings with duplicated rows (exact score ties) and identities of 1-8
    images, leave-one-out and a plain gallery: every per-query field equals the previous code's, except
    where the k-th place is tied. There the previous code kept an arbitrary member of the tie
    (argpartition), against its own rule; the new one keeps the lowest index, as a full stable sort does."""
    from reference.old_ranking import old_rank_queries

    rng = np.random.default_rng(7)
    emb = rng.normal(size=(5000, 128)).astype(np.float32)
    emb[rng.choice(5000, 400, replace=False)] = emb[rng.choice(5000, 400, replace=False)]  # ties
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = np.repeat(np.arange(2000), rng.integers(1, 9, 2000))[:5000]
    idx = np.arange(5000)
    cases = (((emb, labels, emb, labels), idx), ((emb[:700], labels[:700], emb[700:], labels[700:]), None))
    n_tied = 0
    for (q, ql, g, gl), ex in cases:
        new, old = metrics.rank_queries(q, ql, g, gl, exclude=ex, k=10), old_rank_queries(q, ql, g, gl, exclude=ex, k=10)
        for key in ("first_rank", "n_rel", "ap_r"):
            assert np.array_equal(getattr(new, key), old[key]), key
        differ = np.flatnonzero((new.topk != old["topk"]).any(1))
        same = np.setdiff1d(np.arange(len(q)), differ)
        assert np.array_equal(new.topk[same], old["topk"][same])
        assert np.array_equal(new.topk_rel[same], old["topk_rel"][same])
        for i in differ:
            c = i // 512 * 512
            sims = (q[c:c + 512] @ g.T)[i - c]  # the very product the code ranks (chunks of 512)
            if ex is not None:
                sims[ex[i]] = -np.inf
            stable = np.lexsort((np.arange(len(g)), -sims))[:11]
            assert sims[stable[9]] == sims[stable[10]]  # a tie at the 10th place, and only there
            assert np.array_equal(new.topk[i], stable[:10])
            assert np.array_equal(np.sort(sims[old["topk"][i]]), np.sort(sims[stable[:10]]))
        n_tied += len(differ)
    assert n_tied > 0  # the case was exercised


def test_tie_at_the_kth_place_keeps_the_lowest_indices():
    """Six identical gallery items tie for the top; k = 3 keeps indices 1, 2, 3 (the rule), and the
    relevant item at index 5 ranks 5th (four equal items with lower indices come first)."""
    g = np.tile(np.array([[1.0, 0.0]], np.float32), (7, 1))
    g[0] = [0.0, 1.0]
    labels = np.array([9, 0, 0, 0, 0, 1, 0])
    r = metrics.rank_queries(np.array([[1.0, 0.0]], np.float32), np.array([1]), g, labels, k=3)
    assert r.topk[0].tolist() == [1, 2, 3] and r.first_rank[0] == 5 and r.n_rel[0] == 1


def test_torch_ranking_path_equals_the_numpy_path():
    """The path a GPU takes (torch on the device), run on the CPU: with small-integer embeddings every
    product is exact in float32 whichever BLAS computes it, so both paths must agree on every field,
    including the many exact ties such data has."""
    rng = np.random.default_rng(3)
    emb = rng.integers(-2, 3, size=(1500, 16)).astype(np.float32)
    labels = np.repeat(np.arange(600), rng.integers(1, 6, 600))[:1500]
    for q, ql, g, gl, ex in ((emb, labels, emb, labels, np.arange(1500)),
                             (emb[:300], labels[:300], emb[300:], labels[300:], None)):
        a = metrics.rank_queries(q, ql, g, gl, exclude=ex, k=10, chunk=256)
        b = metrics.rank_queries(q, ql, g, gl, exclude=ex, k=10, chunk=256, device="cpu")
        for key in ("first_rank", "n_rel", "topk_rel", "ap_r", "topk"):
            assert np.array_equal(getattr(a, key), getattr(b, key)), key
    g = np.tile(np.array([[1.0, 0.0]], np.float32), (7, 1))
    g[0] = [0.0, 1.0]
    r = metrics.rank_queries(np.array([[1.0, 0.0]], np.float32), np.array([1]), g, np.array([9, 0, 0, 0, 0, 1, 0]),
                           k=3, device="cpu")
    assert r.topk[0].tolist() == [1, 2, 3] and r.first_rank[0] == 5


def test_overfitting_intervals_contain_the_figures_and_resample_each_split():
    emb, labels = _emb(40, per=(3, 6), noise=1.1, seed=6)
    tr_emb, tr_labels = _emb(40, per=(3, 6), noise=0.5, seed=7)
    qa, qb = metrics.overfitting_queries(tr_emb, tr_labels, emb, labels, 100, 1)
    fig = metrics.overfitting_figures(qa, qb)
    assert fig == metrics.overfitting(tr_emb, tr_labels, emb, labels, 100, 1)
    ci = metrics.overfitting_intervals(qa, qb, 200, 0)
    for k in ("train_recall@1", "test_recall@1", "gap"):
        lo, hi = ci[f"overfitting.{k}"]
        assert lo <= fig[k] <= hi and hi > lo, k
    assert fig["gap"] > 0 and ci["overfitting.gap"][0] > 0, "the low-noise train split is easier: a real gap"


def test_clustering_of_a_subset_clusters_exactly_those_identities_and_the_resample_knows_it():
    """`eval.cluster_identities`: k-means on the images of that many identities drawn by the seed; the
    resample data keeps those images only, and its clustering draws widen by their count, not all ids'."""
    from petlib.metrics import resample

    emb, labels = _emb(30, per=(2, 5), noise=0.5, seed=3)
    keep = metrics.cluster_subset(labels, 10, seed=4)
    assert len(np.unique(labels[keep])) == 10 and set(np.flatnonzero(keep)) == set(np.flatnonzero(np.isin(labels, labels[keep])))
    assert (metrics.cluster_subset(labels, 10, seed=4) == keep).all() and metrics.cluster_subset(labels, None).all()
    got = metrics.clustering(emb, labels, seed=4, identities=10)
    assert got == metrics.clustering(emb[keep], labels[keep], seed=4) and got["k"] == 10
    pairs = metrics.sample_pairs(labels, 200, seed=1)
    s = metrics.build_sample(emb, labels, pairs, 0.5, 4, cluster_identities=10)
    f = metrics.figures(s, np.ones(30, np.int64))
    assert f["clustering.nmi"] == pytest.approx(got["nmi"])
    assert f["retrieval.recall@1"] == metrics.retrieval(emb, labels)["recall@1"]
    assert resample.clustered_identities(s) == 10 and len(s["uniq"]) == 30

"""What an app team decides (issue 16): each figure against a brute-force computation on a small case."""
import math

import numpy as np
import pytest

from petlib import metrics


def _unit(rng, n, d=8):
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float64)


def test_threshold_at_far_is_the_lowest_that_keeps_the_rate():
    rng = np.random.default_rng(0)
    for n, far in ((100, 0.01), (1000, 1e-3), (250, 0.05), (40, 0.1)):
        neg = np.round(rng.normal(size=n), 2)  # rounded: ties
        t = metrics.threshold_over(neg, far)
        assert (neg >= t).mean() <= far
        below = [c for c in np.unique(neg) if c < t and (neg >= c).mean() <= far]
        assert not below, "a lower candidate threshold would also keep the rate"
    assert math.isnan(metrics.threshold_over(np.zeros(50), 1e-2)), "fewer than 1/FAR negatives: not measurable"
    m = metrics.far_thresholds(rng.normal(size=150))
    assert m["1e-2"] is not None and m["1e-3"] is None and m["1e-4"] is None
    labels = np.repeat(np.arange(10), 3)
    emb = _unit(rng, 30)
    neg = metrics.impostor_scores(emb, labels, max_images=30)
    assert sorted(neg) == pytest.approx(sorted(float(emb[i] @ emb[j]) for i in range(30) for j in range(i + 1, 30)
                                               if labels[i] != labels[j]))


def test_enrolment_figures_equal_a_loop():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(30), rng.integers(2, 8, 30))
    emb = _unit(rng, 30)[labels] + 0.6 * _unit(rng, len(labels))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rows = metrics.enrolment(emb, labels, ks=(1, 3), far=0.1, n_boot=0, seed=4)
    for r in rows:
        sp = metrics.open_set_split(labels, [4, r["k"]], 0.5, per_identity=r["k"], min_photos=r["k"] + 1)
        galleries = [[j for j in sp["gallery"] if labels[j] == lab] for lab in sp["enrolled"]]
        assert all(len(g) == r["k"] for g in galleries)
        mated_truth = [list(sp["enrolled"]).index(labels[i]) for i in sp["mated"]]
        right, mated_best, nonmated_best = [], [], []
        for probes, store, truth in ((sp["mated"], mated_best, mated_truth), (sp["nonmated"], nonmated_best, None)):
            for n, i in enumerate(probes):
                per = []
                for g in galleries:
                    s = [float(emb[i] @ emb[j]) for j in g]
                    c = emb[g].mean(0)
                    per.append({"max": max(s), "mean": sum(s) / len(s),
                                "centroid": float(emb[i] @ (c / np.linalg.norm(c)))}[r["match"]])
                store.append(max(per))
                if truth is not None:
                    right.append(int(np.argmax(per)) == truth[n])
        assert r["rank1"] == pytest.approx(np.mean(right))
        want = metrics.dir_at_far(np.array(mated_best), np.array(right), np.array(nonmated_best), 0.1)
        assert not math.isnan(want) and r["dir@far=1e-1"] == pytest.approx(want)
        assert r["n_mated"] == len(right) and r["n_nonmated"] == len(nonmated_best)
    assert {r["match"] for r in rows} == {"max", "mean", "centroid"}
    assert metrics.smallest_sufficient_k([{"k": 1, "match": "max", "rank1": 0.5}, {"k": 2, "match": "max", "rank1": 0.795},
                                        {"k": 3, "match": "max", "rank1": 0.8}], "max") == 2


def test_nearest_impostor_equals_a_loop():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 9, 60)
    emb = _unit(rng, 60)
    idx, val = metrics.nearest_impostors(emb, labels, chunk=7)
    for i in range(60):
        others = [j for j in range(60) if labels[j] != labels[i]]
        j = max(others, key=lambda j: (emb[i] @ emb[j], -j))
        assert idx[i] == j and val[i] == pytest.approx(emb[i] @ emb[j])


def test_impostor_rates_by_hand():
    genuine = np.array([0.9, 0.8, 0.7, 0.6])
    rows = metrics.impostor_study(genuine, np.array([0.1, 0.2, 0.65, 0.3]), {"look-alike": np.array([0.75, 0.85])},
                                threshold=0.62, fars=(0.5,))
    rand, look = rows
    assert rand["false_match_rate@recommended"] == 0.25 and look["false_match_rate@recommended"] == 1.0
    # FAR 0.5 over [0.65, 0.3, 0.2, 0.1]: 2 may pass -> t just above 0.3 -> all 4 genuine accepted
    assert rand["tar@far=5e-1"] == 1.0
    # over [0.85, 0.75]: 1 may pass -> t just above 0.75 -> genuine 0.9, 0.8 accepted
    assert look["tar@far=5e-1"] == 0.5


def test_gallery_growth_equals_a_loop():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(40), 3)
    emb = _unit(rng, 40)[labels] + 0.5 * _unit(rng, 120)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    distractors = _unit(rng, 50)
    rows = metrics.gallery_growth(emb, labels, distractors, threshold=0.7, sizes=(10, 50), fpir=0.1, seed=5)
    assert [r["gallery_size"] for r in rows] == [10, 50, 70]
    r = rows[1]  # 20 enrolled test pets + 30 distractors
    sp = metrics.open_set_split(labels, 5, 0.5, per_identity=1, min_photos=2)
    enrolled = sp["enrolled"][:20]
    strangers = np.unique(labels[sp["nonmated"]])
    assert len(sp["enrolled"]) == 20 and not set(strangers) & set(sp["enrolled"])
    first = {labels[g]: g for g in sp["gallery"]}
    gallery = [emb[first[l]] for l in enrolled] + list(distractors[:30])
    nm = [max(float(emb[i] @ g) for g in gallery) for i in np.flatnonzero(np.isin(labels, strangers))]
    t = metrics.threshold_over(np.array(nm), 0.1)
    misses = []
    for l in enrolled:
        for i in np.flatnonzero(labels == l):
            if i == first[l]:
                continue
            s = [float(emb[i] @ g) for g in gallery]
            misses.append(not (int(np.argmax(s)) == list(enrolled).index(l) and max(s) >= t))
    assert r["fnir@fpir=1e-1"] == pytest.approx(np.mean(misses))
    assert r["false_alarm_rate@recommended"] == pytest.approx(np.mean([v >= 0.7 for v in nm]))

import numpy as np

from petlib.bench import best_threshold


def test_threshold_sweep_hand_computed():
    # positives 0.9, 0.35, 0.1; negatives 0.4, 0.2, -0.3. Accuracy by threshold t (same if score >= t):
    #   t <= -0.3: 3/6 | -0.29..0.10: 4/6 (TP3 FP2) | 0.11..0.20: 3/6 | 0.21..0.35: 4/6 | 0.36..0.40: 3/6
    #   0.41..0.90: 4/6 | above: 3/6.  Best 4/6, lowest threshold -0.29: precision 3/5, recall 1, F1 0.75.
    r = best_threshold(np.array([0.9, 0.35, 0.1, 0.4, 0.2, -0.3]), np.array([1, 1, 1, 0, 0, 0]))
    assert r["accuracy"] == 4 / 6
    assert r["threshold"] == -0.29
    assert r["precision"] == 3 / 5 and r["recall"] == 1.0
    assert abs(r["f1"] - 0.75) < 1e-12


def test_threshold_sweep_separable():
    r = best_threshold(np.array([0.8, 0.7, 0.2, 0.1]), np.array([1, 1, 0, 0]))
    assert r["accuracy"] == 1.0 and 0.2 < r["threshold"] <= 0.7 and r["f1"] == 1.0
    assert r["threshold"] == 0.21


def test_threshold_sweep_matches_brute_force():
    rng = np.random.default_rng(0)
    s = rng.uniform(-0.6, 1.0, 300)
    y = rng.random(300) < 0.5
    r = best_threshold(s, y)
    best = max(((np.mean((s >= t) == y), -t) for t in np.round(np.arange(-0.5, 1.0001, 0.01), 2)))
    assert abs(r["accuracy"] - best[0]) < 1e-12 and abs(r["threshold"] + best[1]) < 1e-9

"""Issue 33's defects, each checked against a hand computation or a simulation: training variance on both
sides, robustness resampled by identity, clustering's subsample correction, the true reason a row is not
called, and cells that show the value compared."""
import math

import numpy as np
import pytest
from scipy import stats

from petlib import compare, metrics
from petlib.metrics import paired, resample, simulate


def _seeds(n_seeds: int, noise: float = 1.0, n_ids: int = 40, spread: float = 0.3, first: int = 0) -> list[dict]:
    """A model trained n_seeds times: each seed's noise level differs, as trainings do."""
    labels = np.repeat(np.arange(n_ids), 4)
    centres = np.random.default_rng(0).normal(size=(n_ids, 32))
    pairs = metrics.sample_pairs(labels, 1000, seed=42)
    out = []
    for s in range(first, first + n_seeds):
        rng = np.random.default_rng(100 + s)
        emb = simulate.embeddings(centres, labels, noise * (1 + spread * rng.normal()), rng)
        out.append(metrics.build_sample(emb, labels, pairs, 0.5, 42))
    return out


def test_seed_variance_is_s_squared_over_s_by_hand():
    a = _seeds(3)
    per = [metrics.figures(s, np.ones(len(s["uniq"]), np.int64))["retrieval.recall@1"] for s in a]
    var, df = paired.seed_terms(a, ["retrieval.recall@1"])["retrieval.recall@1"]
    assert var == pytest.approx(np.var(per, ddof=1) / 3) and df == 2
    assert math.isnan(paired.seed_terms(a[:1], ["retrieval.recall@1"])["retrieval.recall@1"][0])


def test_a_recipe_row_counts_both_sides_seed_variance_and_a_single_training_says_so():
    a, b = _seeds(3), _seeds(3, noise=1.05, first=10)
    names = ["retrieval.recall@1"]
    draws = paired.paired_draws(a, b, names, 100, 0)
    extra = paired.seed_adjustment(a, b, draws, names, 39)[0]["retrieval.recall@1"]
    assert extra > 0 and paired.recipe_level(a, b)
    with_seeds = paired.compare_models(a, b, names, n=100)["student"][0]
    test_only = paired.holm(names, {names[0]: with_seeds.difference}, draws, df=39)[0]
    width = lambda r: r.ci95[1] - r.ci95[0]  # noqa: E731
    boot = draws[:, 0].var(ddof=1)
    (va, _), (vb, _) = (paired.seed_terms(s, names)[names[0]] for s in (a, b))
    df = (boot + va + vb) ** 2 / (boot ** 2 / 39 + va ** 2 / 2 + vb ** 2 / 2)  # Satterthwaite, by hand
    by_hand = 2 * stats.t.ppf(0.975, df) * math.sqrt(boot + extra)
    assert width(with_seeds) == pytest.approx(by_hand)
    assert width(test_only) == pytest.approx(2 * stats.t.ppf(0.975, 39) * math.sqrt(boot))
    # one training on one side: no seed term, and the note says the row compares trained models
    assert not paired.recipe_level(a, b[:1])
    assert paired.seed_adjustment(a, b[:1], draws, names, 39) == ({names[0]: 0}, {names[0]: 39})
    called = paired.RowTest("x", 0.1, [0.05, 0.15], [0.05, 0.15], 0.95, 0.001, True, True)
    assert "trained models compared, not recipes: mfn trained once" in compare._why(called, False, ["mfn"])


def _seed_row_coverage(df_rule, sims: int = 2000, seeds: int = 3) -> float:
    """Coverage of a recipe row's 95% interval when three seeds a side hold most of its variance: the
    true difference is 0; each side's seeds scatter by 0.04 around it, the test set adds 0.01 to both."""
    rng, hits = np.random.default_rng(5), 0
    for _ in range(sims):
        a, b = rng.normal(0, 0.04, seeds), rng.normal(0, 0.04, seeds)
        observed = a.mean() - b.mean() + rng.normal(0, 0.01)
        draws = rng.normal(observed, 0.01, (200, 1))
        terms = {"x": [(a.var(ddof=1) / seeds, seeds - 1), (b.var(ddof=1) / seeds, seeds - 1)]}
        row = paired.holm(["x"], {"x": observed}, draws, df=df_rule(draws, terms),
                          extra={"x": sum(v for v, _ in terms["x"])})[0]
        hits += row.ci95[0] <= 0 <= row.ci95[1]
    return hits / sims


def test_a_few_seeds_give_the_interval_satterthwaites_degrees_of_freedom_and_it_covers():
    assert 0.93 <= _seed_row_coverage(lambda draws, terms: paired.row_df(draws, ["x"], 79, terms)) <= 0.97
    assert _seed_row_coverage(lambda draws, terms: 79) < 0.92  # the test identities' df alone: too narrow
    assert paired.row_df(np.zeros((5, 1)) + np.arange(5)[:, None], ["x"], 79, {"x": []}) == {"x": 79}
    assert paired.satterthwaite([(1.0, 10), (1.0, 10)]) == pytest.approx(20)


def test_robustness_is_resampled_by_the_identity_of_each_degraded_image():
    labels = np.repeat(np.arange(6), 3)
    emb = np.random.default_rng(0).normal(size=(18, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sel = np.array([0, 1, 3, 4, 9, 12])  # identities 0, 0, 1, 1, 3, 4
    drops = {"jpeg_compression": np.array([0.1, 0.2, 0.3, 0.5, 0.7, 0.9])}
    s = metrics.build_sample(emb, labels, metrics.sample_pairs(labels, 100, seed=1), 0.5, 1, robustness=drops,
                             robustness_labels=labels[sel])
    counts = np.array([2, 0, 1, 0, 3, 0])  # identity 0 twice, 1 and 3 never, 2 once, 4 three times
    by_hand = (2 * 0.1 + 2 * 0.2 + 3 * 0.9) / (2 + 2 + 3)
    assert metrics.figures(s, counts, clusters=False)["robustness.jpeg_compression.sim_drop"] == pytest.approx(by_hand)


def test_the_subsample_correction_restores_the_full_sets_spread():
    """A statistic over the distinct identities a draw holds (as clustering is) spreads like a subsample;
    scaled by subsample_scale its sd is the ordinary bootstrap's (sigma / sqrt(n)), within 8 %."""
    rng = np.random.default_rng(3)
    n = 150
    x = rng.normal(size=n)
    distinct, ordinary = [], []
    for _ in range(3000):
        c = np.bincount(rng.integers(0, n, n), minlength=n)
        distinct.append(x[c > 0].mean())
        ordinary.append((x * c).sum() / n)
    corrected = np.std(distinct) * resample.subsample_scale(n)
    assert corrected == pytest.approx(np.std(ordinary), rel=0.08)
    assert np.std(distinct) < 0.85 * np.std(ordinary), "uncorrected, the spread is too narrow"
    widened = resample.widen_clustering(np.column_stack([distinct, distinct]), ["clustering.nmi", "retrieval.x"], n)
    assert np.std(widened[:, 0]) == pytest.approx(corrected) and np.array_equal(widened[:, 1], distinct)


def test_not_called_says_when_the_step_down_stopped_before_a_row_that_excludes_zero():
    z = np.random.default_rng(0).normal(size=2000)
    z = (z - z.mean()) / z.std(ddof=1)
    # "first" (z = 2.17) has the smaller p but fails Holm's 1 - alpha/2 level (2.24); "second" (z = 2.0)
    # would pass its 95 % level (1.96) alone
    first, second = 0.2 + 0.092 * z, 0.2 + 0.1 * z
    rows = paired.holm(["first", "second"], {"first": 0.2, "second": 0.2}, np.column_stack([first, second]),
                       alpha=0.05, method="normal")
    by = {r.name: r for r in rows}
    assert not by["first"].called and not by["second"].called
    stopped = [r for r in rows if r.excludes and not r.called]
    assert stopped and "step-down stopped" in compare._why(stopped[0], True, [])
    assert "includes 0" in compare._why(next(r for r in rows if not r.excludes), True, [])


def test_cells_show_the_seed_mean_that_is_compared():
    from tests.test_compare import _metrics_of

    a, b = _seeds(2), _seeds(1, noise=1.3, first=20)
    ms = {"a": _metrics_of(a[:1]), "b": _metrics_of(b)}
    table = compare.compare(ms, {"a": a, "b": b}, n_boot=30)
    row = table[table["metric"] == "Recall@1"].iloc[0]
    assert row["a"] == pytest.approx(metrics.model_values(a)["retrieval.recall@1"])
    assert row["a"] != pytest.approx(metrics.figures(a[0], np.ones(40, np.int64))["retrieval.recall@1"])


def test_the_minimum_detectable_difference_is_called_with_80_percent_power():
    """By hand: (z_0.975 + z_0.8) sd; and a true difference of that size is called in ~80 % of simulated
    studies by the same rule (observed / se beyond z_0.975)."""
    z = np.random.default_rng(0).normal(size=4000)
    d = 0.03 * (z - z.mean()) / z.std(ddof=1)
    mde = paired.minimum_detectable(d, 0.95, method="normal")
    assert mde == pytest.approx((1.959964 + 0.841621) * 0.03, rel=1e-5)
    observed = np.random.default_rng(1).normal(mde, 0.03, 20000)
    assert (np.abs(observed) / 0.03 > 1.959964).mean() == pytest.approx(0.80, abs=0.01)
    row = paired.holm(["x"], {"x": 0.0}, d[:, None], method="normal")[0]
    assert row.mde == pytest.approx(mde) and "may be missed" in compare._why(row, True, [])


def test_a_verification_pair_follows_both_its_identities_two_way():
    """Owen's two-way draw by hand: an impostor pair of identities a, b is in a draw counts[a] x counts[b]
    times, a genuine pair of identity g counts[g] times; the figures then equal those of the pairs so
    repeated (and the impostor side moves: a draw that drops only second identities changes them)."""
    labels = np.repeat(np.arange(6), 3)
    emb = simulate.embeddings(np.random.default_rng(1).normal(size=(6, 8)), labels, 0.8, np.random.default_rng(2))
    pairs = metrics.sample_pairs(labels, 60, seed=1)
    s = metrics.build_sample(emb, labels, pairs, 0.5, 1)
    counts = np.array([2, 0, 1, 3, 1, 0])
    want = []
    for i, (a, b, same) in enumerate(pairs):
        ga, gb = labels[a], labels[b]
        want += [i] * int(counts[ga] if same else counts[ga] * counts[gb])
    np.testing.assert_array_equal(resample.pair_draw(s, counts), want)
    sc, y = s["p_score"][want], s["p_same"][want]
    assert metrics.figures(s, counts)["ranking.roc_auc"] == pytest.approx(metrics.pair_ranking(sc, y)["roc_auc"])
    assert ((labels[pairs[:, 1]] == 5) & (labels[pairs[:, 0]] != 5)).any()
    kept = resample.pair_draw(s, np.array([1, 1, 1, 1, 1, 0]))
    assert not (labels[pairs[kept, 1]] == 5).any(), "a pair whose second identity is not drawn stays out"

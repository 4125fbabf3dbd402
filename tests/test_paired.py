"""The comparison rule's calibration (issue 33), a fast version of benchmarks/error_rates.py: the
false-call rate of a whole block on a null with unbalanced identities and errors both models share,
power at a stated effect, and the coverage bookkeeping checked by hand."""
from dataclasses import replace

import numpy as np
import pytest

from petlib.metrics import calibration as cal

SMALL = replace(cal.Null(), n_ids=30, sizes=(3, 8), n_pairs=600, n_triplets=500, n_degraded=60,
                seeds_a=1, seeds_b=1, seed_sd=0.0)


@pytest.mark.slow
def test_false_calls_over_a_block_tell_5_from_9_percent():
    """Two models of one distribution (one seed each, no seed spread, so the truth is 0 on every row),
    400 blocks of 16 rows. At most 28 blocks with a call (7%) passes: at a true 5% that fails with
    probability 3%, at 9% it passes with probability 7% (binomial), so a rule at 9% fails here. And no
    row's 95% interval covers clearly less than 93% (its Wilson upper bound below)."""
    runs = [cal.simulate_once(SMALL, i, 100, ("student",), False, 200, seed=7) for i in range(400)]
    r = cal.summarise(runs, None)["student"]
    assert r["false_blocks"]["k"] <= 28, r["false_blocks"]
    assert all(c["high"] >= 0.93 for c in r["coverage"].values() if c["n"] >= 100), r["coverage"]


@pytest.mark.slow
def test_power_at_a_stated_effect():
    """B's noise 1.6x A's: the rule finds Recall@1 and ROC-AUC in nearly every test set."""
    runs = [cal.simulate_once(replace(SMALL, effect=1.6, n_ids=60), i, 100, ("student",), False, 200, seed=8)
            for i in range(20)]
    called = {n: np.mean([r["tests"]["student"][j].called for r in runs]) for j, n in enumerate(runs[0]["names"])}
    assert called["retrieval.recall@1"] >= 0.9 and called["ranking.roc_auc"] >= 0.9, called


def test_summarise_counts_coverage_and_false_calls_by_hand():
    """Two rows, three simulations: coverage of a given target, a false call = called where the target is
    0 or against its sign; the Wilson interval against its formula."""
    from petlib.metrics.paired import RowTest

    def t(d, lo, hi, called):
        return RowTest("x", d, [lo, hi], [lo, hi], 0.95, 0.01, called)

    runs = [{"names": ["a", "b"], "tests": {"student": [t(0.1, 0.05, 0.15, True), t(0.0, -1, 1, False)]}},
            {"names": ["a", "b"], "tests": {"student": [t(-0.1, -0.2, -0.05, True), t(0.0, -1, 1, False)]}},
            {"names": ["a", "b"], "tests": {"student": [t(0.3, 0.25, 0.35, False), t(0.5, 0.4, 0.6, True)]}}]
    target = np.array([[0.1, 0.0], [0.1, 0.0], [0.1, 0.5]])
    r = cal.summarise(runs, target)["student"]
    assert [r["coverage"][k]["k"] for k in "ab"] == [1, 3]  # only the first row of the first simulation covers 0.1
    assert r["false_blocks"]["k"] == 1  # the second simulation calls row a against the target's sign
    zero = cal.summarise(runs, None)["student"]
    assert zero["false_blocks"]["k"] == 3 and zero["coverage"]["a"]["k"] == 0
    w, p, n, z = cal.wilson(3, 40), 3 / 40, 40, 1.959964
    centre, half = (p + z * z / 80) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (w["low"], w["high"]) == pytest.approx((centre - half, centre + half))


def test_truth_reads_a_quadratic_in_log_scale_exactly():
    grid = np.geomspace(0.8, 1.25, 7)
    curve = np.stack([1 - 0.5 * np.log(grid) + 0.2 * np.log(grid) ** 2, np.log(grid)], 1)
    got = cal.truth(grid, curve, [1.1, 0.9, 1.0], [1.2])
    f = lambda s: np.array([1 - 0.5 * np.log(s) + 0.2 * np.log(s) ** 2, np.log(s)])  # noqa: E731
    np.testing.assert_allclose(got, (f(1.1) + f(0.9) + f(1.0)) / 3 - f(1.2), atol=1e-9)


def test_shared_noise_makes_the_two_models_errors_correlate():
    """The knob the benchmark matches to the demo: more shared image noise, more correlated hits."""
    lo, hi = (cal.simulated_hit_correlation(replace(SMALL, shared=s), n=3) for s in (0.0, 0.9))
    assert lo < 0.15 < 0.4 < hi, (lo, hi)

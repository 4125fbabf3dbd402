"""04_compare's engine (design §6.4 / §9.2): many metrics.json in, one table out, from Python and the CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from petlib import compare, compare_report
from petlib.schema import SCHEMA

RULES = compare_report.claims()


def _fake_metrics(r1, ci, eer, params, species="cat", fp="f00d"):
    return {"schema": SCHEMA, "species": species, "test_fingerprint": fp,
            "retrieval": {"recall@1": r1, "recall@5": r1, "mrr": r1, "map@r": r1},
            "ranking": {"roc_auc": 0.9, "eer": eer, "tar@far=1e-3": None},
            "ci95": {"retrieval.recall@1": ci, "ranking.eer": [eer, eer]},
            "efficiency": {"params": params, "onnx_bytes": 10, "cpu_latency_ms": 1.0}}


def _samples(noise: float, seed: int, n_ids: int = 60):
    """One model's resample data on a fixed synthetic test set (identity centres shared by all models)."""
    from petlib import metrics
    from petlib.metrics import simulate

    labels = np.repeat(np.arange(n_ids), 4)
    centres = np.random.default_rng(0).normal(size=(n_ids, 32))
    emb = simulate.embeddings(centres, labels, noise, np.random.default_rng(seed))
    return [metrics.build_sample(emb, labels, metrics.sample_pairs(labels, 2000, seed=42), 0.5, 42)]


def _metrics_of(samples, params=1_000_000, species="cat", fp="f00d"):
    """A metrics dict whose figures are the samples' own (as evaluate writes them)."""
    from petlib import metrics

    m = {"schema": SCHEMA, "species": species, "test_fingerprint": fp,
         "efficiency": {"params": params, "onnx_bytes": 10, "cpu_latency_ms": 1.0}}
    for name, v in metrics.model_values(samples).items():
        section, key = name.split(".", 1)
        node = m.setdefault(section, {})
        *head, last = key.split(".")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = v
    return m


def test_exact_rows_latency_and_rows_without_resample_data():
    a = _fake_metrics(0.80, [0.70, 0.90], 0.10, 2_000_000)
    b = _fake_metrics(0.75, [0.72, 0.78], 0.20, 1_000_000)
    b["efficiency"]["cpu_latency_ms"] = 2.0
    t = compare.compare({"A": a, "B": b}).set_index("metric")
    assert t.loc["Embedder params", "best"] == "B", "fewer parameters win: an exact fact"
    assert t.loc["CPU latency (ms, batch 1)", "best"] == "" and "one timing" in t.loc["CPU latency (ms, batch 1)", "note"]
    assert t.loc["Recall@1", "best"] == "" and "no resample data" in t.loc["Recall@1", "note"]
    assert t.loc["TAR@FAR=1e-3", "best"] == ""
    md = compare_report.to_markdown(t.reset_index(), ["A", "B"], {"A": a, "B": b})
    assert "**1,000,000**" in md and "0.8 [0.7, 0.9]" in md


def test_equal_exact_values_share_the_bold():
    a, b, c = (_fake_metrics(0.8, None, 0.1, p) for p in (1_000_000, 1_000_000, 2_000_000))
    t = compare.compare({"A": a, "B": b, "C": c}).set_index("metric")
    assert t.loc["Embedder params", "best"] == "A,B"
    same = compare.compare({"A": a, "B": b}).set_index("metric")
    assert same.loc["Embedder params", "best"] == "" and same.loc["Embedder params", "note"] == "tie: equal values"


def test_paired_rule_calls_a_real_difference_and_never_identical_models():
    good, bad = _samples(0.8, 1), _samples(1.6, 2)
    metrics = {"good": _metrics_of(good), "bad": _metrics_of(bad)}
    t = compare.compare(metrics, {"good": good, "bad": bad}, n_boot=100).set_index("metric")
    assert t.loc["Recall@1", "best"] == "good" and t.loc["ROC-AUC", "best"] == "good"
    assert t.loc["EER", "best"] == "good", "lower EER wins"
    lo, hi = t.loc["Recall@1", "ci_low"], t.loc["Recall@1", "ci_high"]
    assert 0 < lo < hi, "the leader's adjusted interval lies above zero"
    assert f"[{lo:.3g}, {hi:.3g}]; detectable at 80% power" in t.loc["Recall@1", "difference"]
    same = {"a": _metrics_of(good), "b": _metrics_of(good)}
    t = compare.compare(same, {"a": good, "b": good}, n_boot=50)
    assert not t[t["category"] != "Efficiency"]["best"].any(), "identical models are called on no row"


def test_latency_is_compared_from_interleaved_timings():
    from petlib.latency import interleaved

    calls = []
    got = interleaved({"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}, np.zeros(1), rounds=4,
                      warmup=1)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"], "warm-up, then the order reverses"
    assert {k: len(v) for k, v in got.items()} == {"a": 4, "b": 4}
    a, b = _fake_metrics(0.8, None, 0.1, 1), _fake_metrics(0.7, None, 0.2, 1)
    rng = np.random.default_rng(0)
    fast, slow = 0.004 + 0.0002 * rng.random(60), 0.006 + 0.0002 * rng.random(60)
    t = compare.compare({"A": a, "B": b}, timings={"A": fast, "B": slow}).set_index("metric")
    row = t.loc["CPU latency (ms, batch 1)"]
    assert row["best"] == "A" and row["A"] == pytest.approx(np.median(fast) * 1000)
    t = compare.compare({"A": a, "B": b}, timings={"A": fast, "B": fast.copy()}).set_index("metric")
    assert t.loc["CPU latency (ms, batch 1)", "best"] == ""


def test_holm_steps_down_by_p_and_stops_at_the_first_failure():
    from petlib.metrics import holm

    rng = np.random.default_rng(0)
    draws = np.column_stack([rng.normal(1.0, 0.1, 400), rng.normal(0.0, 1.0, 400), rng.normal(0.5, 0.1, 400)])
    by = {r.name: r for r in holm(["clear", "noise", "modest"], {"clear": 1.0, "noise": 0.0, "modest": 0.5}, draws)}
    assert by["clear"].called and by["modest"].called and not by["noise"].called
    assert sorted([by["clear"].level, by["modest"].level]) == pytest.approx([1 - 0.05 / 2, 1 - 0.05 / 3])
    assert by["noise"].level == pytest.approx(0.95), "the last step is at the unadjusted level"
    # the second row's own interval excludes zero, but the step before it failed: not called
    weak = rng.normal(0.05, 0.5, 400)
    strong_after = rng.normal(0.3, 0.1, 400)
    rows = holm(["weak", "after"], {"weak": 0.05, "after": 0.3}, np.column_stack([weak, strong_after]))
    assert [r.called for r in rows] == [False, True], "the strong row is first in p order: it is tested first"
    rows = holm(["w1", "w2"], {"w1": 0.05, "w2": 0.05}, np.column_stack([weak, weak]))
    assert [r.called for r in rows] == [False, False]


def test_models_are_ranked_only_within_one_test_set(tmp_path):
    cat_a, cat_b = _fake_metrics(0.8, [0.78, 0.82], 0.1, 1), _fake_metrics(0.5, [0.45, 0.55], 0.3, 2)
    dog = _fake_metrics(0.9, [0.88, 0.92], 0.05, 1, species="dog", fp="beef")
    metrics = {"A-cat": cat_a, "B-cat": cat_b, "A-dog": dog}
    blocks = compare.test_sets(metrics)
    assert [sorted(b) for b in blocks.values()] == [["A-cat", "B-cat"], ["A-dog"]]
    with pytest.raises(ValueError, match="different test sets"):
        compare.compare(metrics)
    same_species_other_split = _fake_metrics(0.9, [0.88, 0.92], 0.05, 1, fp="cafe")
    assert len(compare.test_sets({"A": cat_a, "B": same_species_other_split})) == 2
    tables = compare.ranked_blocks(metrics)
    md = compare_report.report_markdown(metrics, tables)
    block_cat, rest = md.split("## dog test set")
    assert "**1**" in block_cat  # A-cat has fewer parameters on its own test set
    across = rest.split("## Across test sets")[1]
    assert "0.9" in across and "**" not in across, "across test sets nothing is bold"
    head = compare_report.headline(metrics, tables)
    assert head["best R@1 (cat test set f00d)"] == "not called"
    assert head["MobileNetV3 is more accurate (cat test set f00d)"] == "not called"


def test_cli_compares_evaluation_folders_with_their_resample_data(tmp_path):
    from petlib.cli import main
    from petlib.schema import save_samples

    for name, s in (("A", _samples(0.8, 1)), ("B", _samples(1.6, 2))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(_metrics_of(s)))
        save_samples(tmp_path / name, s)
    assert main(["compare", f"A:{tmp_path / 'A'}", f"B:{tmp_path / 'B'}", "--out", str(tmp_path)]) == 0
    rows = [line.split(",") for line in (tmp_path / "comparison.csv").read_text().splitlines()]
    r1 = [r for r in rows if "Recall@1" in r]
    assert {r[3]: r[5] for r in r1} == {"A": "True", "B": "False"}, r1
    assert "Holm-adjusted" in (tmp_path / "comparison.md").read_text()
    assert main(["compare", f"C:{tmp_path / 'none'}"]) == 2


def test_takeaways_follow_the_called_rows():
    good, bad = _samples(0.8, 1), _samples(1.6, 2)
    mn, mf = _metrics_of(good, params=1_600_000), _metrics_of(bad, params=1_000_000)
    mn["backbone"], mf["backbone"] = "mobilenetv3_small_100", "mobilefacenet"
    mn["overfitting"], mf["overfitting"] = {"gap": 0.01}, {"gap": 0.2}
    mn.setdefault("ci95", {})["overfitting.gap"], mf.setdefault("ci95", {})["overfitting.gap"] = [0.0, 0.03], [0.15, 0.25]
    block = {"mnv3": mn, "mfn": mf}
    t = compare.compare(block, {"mnv3": good, "mfn": bad}, n_boot=60)
    v = {r["claim"]: r for r in compare.takeaways(t, block, RULES)}
    assert v["MobileNetV3 is more accurate"]["verdict"] == "supported"
    assert v["MobileFaceNet is more robust to blur, noise and compression"]["verdict"] == "not decided by these rows"
    assert v["Both are small enough for phones"]["verdict"] == "supported"
    assert v["Neither overfits"]["verdict"] == "contradicted" and "mfn 0.2" in v["Neither overfits"]["evidence"]
    # a gap at most 0.05 whose interval reaches above it is not "does not overfit" (the old point rule said so)
    mf["ci95"]["overfitting.gap"], mf["overfitting"]["gap"] = [-0.01, 0.08], 0.03
    assert {r["claim"]: r["verdict"] for r in compare.takeaways(t, block, RULES)}["Neither overfits"] == "cannot tell"
    swapped = {"mnv3": _metrics_of(bad, params=1_600_000), "mfn": _metrics_of(good)}
    swapped["mnv3"]["backbone"], swapped["mfn"]["backbone"] = "mobilenetv3_small_100", "mobilefacenet"
    t2 = compare.compare(swapped, {"mnv3": bad, "mfn": good}, n_boot=60)
    assert {r["claim"]: r["verdict"] for r in compare.takeaways(t2, swapped, RULES)}["MobileNetV3 is more accurate"] == \
        "contradicted"


def test_about_3x_is_judged_on_the_ratios_interval_not_only_the_direction():
    def verdict(mfn_ms, lo, hi, called=True):
        return compare._speed(RULES["speed"], [{"mnv3": "a", "mfn": "b", "mnv3_ms": 1.0, "mfn_ms": mfn_ms,
                                                "ci": [lo, hi], "called": called}])["verdict"]

    assert verdict(3.0, -2.2, -1.8) == "supported"  # ratio [2.8, 3.2]
    assert verdict(1.86, -0.95, -0.77) == "faster, but not about 3x"  # ratio [1.77, 1.95]: the 1.86x the issue names
    assert verdict(2.2, -1.6, -0.8) == "faster; the size cannot be told"  # ratio [1.8, 2.6]
    assert verdict(0.8, 0.1, 0.3) == "contradicted" and verdict(1.1, -0.2, 0.05, called=False) == "not called"
    assert compare._speed(RULES["speed"], [])["verdict"] == "not called"


def test_speed_claim_tests_every_mobilenetv3_against_the_mobilefacenet_not_the_latency_rows_pair():
    """Three models: the latency row ranks the two MobileNetV3s (the reference study printed MFN's 1.51x
    over the 48 px one beside that pair's [1.22, 1.27]); the claim tests each MNv3 against the MFN, paired
    over the same interleaved rounds, and its interval is computed by hand here."""
    rng = np.random.default_rng(3)
    drift = 0.0005 * rng.random(60)  # shared by the three models: the rounds are paired
    t = {"mnv3": 0.0051 + drift + 0.0001 * rng.random(60), "mnv3_48": 0.0041 + drift + 0.0001 * rng.random(60),
         "mfn": 0.0062 + drift + 0.0001 * rng.random(60)}
    block = {n: {**_fake_metrics(0.8, None, 0.1, 1), "backbone": b}
             for n, b in (("mnv3", "mobilenetv3_small_100"), ("mnv3_48", "mobilenetv3_small_100"), ("mfn", "mobilefacenet"))}
    table = compare.compare(block, timings=t, n_boot=400).set_index("metric")
    assert table.loc["CPU latency (ms, batch 1)", "difference"].startswith("mnv3_48 − mnv3")
    tests = table.attrs["speed"]
    assert [(x["mnv3"], x["mfn"]) for x in tests] == [("mnv3", "mfn"), ("mnv3_48", "mfn")]
    widths = []
    for x, name in zip(tests, ("mnv3", "mnv3_48")):
        d = compare._m.latency_draws(t[name], t["mfn"], 400, 0)
        assert x["mnv3_ms"] - x["mfn_ms"] == pytest.approx((np.median(t[name]) - np.median(t["mfn"])) * 1000)
        assert x["called"] and sum(x["ci"]) / 2 == pytest.approx(x["mnv3_ms"] - x["mfn_ms"])
        widths.append((x["ci"][1] - x["ci"][0]) / (2 * d.std(ddof=1)))
    # Holm over the two pairs, 59 df (60 rounds): one interval at 1 - 0.05/2, the other at 1 - 0.05
    assert sorted(widths) == pytest.approx(sorted([stats.t(59).ppf(0.975), stats.t(59).ppf(0.9875)]), rel=1e-6)
    got = {r["claim"]: r for r in compare.takeaways(table.reset_index(), block, RULES)}[RULES["speed"]["claim"]]
    assert got["verdict"] == "faster, but not about 3x", got  # 1.2x and 1.45x, both intervals under 2
    assert "mfn / mnv3 = 1.2" in got["evidence"] and "mfn / mnv3_48 = 1.4" in got["evidence"]


def test_latency_rows_are_a_holm_family_of_their_own():
    """Timing noise differs between machines; it must not move a metric row's Holm level. Two timings of
    one block (latency far apart, then nearly equal): every metric row's interval and call is the same,
    and the latency row's interval is its plain 95% one (a family of one: t(59) by hand)."""
    samples = {"a": _samples(0.8, 1), "b": _samples(1.0, 2)}
    block = {n: _metrics_of(s) for n, s in samples.items()}
    rng = np.random.default_rng(5)
    drift = 0.0005 * rng.random(60)
    apart = {"a": 0.004 + drift + 0.0001 * rng.random(60), "b": 0.008 + drift + 0.0001 * rng.random(60)}
    close = {"a": 0.004 + drift + 0.0001 * rng.random(60), "b": 0.00401 + drift + 0.0001 * rng.random(60)}
    tables = [compare.compare(block, samples, n_boot=300, timings=t).set_index("metric") for t in (apart, close)]
    lat = "CPU latency (ms, batch 1)"
    metric_rows = tables[0].index[tables[0]["ci_low"].notna() & (tables[0].index != lat)]
    assert len(metric_rows) >= 10 and tables[0].loc[lat, "best"] == "a"
    for col in ("ci_low", "ci_high", "best", "note"):
        assert tables[0].loc[metric_rows, col].tolist() == tables[1].loc[metric_rows, col].tolist(), col
    d = compare._m.latency_draws(apart["a"], apart["b"], 300, 0)
    width = tables[0].loc[lat, "ci_high"] - tables[0].loc[lat, "ci_low"]
    assert width / (2 * d.std(ddof=1)) == pytest.approx(stats.t(59).ppf(0.975), rel=1e-6)


def test_repeat_stats_by_hand():
    from petlib.evaluate import repeat_stats
    from petlib.schema import REPEAT_KEYS

    reps = [{sec: {k: v for s2, k in REPEAT_KEYS if s2 == sec} for sec, _ in REPEAT_KEYS} for v in (0.4, 0.5, 0.6)]
    st = repeat_stats(reps)["retrieval.recall@1"]
    assert st["n"] == 3 and abs(st["mean"] - 0.5) < 1e-12 and abs(st["std"] - 0.1) < 1e-12  # sample sd
    assert repeat_stats(reps[:1])["retrieval.recall@1"]["std"] is None


def test_compare_of_metrics_files_imports_no_torch(tmp_path):
    """`petface compare` of finished evaluations must not pay torch's import (seconds, ~1 GB)."""
    code = ("import sys; from petlib.cli import main; "
            "main(['compare', 'A:/nonexistent/a', 'B:/nonexistent/b']); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "metrics.json: not found" in r.stderr


def test_deployment_table_reads_each_models_block():
    a = _fake_metrics(0.8, None, 0.1, 1)
    a["deployment"] = {"recommended_threshold": 0.7, "thresholds": {"1e-3": {"threshold": 0.95, "far": 0.001, "tar": 0.4}},
                       "impostors": [{"impostors": "random", "false_match_rate@recommended": 0.05},
                                     {"impostors": "nearest impostor", "false_match_rate@recommended": 0.6}],
                       "enrolment": [{"k": 1, "match": "mean", "rank1": 0.1}, {"k": 1, "match": "max", "rank1": 0.3}],
                       "gallery_growth": [{"fnir@recommended": 0.2}, {"fnir@recommended": 0.5}]}
    b = _fake_metrics(0.7, None, 0.2, 1, species="dog")  # evaluated before the block existed
    t = compare_report.deployment_table({"A": a, "B": b}).set_index("model")
    assert t.loc["A", "threshold FAR 1e-3"] == 0.95 and t.loc["A", "test TAR at it"] == 0.4
    assert t.loc["A", "false matches: nearest impostor"] == 0.6 and t.loc["A", "open-set rank-1, 1 photo"] == 0.3
    assert t.loc["A", "FNIR, largest gallery"] == 0.5
    assert t.loc["B"].drop("species").isna().all() and t.loc["B", "species"] == "dog"


def test_cached_tables_render_exactly_like_fresh_ones(tmp_path):
    """04 re-renders from compare/tables.json: the markdown, takeaways and headline it draws from the
    reloaded tables equal those of the tables just computed (NaN, None, bools and floats included)."""
    import pandas as pd

    from petlib import compare_stage

    good, bad = _samples(0.8, 1), _samples(1.6, 2)
    metrics = {"good": {**_metrics_of(good), "backbone": "mobilenetv3_small_100"},
               "bad": {**_metrics_of(bad), "backbone": "mobilefacenet"}}
    rng = np.random.default_rng(0)
    timings = {"cat test set f00d": {"good": 0.004 + 0.001 * rng.random(30), "bad": 0.006 + 0.001 * rng.random(30)}}
    tables = compare.ranked_blocks(metrics, {"good": good, "bad": bad}, n_boot=50, timings=timings)
    assert [len(t.attrs["speed"]) for t in tables.values()] == [1], "the speed claim's test is computed and kept"
    compare_stage.save_tables(tmp_path / "tables.json", tables)
    again = compare_stage.load_tables(tmp_path / "tables.json")
    for label, t in tables.items():
        pd.testing.assert_frame_equal(again[label], t)
        block = compare.test_sets(metrics)[label]
        assert compare_report.to_markdown(again[label], list(block), block) == compare_report.to_markdown(t, list(block), block)
        assert compare.takeaways(again[label], block, RULES) == compare.takeaways(t, block, RULES)
    assert compare_report.headline(metrics, again) == compare_report.headline(metrics, tables)


def test_interleaved_timing_feeds_each_model_its_own_input_size():
    from petlib.latency import interleaved

    seen = {"a": set(), "b": set()}
    xs = {"a": np.zeros((1, 3, 48, 48)), "b": np.zeros((1, 3, 96, 96))}
    interleaved({n: (lambda x, n=n: seen[n].add(x.shape[-1])) for n in seen}, xs, rounds=2, warmup=1)
    assert seen == {"a": {48}, "b": {96}}


def test_damaged_or_old_resample_data_is_one_error_naming_the_file(tmp_path):
    from petlib import schema

    good = _samples(0.8, 1)
    assert set(schema.SAMPLE_KEYS) <= set(good[0]), "the reader's keys are the ones build_sample writes"
    schema.save_samples(tmp_path, good)
    assert schema.load_samples(tmp_path)[0]["p_score"] == pytest.approx(good[0]["p_score"])
    schema.save_samples(tmp_path, [{k: v for k, v in good[0].items() if k != "q_rr"}])  # an older writer
    with pytest.raises(ValueError, match=r"resample.npz: resample data without q_rr .*re-run 03_evaluate"):
        schema.load_samples(tmp_path)
    (tmp_path / "resample.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"resample.npz: unreadable resample data"):
        schema.load_samples(tmp_path)

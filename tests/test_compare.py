"""04_compare's engine (design §6.4 / §9.2): many metrics.json in, one table out, from Python and the CLI."""
import json
import subprocess
import sys

import pytest

from petlib import compare
from petlib.schema import SCHEMA


def _fake_metrics(r1, ci, eer, params, species="cat", fp="f00d"):
    return {"schema": SCHEMA, "species": species, "test_fingerprint": fp,
            "retrieval": {"recall@1": r1, "recall@5": r1, "mrr": r1, "map@r": r1},
            "ranking": {"roc_auc": 0.9, "eer": eer, "tar@far=1e-3": None}, "ci95": {"recall@1": ci, "eer": [eer, eer]},
            "efficiency": {"params": params, "onnx_bytes": 10, "cpu_latency_ms": 1.0}}


def test_compare_bolds_right_direction_and_marks_ties(tmp_path):
    a = _fake_metrics(0.80, [0.70, 0.90], 0.10, 2_000_000)
    b = _fake_metrics(0.75, [0.72, 0.78], 0.20, 1_000_000)
    t = compare.compare({"A": a, "B": b}).set_index("metric")
    assert t.loc["Recall@1", "best"] == "" and t.loc["Recall@1", "note"] == "tie: intervals overlap"
    assert t.loc["EER", "best"] == "A", "lower EER wins"
    assert t.loc["Embedder params", "best"] == "B", "fewer parameters win"
    assert t.loc["Recall@5", "best"] == "" and t.loc["Recall@5", "note"] == "not called: no interval"
    assert t.loc["TAR@FAR=1e-3", "best"] == ""
    md = compare.to_markdown(t.reset_index(), ["A", "B"])
    assert "**0.1000**" in md and "tie: intervals overlap" in md
    for name, m in {"A": a, "B": b}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(m))
    from petlib.cli import main
    assert main(["compare", f"A:{tmp_path / 'A'}", f"B:{tmp_path / 'B'}", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "comparison.csv").is_file() and (tmp_path / "comparison.md").is_file()
    assert main(["compare", f"C:{tmp_path / 'none'}"]) == 2


def test_compare_equal_values_share_the_bold():
    a = _fake_metrics(0.8, None, 0.1, 1_000_000)
    b = _fake_metrics(0.7, None, 0.2, 1_000_000)
    c = _fake_metrics(0.6, None, 0.3, 2_000_000)
    t = compare.compare({"A": a, "B": b, "C": c}).set_index("metric")
    assert t.loc["Embedder params", "best"] == "A,B"
    same = compare.compare({"A": a, "B": _fake_metrics(0.8, None, 0.1, 1_000_000)}).set_index("metric")
    assert same.loc["Embedder params", "best"] == "" and same.loc["Embedder params", "note"] == "tie: equal values"
    md = compare.to_markdown(t.reset_index(), ["A", "B", "C"])
    assert md.count("**1,000,000**") == 2


def test_models_are_ranked_only_within_one_test_set(tmp_path):
    cat_a, cat_b = _fake_metrics(0.8, [0.78, 0.82], 0.1, 1), _fake_metrics(0.5, [0.45, 0.55], 0.3, 1)
    dog = _fake_metrics(0.9, [0.88, 0.92], 0.05, 1, species="dog", fp="beef")
    metrics = {"A-cat": cat_a, "B-cat": cat_b, "A-dog": dog}
    blocks = compare.test_sets(metrics)
    assert [sorted(b) for b in blocks.values()] == [["A-cat", "B-cat"], ["A-dog"]]
    with pytest.raises(ValueError, match="different test sets"):
        compare.compare(metrics)
    same_species_other_split = _fake_metrics(0.9, [0.88, 0.92], 0.05, 1, fp="cafe")
    assert len(compare.test_sets({"A": cat_a, "B": same_species_other_split})) == 2
    md = compare.report_markdown(metrics)
    block_cat, rest = md.split("## dog test set")
    assert "**0.8000" in block_cat  # A-cat beats B-cat on its own test set
    across = rest.split("## Across test sets")[1]
    assert "0.9000" in across and "**" not in across, "across test sets nothing is bold"
    assert compare.headline(metrics) == {"best R@1 (cat test set f00d)": "A-cat"}


def test_a_difference_within_the_training_spread_is_a_tie():
    a, b = _fake_metrics(0.80, [0.78, 0.82], 0.1, 1), _fake_metrics(0.75, [0.73, 0.76], 0.2, 1)
    assert compare.compare({"A": a, "B": b}).set_index("metric").loc["Recall@1", "best"] == "A"
    # 3 seeds of A spread R@1 by sd 0.03: a 0.05 difference is within 2 sd, so it is not called
    a["repeat_stats"] = {"retrieval.recall@1": {"mean": 0.79, "std": 0.03, "n": 3}}
    t = compare.compare({"A": a, "B": b}).set_index("metric")
    assert t.loc["Recall@1", "best"] == "" and t.loc["Recall@1", "note"] == "tie: within training spread"
    a["repeat_stats"]["retrieval.recall@1"]["std"] = 0.02  # 0.05 > 2 x 0.02: called
    assert compare.compare({"A": a, "B": b}).set_index("metric").loc["Recall@1", "best"] == "A"
    assert "0.020 sd (3 seeds)" in compare.to_markdown(compare.compare({"A": a, "B": b}), ["A", "B"], {"A": a, "B": b})
    assert "sd of Recall@1" not in compare.training_variance_note({"B": b})
    assert "not measured" in compare.training_variance_note({"B": b})
    assert "A: 0.0200 over 3 repeats" in compare.training_variance_note({"A": a, "B": b})
    assert "Elsewhere in this study, on another test set: A: 0.0200" in compare.training_variance_note({"B": b}, {"A": a})


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
    t = compare.deployment_table({"A": a, "B": b}).set_index("model")
    assert t.loc["A", "threshold FAR 1e-3"] == 0.95 and t.loc["A", "test TAR at it"] == 0.4
    assert t.loc["A", "false matches: nearest impostor"] == 0.6 and t.loc["A", "open-set rank-1, 1 photo"] == 0.3
    assert t.loc["A", "FNIR, largest gallery"] == 0.5
    assert t.loc["B"].drop("species").isna().all() and t.loc["B", "species"] == "dog"

"""04_compare's engine (design §6.4 / §9.2): many metrics.json in, one table out, from Python and the CLI."""
import json
import subprocess
import sys

from petlib import compare
from petlib.metrics import SCHEMA


def _fake_metrics(r1, ci, eer, params):
    return {"schema": SCHEMA, "retrieval": {"recall@1": r1, "recall@5": r1, "mrr": r1, "map@r": r1},
            "ranking": {"roc_auc": 0.9, "eer": eer, "tar@far=1e-3": None}, "ci95": {"recall@1": ci, "eer": [eer, eer]},
            "efficiency": {"params": params, "onnx_bytes": 10, "cpu_latency_ms": 1.0}}


def test_compare_bolds_right_direction_and_marks_ties(tmp_path):
    a = _fake_metrics(0.80, [0.70, 0.90], 0.10, 2_000_000)
    b = _fake_metrics(0.75, [0.72, 0.78], 0.20, 1_000_000)
    t = compare.compare({"A": a, "B": b}).set_index("metric")
    assert t.loc["Recall@1", "best"] == "tie", "overlapping intervals are a tie"
    assert t.loc["EER", "best"] == "A", "lower EER wins"
    assert t.loc["Embedder params", "best"] == "B", "fewer parameters win"
    assert t.loc["Recall@5", "best"] == "A", "no interval: the higher value is bold"
    assert t.loc["TAR@FAR=1e-3", "best"] == ""
    md = compare.to_markdown(t.reset_index(), ["A", "B"])
    assert "**0.1000**" in md and "tie" in md
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
    md = compare.to_markdown(t.reset_index(), ["A", "B", "C"])
    assert md.count("**1,000,000**") == 2


def test_compare_of_metrics_files_imports_no_torch(tmp_path):
    """`petface compare` of finished evaluations must not pay torch's import (seconds, ~1 GB)."""
    code = ("import sys; from petlib.cli import main; "
            "main(['compare', 'A:/nonexistent/a', 'B:/nonexistent/b']); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "metrics.json: not found" in r.stderr

"""Each metric declared once (issue 22): the specs and what the metric functions return agree key for key,
04_compare's rows, the repeat keys and the interval keys are derived from them, docs/metrics.md is current."""
from pathlib import Path

import numpy as np
import pytest

from petlib import compare, metrics, schema
from petlib.constants import DEGRADATIONS
from petlib.metrics.spec import SECTION_ORDER, declare

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _figures() -> dict:
    """Every section of metrics.json that a metric function fills, on small random embeddings."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(30), 4)
    emb = rng.normal(size=(30, 16))[labels] + 0.8 * rng.normal(size=(120, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    pairs = metrics.sample_pairs(labels, 400, seed=0)
    scores = metrics.pair_scores(emb, pairs)
    return {"retrieval": metrics.retrieval(emb, labels), "ranking": metrics.pair_ranking(scores, pairs[:, 2]),
            "verification": metrics.best_threshold(scores, pairs[:, 2]), "open_set": metrics.open_set(emb, labels),
            "clustering": metrics.clustering(emb, labels), "triplets": metrics.triplets(emb, labels, 200),
            "overfitting": metrics.overfitting(emb, labels, emb, labels, 60),
            "robustness": metrics.robustness(emb, {d: emb for d in DEGRADATIONS}, labels),
            "efficiency": {"params": 1, "pt_bytes": 1, "onnx_bytes": 1, "cpu_latency_ms": 1.0, "image_size": 64}}


def test_specs_and_metric_functions_agree_key_for_key():
    got = schema.section_keys(_figures())
    declared = {s.name for s in metrics.specs()}
    assert got - declared == set(), "a figure without a spec"
    assert declared - got == set(), "a spec without a figure"


def _resampled_names() -> set[str]:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(20), 4)
    emb = rng.normal(size=(20, 16))[labels] + 0.8 * rng.normal(size=(80, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    pairs = metrics.sample_pairs(labels, 400, seed=0)
    sample = metrics.build_sample(emb, labels, pairs, 0.5, 0, metrics.triplet_items(emb, labels, 100, 0),
                                  {d: np.zeros(10) for d in DEGRADATIONS}, robustness_labels=labels[:10])
    overfit = metrics.overfitting_intervals(*metrics.overfitting_queries(emb, labels, emb, labels, 40, 0), 10, 0)
    return set(metrics.figures(sample, np.ones(20, np.int64))) | set(overfit)


def test_the_derived_lists_come_from_the_specs():
    ids = {s.name: s for s in metrics.specs()}
    assert schema.REPEAT_KEYS == [(s.section, s.key) for s in metrics.specs() if s.per_repeat]
    assert {k for k, s in ids.items() if s.interval in compare.RESAMPLED} == {
        k for k in _resampled_names()}, "every figure whose spec has an interval is recomputed under resampling"
    assert [r[1] for r in compare.ROWS] == [s.label for s in metrics.specs() if s.category]
    assert [s.section for s in metrics.specs()] == sorted((s.section for s in metrics.specs()),
                                                          key=SECTION_ORDER.index)
    assert compare.ROWS[0][:2] == ("Retrieval", "Recall@1") and compare.ROWS[-1][1] == "CPU latency (ms, batch 1)"


def test_a_spec_is_declared_once_with_a_known_interval():
    with pytest.raises(ValueError, match="declared twice"):
        declare("retrieval", "recall@1", "again")
    with pytest.raises(ValueError, match="interval"):
        declare("retrieval", "new", "new", interval="guess")
    with pytest.raises(ValueError, match="section"):
        declare("elsewhere", "new", "new")


def test_metrics_reference_is_current():
    assert (DOCS / "metrics.md").read_text() == schema.schema_markdown(), \
        "docs/metrics.md is stale: run `make docs`"

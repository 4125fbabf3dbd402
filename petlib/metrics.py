"""The `metrics.json` file one evaluation writes and every comparison reads. No torch here, so that
`petface compare` of finished evaluations starts in a blink.

metrics.json schema (`petface-metrics/1`); every rate is a fraction in [0, 1]:
  model, species, run_dir, checkpoint_sha256, tta, n_images, n_identities  -- what was evaluated
  test_fingerprint: the test split's fingerprint (relative paths and sizes): only metrics with the same
                one were measured on the same test set and may be ranked against each other
  kernels:      the CPU kernel settings it was computed with (petlib.reproducible)
  repeats:      one entry per training repeat {repeat, seed, retrieval, ranking, verification, open_set,
                clustering} with the headline figures of evaluate.REPEAT_KEYS (repeat 0 = the run above)
  repeat_stats: "section.key" -> {mean, std (sample, null with one repeat), n} over the repeats
  retrieval:    recall@1, recall@5, recall@10, mrr, ndcg@10, map@r, n_queries, n_excluded
  clustering:   nmi, ari, purity, k
  ranking:      roc_auc, eer, spearman, tar@far=1e-2, tar@far=1e-3, tar@far=1e-4 (NaN = too few
                negatives), n_pos, n_neg  -- on balanced sampled pairs (n_rank_pairs / 2 each)
  verification: accuracy, threshold, precision, recall, f1  -- best threshold on the same pairs
  triplets:     violation_rate, avg_margin, n
  overfitting:  train_recall@1, test_recall@1, gap, n_train, n_test
  robustness:   clean_recall@1 and per degradation {sim_drop, recall@1, recall@1_drop}
  open_set:     rank1_identification, dir@far=1e-2, dir@far=1e-3, n_gallery, n_mated, n_nonmated
  ci95:         [low, high] for recall@1, mrr, roc_auc, eer, tar@far=1e-3, dir@far=1e-2
  cmc:          identification rate at ranks 1..20
  curves:       roc {fpr, tpr} thinned to <= 400 points, for overlays in 04_compare
  efficiency:   params, pt_bytes, onnx_bytes, cpu_latency_ms (batch 1, torch, this machine)
  protocol:     null, or the data set's own protocol (petlib.protocols), at the run's validation threshold:
                petface: {name, family, verification {n_pairs, pairs_dropped, roc_auc_petface (negative
                  scores set to 0 first, as PetFace's compute_auc.py), roc_auc, eer, tar@far=..,
                  val_threshold, accuracy_at_val_threshold}, reidentification {n_queries, n_dropped (photos of animals
                  without training photos), n_classes,
                  arcface_centres {top1, top5}, nearest_training_image {top1, top5}}}
                dogfacenet: {name, verification {as above, on the test identities' pairs},
                  one_shot {n_gallery, n_probes, rank1, rank5}}
  timings_s:    seconds per stage
"""
from __future__ import annotations

import math
from pathlib import Path

SCHEMA = "petface-metrics/1"


def load_metrics(eval_dir: str | Path) -> dict:
    """One evaluation's metrics; a missing, unreadable or foreign file is one clear error."""
    from .report import read_json

    p = Path(eval_dir) / "metrics.json"
    m = read_json(p)
    if not isinstance(m, dict) or m.get("schema") != SCHEMA:
        raise ValueError(f"{p}: schema {m.get('schema') if isinstance(m, dict) else None!r}, expected {SCHEMA!r}")
    return m


def clean_nan(o):
    """NaN is not JSON: store null (the schema says NaN = not measurable)."""
    if isinstance(o, dict):
        return {k: clean_nan(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean_nan(v) for v in o]
    if isinstance(o, float) and math.isnan(o):
        return None
    return o

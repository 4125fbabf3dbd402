"""The benchmark metrics (design §6): numpy arrays in, plain dicts or dataclasses out; no files, no
network, no torch at import. One module per concern; each declares its figures (`spec.declare`) beside
its functions, and `specs()` lists them in 04_compare's row order."""
from __future__ import annotations

from . import efficiency  # noqa: F401  (declares the efficiency figures)
from .bootstrap import bootstrap, interval, repeat_by
from .clustering import cluster_subset, clustering, kmeans, purity
from .deployment import (enrolment, family_scores, gallery_growth, identity_scores, impostor_study,
                         nearest_impostors, smallest_sufficient_k, thresholds_on_test)
from .open_set import class_max_scores, dir_at_far, open_set, open_set_scores, open_set_split, topk_identification
from .ranking import Ranking, rank_queries
from .retrieval import (Queries, cmc, leave_one_out, ndcg_at, overfitting, overfitting_figures, overfitting_intervals,
                        overfitting_queries,
                        retrieval, retrieval_figures, sample_by_identity)
from .robustness import robustness
from .pairs import make_pairs, sample_pairs
from .paired import (RowTest, compare_models, holm, latency_draws, model_values, paired_draws, recipe_level, row_df,
                     seed_adjustment, training_terms)
from .resample import build_sample, figures, intervals
from .spec import INTERVALS_DOC, MetricSpec, specs
from .triplets import triplet_figures, triplet_items, triplets
from .verification import (THRESHOLDS, accepted, best_threshold, eer, far_thresholds, impostor_scores, pair_ranking,
                           pair_scores, petface_auc, rates_at, roc, tar_at_far, threshold_at_far, threshold_over)

__all__ = [
    "Ranking", "rank_queries", "Queries", "cmc", "leave_one_out", "ndcg_at", "overfitting", "overfitting_figures",
    "overfitting_intervals", "overfitting_queries", "retrieval", "retrieval_figures", "sample_by_identity",
    "THRESHOLDS", "accepted", "best_threshold", "eer", "far_thresholds",
    "impostor_scores", "pair_ranking", "pair_scores", "petface_auc", "rates_at", "roc", "tar_at_far",
    "threshold_at_far", "threshold_over", "class_max_scores", "dir_at_far", "open_set", "open_set_scores",
    "open_set_split", "topk_identification",
    "cluster_subset", "clustering", "kmeans", "purity", "triplets", "triplet_items", "triplet_figures",
    "robustness",
    "bootstrap", "interval", "repeat_by", "enrolment", "family_scores",
    "gallery_growth", "identity_scores", "impostor_study", "nearest_impostors", "smallest_sufficient_k",
    "thresholds_on_test", "make_pairs", "sample_pairs", "RowTest", "compare_models", "holm", "latency_draws",
    "model_values", "paired_draws", "recipe_level", "row_df", "seed_adjustment", "training_terms",
    "build_sample", "figures", "intervals",
    "INTERVALS_DOC", "MetricSpec", "specs",
]

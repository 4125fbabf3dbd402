"""Synthetic pairs of models on one test set, to measure the comparison rule's error rates
(`petlib.metrics.paired`): how often it calls a difference between two models drawn from the same
distribution (false calls over a whole block), and how often it finds a known difference (power)."""
from __future__ import annotations

import numpy as np

from . import paired, resample
from .pairs import sample_pairs

# The rows of a simulated block: 04_compare's accuracy rows that do not need clustering (which costs
# 20x the rest per draw); clustering rows are resampled the same way in the study.
ROWS = ["retrieval.recall@1", "retrieval.recall@5", "retrieval.mrr", "retrieval.map@r", "ranking.roc_auc",
        "ranking.eer", "ranking.tar@far=1e-3", "verification.accuracy", "open_set.dir@far=1e-2"]


def embeddings(centres: np.ndarray, labels: np.ndarray, noise: float, rng) -> np.ndarray:
    """A model's test embeddings: each identity's centre plus image noise (more noise, a worse model)."""
    x = centres[labels] + noise * rng.normal(size=(len(labels), centres.shape[1]))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def error_rates(n_sims: int, noise_b: float, n_ids: int = 80, per_id: int = 4, noise_a: float = 1.2,
                n_pairs: int = 2000, n_boot: int = 200, dim: int = 32, seed: int = 0,
                methods: tuple[str, ...] = ("student",)) -> dict:
    """Over `n_sims` test sets of `n_ids` x `per_id` images (the demo's cat test split: 80 x ~4), the share
    of blocks in which the rule calls any row (noise_b == noise_a: the false-call rate) and the share
    of simulations in which each row is called (noise_b > noise_a: its power); one result per method of
    `paired.holm`, all on the same draws."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_ids), per_id)
    pairs = sample_pairs(labels, n_pairs, seed=42)
    any_call = {m: 0 for m in methods}
    per_row = {m: np.zeros(len(ROWS)) for m in methods}
    for i in range(n_sims):
        centres = rng.normal(size=(n_ids, dim))
        a, b = (resample.build_sample(embeddings(centres, labels, noise, rng), labels, pairs, 0.5, 42)
                for noise in (noise_a, noise_b))
        for m, rows in paired.compare_models([a], [b], ROWS, n_boot, seed=i, methods=methods).items():
            called = [r.called for r in rows]
            any_call[m] += any(called)
            per_row[m] += called
    return {m: {"sims": n_sims, "noise_a": noise_a, "noise_b": noise_b, "any_row_called": any_call[m] / n_sims,
                "row_called": dict(zip(ROWS, (per_row[m] / n_sims).tolist()))} for m in methods}

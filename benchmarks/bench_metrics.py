"""Metric-suite timings at the design's test size (~8,600 images, ~2,000 identities) and at 100k images.

Prints a table: the metric part of the seven benchmarks (robustness embedding excluded) on random
clustered 128-d embeddings, plus peak RSS. Also times scikit-learn k-means++ next to faiss k-means at
the seed size. Usage: .venv/bin/python benchmarks/bench_metrics.py [--skip-100k] [--smoke]
(--smoke: 400 images, for the test that keeps this script running)
"""
import argparse
import resource
import time

import numpy as np

from petlib import metrics


def synthetic(n_ids: int, n: int, dim: int = 128, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.sort(np.r_[np.arange(n_ids), rng.integers(0, n_ids, n - n_ids)])
    x = rng.normal(size=(n_ids, dim))[labels] + 0.9 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-100k", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="one tiny set (seconds)")
    a = ap.parse_args()
    rows = []
    sizes = [("seed test size", 2000, 8600)] + ([] if a.skip_100k else [("100k images", 23000, 100_000)])
    if a.smoke:
        sizes = [("smoke", 100, 400)]
    for name, n_ids, n in sizes:
        emb, labels = synthetic(n_ids, n)
        pq, t_ret = timed(lambda: metrics.leave_one_out(emb, labels))
        _, t_clu = timed(lambda: metrics.clustering(emb, labels))
        row = {"set": name, "images": n, "identities": n_ids, "retrieval_s": t_ret, "clustering_s": t_clu}
        if n <= 10_000:
            pairs = metrics.sample_pairs(labels, 50_000)
            scores = (emb[pairs[:, 0]] * emb[pairs[:, 1]]).sum(1)
            _, row["ranking_s"] = timed(lambda: (metrics.pair_ranking(scores, pairs[:, 2]),
                                                 metrics.best_threshold(scores, pairs[:, 2])))
            _, row["triplets_s"] = timed(lambda: metrics.triplets(emb, labels, 20000))
            _, row["overfitting_s"] = timed(lambda: metrics.overfitting(emb, labels, emb, labels, 2000))
            split = metrics.open_set_split(labels, 42)
            _, row["open_set_s"] = timed(lambda: metrics.open_set(emb, labels))
            os_ = metrics.open_set_scores(emb, labels, split)
            sample = metrics.build_sample(emb, labels, pairs, 0.5, 42, queries=pq, open_scores=os_)
            _, row["bootstrap200_s"] = timed(lambda: metrics.intervals(sample, 200, 0))
            from sklearn.cluster import KMeans
            _, row["sklearn_kmeans_s"] = timed(lambda: KMeans(n_ids, n_init=1, random_state=0, max_iter=25).fit(emb))
        row["total_s"] = sum(v for k, v in row.items() if k.endswith("_s") and not k.startswith("sklearn"))
        row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        rows.append(row)
        print(row, flush=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.2f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys) + " |")


if __name__ == "__main__":
    main()

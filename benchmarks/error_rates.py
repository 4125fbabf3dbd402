"""The comparison rule's error rates (issue 23), measured: pairs of synthetic models on test sets of the
demo's size (80 identities x 4 images), compared by `petlib.metrics.paired` as 04_compare does.

  .venv/bin/python benchmarks/error_rates.py [--sims 300] [--smoke]

Prints one table: the share of blocks with any false call when both models come from one distribution
(image noise 1.2 and 1.2), and the share of simulations in which each row is called when model B is
worse (noise 1.3, 1.4, 1.6), for p-values from the bootstrap standard error against Student's t with
the identities less one degrees of freedom (`student`, what 04_compare uses) or the normal, and from
the percentile bootstrap, all on the same draws; then each noise's Recall@1.
"""
from __future__ import annotations

import argparse

import numpy as np

from petlib import metrics
from petlib.metrics import simulate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=300, help="test sets per row (the null row; a third of it for power)")
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--smoke", action="store_true", help="3 simulations of 20 draws: checks that it runs")
    a = ap.parse_args()
    sims, boot, effects = (3, 20, [1.6]) if a.smoke else (a.sims, a.boot, [1.3, 1.4, 1.6])
    print("| model B noise (A: 1.2) | p-value and interval | sims | blocks with any call | "
          + " | ".join(simulate.ROWS) + " |")
    print("|---|---|---|---|" + "---|" * len(simulate.ROWS), flush=True)
    for noise in [1.2, *effects]:
        methods = ("student", "normal", "percentile")
        n = sims if noise == 1.2 else max(3, sims // 3)
        for method, r in simulate.error_rates(n, noise, n_boot=boot, methods=methods).items():
            cells = " | ".join(f"{r['row_called'][k]:.3f}" for k in simulate.ROWS)
            print(f"| {noise} | {method} | {n} | {r['any_row_called']:.3f} | {cells} |", flush=True)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(80), 4)
    for noise in [1.2, *effects]:
        r1 = [metrics.retrieval(simulate.embeddings(rng.normal(size=(80, 32)), labels, noise, rng), labels)["recall@1"]
              for _ in range(10)]
        print(f"noise {noise}: Recall@1 {np.mean(r1):.3f} (sd {np.std(r1, ddof=1):.3f} over 10 test sets)")


if __name__ == "__main__":
    main()

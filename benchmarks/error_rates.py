"""The comparison rule's calibration (issue 33), measured on a null that looks like the data
(`petlib.metrics.calibration`): unbalanced identities (3-22 images), per-query errors that two models
share as the demo's do, seed-to-seed variance, every row of 04_compare's block.

  .venv/bin/python benchmarks/error_rates.py [--sims 1000] [--demo outputs/demo] [--workers 2] [--smoke]

Prints, per design (3 vs 3 seeds: recipes; 3 vs 1: trained models; the percentile rule at B = 2,000
beside the shipped one on the same draws; the clustering rows), each row's 95%-interval coverage and
the share of blocks with a false call, each with its Wilson 95% interval. `--demo` matches the share of
image noise the two simulated models have in common to the demo's two cat models (their Recall@1 hits'
correlation over the same queries).
"""
from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from petlib.metrics import calibration as cal


def _pct(w: dict) -> str:
    return f"{100 * w['rate']:.1f} [{100 * w['low']:.1f}, {100 * w['high']:.1f}]"


def match_shared(demo: Path, null: cal.Null) -> tuple[cal.Null, float, float]:
    """The null with `shared` set so that its hit correlation is nearest the demo's two cat models' (the
    mean over every pair of their training repeats)."""
    from petlib.schema import load_samples

    a, b = (load_samples(demo / "eval" / f"{m}-cat") for m in ("mnv3", "mfn"))
    want = float(np.mean([cal.hit_correlation(x, y) for x in a for y in b]))
    grid = [(s, cal.simulated_hit_correlation(replace(null, shared=s))) for s in np.linspace(0, 0.9, 10)]
    best = min(grid, key=lambda g: abs(g[1] - want))
    return replace(null, shared=float(best[0])), want, best[1]


def run(null: cal.Null, sims: int, boot: int, methods, clusters: bool, workers: int, label: str) -> list[dict]:
    job = partial(cal.simulate_once, null, n_boot=boot, methods=methods, clusters=clusters, cluster_draws=200)
    out, t0 = [], time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        for i, r in enumerate(pool.map(job, range(sims), chunksize=max(1, sims // (8 * workers))), 1):
            out.append(r)
            if i % max(1, sims // 10) == 0 or i == sims:
                print(f"  {label}: {i}/{sims} simulations, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def target_of(null: cal.Null, runs: list[dict], clusters: bool, n_truth: int) -> np.ndarray | None:
    """Zero (None) for recipe-level rows; for trained models, what those very models show on fresh test sets."""
    if min(null.seeds_a, null.seeds_b) >= 2:
        return None
    lo, hi = (float(np.exp(k * 3 * null.seed_sd)) for k in (-1, 1))
    grid = np.geomspace(lo, hi, 7)
    curve = cal.truth_curve(null, runs[0]["names"], grid, n_truth, seed=99, clusters=clusters)
    return np.array([cal.truth(grid, curve, r["scales"]["a"], r["scales"]["b"]) for r in runs])


def table(results: dict[str, dict]) -> None:
    """One column per design and method: each row's coverage, then the blocks with a false call."""
    cols = list(results)
    names = list(next(iter(results.values()))["coverage"])
    for r in results.values():
        names += [n for n in r["coverage"] if n not in names]
    print("| row (95% interval's coverage, %) | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for n in names:
        print(f"| {n} | " + " | ".join(_pct(r["coverage"][n]) if n in r["coverage"] else "" for r in results.values()) + " |")
    print("| **blocks with a false call, %** | " + " | ".join(_pct(r["false_blocks"]) for r in results.values()) + " |")
    print("| simulations | " + " | ".join(str(r["sims"]) for r in results.values()) + " |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=1000, help="simulated comparisons for the shipped rule")
    ap.add_argument("--boot", type=int, default=200, help="draws of the shipped rule (the demo's eval.n_bootstrap)")
    ap.add_argument("--percentile-sims", type=int, default=100, help="simulations at B = 2,000 (both rules)")
    ap.add_argument("--cluster-sims", type=int, default=60, help="simulations with the clustering rows (a k-means a draw)")
    ap.add_argument("--demo", type=Path, help="a finished demo's outputs folder (outputs/demo), to match the shared errors")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="a few tiny simulations: checks that it runs")
    a = ap.parse_args()
    null, pct_boot = cal.Null(), 2000
    if a.smoke:
        null = replace(null, n_ids=12, sizes=(3, 5), n_pairs=200, n_triplets=200, n_degraded=30)
        a.sims, a.boot, a.percentile_sims, a.cluster_sims, a.workers, pct_boot = 4, 20, 2, 2, 1, 100
    if a.demo:
        null, want, got = match_shared(a.demo, null)
        print(f"shared image noise {null.shared:.1f}: simulated hit correlation {got:.3f}, the demo's cat models' {want:.3f}")
    else:
        print(f"shared image noise {null.shared:.1f} (not matched to a demo: --demo outputs/demo)")
    print(f"null: {null}\n", flush=True)
    results = {}
    for seeds_b in (3, 1):
        design = replace(null, seeds_b=seeds_b)
        runs = run(design, a.sims, a.boot, ("student",), False, a.workers, f"3 vs {seeds_b}")
        kind = "recipes" if seeds_b > 1 else "trained models"
        results[f"3 vs {seeds_b} seeds ({kind}), B = {a.boot}"] = \
            cal.summarise(runs, target_of(design, runs, False, 40))["student"]
    methods = ("student", "percentile")
    runs = run(null, a.percentile_sims, pct_boot, methods, False, a.workers, f"B = {pct_boot}")
    for m, r in cal.summarise(runs, None).items():
        results[f"3 vs 3, B = {pct_boot}, {m}"] = r
    runs = run(null, a.cluster_sims, a.boot, ("student",), True, a.workers, "clustering")
    results[f"3 vs 3 with clustering, B = {a.boot}"] = cal.summarise(runs, None)["student"]
    table(results)


if __name__ == "__main__":
    main()

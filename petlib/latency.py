"""One wall-clock timer for export, evaluation and `benchmarks/`: warm-up calls first, then the median
(with min and max) of timed calls."""
from __future__ import annotations

import time

import numpy as np


def timed(fn, repeats: int, warmup: int = 1) -> dict:
    """Seconds per call of `fn()`: median, min and max over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return {"median": float(np.median(ts)), "min": float(min(ts)), "max": float(max(ts))}


def latency_ms(run, size: int, batch: int, repeats: int | None = None) -> float:
    """Median milliseconds of `run` on one random (batch, 3, size, size) input. Batch 32 takes 30-100x
    longer per call than batch 1 and varies less, so it gets 5 timed calls (after 1 warm-up) to
    batch 1's 20 (after 3)."""
    x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
    t = timed(lambda: run(x), repeats or (20 if batch == 1 else 5), warmup=3 if batch == 1 else 1)
    return t["median"] * 1000


def torch_runner(module):
    """A function (N, 3, S, S) float32 -> (N, D) numpy running a torch module without gradients."""
    import torch

    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
    return run

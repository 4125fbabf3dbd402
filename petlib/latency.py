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


def interleaved(runners: dict, x: np.ndarray | dict, rounds: int = 60, warmup: int = 5) -> dict[str, np.ndarray]:
    """Seconds per call of every runner, timed in one process in turn: round k calls each once, in an
    order that reverses every round, so drift in the machine's speed falls on all of them alike and
    round k's timings pair up (what `petlib.metrics.paired.latency_test` resamples). `x`: one input for
    all, or {name: input} (models that take different sizes)."""
    names = list(runners)
    inputs = x if isinstance(x, dict) else {n: x for n in names}
    for _ in range(warmup):
        for n in names:
            runners[n](inputs[n])
    out: dict[str, list[float]] = {n: [] for n in names}
    for k in range(rounds):
        for n in names if k % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            runners[n](inputs[n])
            out[n].append(time.perf_counter() - t)
    return {n: np.array(v) for n, v in out.items()}


def block_timings(block: dict[str, dict], rounds: int = 60, threads: int = 1) -> dict[str, np.ndarray]:
    """Batch-1 CPU latency of every model of a comparison block (metrics.json dicts naming their run),
    interleaved in this process on `threads` torch threads (one phone core by default), each at the
    input size it was trained at (what a phone would feed it)."""
    import torch

    from .run import RunDir

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        runners = {n: torch_runner(RunDir(m["run_dir"]).load_embedder("cpu")) for n, m in block.items()}
        x = {n: np.random.default_rng(0).normal(size=(1, 3, s, s)).astype(np.float32)
             for n, s in ((n, m["efficiency"]["image_size"]) for n, m in block.items())}
        return interleaved(runners, x, rounds)
    finally:
        torch.set_num_threads(before)

"""How an exported file is judged: the same test images through its own runtime and through PyTorch,
cosine parity, the change in the task metrics, and CPU latency per batch size and thread count."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import metrics
from ..latency import latency_ms, torch_runner

TASK_KEYS = ("verification_accuracy", "recall@1", "tar@far=1e-3")


@dataclass
class TestSet:
    """Preprocessed test images, their labels, scored pairs, and the PyTorch reference on them."""
    x: np.ndarray
    labels: np.ndarray
    pairs: np.ndarray
    reference: np.ndarray
    reference_task: dict


def task_metrics(emb: np.ndarray, labels: np.ndarray, pairs: np.ndarray) -> dict:
    s = metrics.pair_scores(emb, pairs)
    return {"verification_accuracy": metrics.best_threshold(s, pairs[:, 2])["accuracy"],
            "recall@1": metrics.retrieval(emb, labels, ks=(1,))["recall@1"],
            "tar@far=1e-3": metrics.tar_at_far(s, pairs[:, 2], 1e-3)}


def run_batched(run, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])


def make_test_set(embedder, x: np.ndarray, labels: np.ndarray, pairs: np.ndarray) -> TestSet:
    ref = run_batched(torch_runner(embedder), x)
    return TestSet(x, labels, pairs, ref, task_metrics(ref, labels, pairs))


def latencies(make_runner, size: int, thread_counts, batches=(1, 32), set_threads=None) -> dict:
    """`ms_b{batch}_t{threads}` for every pair; None for batch sizes the file cannot take."""
    out = {}
    for threads in thread_counts:
        if set_threads:
            set_threads(threads)
        run = make_runner(threads)
        for b in (1, 32):
            out[f"ms_b{b}_t{threads}"] = latency_ms(run, size, b) if b in batches else None
    if set_threads:
        set_threads(thread_counts[-1])
    return out


def parity(emb: np.ndarray, ts: TestSet) -> dict:
    ref = ts.reference
    cos = (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
    t = task_metrics(emb, ts.labels, ts.pairs)
    return {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
            **{f"delta_{k}": t[k] - ts.reference_task[k] for k in TASK_KEYS}}


def measure(make_runner, ts: TestSet, size: int, thread_counts, batches=(1, 32), set_threads=None) -> dict:
    """Parity and task deltas on the test set, then latency per (batch, threads)."""
    row = parity(run_batched(make_runner(None), ts.x), ts)
    row["status"] = "ok"
    row.update(latencies(make_runner, size, thread_counts, batches, set_threads))
    return row


def ok_row(rows: list[dict], fid: str, role: str = "shipped") -> dict | None:
    """The checked row of format `fid` in `role`, if any."""
    return next((r for r in rows if r["id"] == fid and r["role"] == role and r["status"] == "ok"), None)

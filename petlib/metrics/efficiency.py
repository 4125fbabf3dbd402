"""Efficiency (design §6.2 G, §8): what a phone pays for the model. Measured by `petlib.evaluate` (size
on disk, parameters) and `petlib.latency` (timings); declared here with the other metrics."""
from __future__ import annotations

from .spec import count, declare

declare("efficiency", "params", "Embedder params", higher=False, interval="exact", category="Efficiency")
declare("efficiency", "onnx_bytes", "ONNX size (bytes)", higher=False, interval="exact", category="Efficiency")
declare("efficiency", "cpu_latency_ms", "CPU latency (ms, batch 1)", higher=False, interval="timing",
        category="Efficiency", doc="median of 30 batch-1 timings in torch on this machine (one process per model)")
declare("efficiency", "pt_bytes", "pet_embedder.pt size (bytes)", higher=False, interval="exact")
count("efficiency", "image_size")

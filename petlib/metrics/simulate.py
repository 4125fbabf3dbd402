"""A synthetic model's test embeddings, for the statistics tests (the calibration's own, richer null is
`petlib.metrics.calibration`)."""
from __future__ import annotations

import numpy as np


def embeddings(centres: np.ndarray, labels: np.ndarray, noise: float, rng) -> np.ndarray:
    """A model's test embeddings: each identity's centre plus image noise (more noise, a worse model)."""
    x = centres[labels] + noise * rng.normal(size=(len(labels), centres.shape[1]))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

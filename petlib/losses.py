"""ArcFace (additive angular margin), design §4.4, with Partial-FC for many identities."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kernels import linear, sqrt


class ArcFaceHead(nn.Module):
    """Logits s*cos(theta + m) for the target class and s*cos(theta) for the others.

    Numerically safe at cos(theta) -> +-1: sin(theta) comes from sqrt(clamp(1 - cos^2, eps)), never
    from acos, so forward and backward stay finite. Where theta + m would pass pi, cos(theta + m)
    stops decreasing; there the target logit uses cos(theta) - m*sin(m) instead (insightface's
    fallback), which keeps the loss monotonic. `m` can be changed at any time (margin warm-up).
    Computed in float32 even under autocast.

    Partial-FC (`sample_rate` < 1, as insightface's partial_fc_v2): in training, each step scores the
    batch's own classes plus a uniform sample of the others, `ceil(rate * classes)` in all, so the
    logits, their gradient and the normalised weight copy shrink by the rate; at 257k identities the
    full head is most of a step (benchmarks/scale.py). `forward` returns the logits and the labels as
    indices into the scored classes (the labels themselves when every class is scored).
    """

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 32.0, m: float = 0.4,
                 sample_rate: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        self.s = s
        self.m = m
        self.sample_rate = sample_rate

    def cosine(self, emb: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight if weight is None else weight
        return linear(F.normalize(emb.float(), dim=1), F.normalize(w.float(), dim=1))

    def sample(self, labels: torch.Tensor) -> torch.Tensor:
        """Sorted indices of the classes one step scores: every class in `labels`, then random others."""
        n = self.weight.shape[0]
        positive = torch.unique(labels, sorted=True)
        k = max(math.ceil(self.sample_rate * n), positive.numel())
        if k >= n:
            return torch.arange(n, device=labels.device)
        perm = torch.rand(n, device=labels.device)
        perm[positive] = 2.0
        return torch.topk(perm, k)[1].sort()[0]

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.sample(labels) if self.training and self.sample_rate < 1.0 else None
        weight = None if index is None else self.weight[index]
        labels = labels if index is None else torch.searchsorted(index, labels)
        return self.margin_logits(self.cosine(emb, weight), labels), labels

    def margin_logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=cos.device.type, enabled=False):
            cos = cos.float().clamp(-1.0, 1.0)
            target = cos.gather(1, labels[:, None])
            sin = sqrt((1.0 - target * target).clamp_min(1e-7))
            cos_m, sin_m = math.cos(self.m), math.sin(self.m)
            with_margin = target * cos_m - sin * sin_m
            fallback = target - self.m * sin_m
            with_margin = torch.where(target > math.cos(math.pi - self.m), with_margin, fallback)
            logits = cos.scatter(1, labels[:, None], with_margin)
            return logits * self.s

    def extra_repr(self) -> str:
        return (f"embedding_dim={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, s={self.s}, m={self.m}, "
                f"sample_rate={self.sample_rate}")


def arcface_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)

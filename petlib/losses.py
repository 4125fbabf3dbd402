"""ArcFace (additive angular margin), design §4.4."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ArcFaceHead(nn.Module):
    """Logits s*cos(theta + m) for the target class and s*cos(theta) for the others.

    Numerically safe at cos(theta) -> +-1: sin(theta) comes from sqrt(clamp(1 - cos^2, eps)), never
    from acos, so forward and backward stay finite. Where theta + m would pass pi, cos(theta + m)
    stops decreasing; there the target logit uses cos(theta) - m*sin(m) instead (insightface's
    fallback), which keeps the loss monotonic. `m` can be changed at any time (margin warm-up).
    Computed in float32 even under autocast.
    """

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 32.0, m: float = 0.4):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        self.s = s
        self.m = m

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(emb.float(), dim=1), F.normalize(self.weight.float(), dim=1))

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=emb.device.type, enabled=False):
            cos = self.cosine(emb).clamp(-1.0, 1.0)
            target = cos.gather(1, labels[:, None])
            sin = torch.sqrt((1.0 - target * target).clamp_min(1e-7))
            cos_m, sin_m = math.cos(self.m), math.sin(self.m)
            with_margin = target * cos_m - sin * sin_m
            fallback = target - self.m * sin_m
            with_margin = torch.where(target > math.cos(math.pi - self.m), with_margin, fallback)
            logits = cos.scatter(1, labels[:, None], with_margin)
            return logits * self.s

    def extra_repr(self) -> str:
        return f"embedding_dim={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, s={self.s}, m={self.m}"


def arcface_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)

"""Matrix products off MKL in pinned CPU runs: the one kernel family whose rounding follows the CPU vendor.

Measured with `petface digest` (docs/reproducibility.md): under the pins, a seeded forward and backward of
both backbones through oneDNN gives bit-equal digests on an Intel Xeon and on AMD EPYCs, while the same
computation through PyTorch's im2col + MKL sgemm path differs between them, MKL_CBWR=COMPATIBLE
notwithstanding. In pinned training MKL computed only the ArcFace logits (a linear layer) and their
gradients, and the trained models differed. So a pinned CPU run computes every linear layer as a 1x1
convolution, which oneDNN computes like the backbone's own 1x1 convolutions, and pads a batch of one to
two: PyTorch sends a one-image batch to its im2col + MKL path instead of oneDNN.

`reproducible.apply` turns the routing on for pinned CPU runs; GPU and `reproducible: false` runs keep
MKL (faster on big heads). Traced and exported graphs always see a plain linear layer.

MKL also computes `torch.sqrt` of a CPU float tensor (its vector math, vmsSqrt), whose rounding also
follows the vendor: PyTorch's per-tensor AdamW step (three AdamW steps in `petface digest`) differed
between the Intel Xeon and the AMD EPYCs while its fused step did not. So every run takes square roots
through `sqrt` and steps its optimizers fused (`optimizer`), on every device.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

_ONEDNN = False


def route(enabled: bool) -> None:
    """Compute linear layers and one-image batches through oneDNN (True) or the libraries' default."""
    global _ONEDNN
    _ONEDNN = bool(enabled)


def routed() -> bool:
    return _ONEDNN


def _active(x: torch.Tensor) -> bool:
    return (_ONEDNN and x.device.type == "cpu" and not torch.jit.is_tracing()
            and not torch.onnx.is_in_onnx_export() and not torch.compiler.is_compiling())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear` for 2-D input; through oneDNN (a 1x1 convolution) when routed, the same value to rounding."""
    if not _active(x) or x.dim() != 2:
        return F.linear(x, weight, bias)
    xs, n = at_least_two(x)
    return F.conv2d(xs[:, :, None, None], weight[:, :, None, None], bias).flatten(1)[:n]


def at_least_two(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A batch for a network's forward: a one-image batch doubled when routed. Returns (batch, rows to keep)."""
    n = x.shape[0]
    return (torch.cat([x, x]) if n == 1 and _active(x) else x), n


class Linear(nn.Linear):
    """nn.Linear (same parameters, same state-dict keys) whose product goes through `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt(x) for x > 0 off MKL: rsqrt is an IEEE square root and division in ATen's own kernels."""
    return x * torch.rsqrt(x)


def optimizer(cls: type[torch.optim.Optimizer], params, **kw) -> torch.optim.Optimizer:
    """An Adam-family optimizer with the fused step, whose square roots are ATen's, not MKL's."""
    return cls(params, fused=True, **kw)

"""This machine's kernel digests against the golden vector: the proof that pinned numbers travel.

Each entry is the SHA-256 (first 16 hex digits) of a seeded computation's outputs and gradients under the
CPU pins: the operations pinned training and evaluation use (convolutions, batch norm, activations, the
ArcFace head and loss, the AdamW step, each forward and backward), and both backbones' forward and
backward as `shared/tools/kernel-digest.py` computes them. `golden-kernels.json` beside this file holds
the vector from the machines named there and the pinned CI training's losses and weights digest; a
machine whose kernels round differently differs there first. `informational` entries are computed
through paths pinned runs do not use (MKL's sgemm, PyTorch's convolutions without oneDNN, the per-tensor
AdamW step whose square roots are MKL's): they are known
to differ between CPU vendors and are recorded to show that they do, not compared.

Run it as `petface digest` (which sets the pins before torch loads); `tests/test_reproducible.py`
compares both vectors in fresh processes.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from . import kernels, losses, models

GOLDEN = Path(__file__).with_name("golden-kernels.json")
BACKBONES = ("mobilenetv3_small_100", "mobilefacenet")


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _op(fn: Callable, *shapes, seed: int = 1) -> str:
    """Digest of fn(*inputs) and the inputs' gradients for a fixed random output gradient."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(*s, generator=g).requires_grad_() for s in shapes]
    out = fn(*xs)
    out.backward(torch.randn(out.shape, generator=g))
    return _digest([out, *[x.grad for x in xs]])


def _arcface(emb, w):
    head = losses.ArcFaceHead(emb.shape[1], w.shape[0])
    labels = torch.arange(emb.shape[0]) % w.shape[0]
    return losses.arcface_loss(head.margin_logits(head.cosine(emb, w), labels), labels).reshape(1)


def _adamw(fused: bool = True) -> str:
    g = torch.Generator().manual_seed(3)
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in ((576, 96), (128,), (560, 128))]
    opt = (kernels.optimizer(torch.optim.AdamW, params, lr=4e-3, weight_decay=5e-4) if fused
           else torch.optim.AdamW(params, lr=4e-3, weight_decay=5e-4))
    for _ in range(3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return _digest(params)


def _backbone(name: str, onednn: bool = True) -> str:
    """`shared/tools/kernel-digest.py`'s computation: a seeded embedder's forward and backward at 64 px."""
    torch.backends.mkldnn.enabled = onednn
    try:
        torch.manual_seed(0)
        net = models.create_embedder(name, image_size=64)
        net.train()
        out = net(torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
        out.sum().backward()
        return _digest([out, *[p.grad for p in net.parameters() if p.grad is not None]])
    finally:
        torch.backends.mkldnn.enabled = True


OPS: dict[str, Callable[[], str]] = {
    "conv3x3_stride2": lambda: _op(lambda x, w: F.conv2d(x, w, stride=2, padding=1), (16, 16, 32, 32), (32, 16, 3, 3)),
    "conv_depthwise3x3": lambda: _op(lambda x, w: F.conv2d(x, w, padding=1, groups=72), (16, 72, 16, 16), (72, 1, 3, 3)),
    "conv_depthwise5x5_stride2": lambda: _op(lambda x, w: F.conv2d(x, w, stride=2, padding=2, groups=96),
                                             (64, 96, 8, 8), (96, 1, 5, 5)),
    "conv1x1": lambda: _op(lambda x, w: F.conv2d(x, w), (64, 96, 4, 4), (576, 96, 1, 1)),
    "gdconv_head": lambda: _op(lambda x, w: F.conv2d(x, w, groups=512), (64, 512, 3, 3), (512, 1, 3, 3)),
    "batch_norm_train": lambda: _op(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                                    (64, 96, 8, 8), (96,), (96,)),
    "activations": lambda: _op(lambda x, a: F.prelu(F.hardswish(x) + torch.sigmoid(x) * F.relu(x), a),
                               (64, 96, 8, 8), (96,)),
    "linear_routed": lambda: _op(kernels.linear, (64, 128), (560, 128)),
    "linear_routed_batch1": lambda: _op(kernels.linear, (1, 576), (128, 576)),
    "arcface_loss": lambda: _op(_arcface, (64, 128), (560, 128)),
    "adamw_step": _adamw,
    **{f"{b}_fwd_bwd": (lambda b=b: _backbone(b)) for b in BACKBONES},
}
INFORMATIONAL: dict[str, Callable[[], str]] = {
    "linear_mkl_sgemm": lambda: _op(F.linear, (64, 128), (560, 128)),
    "adamw_step_per_tensor_mkl_sqrt": lambda: _adamw(fused=False),
    **{f"{b}_fwd_bwd_without_onednn": (lambda b=b: _backbone(b, onednn=False)) for b in BACKBONES},
}


def compute(informational: bool = False, quick: bool = False) -> dict:
    """{"ops": {name: digest}, "informational": {...}} with the routing pinned runs use; `quick` leaves out
    the whole-backbone digests (seconds) for a report header."""
    was = kernels.routed()
    kernels.route(True)
    try:
        out = {"ops": {k: f() for k, f in OPS.items() if not (quick and k.endswith("_fwd_bwd"))}}
        kernels.route(False)
        if informational:
            out["informational"] = {k: f() for k, f in INFORMATIONAL.items()}
        return out
    finally:
        kernels.route(was)


def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def compare(ops: dict, reference: dict | None = None) -> dict:
    """Which golden op digests this machine reproduces: {"equal": [...], "differ": [...], "missing": [...]}."""
    ref = {k: v for k, v in (reference or golden())["ops"].items() if k in ops}
    return {"equal": [k for k in ref if ops[k] == ref[k]], "differ": [k for k in ref if ops[k] != ref[k]],
            "missing": [k for k in ops if k not in ref]}


def verdict(result: dict) -> str:
    """One line for a report header or the terminal."""
    n = len(result["equal"]) + len(result["differ"]) + len(result["missing"])
    if not result["differ"] and not result["missing"]:
        return f"this machine reproduces the golden kernel vector ({n}/{n} digests)"
    return (f"this machine does NOT reproduce the golden kernel vector: {', '.join(result['differ'] + result['missing'])} "
            f"differ ({len(result['equal'])}/{n} equal); its numbers will not match the documented ones")


def training_vector(folder: Path, env: dict | None = None, *sets: str) -> dict:
    """The pinned CI training (params/ci.yaml of this checkout) in a fresh process: exact losses and
    validation accuracies, the SHA-256 of the embedder's weights (sorted keys, raw bytes), and how many
    matrix products MKL computed (`mkl_gemm_calls`, from MKL_VERBOSE; pinned runs should make none)."""
    import os
    import subprocess
    import sys

    params = Path(__file__).resolve().parents[1] / "params" / "ci.yaml"
    if not params.is_file():
        raise FileNotFoundError(f"{params}: the training vector needs a checkout of the project")
    args = [f"output_dir={folder}", f"reports_dir={folder}/reports", f"data.synth_dir={folder}/data", *sets]
    env = {**(os.environ if env is None else env), "MKL_VERBOSE": "1"}
    r = subprocess.run([sys.executable, "-m", "petlib.cli", "train", str(params), *[x for a in args for x in ("--set", a)]],
                       capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"the CI training failed: {r.stderr[-2000:]}")
    run = folder / "ci" / "runs" / "mnv3-cat"
    hist = json.loads((run / "history.json").read_text())
    state = torch.load(run / "pet_embedder.pt", weights_only=True)
    weights = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    return {"losses": [repr(e["loss"]) for e in hist["epochs"]], "weights": weights, "kernels": hist["kernels"],
            "val": [repr(e["val"]["accuracy"]) for e in hist["epochs"] if e["val"]],
            "mkl_gemm_calls": sum("MKL_VERBOSE" in line and "GEMM" in line for line in r.stdout.splitlines())}

"""Quantisation-aware training (QAT) of an INT8 candidate, for models post-training quantisation cannot
keep (MobileNetV3's hard-swish and squeeze-excite activations: docs/results.md, "INT8 on the converged
models").

The recipe, torch.ao's FX-graph QAT exported straight to a QDQ graph:
1. BatchNorm is folded into the convolution before it (what onnxruntime's pre-processing does too), so the
   network trained is the one that ships.
2. `prepare_qat_fx` inserts fake quantisation with onnxruntime's INT8 scheme: u8 asymmetric activations,
   s8 symmetric per-channel weights.
3. The observers set the ranges on the calibration images, then are frozen: from there on the model
   trains against fixed scales, the very scales written into the QDQ graph.
4. It is fine-tuned to reproduce the fp32 model (distillation, 1 - cosine to the fp32 embedding of the
   same augmented training image): INT8's target is fidelity to fp32, and this needs no labels nor the
   discarded ArcFace head.
5. The fake-quantised model is exported as it is (each FakeQuantize a QuantizeLinear/DequantizeLinear
   pair) and `clean_qdq` stores its weights as int8. The kernel-free simulation of the file then
   computes what was trained.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import kernels
from ..io import atomic_path
from ..progress import bar

BATCH = 64


@dataclass(frozen=True)
class QATRecipe:
    """What one QAT candidate is trained with (params: `export.qat_epochs`, `export.qat_lr`)."""
    epochs: int
    lr: float
    seed: int


class _Tracer(fx.Tracer):
    """Keeps BatchNorm layers (timm's BatchNormAct2d included) as single nodes, so they can be folded."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.BatchNorm2d) or super().is_leaf_module(m, qualname)


def _replace(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


def fold_batchnorm(embedder: nn.Module) -> fx.GraphModule:
    """A copy of the embedder as an FX graph with every BatchNorm that follows a convolution folded into
    it (timm's BatchNormAct2d leaves its activation behind) and no Dropout or Identity nodes: the graph of
    inference, which is what gets quantised (a Dropout kept would be quantised on both sides, a double
    Q/DQ pair that onnxruntime's optimiser rewrites into an invalid QLinearConv). Same outputs in eval
    mode, to float rounding."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    embedder = copy.deepcopy(embedder).eval()  # the graph shares its modules with what it traces
    gm = fx.GraphModule(embedder, _Tracer().trace(embedder))
    mods = dict(gm.named_modules())
    for node in gm.graph.nodes:
        bn = mods.get(node.target) if node.op == "call_module" else None
        src = node.args[0] if isinstance(bn, nn.BatchNorm2d) else None
        if src is None or src.op != "call_module" or not isinstance(mods[src.target], nn.Conv2d) or len(src.users) != 1:
            continue
        _replace(gm, src.target, fuse_conv_bn_eval(mods[src.target], bn))
        _replace(gm, node.target, getattr(bn, "act", nn.Identity()))
    gm.recompile()
    gm = fx.GraphModule(gm, fx.Tracer().trace(gm))
    mods = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and isinstance(mods[node.target], (nn.Dropout, nn.Identity)) or \
                node.op == "call_function" and node.target in (F.dropout, torch.dropout):  # timm's functional one
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def qconfig():
    """onnxruntime's INT8: u8 asymmetric per-tensor activations, s8 symmetric per-channel weights. The
    full s8 range, because the ONNX exporter writes only (-128, 127) and (0, 255) ranges."""
    from torch.ao.quantization import (FakeQuantize, MovingAverageMinMaxObserver,
                                       MovingAveragePerChannelMinMaxObserver, QConfig)

    act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                 dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    weight = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
                                    dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)
    return QConfig(activation=act, weight=weight)


def prepare(embedder: nn.Module, image_size: int) -> fx.GraphModule:
    """The folded embedder with fake quantisation on every op torch.ao quantises (one qconfig for all)."""
    from torch.ao.quantization import get_default_qat_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_qat_fx

    mapping = get_default_qat_qconfig_mapping("x86").set_global(qconfig())
    for kind in list(mapping.object_type_qconfigs):  # the x86 defaults' 7-bit activations, replaced
        mapping.set_object_type(kind, qconfig())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        student = prepare_qat_fx(fold_batchnorm(embedder).train(), mapping, (torch.zeros(1, 3, image_size, image_size),))
    return student.eval()  # the student copies the fp32 model in eval mode


def _observers(model: nn.Module, on: bool) -> None:
    from torch.ao.quantization import disable_observer, enable_observer

    model.apply(enable_observer if on else disable_observer)


def _batch(items: Sequence, image_size: int) -> torch.Tensor:
    from ..embed import preprocess_images

    return torch.from_numpy(preprocess_images(items, image_size))


def _in_memory(items: Sequence, image_size: int, cache_mb: float) -> Sequence | torch.Tensor:
    """The images preprocessed once (float32) when they fit `cache_mb`, else the items themselves, to be
    decoded a batch at a time every epoch. The same pixels either way."""
    if len(items) * 3 * image_size ** 2 * 4 <= cache_mb * 1e6:
        return _batch(items, image_size)
    return items


def _epoch(student: nn.Module, teacher: nn.Module, train: Sequence | torch.Tensor, image_size: int,
           gen: torch.Generator, opt=None, sched=None, pbar=None) -> float:
    """One pass over `train` in a random order with random horizontal flips; with `opt`, a training
    step per batch. Returns the mean distillation loss (1 - cosine to the teacher)."""
    losses = []
    for idx in torch.randperm(len(train), generator=gen).split(BATCH):
        x = train[idx] if torch.is_tensor(train) else _batch([train[i] for i in idx.tolist()], image_size)
        x = torch.where((torch.rand(len(x), generator=gen) < 0.5)[:, None, None, None], x.flip(3), x)
        with torch.no_grad():
            target = teacher(x)
        with torch.set_grad_enabled(opt is not None):
            loss = (1 - F.cosine_similarity(student(x), target)).mean()
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            pbar.update(1)
        losses.append(loss.item())
    return float(np.mean(losses))


def fine_tune(student: nn.Module, teacher: nn.Module, train: Sequence, calibration: Sequence, image_size: int,
              recipe: QATRecipe, progress: bool = False, cache_mb: float = 0.0) -> list[dict]:
    """Sets the ranges on the `calibration` images, freezes them, then trains `student` for
    `recipe.epochs` on the `train` images (preprocessed once when they fit `cache_mb`, else decoded a
    batch at a time) to reproduce `teacher` (Adam,
    cosine schedule to 0). The start is already close (cosine ~0.996), and Adam's first steps move every
    weight by about the learning rate whatever its gradient: it must be small (`export.qat_lr`).
    Returns per-epoch {epoch, loss, mean_cosine}, epoch 0 being the ranges alone, measured without a step."""
    _observers(student, True)
    with torch.no_grad():
        for i in range(0, len(calibration), BATCH):
            student(_batch(calibration[i:i + BATCH], image_size))
    _observers(student, False)
    gen = torch.Generator().manual_seed(recipe.seed)
    train = _in_memory(train, image_size, cache_mb) if recipe.epochs else train
    losses = [_epoch(student, teacher, train, image_size, gen)] if recipe.epochs else []
    opt = kernels.optimizer(torch.optim.Adam, [p for p in student.parameters() if p.requires_grad], lr=recipe.lr)
    steps = recipe.epochs * -(-len(train) // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    with bar(total=steps, desc="QAT", disable=not progress or not steps) as pbar:
        losses += [_epoch(student, teacher, train, image_size, gen, opt, sched, pbar) for _ in range(recipe.epochs)]
    return [{"epoch": i, "loss": v, "mean_cosine": 1 - v} for i, v in enumerate(losses)]


def export_qdq(student: nn.Module, image_size: int, out: Path) -> Path:
    """The fake-quantised model as a QDQ ONNX file with int8 weights (`clean_qdq`), batch axis dynamic."""
    import onnx

    from ..onnx_file import ONNX_OPSET

    student = student.eval()
    _observers(student, False)
    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        # The TorchScript exporter: the dynamo one does not translate FX's fake-quantisation modules.
        torch.onnx.export(student, (torch.zeros(1, 3, image_size, image_size),), buf, dynamo=False,
                          opset_version=ONNX_OPSET, input_names=["input"], output_names=["embedding"],
                          dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}})
    model = clean_qdq(onnx.load_from_string(buf.getvalue()))
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return out


def _quantize_array(w: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear: round half to even, add the zero point, saturate to its type."""
    shape = [1] * w.ndim
    if scale.ndim:
        shape[axis] = -1
    info = np.iinfo(zero.dtype)
    q = np.rint(w / scale.reshape(shape)) + zero.reshape(shape).astype(np.int64)
    return np.clip(q, info.min, info.max).astype(zero.dtype)


def clean_qdq(model):
    """What the TorchScript exporter leaves, made a graph onnxruntime fuses into integer kernels and a
    phone stores small:
    - Identity nodes (its way of sharing constants) removed;
    - one-element scales and zero points made scalars (onnxruntime's QLinear fusions require it);
    - every QuantizeLinear of a weight computed now: the weight is stored as int8 (4x smaller) and read
      by its DequantizeLinear.
    """
    from onnx import numpy_helper

    g = model.graph
    outputs = {o.name for o in g.output}
    alias = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity" and n.output[0] not in outputs}

    def resolve(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    arrays = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    inits: dict[str, np.ndarray] = {}

    def scalar(name: str) -> str:
        a = arrays[name]
        inits[name + ".s" if a.shape == (1,) else name] = a.reshape(()) if a.shape == (1,) else a
        return name + ".s" if a.shape == (1,) else name

    nodes = []
    for n in g.node:
        if n.output[0] in alias:
            continue
        n.input[:] = [resolve(x) for x in n.input]
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            n.input[1], n.input[2] = scalar(n.input[1]), scalar(n.input[2])
            if n.op_type == "QuantizeLinear" and n.input[0] in arrays:
                axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
                inits[n.output[0]] = _quantize_array(arrays[n.input[0]], inits[n.input[1]], inits[n.input[2]], axis)
                continue
        nodes.append(n)
    used = {x for n in nodes for x in n.input}
    inits.update({k: v for k, v in arrays.items() if k in used and k not in inits})
    del g.node[:], g.initializer[:]
    g.node.extend(nodes)
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items() if k in used)
    return model


def train_candidate(embedder: nn.Module, train: Sequence, calibration: Sequence, image_size: int,
                    recipe: QATRecipe, out: Path, progress: bool = False, cache_mb: float = 0.0) -> tuple[Path, list[dict]]:
    """One QAT INT8 file from the fp32 `embedder` (left unchanged) and its per-epoch history. `train`
    and `calibration` are images (paths or RGB arrays); `cache_mb` is `train.cache_mb`'s RAM budget."""
    import copy

    teacher = copy.deepcopy(embedder).eval()
    student = prepare(embedder, image_size)
    history = fine_tune(student, teacher, train, calibration, image_size, recipe, progress, cache_mb)
    return export_qdq(student, image_size, out), history

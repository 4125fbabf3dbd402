"""Exports of the embedder and their parity checks. ONNX fp32 here (written at the end of training);
the phone formats build on it."""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch

from .io import atomic_path

ONNX_OPSET = 18


class ExportError(RuntimeError):
    """An export failed its own check; the previous file (if any) is left in place."""


def export_onnx(embedder: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None,
                check: bool = True, min_cosine: float = 0.9999) -> dict:
    """Write a single-file ONNX model (opset 18, weights inside, dynamic batch) with string metadata.

    The file is checked with `onnx.checker` and onnxruntime must agree with torch at cosine >=
    `min_cosine` on random inputs before it replaces `path`. Returns the parity figures.
    """
    import onnx

    path = Path(path)
    embedder = embedder.eval().cpu().to(memory_format=torch.contiguous_format)
    size = embedder.config["image_size"]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with atomic_path(path) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter narrates every pass; keep reports readable
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.onnx.export(embedder, (x,), dynamo=True, opset_version=ONNX_OPSET,
                                    input_names=["input"], output_names=["embedding"],
                                    dynamic_shapes={"x": {0: batch}}, external_data=False, verbose=False)
        program.save(str(tmp), external_data=False)
        model = onnx.load(str(tmp))
        for k, v in (metadata or {}).items():
            model.metadata_props.add(key=str(k), value=str(v))
        onnx.save(model, str(tmp))
        result = {"size_bytes": tmp.stat().st_size}
        if check:
            onnx.checker.check_model(str(tmp), full_check=True)
            result.update(onnx_parity(tmp, embedder, x.numpy()))
            if result["min_cosine"] < min_cosine:
                raise ExportError(f"{path}: onnxruntime disagrees with torch (min cosine "
                                  f"{result['min_cosine']:.6f} < {min_cosine}); file not written")
    return result


def onnx_parity(onnx_path: str | Path, embedder: torch.nn.Module, x: np.ndarray) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    with torch.no_grad():
        ref = embedder(torch.from_numpy(x)).numpy()
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    return {"min_cosine": float(cos.min()), "max_abs_diff": float(np.abs(got - ref).max())}

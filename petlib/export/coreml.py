"""CoreML ML Program (.mlpackage), fp32 compute and I/O (coremltools defaults to fp16). CoreML cannot
predict on Linux, so the file's spec is validated instead of run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io import atomic_dir
from ..run import metadata_as_text
from .tools import ConvertContext, ExportError, example_input, quiet_fds

MAX_BATCH = 4096


def _coremltools():
    """Import coremltools without its import-time warnings (no macOS runtime on Linux, untested torch and
    scikit-learn versions): they are known, and `spec_check` is how this project copes with them."""
    import logging

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools

    return coremltools


def convert(ctx: ConvertContext, path: Path) -> None:
    ct = _coremltools()
    embedder, size = ctx.embedder, ctx.image_size
    with atomic_dir(path) as tmp, quiet_fds(), torch.no_grad():
        traced = torch.jit.trace(embedder, example_input(embedder, 1))
        model = ct.convert(traced, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32,
                           inputs=[ct.TensorType(name="input", dtype=np.float32,
                                                 shape=(ct.RangeDim(1, MAX_BATCH, 1), 3, size, size))],
                           outputs=[ct.TensorType(name="embedding", dtype=np.float32)],
                           minimum_deployment_target=ct.target.iOS16)
        model.short_description = "Pet-face embedding (L2-normalised); same pet <=> high cosine similarity"
        model.input_description["input"] = f"RGB face crop, NCHW float32, {size}x{size}, normalised with mean/std"
        model.output_description["embedding"] = f"{ctx.embedding_dim}-d unit vector"
        for k, v in metadata_as_text(ctx.metadata).items():
            model.user_defined_metadata[k] = v
        model.save(str(tmp))


def check(path: Path, image_size: int, embedding_dim: int, metadata: dict) -> dict:
    """Validate what an app relies on: the spec loads, the input is fp32 (1..N, 3, size, size) named
    `input`, the output fp32 `embedding`, no fp16 anywhere in the program, and the metadata is there.
    Raises ExportError naming every mismatch."""
    ct = _coremltools()
    with quiet_fds():
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    problems = []
    (inp,), (outp,) = spec.description.input, spec.description.output
    arr = inp.type.multiArrayType
    ranges = [(r.lowerBound, r.upperBound) for r in arr.shapeRange.sizeRanges]
    FLOAT32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    if inp.name != "input" or arr.dataType != FLOAT32:
        problems.append(f"input {inp.name!r} is not fp32 'input'")
    if ranges[1:] != [(3, 3), (image_size, image_size), (image_size, image_size)] or ranges[0][0] != 1:
        problems.append(f"input shape range {ranges} is not (1..N, 3, {image_size}, {image_size})")
    if outp.name != "embedding" or outp.type.multiArrayType.dataType != FLOAT32:
        problems.append(f"output {outp.name!r} is not fp32 'embedding'")
    if "fp16" in str(spec.mlProgram).lower():
        problems.append("the program computes in fp16")
    stored = dict(spec.description.metadata.userDefined)
    missing = [k for k in metadata if k not in stored]
    if missing:
        problems.append(f"metadata keys missing: {missing}")
    if problems:
        raise ExportError(f"{path}: CoreML spec check failed: " + "; ".join(problems))
    return {"spec_version": spec.specificationVersion, "batch_range": list(ranges[0]),
            "embedding_dim": embedding_dim}


def spec_check(ctx: ConvertContext, path: Path) -> dict:
    c = check(path, ctx.image_size, ctx.embedding_dim, ctx.metadata)
    return {"status": "spec checked",
            "note": f"spec v{c['spec_version']}, batch {c['batch_range']}: inputs, outputs, fp32 and metadata "
                    "validated; prediction needs macOS"}


def read_metadata(path: Path) -> dict:
    ct = _coremltools()
    with quiet_fds():
        stored = dict(ct.models.MLModel(str(path), skip_model_load=True).get_spec().description.metadata.userDefined)
    return {k: v for k, v in stored.items() if not k.startswith("com.github.apple.coremltools")}

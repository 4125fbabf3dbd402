"""ONNX fp32 (the file training wrote) and ONNX INT8 (onnxruntime static QDQ, calibrated on
validation images; per-channel and per-tensor are both made, and the one closer to fp32 is shipped)."""
from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np

from ..io import atomic_path
from ..onnx_file import onnx_runner as runner  # noqa: F401  (the registry's runner for both formats)
from .tools import ConvertContext


def copy_fp32(ctx: ConvertContext, path: Path) -> None:
    with atomic_path(path) as tmp:
        shutil.copyfile(ctx.run.file("pet_embedder.onnx"), tmp)


class _Calibration:
    """onnxruntime CalibrationDataReader over preprocessed validation images."""

    def __init__(self, batches: list[np.ndarray], name: str):
        self.it = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self.it, None)


def quantize_int8(fp32: Path, out: Path, calib: np.ndarray, per_channel: bool) -> Path:
    """Static QDQ INT8 with onnxruntime.quantization, calibrated on `calib` (N, 3, H, W) float32."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    with atomic_path(out) as tmp, contextlib.redirect_stdout(io.StringIO()):
        pre = tmp.with_suffix(".pre.onnx")
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(tmp), _Calibration([calib[i:i + 16] for i in range(0, len(calib), 16)], name),
                        quant_format=QuantFormat.QDQ, per_channel=per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        pre.unlink(missing_ok=True)
    return out


def copy_metadata(src: Path, dst: Path) -> None:
    import onnx

    a, b = onnx.load(str(src)), onnx.load(str(dst))
    have = {p.key for p in b.metadata_props}
    for p in a.metadata_props:
        if p.key not in have:
            b.metadata_props.add(key=p.key, value=p.value)
    with atomic_path(dst) as tmp:
        onnx.save(b, str(tmp))


def quantize_candidates(ctx: ConvertContext, path: Path) -> list[tuple[str, Path]]:
    fp32 = ctx.run.file("pet_embedder.onnx")
    out = []
    for per_channel in (True, False):
        kind = "per-channel" if per_channel else "per-tensor"
        cand = path.with_name(f"pet_embedder.int8.{kind.replace('-', '_')}.onnx")
        quantize_int8(fp32, cand, ctx.calibration, per_channel)
        copy_metadata(fp32, cand)
        out.append((kind, cand))
    return out


def read_metadata(path: Path) -> dict:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}

"""The export formats, one `Format` entry each. Adding a format = one module with its functions and
one entry here. Nothing in this module imports torch: the CLI lists the choices from it cheaply."""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..constants import FORMAT_IDS

EXPORT_INSTALL = "pip install -e '.[export]'"


@dataclass(frozen=True)
class Format:
    """One export format. The callables are named "module:function" inside `petlib.export` and are
    imported only when used, so a missing converter costs nothing until it is asked for.

    convert(ctx, path) writes `path` (or returns [(label, path), ...]: the first is the file it ships as
    `path`, the others are measured beside it for comparison); start(ctx, path) instead returns a child conversion
    with `.wait()`; runner(path, threads) returns a numpy function; spec_check(ctx, path) validates a
    file that cannot run here; read_metadata(path) returns the stored metadata strings or values."""
    id: str
    label: str
    file_name: str
    packages: tuple[str, ...] = ()
    convert: str | None = None
    start: str | None = None
    runner: str | None = None
    spec_check: str | None = None
    read_metadata: str = ""
    runtime: str = ""
    batches: tuple[int, ...] = (1, 32)
    sets_torch_threads: bool = False
    note: str = ""

    def fn(self, kind: str):
        """The function behind `kind` ('convert', 'start', 'runner', 'spec_check', 'read_metadata')."""
        module, name = getattr(self, kind).split(":")
        return getattr(importlib.import_module(f"petlib.export.{module}"), name)

    def available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.packages)


FORMATS: dict[str, Format] = {f.id: f for f in [
    Format("onnx", "ONNX fp32", "pet_embedder.onnx", convert="onnx:copy_fp32", runner="onnx:runner",
           read_metadata="onnx:read_metadata", runtime="onnxruntime"),
    Format("onnx_int8", "ONNX INT8", "pet_embedder.int8.onnx", convert="onnx:quantize_searched",
           runner="onnx:runner", read_metadata="onnx:read_metadata", runtime="onnxruntime"),
    Format("torchscript", "TorchScript", "pet_embedder.ts", convert="torchscript:convert",
           runner="torchscript:runner", read_metadata="torchscript:read_metadata", runtime="torch.jit",
           sets_torch_threads=True),
    Format("executorch", "ExecuTorch (XNNPACK)", "pet_embedder.pte", packages=("executorch",),
           convert="executorch:convert", runner="executorch:runner", read_metadata="executorch:read_metadata",
           runtime="executorch runtime"),
    Format("coreml", "CoreML (ML Program, fp32)", "pet_embedder.mlpackage", packages=("coremltools",),
           convert="coreml:convert", spec_check="coreml:spec_check", read_metadata="coreml:read_metadata",
           runtime="none on Linux"),
    Format("tflite", "TFLite (batch-1 graph)", "pet_embedder.tflite", packages=("litert_torch", "ai_edge_litert"),
           start="tflite:start", runner="tflite:runner", read_metadata="tflite:read_metadata",
           runtime="ai-edge-litert", batches=(1,),
           note="batch-1 graph: litert-torch cannot lower a dynamic-batch flatten"),
]}


assert tuple(FORMATS) == FORMAT_IDS, "petlib.constants.FORMAT_IDS names every registry entry, in order"


def converter_available(fmt: str) -> bool:
    return FORMATS[fmt].available()


def read_metadata(path: str | Path) -> dict:
    """The petface metadata stored inside an exported model, whatever its format, with the same types
    from every format (ONNX and CoreML store strings; they are decoded)."""
    from ..run import metadata_from_text

    path = Path(path)
    by_suffix = {Path(f.file_name).suffix: f for f in FORMATS.values()}
    fmt = by_suffix.get(path.suffix)
    if fmt is None:
        raise ValueError(f"{path}: not an exported model ({', '.join(sorted(by_suffix))})")
    return metadata_from_text(fmt.fn("read_metadata")(path))

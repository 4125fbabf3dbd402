"""ONNX fp32 (the file training wrote) and ONNX INT8 (onnxruntime static QDQ, the setting chosen on
validation by the task metrics: `int8.search`)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..io import atomic_path
from ..onnx_file import onnx_runner as runner  # noqa: F401  (the registry's runner for both formats)
from . import int8
from .tools import ConvertContext


def copy_fp32(ctx: ConvertContext, path: Path) -> None:
    with atomic_path(path) as tmp:
        shutil.copyfile(ctx.run.file("pet_embedder.onnx"), tmp)


def copy_metadata(src: Path, dst: Path) -> None:
    import onnx

    a, b = onnx.load(str(src)), onnx.load(str(dst))
    have = {p.key for p in b.metadata_props}
    for p in a.metadata_props:
        if p.key not in have:
            b.metadata_props.add(key=p.key, value=p.value)
    with atomic_path(dst) as tmp:
        onnx.save(b, str(tmp))


def quantize_searched(ctx: ConvertContext, path: Path) -> list[tuple[str, Path]]:
    """The INT8 file the search keeps (`int8.search`), shipped as `path`, and for comparison on the test
    split the setting shipped before the search (MinMax, per-channel), as a candidate beside it."""
    fp32 = ctx.run.file("pet_embedder.onnx")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".int8-search.") as work:
        found = int8.search(fp32, ctx.calibration, ctx.image_size, ctx.validation, ctx.int8_cap_bytes, Path(work),
                            ctx.progress)
        before = path.with_name("pet_embedder.int8.before_search.onnx")
        for src, dst in ((found.paths[found.best], path), (found.paths[found.before], before)):
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
            copy_metadata(fp32, dst)
    ctx.notes["int8_search"] = found.to_json()
    return [(f"kept: {found.best.label()}", path), (f"before the search: {found.before.label()}", before)]


def read_metadata(path: Path) -> dict:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}

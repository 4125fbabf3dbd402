"""ONNX fp32 (the file training wrote) and ONNX INT8 (onnxruntime static QDQ, the setting chosen on
validation by the task metrics: `int8.search`)."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from ..io import atomic_path
from ..onnx_file import onnx_runner as runner  # noqa: F401  (the registry's runner for both formats)
from . import int8, qat
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


def _qat_writer(ctx: ConvertContext, history: dict):
    """`int8.search`'s QAT callback: one candidate per setting, its training history kept in `history`."""
    if ctx.qat is None:
        return None

    def write(setting: int8.Setting, out: Path) -> Path:
        recipe = replace(ctx.qat, epochs=setting.qat_epochs)
        path, history[setting.label()] = qat.train_candidate(
            ctx.embedder, ctx.train_images, ctx.calibration[:setting.calibration_images], ctx.image_size, recipe,
            out, ctx.progress, ctx.cache_mb)
        return path

    return write


def quantize_searched(ctx: ConvertContext, path: Path) -> list[tuple[str, Path]]:
    """The INT8 file the search keeps (`int8.search`), shipped as `path`; for comparison on the test
    split, as candidates beside it: the setting shipped before the search (MinMax, per-channel) and,
    when QAT ran and was not kept, the QAT candidate that trained."""
    fp32 = ctx.run.file("pet_embedder.onnx")
    history: dict = {}
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".int8-search.") as work:
        found = int8.search(fp32, ctx.calibration, ctx.image_size, ctx.validation, ctx.int8_cap_bytes, Path(work),
                            ctx.progress, _qat_writer(ctx, history), ctx.qat.epochs if ctx.qat else 0)
        shown = [("kept", found.best, path),
                 ("before the search", found.before, path.with_name("pet_embedder.int8.before_search.onnx"))]
        trained = [s for s in found.paths if s.qat_epochs and s != found.best]
        shown += [("QAT", s, path.with_name("pet_embedder.int8.qat.onnx")) for s in trained]
        for _, s, dst in shown:
            with atomic_path(dst) as tmp:
                shutil.copyfile(found.paths[s], tmp)
            copy_metadata(fp32, dst)
    ctx.notes["int8_search"] = {**found.to_json(), **({"qat_history": history} if history else {})}
    return [(f"{role}: {s.label()}", dst) for role, s, dst in shown]


def read_metadata(path: Path) -> dict:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}

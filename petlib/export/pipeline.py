"""`export_run`: convert a trained run to every format, then check each file in its own runtime.

Two phases: first every conversion (TFLite's in a child process beside the others), then every check,
one file at a time, so no latency is measured while a conversion runs. A format whose converter is
not installed is a `skipped` row with the install command; one whose conversion or check fails is a
`failed` row with the reason (and the converter's log tail). Neither stops the other formats, and a
failed conversion leaves the previous file in place.

Rows have stable fields: `id` (the registry key, or `pytorch`), `label`, `role` (`reference`, a
`candidate` that was measured but not shipped, or `shipped`) and `status`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import data, metrics, reproducible, stages
from ..embed import preprocess_images
from ..io import atomic_write_json, read_json
from ..latency import torch_runner
from ..layout import Layout
from ..run import RunDir
from . import int8
from .measure import TestSet, latencies, make_test_set, measure, ok_row
from .qat import QATRecipe
from .registry import EXPORT_INSTALL, FORMATS, Format
from .tools import ConvertContext

CALIBRATION_IMAGES = max(int8.CALIBRATION_SIZES)  # the largest calibration set the INT8 search tries
VALIDATION_IMAGES = 1000  # INT8 candidates are scored on at most this many validation images, whole identities


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _row(fmt: Format, label: str, path: Path, role: str = "shipped", **fields) -> dict:
    return {"id": fmt.id, "label": label, "role": role, "file": path.name, **fields}


def _failed(fmt: Format, e: Exception) -> dict:
    """The row of a format whose conversion or check raised: the reason in one line, with the converter's
    log tail when `quiet_fds` attached one."""
    notes = " ".join(getattr(e, "__notes__", []))
    return {"id": fmt.id, "label": fmt.label, "role": "shipped", "file": fmt.file_name, "status": "failed",
            "reason": f"{type(e).__name__}: {e} {notes}".strip().replace("\n", " ")}


def convert_all(ctx: ConvertContext, formats: list[Format], out: Path, progress: bool = False):
    """Phase 1. Returns ({id: [(label, path), ...]} of converted files, {id: [row]} of skipped/failed)."""
    from ..progress import bar as tqdm

    converted: dict[str, list[tuple[str, Path]]] = {}
    rows: dict[str, list[dict]] = {}
    for f in formats:
        if not f.available():
            rows[f.id] = [{"id": f.id, "label": f.label, "role": "shipped", "file": f.file_name,
                           "status": "skipped", "reason": f"converter not installed: {EXPORT_INSTALL}"}]
    children = {f.id: (f, f.fn("start")(ctx, out / f.file_name)) for f in formats if f.start and f.id not in rows}
    try:
        for f in tqdm([f for f in formats if f.convert and f.id not in rows], desc=f"convert {ctx.run.path.name}",
                      disable=not progress):
            path = out / f.file_name
            try:
                candidates = f.fn("convert")(ctx, path)
                converted[f.id] = [(f"{f.label} ({kind})", p) for kind, p in candidates] if candidates \
                    else [(f.label, path)]
            except Exception as e:  # one broken converter must not take the others down
                rows[f.id] = [_failed(f, e)]
        for fid in list(children):
            f, child = children.pop(fid)
            try:
                converted[fid] = [(f.label, child.wait())]
            except Exception as e:
                rows[fid] = [_failed(f, e)]
    finally:
        for _, child in children.values():  # interrupted: stop them and leave no temp files
            child.close()
    return converted, rows


def _check_one(f: Format, files: list[tuple[str, Path]], ctx: ConvertContext, ts: TestSet, out: Path,
               threads: tuple[int, ...]) -> list[dict]:
    if f.spec_check:
        (label, path), = files
        return [_row(f, label, path, bytes=_size(path), runtime=f.runtime, **f.fn("spec_check")(ctx, path))]
    set_threads = torch.set_num_threads if f.sets_torch_threads else None
    rows = []
    for label, path in files:
        m = measure(lambda th, p=path: f.fn("runner")(p, th), ts, ctx.image_size, threads, f.batches, set_threads)
        rows.append(_row(f, label, path, bytes=_size(path), runtime=f.runtime, **m,
                         **({"note": f.note} if f.note else {})))
    for r in rows[1:]:  # the converter ships the first file; the others are shown beside it
        r["role"] = "candidate"
    return rows


def check_all(ctx: ConvertContext, ts: TestSet, formats: list[Format], converted: dict, rows: dict, out: Path,
              progress: bool = False) -> list[dict]:
    """Phase 2: the PyTorch reference row, then every converted file in its runtime, in format order."""
    from ..progress import bar as tqdm

    threads = (1, torch.get_num_threads())
    ref_path = ctx.run.file("pet_embedder.pt")
    reference = {"id": "pytorch", "label": "pytorch (reference)", "role": "reference", "file": ref_path.name,
                 "bytes": ref_path.stat().st_size, "runtime": "torch eager", "min_cosine": 1.0, "mean_cosine": 1.0,
                 "status": "ok", **ts.reference_task,
                 **latencies(lambda th: torch_runner(ctx.embedder), ctx.image_size, threads,
                             set_threads=torch.set_num_threads)}
    for f in tqdm([f for f in formats if f.id in converted], desc=f"check {ctx.run.path.name}", disable=not progress):
        try:
            rows[f.id] = _check_one(f, converted[f.id], ctx, ts, out, threads)
        except Exception as e:
            rows[f.id] = [_failed(f, e)]
    return [reference] + [r for f in formats for r in rows[f.id]]


def calibration_images(train, seed: int) -> list:
    """Up to `CALIBRATION_IMAGES` training images in a seeded order: the first n calibrate an n-image
    candidate. Training images, so that the candidates are scored on images they were not calibrated on."""
    order = np.random.default_rng(seed).permutation(len(train.paths))[:CALIBRATION_IMAGES]
    return [train.paths[i] for i in order]


def validation_set(embedder, val, size: int, params) -> TestSet:
    """Whole validation identities in a seeded order up to `VALIDATION_IMAGES` images, their pairs and
    the PyTorch reference on them: what INT8 candidates are scored on."""
    order = np.random.default_rng(params.seed).permutation(len(val.identities))
    counts = np.bincount(val.labels, minlength=len(val.identities))[order]
    keep = order[:max(1, int(np.searchsorted(np.cumsum(counts), VALIDATION_IMAGES, side="right")))]
    sub = val.subset([val.identities[i] for i in sorted(keep)])
    pairs = metrics.sample_pairs(sub.labels, min(params.eval.n_rank_pairs, 20000), params.seed)
    return make_test_set(embedder, preprocess_images(sub.paths, size), sub.labels, pairs)


def _formats(names: list[str] | None) -> list[Format]:
    names = names or list(FORMATS)
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; choose from {list(FORMATS)}")
    return [FORMATS[n] for n in names]


def export_run(params, model: str, species: str, formats: list[str] | None = None, out_dir: Path | None = None,
               run_dir: Path | None = None, progress: bool = False, force: bool = False, log=print) -> dict:
    """Export one trained run to each format and check each file against PyTorch on the test split:
    cosine parity, task deltas (verification accuracy, R@1, TAR@FAR=1e-3) and CPU latency (batch 1
    and 32, one thread and all threads). `formats` defaults to `params.export.formats` (empty: all).
    Writes and returns {model, species, rows, metadata, reference}: the export.json already written when
    the stage's inputs (`stages.export_check`) match its stamp, unless `force`."""
    fmts = _formats(formats or params.export.formats)
    out = Path(out_dir) if out_dir else Layout(params).export_dir(model, species)
    check = stages.export_check(params, model, species)
    check.stamp, check.params["export.formats"] = out / stages.STAMP, [f.id for f in fmts]
    if not force and (out / "export.json").is_file() and check.up_to_date():
        log(f"{model}-{species}: export up to date ({out / 'export.json'}); force=True exports again")
        return read_json(out / "export.json")
    result = _export(params, model, species, fmts, out, run_dir, progress)
    check.write()
    return result


def _export(params, model: str, species: str, fmts: list[Format], out: Path, run_dir: Path | None, progress: bool) -> dict:
    reproducible.apply(params.reproducible, torch.device("cpu"))  # exports are checked on the CPU
    run = RunDir(run_dir or Layout(params).run_dir(model, species))
    out.mkdir(parents=True, exist_ok=True)
    embedder = run.load_embedder().to(memory_format=torch.contiguous_format)
    cfg = run.config()
    size = cfg["image_size"]
    splits = data.load_splits(params, species)
    test, val = splits["test"], splits["val"]
    pairs = metrics.sample_pairs(test.labels, min(params.eval.n_rank_pairs, 20000), params.seed)
    ts = make_test_set(embedder, preprocess_images(test.paths, size), test.labels, pairs)
    int8_wanted = any(f.id == "onnx_int8" for f in fmts)  # its inputs cost a pass over validation
    ctx = ConvertContext(run, embedder, run.deploy_metadata(),
                         calibration_images(splits["train"], params.seed) if int8_wanted else [],
                         validation_set(embedder, val, size, params) if int8_wanted else None,
                         int(params.export.int8_max_mb * 1e6), size, cfg["embedding_dim"], progress,
                         train_images=splits["train"].paths if int8_wanted else (),
                         qat=QATRecipe(params.export.qat_epochs, params.export.qat_lr, params.seed)
                         if int8_wanted and params.export.qat_epochs else None, cache_mb=params.train.cache_mb)
    converted, rows = convert_all(ctx, fmts, out, progress)
    table = check_all(ctx, ts, fmts, converted, rows, out, progress)
    result = {"model": model, "species": species, "rows": table, "metadata": ctx.metadata,
              "reference": ts.reference_task, "threads_all": torch.get_num_threads(), **ctx.notes}
    if "int8_search" in ctx.notes and ok_row(table, "onnx_int8"):
        shipped = out / FORMATS["onnx_int8"].file_name
        result["int8_search"]["test"] = int8.judge(shipped, ts, recall_flips=True)
    atomic_write_json(out / "export.json", result)
    return result

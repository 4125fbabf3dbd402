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

import shutil
from pathlib import Path

import torch

from .. import bench, data, reproducible
from ..embed import preprocess_images
from ..io import atomic_write_json
from ..latency import torch_runner
from ..run import RunDir
from .measure import TestSet, latencies, make_test_set, measure
from .registry import EXPORT_INSTALL, FORMATS, Format
from .tools import ConvertContext

CALIBRATION_IMAGES = 256


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
    if len(files) == 1:
        return rows
    # Candidates: ship the one closest to PyTorch (mean cosine, i.e. fidelity, not a lucky task delta).
    for r in rows:
        r["role"] = "candidate"
    best, (label, path) = max(zip(rows, files), key=lambda c: c[0]["mean_cosine"])
    shutil.copyfile(path, out / f.file_name)
    kind = label[len(f.label):].strip(" ()")
    return rows + [{**best, "label": f"{f.label} (kept: {kind})", "role": "shipped", "file": f.file_name}]


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


def _formats(names: list[str] | None) -> list[Format]:
    names = names or list(FORMATS)
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; choose from {list(FORMATS)}")
    return [FORMATS[n] for n in names]


def export_run(params, model: str, species: str, formats: list[str] | None = None, out_dir: Path | None = None,
               run_dir: Path | None = None, progress: bool = False) -> dict:
    """Export one trained run to each format and check each file against PyTorch on the test split:
    cosine parity, task deltas (verification accuracy, R@1, TAR@FAR=1e-3) and CPU latency (batch 1
    and 32, one thread and all threads). `formats` defaults to `params.export.formats` (empty: all).
    Writes and returns {model, species, rows, metadata, reference}."""
    fmts = _formats(formats or params.export.formats)
    reproducible.apply(params.reproducible, torch.device("cpu"))  # exports are checked on the CPU
    run = RunDir(run_dir or params.run_dir(model, species))
    out = Path(out_dir) if out_dir else params.out("exports", f"{model}-{species}")
    out.mkdir(parents=True, exist_ok=True)
    embedder = run.load_embedder().to(memory_format=torch.contiguous_format)
    cfg = run.config()
    size = cfg["image_size"]
    splits = data.load_splits(params, species)
    test, val = splits["test"], splits["val"]
    pairs = bench.sample_pairs(test.labels, min(params.eval.n_rank_pairs, 20000), params.seed)
    ts = make_test_set(embedder, preprocess_images(test.paths, size), test.labels, pairs)
    ctx = ConvertContext(run, embedder, run.deploy_metadata(), preprocess_images(val.paths[:CALIBRATION_IMAGES], size),
                         size, cfg["embedding_dim"])
    converted, rows = convert_all(ctx, fmts, out, progress)
    table = check_all(ctx, ts, fmts, converted, rows, out, progress)
    result = {"model": model, "species": species, "rows": table, "metadata": ctx.metadata,
              "reference": ts.reference_task, "threads_all": torch.get_num_threads()}
    atomic_write_json(out / "export.json", result)
    return result


def _find(rows: list[dict], fid: str, role: str = "shipped") -> dict | None:
    return next((r for r in rows if r["id"] == fid and r["role"] == role and r["status"] == "ok"), None)


def headline(result: dict) -> dict:
    """The figures the study index shows for one export: shipped formats written and checked, the
    shipped INT8 model's size and accuracy change, and onnxruntime's batch-1 latency."""
    shipped = [r for r in result["rows"] if r["role"] == "shipped"]
    ok = [r for r in shipped if r["status"] in ("ok", "spec checked")]
    out = {"formats checked": f"{len(ok)}/{len(shipped)}"}
    kept, fp32 = _find(shipped, "onnx_int8"), _find(shipped, "onnx")
    if kept:
        out.update({"INT8 MB": round(kept["bytes"] / 1e6, 2),
                    "INT8 d-acc (pts)": round(kept["delta_verification_accuracy"] * 100, 2)})
    if fp32:
        out["ORT fp32 ms (b1, 1 thread)"] = round(fp32["ms_b1_t1"], 2)
    return out


def int8_summary(result: dict) -> str:
    """One sentence on the shipped INT8 model against fp32, or why there is none."""
    kept, fp32 = _find(result["rows"], "onnx_int8"), _find(result["rows"], "onnx")
    if not kept or not fp32:
        return "INT8: no checked INT8 model next to a checked fp32 one (see the table for why)."
    return (f"INT8: {kept['bytes'] / 1e6:.2f} MB ({fp32['bytes'] / kept['bytes']:.1f}x smaller than fp32), "
            f"verification accuracy {kept['delta_verification_accuracy'] * 100:+.2f} points, "
            f"R@1 {kept['delta_recall@1'] * 100:+.2f} points")

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


# --------------------------------------------------------------------------- the phone formats
EXPORT_INSTALL = "pip install -e '.[export]'"
FORMATS = ["onnx", "onnx_int8", "torchscript", "executorch", "coreml", "tflite"]
FILE_NAMES = {"onnx": "pet_embedder.onnx", "onnx_int8": "pet_embedder.int8.onnx", "torchscript": "pet_embedder.ts",
              "executorch": "pet_embedder.pte", "coreml": "pet_embedder.mlpackage", "tflite": "pet_embedder.tflite"}
_CONVERTER = {"executorch": "executorch", "coreml": "coremltools", "tflite": "litert_torch"}


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
    onnx.save(b, str(dst))


def onnx_runner(path: Path, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def torchscript_export(embedder: torch.nn.Module, out: Path, metadata: dict | None = None) -> Path:
    """Traced TorchScript; `metadata` travels as the extra file `petface.json` (torch.jit.load(_extra_files=...))."""
    import json

    size = embedder.config["image_size"]
    with atomic_path(out) as tmp, torch.no_grad():
        traced = torch.jit.trace(embedder.eval().cpu(), torch.zeros(1, 3, size, size))
        torch.jit.save(traced, str(tmp), _extra_files={"petface.json": json.dumps(metadata or {})})
    return out


def torch_runner(module: torch.nn.Module):
    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
    return run


def run_batched(run, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])


def latency_ms(run, size: int, batch: int, repeats: int = 20) -> float:
    import time

    x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
    for _ in range(3):
        run(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def converter_available(fmt: str) -> bool:
    import importlib.util

    mod = _CONVERTER.get(fmt)
    return mod is None or importlib.util.find_spec(mod) is not None


def export_run(params, model: str, species: str, formats: list[str] | None = None, out_dir: Path | None = None,
               progress: bool = False) -> dict:
    """Export one trained run to each format, re-load it in its own runtime and check it against PyTorch:
    cosine parity on test images, task deltas on the test split (verification accuracy, R@1,
    TAR@FAR=1e-3) and CPU latency (batch 1 and 32, 1 thread and all threads). Returns rows per format."""
    import json
    import shutil

    from . import bench, data
    from .embed import _Images
    from .train import load_run_embedder, summary

    formats = formats or FORMATS
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; choose from {FORMATS}")
    run = params.run_dir(model, species)
    out = Path(out_dir) if out_dir else params.out("exports", f"{model}-{species}")
    out.mkdir(parents=True, exist_ok=True)
    embedder, cfg = load_run_embedder(run)
    size = cfg["image_size"]
    hist = json.loads((run / "history.json").read_text())
    threshold = summary(hist)["val_threshold"]
    splits = data.load_splits(params, species)
    test, val = splits["test"], splits["val"]
    x_test = np.stack([t.numpy() for t in _Images(test.paths, size)])
    x_cal = np.stack([t.numpy() for t in _Images(val.paths[:256], size)])
    pairs = bench.sample_pairs(test.labels, min(params.eval.n_rank_pairs, 20000), params.seed)

    def task(emb):
        s = (emb[pairs[:, 0]] * emb[pairs[:, 1]]).sum(1)
        return {"verification_accuracy": bench.best_threshold(s, pairs[:, 2])["accuracy"],
                "recall@1": bench.retrieval(emb, test.labels, ks=(1,))["recall@1"],
                "tar@far=1e-3": bench.tar_at_far(s, pairs[:, 2], 1e-3)}

    ref_run = torch_runner(embedder)
    ref = run_batched(ref_run, x_test)
    ref_task = task(ref)
    n_threads = torch.get_num_threads()

    def measure(run_fn, label, path, runtime, set_threads):
        emb = run_batched(run_fn(None), x_test)
        cos = (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
        t = task(emb)
        row = {"format": label, "file": path.name, "bytes": _size(path), "runtime": runtime,
               "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
               **{f"delta_{k}": t[k] - ref_task[k] for k in t}, "status": "ok"}
        for threads in (1, n_threads):
            set_threads(threads)
            r = run_fn(threads)
            for b in (1, 32):
                row[f"ms_b{b}_t{threads}"] = latency_ms(r, size, b)
        set_threads(n_threads)
        return row

    meta = {"input_size": size, "channel_order": "RGB", "layout": "NCHW", "mean": cfg["mean"], "std": cfg["std"],
            "embedding_dim": cfg["embedding_dim"], "recommended_threshold": threshold,
            "data_fingerprint": cfg["data_fingerprint"]}
    noop = lambda n: None
    rows = [{"format": "pytorch (reference)", "file": "pet_embedder.pt", "bytes": (run / "pet_embedder.pt").stat().st_size,
             "runtime": "torch eager", "min_cosine": 1.0, "mean_cosine": 1.0, "status": "ok", **ref_task}]
    for threads in (1, n_threads):
        torch.set_num_threads(threads)
        for b in (1, 32):
            rows[0][f"ms_b{b}_t{threads}"] = latency_ms(ref_run, size, b)
    torch.set_num_threads(n_threads)
    for fmt in formats:
        path = out / FILE_NAMES[fmt]
        try:
            if fmt == "onnx":
                shutil.copyfile(run / "pet_embedder.onnx", path)
                rows.append(measure(lambda th, p=path: onnx_runner(p, th), "ONNX fp32", path, "onnxruntime", noop))
            elif fmt == "onnx_int8":
                best = None
                for pc in (True, False):
                    cand = out / f"pet_embedder.int8.{'per_channel' if pc else 'per_tensor'}.onnx"
                    quantize_int8(run / "pet_embedder.onnx", cand, x_cal, per_channel=pc)
                    copy_metadata(run / "pet_embedder.onnx", cand)
                    r = measure(lambda th, p=cand: onnx_runner(p, th), f"ONNX INT8 ({'per-channel' if pc else 'per-tensor'})",
                                cand, "onnxruntime", noop)
                    rows.append(r)
                    if best is None or r["mean_cosine"] > best[1]["mean_cosine"]:  # fidelity, not a lucky delta
                        best = (cand, r)
                shutil.copyfile(best[0], path)
                rows.append({**best[1], "format": "ONNX INT8 (kept: " + best[1]["format"].split("(")[1], "file": path.name})
            elif fmt == "torchscript":
                torchscript_export(embedder, path, meta)
                loaded = torch.jit.load(str(path))
                rows.append(measure(lambda th, m=loaded: torch_runner(m), "TorchScript", path, "torch.jit",
                                    torch.set_num_threads))
            elif not converter_available(fmt):
                rows.append({"format": fmt, "file": path.name, "status": "skipped",
                             "reason": f"converter not installed: {EXPORT_INSTALL}"})
            else:
                rows.append({"format": fmt, "file": path.name, "status": "skipped",
                             "reason": "converter installed, but this version of petface-study does not drive it yet"})
        except Exception as e:  # one broken converter must not take the others down
            rows.append({"format": fmt, "file": path.name, "status": "failed", "reason": f"{type(e).__name__}: {e}"})
    result = {"model": model, "species": species, "rows": rows, "metadata": meta, "reference": ref_task,
              "threads_all": n_threads}
    from .io import atomic_write_json
    atomic_write_json(out / "export.json", result)
    return result


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size

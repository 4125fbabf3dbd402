"""Exports of the embedder, each re-loaded in its own runtime and checked against PyTorch on the task.

ONNX fp32 (written at the end of training), ONNX INT8 (onnxruntime static QDQ), TorchScript, and the phone
formats of the `export` extra: ExecuTorch (.pte, XNNPACK), TFLite (litert-torch, run with ai-edge-litert)
and CoreML (.mlpackage; its spec is validated, since CoreML cannot predict on Linux). Every file carries
the metadata an app needs (`read_metadata` reads it back from any format)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from .io import atomic_dir, atomic_path

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
    x = _example(embedder, 2)
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
_CONVERTER = {"executorch": ("executorch",), "coreml": ("coremltools",), "tflite": ("litert_torch", "ai_edge_litert")}


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
    with atomic_path(out) as tmp, torch.no_grad():
        traced = torch.jit.trace(embedder.eval().cpu(), _example(embedder, 1))
        torch.jit.save(traced, str(tmp), _extra_files={"petface.json": json.dumps(metadata or {})})
    return out


@contextlib.contextmanager
def _quiet_fds():
    """Silence a converter's own logging at the file-descriptor level (C++ logs, progress bars); on an
    error the captured tail is attached to the exception so nothing needed for a diagnosis is lost."""
    import tempfile

    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    with tempfile.TemporaryFile() as log:
        saved = []
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(log.fileno(), fd)
        except OSError:  # no real descriptors (an odd host): run unsilenced
            for fd, keep in saved:
                os.dup2(keep, fd)
                os.close(keep)
            yield
            return
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except Exception as e:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
            if tail:
                e.add_note("converter log (last lines): " + " | ".join(tail))
            raise
        finally:
            for fd, keep in saved:
                os.dup2(keep, fd)
                os.close(keep)


def _example(embedder: torch.nn.Module, batch: int) -> torch.Tensor:
    size = embedder.config["image_size"]
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


ET_MAX_BATCH = 32  # ExecuTorch plans memory for the largest batch up front; phones run batch 1


class _Child:
    """A conversion running in a separate Python process (see `tflite_start`); `.wait()` returns its
    output path or raises ExportError with the child's last log lines. The file appears only on success."""

    def __init__(self, argv: list[str], tmp: Path, out: Path, cleanup: list[Path]):
        import subprocess

        self.tmp, self.out, self.cleanup = tmp, out, cleanup
        # One thread each: OpenMP threads of several torch processes spin against each other on a small
        # machine (measured here: 25x slower), and the converters are single-threaded Python anyway.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._remove_temps()

    def _remove_temps(self) -> None:
        for p in [self.tmp, *self.cleanup]:
            p.unlink(missing_ok=True)

    def wait(self) -> Path:
        _, err = self.proc.communicate()
        try:
            if self.proc.returncode != 0:
                tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-3:])
                raise ExportError(f"{self.out}: conversion failed (exit {self.proc.returncode}): {tail}")
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.out)
            return self.out
        finally:
            self._remove_temps()


def tflite_start(embedder: torch.nn.Module, out: Path, metadata: dict | None = None) -> _Child:
    """Start the TFLite conversion (`tflite_export`) in a child Python process and return at once.

    A child process because litert-torch imports JAX, whose threads make any later fork() in this
    process (DataLoader workers, the synth pool) liable to deadlock; it also lets the conversion run
    beside the other exporters on the second core."""
    import tempfile

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    src = Path(tmp).with_suffix(".src.pt")
    torch.save({"config": embedder.config, "state_dict": embedder.state_dict(), "metadata": metadata or {}}, src)
    argv = [sys.executable, "-c", "import sys; from petlib.export import _tflite_child; _tflite_child(*sys.argv[1:])",
            str(src), tmp]
    return _Child(argv, Path(tmp), out, [src])


def executorch_export(embedder: torch.nn.Module, out: Path, metadata: dict | None = None) -> Path:
    """ExecuTorch program lowered to XNNPACK, batch 1..ET_MAX_BATCH. The metadata travels inside the
    .pte as a constant method `petface_metadata` (UTF-8 JSON as a uint8 tensor). In this process: a child
    would pay the ~15 s cold start of torch.export again (measured slower overall)."""
    embedder = embedder.eval().cpu().to(memory_format=torch.contiguous_format)
    meta = torch.tensor(list(json.dumps(metadata or {}).encode()), dtype=torch.uint8)
    with atomic_path(out) as tmp, _quiet_fds():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        # The example must be the largest batch: memory planning sizes buffers from it, not from Dim(max=).
        program = torch.export.export(embedder, (_example(embedder, ET_MAX_BATCH),),
                                      dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=ET_MAX_BATCH)}})
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                              constant_methods={"petface_metadata": meta}).to_executorch()
        tmp.write_bytes(lowered.buffer)
    return out


def tflite_export(embedder: torch.nn.Module, out: Path, metadata: dict | None = None) -> Path:
    """TFLite flatbuffer via litert-torch, batch 1 (litert cannot lower a dynamic-batch flatten; a phone app
    embeds one face at a time). The metadata is a flatbuffer Metadata entry `petface` (UTF-8 JSON)."""
    return tflite_start(embedder, out, metadata).wait()


def _tflite_child(src: str, path: str) -> None:
    """Child-process side of `tflite_start`."""
    from .models import embedder_from_config

    blob = torch.load(src, map_location="cpu", weights_only=True)
    embedder = embedder_from_config(blob["config"], blob["state_dict"]).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _tflite_convert(embedder, Path(path), blob["metadata"])


def _tflite_convert(embedder: torch.nn.Module, path: Path, metadata: dict) -> None:
    import flatbuffers
    import litert_torch
    from ai_edge_litert import schema_py_generated as schema

    litert_torch.convert(embedder, (_example(embedder, 1),)).export(str(path))
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = "petface", len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != b"petface"] + [entry]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())


def executorch_runner(path: Path, threads: int | None = None):
    """Run a .pte with the ExecuTorch Python runtime (XNNPACK threadpool sized to `threads`)."""
    with _quiet_fds():
        from executorch.runtime import Runtime

        if threads:
            with contextlib.suppress(ImportError):
                from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
                _unsafe_reset_threadpool(threads)
        method = Runtime.get().load_program(str(path)).load_method("forward")

    def run(x):
        return np.concatenate([method.execute([torch.from_numpy(np.ascontiguousarray(x[i:i + ET_MAX_BATCH],
                                                                                     dtype=np.float32))])[0].numpy()
                               for i in range(0, len(x), ET_MAX_BATCH)])
    return run


def tflite_runner(path: Path, threads: int | None = None):
    """Run a batch-1 .tflite with the ai-edge-litert interpreter, one image per call."""
    from ai_edge_litert.interpreter import Interpreter

    with _quiet_fds():
        interp = Interpreter(model_path=str(path), num_threads=threads or None)
        interp.allocate_tensors()
    i_in, i_out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]

    def run(x):
        out = []
        for img in np.ascontiguousarray(x, dtype=np.float32):
            interp.set_tensor(i_in, img[None])
            interp.invoke()
            out.append(interp.get_tensor(i_out)[0].copy())
        return np.stack(out)
    return run


def _coremltools():
    """Import coremltools without its import-time warnings (no macOS runtime on Linux, untested torch and
    scikit-learn versions): they are known, and `coreml_check` is how this project copes with them."""
    import logging

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    import coremltools

    return coremltools


def coreml_export(embedder: torch.nn.Module, out: Path, metadata: dict | None = None, max_batch: int = 4096) -> Path:
    """CoreML ML Program (.mlpackage) from the TorchScript trace, fp32 compute and I/O (coremltools
    defaults to fp16), batch 1..`max_batch`; metadata as user-defined strings."""
    ct = _coremltools()
    embedder = embedder.eval().cpu().to(memory_format=torch.contiguous_format)
    size = embedder.config["image_size"]
    with atomic_dir(out) as tmp, _quiet_fds(), torch.no_grad():
        traced = torch.jit.trace(embedder, _example(embedder, 1))
        model = ct.convert(traced, convert_to="mlprogram", compute_precision=ct.precision.FLOAT32,
                           inputs=[ct.TensorType(name="input", dtype=np.float32,
                                                 shape=(ct.RangeDim(1, max_batch, 1), 3, size, size))],
                           outputs=[ct.TensorType(name="embedding", dtype=np.float32)],
                           minimum_deployment_target=ct.target.iOS16)
        model.short_description = "Pet-face embedding (L2-normalised); same pet <=> high cosine similarity"
        model.input_description["input"] = f"RGB face crop, NCHW float32, {size}x{size}, normalised with mean/std"
        model.output_description["embedding"] = f"{embedder.config['embedding_dim']}-d unit vector"
        for k, v in (metadata or {}).items():
            model.user_defined_metadata[str(k)] = json.dumps(v) if not isinstance(v, str) else v
        model.save(str(tmp))
    return out


def coreml_check(path: Path, image_size: int, embedding_dim: int, metadata: dict) -> dict:
    """CoreML cannot predict on Linux, so validate what an app relies on: the spec loads, the input is
    fp32 (1..N, 3, size, size) named `input`, the output fp32 `embedding`, no fp16 anywhere in the
    program, and the metadata reads back. Raises ExportError naming the first mismatch."""
    ct = _coremltools()
    with _quiet_fds():
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


def read_metadata(path: str | Path) -> dict:
    """The petface metadata stored inside an exported model, whatever its format. ONNX and CoreML keep
    strings only; JSON-looking values are decoded so every format answers with the same types."""
    return {k: _decode(v) for k, v in _raw_metadata(Path(path)).items()}


def _decode(v):
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except ValueError:
        return v


def _raw_metadata(path: Path) -> dict:
    suffix = path.suffix
    if suffix == ".onnx":
        import onnx

        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if suffix == ".ts":
        files = {"petface.json": ""}
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        return json.loads(files["petface.json"] or "{}")
    if suffix == ".pte":
        with _quiet_fds():
            from executorch.runtime import Runtime

            blob = Runtime.get().load_program(str(path)).load_method("petface_metadata").execute([])[0]
        return json.loads(bytes(blob.numpy().tobytes()).decode())
    if suffix == ".tflite":
        from ai_edge_litert import schema_py_generated as schema

        model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
        for i in range(model.MetadataLength()):
            if model.Metadata(i).Name() == b"petface":
                return json.loads(model.Buffers(model.Metadata(i).Buffer()).DataAsNumpy().tobytes().decode())
        return {}
    if suffix == ".mlpackage":
        ct = _coremltools()
        with _quiet_fds():
            stored = dict(ct.models.MLModel(str(path), skip_model_load=True).get_spec().description.metadata.userDefined)
        return {k: v for k, v in stored.items() if not k.startswith("com.github.apple.coremltools")}
    raise ValueError(f"{path}: not an exported model (.onnx, .ts, .pte, .tflite, .mlpackage)")


def torch_runner(module: torch.nn.Module):
    def run(x):
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
    return run


def run_batched(run, x: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])


def latency_ms(run, size: int, batch: int, repeats: int | None = None) -> float:
    """Median wall time of `run` on one random batch. Batch 32 takes 30-100x longer per call than batch 1
    and varies less, so it gets 5 timed calls (after 1 warm-up) to batch 1's 20 (after 3)."""
    import time

    repeats = repeats or (20 if batch == 1 else 5)
    x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
    for _ in range(3 if batch == 1 else 1):
        run(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def converter_available(fmt: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in _CONVERTER.get(fmt, ()))


def export_run(params, model: str, species: str, formats: list[str] | None = None, out_dir: Path | None = None,
               run_dir: Path | None = None, progress: bool = False) -> dict:
    """Export one trained run to each format, re-load it in its own runtime and check it against PyTorch:
    cosine parity on test images, task deltas on the test split (verification accuracy, R@1,
    TAR@FAR=1e-3) and CPU latency (batch 1 and 32, 1 thread and all threads). Returns rows per format.

    A format whose converter is not installed is a `skipped` row with the install command; one whose
    conversion or check fails is a `failed` row with the reason. Neither stops the other formats."""
    import shutil

    from tqdm.auto import tqdm

    from . import bench, data
    from .embed import _Images
    from .train import load_run_embedder, summary

    formats = formats or FORMATS
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; choose from {FORMATS}")
    run = Path(run_dir) if run_dir else params.run_dir(model, species)
    out = Path(out_dir) if out_dir else params.out("exports", f"{model}-{species}")
    out.mkdir(parents=True, exist_ok=True)
    embedder, cfg = load_run_embedder(run)
    size = cfg["image_size"]
    hist = json.loads((run / "history.json").read_text())
    threshold = summary(hist)["val_threshold"]
    meta = {"input_size": size, "channel_order": "RGB", "layout": "NCHW", "mean": cfg["mean"], "std": cfg["std"],
            "embedding_dim": cfg["embedding_dim"], "recommended_threshold": threshold,
            "data_fingerprint": cfg["data_fingerprint"]}
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

    def measure(make_runner, label, path, runtime, set_threads=lambda n: None, batches=(1, 32)):
        """Parity and task deltas on the test split, then latency per (batch, threads)."""
        emb = run_batched(make_runner(None), x_test)
        cos = (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
        t = task(emb)
        row = {"format": label, "file": path.name, "bytes": _size(path), "runtime": runtime,
               "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
               **{f"delta_{k}": t[k] - ref_task[k] for k in t}, "status": "ok"}
        for threads in (1, n_threads):
            set_threads(threads)
            r = make_runner(threads)
            for b in (1, 32):
                row[f"ms_b{b}_t{threads}"] = latency_ms(r, size, b) if b in batches else None
        set_threads(n_threads)
        return row

    # Phase 1: convert; TFLite in a child process beside the other converters.
    # Phase 2: check each file in its runtime, one at a time, so no latency is measured while a
    # conversion runs.
    converted, rows_by_fmt = {}, {}
    children = {"tflite": tflite_start(embedder, out / FILE_NAMES["tflite"], meta)} \
        if "tflite" in formats and converter_available("tflite") else {}
    try:
        for fmt in tqdm(formats, desc=f"convert {model}-{species}", disable=not progress):
            path = out / FILE_NAMES[fmt]
            try:
                if not converter_available(fmt):
                    rows_by_fmt[fmt] = [{"format": fmt, "file": path.name, "status": "skipped",
                                         "reason": f"converter not installed: {EXPORT_INSTALL}"}]
                elif fmt == "onnx":
                    shutil.copyfile(run / "pet_embedder.onnx", path)
                elif fmt == "onnx_int8":
                    for pc in (True, False):
                        cand = out / f"pet_embedder.int8.{'per_channel' if pc else 'per_tensor'}.onnx"
                        quantize_int8(run / "pet_embedder.onnx", cand, x_cal, per_channel=pc)
                        copy_metadata(run / "pet_embedder.onnx", cand)
                        converted.setdefault(fmt, []).append((pc, cand))
                elif fmt == "torchscript":
                    torchscript_export(embedder, path, meta)
                elif fmt == "executorch":
                    executorch_export(embedder, path, meta)
                elif fmt == "coreml":
                    coreml_export(embedder, path, meta)
            except Exception as e:  # one broken converter must not take the others down
                rows_by_fmt[fmt] = [_failed(fmt, e)]
        for fmt in list(children):
            try:
                children[fmt].wait()
            except Exception as e:
                rows_by_fmt[fmt] = [_failed(fmt, e)]
            del children[fmt]
    finally:
        for child in children.values():  # interrupted: stop them and leave no temp files
            child.close()

    rows = [{"format": "pytorch (reference)", "file": "pet_embedder.pt", "bytes": (run / "pet_embedder.pt").stat().st_size,
             "runtime": "torch eager", "min_cosine": 1.0, "mean_cosine": 1.0, "status": "ok", **ref_task}]
    for threads in (1, n_threads):
        torch.set_num_threads(threads)
        for b in (1, 32):
            rows[0][f"ms_b{b}_t{threads}"] = latency_ms(ref_run, size, b)
    torch.set_num_threads(n_threads)
    for fmt in tqdm([f for f in formats if f not in rows_by_fmt], desc=f"check {model}-{species}",
                    disable=not progress):
        path = out / FILE_NAMES[fmt]
        try:
            if fmt == "onnx":
                rows_by_fmt[fmt] = [measure(lambda th, p=path: onnx_runner(p, th), "ONNX fp32", path, "onnxruntime")]
            elif fmt == "onnx_int8":
                cands = [(measure(lambda th, p=cand: onnx_runner(p, th),
                                  f"ONNX INT8 ({'per-channel' if pc else 'per-tensor'})", cand, "onnxruntime"), cand)
                         for pc, cand in converted[fmt]]
                best, best_path = max(cands, key=lambda c: c[0]["mean_cosine"])  # fidelity, not a lucky delta
                shutil.copyfile(best_path, path)
                rows_by_fmt[fmt] = [c[0] for c in cands] + [
                    {**best, "format": "ONNX INT8 (kept: " + best["format"].split("(")[1], "file": path.name}]
            elif fmt == "torchscript":
                loaded = torch.jit.load(str(path))
                rows_by_fmt[fmt] = [measure(lambda th, m=loaded: torch_runner(m), "TorchScript", path, "torch.jit",
                                            torch.set_num_threads)]
            elif fmt == "executorch":
                rows_by_fmt[fmt] = [measure(lambda th, p=path: executorch_runner(p, th), "ExecuTorch (XNNPACK)", path,
                                            "executorch runtime")]
            elif fmt == "tflite":
                rows_by_fmt[fmt] = [{**measure(lambda th, p=path: tflite_runner(p, th), "TFLite (batch-1 graph)", path,
                                               "ai-edge-litert", batches=(1,)),
                                     "note": "batch-1 graph: litert-torch cannot lower a dynamic-batch flatten"}]
            elif fmt == "coreml":
                check = coreml_check(path, size, cfg["embedding_dim"], meta)
                rows_by_fmt[fmt] = [{"format": "CoreML (ML Program, fp32)", "file": path.name, "bytes": _size(path),
                                     "runtime": "none on Linux", "status": "spec checked",
                                     "note": f"spec v{check['spec_version']}, batch {check['batch_range']}: inputs, "
                                             "outputs, fp32 and metadata validated; prediction needs macOS"}]
        except Exception as e:
            rows_by_fmt[fmt] = [_failed(fmt, e)]
    rows += [r for fmt in formats for r in rows_by_fmt[fmt]]
    result = {"model": model, "species": species, "rows": rows, "metadata": meta, "reference": ref_task,
              "threads_all": n_threads}
    from .io import atomic_write_json
    atomic_write_json(out / "export.json", result)
    return result


def _failed(fmt: str, e: Exception) -> dict:
    """The row of a format whose conversion or check raised: the reason in one line, with the converter's
    log tail when `_quiet_fds` attached one."""
    notes = " ".join(getattr(e, "__notes__", []))
    return {"format": fmt, "file": FILE_NAMES[fmt], "status": "failed",
            "reason": f"{type(e).__name__}: {e} {notes}".strip().replace("\n", " ")}


def headline(result: dict) -> dict:
    """The figures the study index shows for one export: formats written and checked, the kept INT8
    model's size and accuracy change, and onnxruntime's batch-1 latency."""
    rows = result["rows"][1:]  # after the PyTorch reference
    shipped = [r for r in rows if not r["format"].startswith("ONNX INT8 (per")]  # candidates are not shipped
    ok = [r for r in shipped if r["status"] in ("ok", "spec checked")]
    out = {"formats checked": f"{len(ok)}/{len(shipped)}"}
    kept = next((r for r in ok if r["format"].startswith("ONNX INT8 (kept")), None)
    fp32 = next((r for r in ok if r["format"] == "ONNX fp32"), None)
    if kept:
        out.update({"INT8 MB": round(kept["bytes"] / 1e6, 2),
                    "INT8 d-acc (pts)": round(kept["delta_verification_accuracy"] * 100, 2)})
    if fp32:
        out["ORT fp32 ms (b1, 1 thread)"] = round(fp32["ms_b1_t1"], 2)
    return out


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size

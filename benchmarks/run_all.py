"""`make bench`: the performance suite. Every row puts ours next to its natural baseline measured in the
same run (this machine is shared and noisy): medians of repeated runs, min-max shown, and ratios.

Writes benchmarks/results/<date>-<host>.md and .json and prints the table.
  --quick    small repeat counts and only 112 px
  --smoke    tiny sizes, one repeat, nothing written (the test that keeps `make bench` running)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from petlib import data, losses, models, synth
from petlib.export.int8 import quantize_file
from petlib.latency import timed, torch_runner
from petlib.onnx_file import export_onnx, onnx_runner

REPO = Path(__file__).resolve().parent.parent


def stats(fn, repeats: int) -> tuple[float, float, float]:
    """(median, min, max) seconds per call, after one warm-up call (petlib.latency.timed)."""
    t = timed(fn, repeats, warmup=1)
    return t["median"], t["min"], t["max"]


def latency_rows(sizes, repeats, tmp: Path) -> list[dict]:
    """torch eager vs onnxruntime fp32 vs onnxruntime INT8 (random weights, random calibration)."""
    rows = []
    n_all = torch.get_num_threads()
    for backbone in ("mobilenetv3_small_100", "mobilefacenet"):
        for size in sizes:
            torch.manual_seed(0)
            emb = models.create_embedder(backbone, size).eval()
            onnx = tmp / f"{backbone}-{size}.onnx"
            export_onnx(emb, onnx)
            calib = list(np.random.default_rng(0).integers(0, 256, (32, size, size, 3), dtype=np.uint8))
            int8 = quantize_file(onnx, tmp / f"{backbone}-{size}.int8.onnx", calib, size)
            for threads in (1, n_all):
                torch.set_num_threads(threads)
                runners = {"torch": torch_runner(emb), "ort_fp32": onnx_runner(onnx, threads),
                           "ort_int8": onnx_runner(int8, threads)}
                for batch in (1, 32):
                    x = np.random.default_rng(1).normal(size=(batch, 3, size, size)).astype(np.float32)
                    res = {k: stats(lambda r=r: r(x), repeats if batch == 1 else max(3, repeats // 5))
                           for k, r in runners.items()}
                    rows.append({"bench": "embedding latency", "backbone": backbone, "px": size, "batch": batch,
                                 "threads": threads, **{f"{k}_ms": v[0] * 1000 for k, v in res.items()},
                                 **{f"{k}_range_ms": [v[1] * 1000, v[2] * 1000] for k, v in res.items()},
                                 "ort_fp32/torch": res["ort_fp32"][0] / res["torch"][0],
                                 "ort_int8/torch": res["ort_int8"][0] / res["torch"][0]})
                    print(rows[-1]["backbone"], size, batch, threads, {k: round(v[0] * 1000, 2) for k, v in res.items()},
                          flush=True)
            torch.set_num_threads(n_all)
    return rows


def training_rows(size: int, steps: int, tmp: Path) -> list[dict]:
    """Bare model step (ready batch) vs the full loop (decode + the design's augmentations + step) vs the
    loop from the in-memory cache (`data.preload`: decoded and resized once), side by side in one run."""
    root = tmp / "synth"
    synth.generate(root, "cat", 120, 112, seed=0, progress=False)
    idx = data.scan_identities(root, progress=False)
    tf = data.train_transforms(size)
    cache = data.preload(idx.paths, size)
    rows = []
    for backbone in ("mobilenetv3_small_100", "mobilefacenet"):
        torch.manual_seed(0)
        m = models.PetFaceModel(models.create_embedder(backbone, size), len(idx.identities)).to(
            memory_format=torch.channels_last)
        opt = torch.optim.AdamW(m.parameters(), 1e-3)
        b = 64
        ds = data.FaceDataset(idx.paths, idx.labels, tf, seed=0)
        x0 = torch.stack([ds[i][0] for i in range(b)]).contiguous(memory_format=torch.channels_last)
        y0 = torch.as_tensor(idx.labels[:b])

        def step(x, y):
            loss = losses.arcface_loss(*m(x, y))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()

        bare = stats(lambda: step(x0, y0), steps)
        order = np.random.default_rng(0).permutation(len(ds))
        pos = [0]

        def full(dataset=ds):
            ids = order[[(pos[0] + k) % len(dataset) for k in range(b)]]
            pos[0] += b
            items = [dataset[int(i)] for i in ids]
            step(torch.stack([t for t, _ in items]).contiguous(memory_format=torch.channels_last),
                 torch.as_tensor([l for _, l in items]))

        loop = stats(full, steps)
        cached_ds = data.FaceDataset(idx.paths, idx.labels, tf, seed=0, cache=cache)
        cached = stats(lambda: full(cached_ds), steps)
        t = time.perf_counter()
        for i in range(256):
            ds[i % len(ds)]
        pipe = 256 / (time.perf_counter() - t)
        rows.append({"bench": "training throughput", "backbone": backbone, "px": size, "batch": b,
                     "bare_img_s": b / bare[0], "full_loop_img_s": b / loop[0], "full/bare": bare[0] / loop[0],
                     "cached_loop_img_s": b / cached[0], "cached/bare": bare[0] / cached[0],
                     "data_pipeline_img_s_per_core": pipe})
        print(rows[-1], flush=True)
    return rows


def metric_rows(mode: str) -> list[dict]:
    import subprocess

    flags = {"full": [], "quick": ["--skip-100k"], "smoke": ["--smoke"]}[mode]
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_metrics.py"), *flags], capture_output=True,
                         text=True, check=True).stdout
    return [{"bench": "metrics", **eval(line)} for line in out.splitlines() if line.startswith("{")]


def scale_rows(mode: str) -> list[dict]:
    """benchmarks/scale.py's table (PetFace scale: scan, retrieval, clustering, Partial-FC) as rows."""
    import subprocess

    flags = {"full": [], "quick": ["--quick"], "smoke": ["--smoke"]}[mode]
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scale.py"), *flags],
                         capture_output=True, text=True, check=True).stdout
    lines = [l for l in out.splitlines() if l.startswith("| ") and not l.startswith("| case")]
    keys = ["case", "size", "seconds", "peak_gb", "baseline_seconds", "baseline_peak_gb", "note"]
    return [{"bench": "scale", **dict(zip(keys, [c.strip() for c in l.strip("|").split(" | ")]))} for l in lines]


def study_rows() -> list[dict]:
    state = REPO / "reports" / "demo" / "state.json"
    if not state.is_file():
        return [{"bench": "make study", "note": "reports/demo/state.json not found: run `make study` first"}]
    s = json.loads(state.read_text())
    rows = [{"bench": "make study", "notebook": k, "seconds": v.get("duration_s"), "status": v.get("status")}
            for k, v in s.items()]
    rows.append({"bench": "make study", "notebook": "total", "seconds": sum(r["seconds"] or 0 for r in rows)})
    return rows


def to_markdown(rows: list[dict]) -> str:
    out = []
    for bench in dict.fromkeys(r["bench"] for r in rows):
        sub = [r for r in rows if r["bench"] == bench]
        keys = [k for k in dict.fromkeys(k for r in sub for k in r) if k != "bench" and not k.endswith("range_ms")]
        out.append(f"\n### {bench}\n\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
        for r in sub:
            out.append("| " + " | ".join(f"{r[k]:.3g}" if isinstance(r.get(k), float) else str(r.get(k, ""))
                                         for k in keys) + " |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    mode = "smoke" if a.smoke else "quick" if a.quick else "full"
    px, repeats, train_px, steps = {"full": ([224, 112], 50, 112, 8), "quick": ([112], 10, 64, 3),
                                    "smoke": ([32], 2, 32, 1)}[mode]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = latency_rows(px, repeats, tmp)
        rows += training_rows(train_px, steps, tmp)
    rows += metric_rows(mode)
    rows += scale_rows(mode)
    rows += study_rows()
    head = (f"# petface-study benchmarks\n\n{time.strftime('%Y-%m-%d %H:%M')} on {socket.gethostname()}: "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads; medians (min-max in the JSON).\n")
    md = head + to_markdown(rows)
    if mode == "smoke":
        print(md)
        return
    res = REPO / "benchmarks" / "results"
    res.mkdir(exist_ok=True)
    stem = f"{time.strftime('%Y-%m-%d')}-{socket.gethostname()}"
    (res / f"{stem}.md").write_text(md)
    (res / f"{stem}.json").write_text(json.dumps(rows, indent=1, default=float))
    print(md)


if __name__ == "__main__":
    main()

"""PetFace-scale figures on this machine, one table (issue 13): each case in its own process, so its
peak memory is its own.

  .venv/bin/python benchmarks/scale.py [--quick]

- retrieval: `bench.retrieval` (leave-one-out, every figure) next to faiss's exact `IndexFlatIP`
  top-11 search over the same random 128-d embeddings, at 50k and 100k (10k with --quick); the
  ratio is ours / faiss, measured side by side in one run.
- clustering: `bench.clustering` (greedy k-means++ then faiss Lloyd) next to scikit-learn's
  `KMeans(n_init=1)` at the design's test scale (8,600 images, 2,000 identities): time and NMI of
  both. What bounds it at scale: the init's (2 + ln k)·n·k·d and n·k·d per Lloyd iteration, printed.
- scan: `data.scan_identities` of 100k 112 px JPEGs, first (decodes all) and second (scan cache).
- Partial-FC: one training step of the ArcFace head alone (batch 96, 128-d, fp32, CPU) at 20k and
  257k identities, full head and sample rate 0.1: time and peak memory.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
case, n = sys.argv[1], int(sys.argv[2])

def embeddings(n, n_ids, seed=0, noise=0.9):
    rng = np.random.default_rng(seed)
    labels = np.sort(np.r_[np.arange(n_ids), rng.integers(0, n_ids, n - n_ids)])
    x = rng.normal(size=(n_ids, 128))[labels] + noise * rng.normal(size=(n, 128))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels

out = {}
if case == "retrieval":
    from petlib import bench
    emb, labels = embeddings(n, n // 4)
    t = time.perf_counter(); bench.retrieval(emb, labels); out["seconds"] = time.perf_counter() - t
elif case == "faiss":
    import faiss
    emb, _ = embeddings(n, n // 4)
    index = faiss.IndexFlatIP(128); index.add(emb)
    t = time.perf_counter(); index.search(emb, 11); out["seconds"] = time.perf_counter() - t
elif case in ("clustering", "sklearn"):
    from sklearn.metrics import normalized_mutual_info_score as nmi
    n_ids = int(sys.argv[3])
    emb, labels = embeddings(n, n_ids, noise=0.6)
    t = time.perf_counter()
    if case == "clustering":
        from petlib import bench
        assign = bench.kmeans(emb, n_ids, seed=0)
    else:
        from sklearn.cluster import KMeans
        assign = KMeans(n_ids, n_init=1, random_state=0).fit_predict(emb)
    out["seconds"] = time.perf_counter() - t
    out["nmi"] = float(nmi(labels, assign))
elif case == "scan":
    import io, tempfile
    from pathlib import Path
    from PIL import Image
    from petlib import data
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(buf, "JPEG")
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "faces"
        for i in range(n):
            f = root / f"id{i // 4:06d}" / f"{i % 4}.jpg"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(buf.getvalue())
        cache = Path(d) / "scan.json"
        t = time.perf_counter(); data.scan_identities(root, progress=False, cache=cache)
        out["first_s"] = time.perf_counter() - t
        t = time.perf_counter(); data.scan_identities(root, progress=False, cache=cache)
        out["seconds"] = time.perf_counter() - t
elif case.startswith("pfc"):
    import torch
    from petlib.losses import ArcFaceHead, arcface_loss
    torch.manual_seed(0)
    rate = float(case[3:])
    head = ArcFaceHead(128, n, sample_rate=rate)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    emb = torch.randn(96, 128, requires_grad=True)
    y = torch.randint(0, n, (96,))
    times = []
    for _ in range(6):
        t = time.perf_counter()
        loss = arcface_loss(*head(emb, y))
        opt.zero_grad(); loss.backward(); opt.step()
        times.append(time.perf_counter() - t)
    out["seconds"] = sorted(times[1:])[2]
out["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
print(json.dumps(out))
"""


def child(*args) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True)
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[-1][:200]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="10k images instead of 50k and 100k; no 257k head")
    a = ap.parse_args()
    rows = []
    for n in ([10_000] if a.quick else [50_000, 100_000]):
        ours, ref = child("retrieval", n), child("faiss", n)
        rows.append(("retrieval + open set facts, leave-one-out", f"{n:,} images", ours, ref,
                     f"ours / faiss IndexFlatIP top-11 = {ours.get('seconds', math.nan) / ref.get('seconds', math.nan):.2f}x"))
    n = 10_000 if a.quick else 100_000
    scan = child("scan", n)
    rows.append(("scan (decode-verify every image), 112 px JPEGs", f"{n:,} images",
                 scan, {"seconds": scan.get("first_s", math.nan), "peak_gb": math.nan},
                 "second scan (cache) vs first scan"))
    n, k = 8600, 2000
    ours, ref = child("clustering", n, k), child("sklearn", n, k)
    init = (2 + math.log(k)) * n * k * 128
    rows.append(("clustering (k-means++ + faiss Lloyd)", f"{n:,} images, k={k:,}", ours, ref,
                 f"NMI {ours.get('nmi', math.nan):.4f} vs scikit-learn {ref.get('nmi', math.nan):.4f}; "
                 f"init {init:.1e} flop, Lloyd {n * k * 128:.1e} flop/iteration"))
    for ids in ([20_000] if a.quick else [20_000, 257_000]):
        full, part = child("pfc1.0", ids), child("pfc0.1", ids)
        rows.append(("ArcFace head step, batch 96", f"{ids:,} identities", part, full, "Partial-FC 0.1 vs full head"))
    print("| case | size | seconds | peak GB | baseline seconds | baseline peak GB | note |")
    print("|---|---|---|---|---|---|---|")
    for name, size, ours, ref, note in rows:
        f = lambda d, k: f"{d[k]:.2f}" if k in d else d.get("error", "")
        print(f"| {name} | {size} | {f(ours, 'seconds')} | {f(ours, 'peak_gb')} | {f(ref, 'seconds')} | "
              f"{f(ref, 'peak_gb')} | {note} |")


if __name__ == "__main__":
    main()

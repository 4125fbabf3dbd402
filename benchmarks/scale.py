"""PetFace-scale figures on this machine, one table (issue 13): each case in its own process, so its
peak memory is its own.

  .venv/bin/python benchmarks/scale.py [--quick | --smoke]

- retrieval: `metrics.retrieval` (leave-one-out, every figure) next to faiss's exact `IndexFlatIP`
  top-11 search over the same random 128-d embeddings, at 50k and 100k (10k with --quick); the
  ratio is ours / faiss, measured side by side in one run.
- clustering: `metrics.clustering` (greedy k-means++ then faiss Lloyd) next to scikit-learn's
  `KMeans(n_init=1)` at the design's test scale (8,600 images, 2,000 identities): time and NMI of
  both. What bounds it at scale: the init's (2 + ln k)·n·k·d and n·k·d per Lloyd iteration, printed.
- scan: `data.scan_identities` of 100k 112 px JPEGs, first (decodes all) and second (scan cache).
- audit: the data audit of 100k distinct 112 px JPEGs with planted exact copies: first run (the scan
  decodes and hashes every file) and second run (hashes from the scan cache), and the comparisons alone.
- data pipeline: decode + the design's training augmentations per image on one core, today's
  (PIL decode, set_random_seed, per-image Normalize) vs the GPU loader's worker (OpenCV JPEG decode,
  in-place reseed, uint8 out; the GPU normalises the batch: the same pixels), and the augmentations
  alone, which bound any decoder.
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
    from petlib import metrics
    emb, labels = embeddings(n, n // 4)
    t = time.perf_counter(); metrics.retrieval(emb, labels); out["seconds"] = time.perf_counter() - t
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
        from petlib import metrics
        assign = metrics.kmeans(emb, n_ids, seed=0)
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
elif case == "audit":
    import shutil, tempfile
    from pathlib import Path
    from PIL import Image
    from petlib import data
    from petlib.data import audit
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "faces"
        base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        for i in range(n):  # distinct photos: a smooth random pattern each, 4 per identity
            f = root / f"id{i // 4:06d}" / f"{i % 4}.jpg"
            f.parent.mkdir(parents=True, exist_ok=True)
            img = np.clip(base.astype(int) + rng.integers(-120, 120, (8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).resize((112, 112), Image.Resampling.BICUBIC).save(f, quality=90)
        planted = max(1, n // 1000)
        for k in range(planted):  # exact copies across identities, to be found
            shutil.copy(root / f"id{k:06d}" / "0.jpg", root / f"id{(k + 7) % (n // 4):06d}" / f"copy{k}.jpg")
        cache = Path(d) / "scan.json"

        def run():
            idx = data.scan_identities(root, progress=False, cache=cache)
            t = time.perf_counter()
            pairs = audit.duplicate_pairs(idx)
            found = audit.report(idx, pairs, None, "report", False)
            return time.perf_counter() - t, found
        t = time.perf_counter(); audit_s, found = run(); out["first_s"] = time.perf_counter() - t
        out["audit_s"] = audit_s
        t = time.perf_counter(); run(); out["seconds"] = time.perf_counter() - t
        out["found"] = found["across_identities"]["exact"]
        out["planted"] = planted
elif case == "pipeline":
    import statistics, tempfile
    from pathlib import Path
    import cv2, torch
    from petlib import data, synth
    torch.set_num_threads(1); cv2.setNumThreads(0)
    with tempfile.TemporaryDirectory() as d:
        synth.generate(Path(d), "cat", 40, n, seed=0, progress=False)
        paths = sorted(Path(d).rglob("*.jpg"))[:128]
        before, aug = data.train_transforms(n), data.train_transforms(n, normalize=False)
        ds = data.FaceDataset(paths, np.zeros(len(paths)), aug, seed=0)

        def today():
            for i, p in enumerate(paths):
                before.set_random_seed(i); before(image=data.load_image(p))

        def now():
            [ds[i] for i in range(len(paths))]

        imgs = [data.decode_verified(p) for p in paths]

        def ops():
            for i, im in enumerate(imgs):
                data.reseed(aug, i); aug(image=im)

        times = {k: [] for k in ("today", "now", "ops")}
        for _ in range(5):
            for k, f in (("today", today), ("now", now), ("ops", ops)):
                t = time.perf_counter(); f(); times[k].append(time.perf_counter() - t)
        for k, v in times.items():
            out[k + "_img_s"] = len(paths) / statistics.median(v)
        out["seconds"] = statistics.median(times["now"]) / len(paths)
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


def child(*args, timeout: float | None = None) -> dict:
    """One case in a fresh process (its own peak memory); a case over `timeout` seconds is reported as such."""
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"not finished in {timeout:.0f} s"}
    if r.returncode:
        return {"error": (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1][:200]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def row(name, size, ours, ref, note) -> None:
    """One table row, printed as soon as it is measured."""
    f = lambda d, k: f"{d[k]:.2f}" if k in d else d.get("error", "")
    print(f"| {name} | {size} | {f(ours, 'seconds')} | {f(ours, 'peak_gb')} | {f(ref, 'seconds')} | "
          f"{f(ref, 'peak_gb')} | {note} |", flush=True)


# Sizes per mode: the full table, --quick (minutes) and --smoke (seconds: the test that keeps this running).
SIZES = {
    "full": {"retrieval": [50_000, 100_000], "scan": 100_000, "clustering": [(8600, 2000), (10_000, 2500), (100_000, 25_000)],
             "partial_fc": [20_000, 257_000], "pipeline": [112, 224]},
    "quick": {"retrieval": [10_000], "scan": 10_000, "clustering": [(8600, 2000), (10_000, 2500)],
              "partial_fc": [20_000], "pipeline": [112, 224]},
    "smoke": {"retrieval": [400], "scan": 40, "clustering": [(400, 100)], "partial_fc": [500], "pipeline": [32]},
}


def retrieval(sizes: dict) -> None:
    for n in sizes["retrieval"]:
        ours, ref = child("retrieval", n), child("faiss", n)
        row("retrieval + open set facts, leave-one-out", f"{n:,} images", ours, ref,
            f"ours / faiss IndexFlatIP top-11 = {ours.get('seconds', math.nan) / ref.get('seconds', math.nan):.2f}x")


def scan(sizes: dict) -> None:
    n = sizes["scan"]
    r = child("scan", n)
    row("scan (decode-verify every image), 112 px JPEGs", f"{n:,} images", r,
        {"seconds": r.get("first_s", math.nan), "peak_gb": math.nan}, "second scan (cache) vs first scan")


def audit(sizes: dict) -> None:
    n = sizes["scan"]
    r = child("audit", n)
    row("data audit (exact + pHash near duplicates), 112 px JPEGs", f"{n:,} images", r,
        {"seconds": r.get("first_s", math.nan), "peak_gb": math.nan},
        f"baseline = first run (scan decodes and hashes every file, then the audit); seconds = second run "
        f"(scan cache, then the audit); the audit's comparisons alone {r.get('audit_s', math.nan):.1f} s; "
        f"planted exact copies found {r.get('found')}/{r.get('planted')}")


def clustering(sizes: dict) -> None:
    for n, k in sizes["clustering"]:
        ours = child("clustering", n, k, timeout=900)
        ref = child("sklearn", n, k) if n <= 10_000 else {"error": "not run"}
        init = (2 + math.log(k)) * n * k * 128
        row("clustering (k-means++ + faiss Lloyd)", f"{n:,} images, k={k:,}", ours, ref,
            f"NMI {ours.get('nmi', math.nan):.4f} vs scikit-learn {ref.get('nmi', math.nan):.4f}; "
            f"init {init:.1e} flop, Lloyd {n * k * 128:.1e} flop/iteration")


def partial_fc(sizes: dict) -> None:
    for ids in sizes["partial_fc"]:
        full, part = child("pfc1.0", ids), child("pfc0.1", ids)
        row("ArcFace head step, batch 96", f"{ids:,} identities", part, full, "Partial-FC 0.1 vs full head")


def pipeline(sizes: dict) -> None:
    for px in sizes["pipeline"]:
        r = child("pipeline", px)
        ok = "error" not in r
        row(f"training data pipeline, one core, {px} px JPEG sources", "128 images",
            {"seconds": r["seconds"]} if ok else r, {"seconds": 1 / r["today_img_s"]} if ok else r,
            f"img/s: {r.get('now_img_s', math.nan):.0f} vs today's {r.get('today_img_s', math.nan):.0f} "
            f"= {r.get('now_img_s', math.nan) / r.get('today_img_s', math.nan):.2f}x; the augmentations "
            f"alone (no decode) {r.get('ops_img_s', math.nan):.0f}")


CASES = {"retrieval": retrieval, "scan": scan, "audit": audit, "clustering": clustering,
          "partial_fc": partial_fc, "pipeline": pipeline}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="10k images instead of 50k and 100k; no 257k head")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks that every case runs")
    ap.add_argument("--only", nargs="+", choices=list(CASES), help="run these cases only")
    a = ap.parse_args()
    sizes = SIZES["smoke" if a.smoke else "quick" if a.quick else "full"]
    print("| case | size | seconds | peak GB | baseline seconds | baseline peak GB | note |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for name in a.only or CASES:
        CASES[name](sizes)


if __name__ == "__main__":
    main()

"""The seven benchmark categories (seed 6.2 A-G) plus open-set identification and bootstrap intervals,
for one trained run. `evaluate_run` embeds (cached), calls `petlib.bench`, draws the plots and writes
`metrics.json` (schema below) into the evaluation directory.

metrics.json schema (`petface-metrics/1`); every rate is a fraction in [0, 1]:
  model, species, run_dir, checkpoint_sha256, tta, n_images, n_identities  -- what was evaluated
  retrieval:    recall@1, recall@5, recall@10, mrr, ndcg@10, map@r, n_queries, n_excluded
  clustering:   nmi, ari, purity, k
  ranking:      roc_auc, eer, spearman, tar@far=1e-2, tar@far=1e-3, tar@far=1e-4 (NaN = too few
                negatives), n_pos, n_neg  -- on balanced sampled pairs (n_rank_pairs / 2 each)
  verification: accuracy, threshold, precision, recall, f1  -- best threshold on the same pairs
  triplets:     violation_rate, avg_margin, n
  overfitting:  train_recall@1, test_recall@1, gap, n_train, n_test
  robustness:   clean_recall@1 and per degradation {sim_drop, recall@1, recall@1_drop}
  open_set:     rank1_identification, dir@far=1e-2, dir@far=1e-3, n_gallery, n_mated, n_nonmated
  ci95:         [low, high] for recall@1, mrr, roc_auc, eer, tar@far=1e-3, dir@far=1e-2
  cmc:          identification rate at ranks 1..20
  curves:       roc {fpr, tpr} thinned to <= 400 points, for overlays in 04_compare
  efficiency:   params, pt_bytes, onnx_bytes, cpu_latency_ms (batch 1, torch, this machine)
  timings_s:    seconds per stage
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from . import bench, data, plots
from .config import StudyParams
from .embed import DEGRADATIONS, cached_embeddings, embed_images
from .export import latency_ms, torch_runner
from .io import atomic_write_json, file_sha256
from .models import count_parameters
from .train import load_run_embedder, resolve_device

SCHEMA = "petface-metrics/1"
PLOTS = ["nearest_neighbors.png", "similarity_distribution.png", "roc_curve.png", "det_curve.png", "cmc_curve.png",
         "robustness.png"]


def evaluate_run(params: StudyParams, model: str, species: str, progress: bool = True) -> dict:
    """Run every benchmark on the test split of one trained run; returns the metrics dict it wrote."""
    run_dir, out = params.run_dir(model, species), params.eval_dir(model, species)
    out.mkdir(parents=True, exist_ok=True)
    ev, seed, timings = params.eval, params.seed, {}
    device = resolve_device(params.train.device)
    embedder, cfg = load_run_embedder(run_dir, device)
    size = cfg["image_size"]
    ckpt = run_dir / "pet_embedder.pt"
    splits = data.load_splits(params, species)
    test, train_idx = splits["test"], splits["train"]
    kw = dict(device=device, tta=ev.tta, progress=progress)

    t = time.time()
    tag = "tta" if ev.tta else "plain"
    emb = cached_embeddings(out / "embeddings.npz", f"test-{tag}", ckpt, test.paths,
                            lambda: embed_images(embedder, test.paths, size, **kw))
    tr_sel = bench.sample_by_identity(train_idx.labels, ev.n_overfit, seed)
    tr_paths = [train_idx.paths[i] for i in tr_sel]
    tr_emb = cached_embeddings(out / "embeddings.npz", f"train-sample-{tag}", ckpt, tr_paths,
                               lambda: embed_images(embedder, tr_paths, size, **kw))
    timings["embed"] = time.time() - t
    labels = test.labels

    t = time.time()
    ret = bench.retrieval(emb, labels, per_query=True)
    pq = ret.pop("_per_query")
    timings["retrieval"] = time.time() - t
    t = time.time()
    clu = bench.clustering(emb, labels, seed=seed)
    timings["clustering"] = time.time() - t
    t = time.time()
    pairs = bench.sample_pairs(labels, ev.n_rank_pairs, seed)
    scores = (emb[pairs[:, 0]] * emb[pairs[:, 1]]).sum(1)
    rank = bench.pair_ranking(scores, pairs[:, 2])
    ver = bench.best_threshold(scores, pairs[:, 2])
    timings["ranking"] = time.time() - t
    t = time.time()
    tri = bench.triplets(emb, labels, ev.n_triplets, seed)
    timings["triplets"] = time.time() - t
    t = time.time()
    ovf = bench.overfitting(tr_emb, train_idx.labels[tr_sel], emb, labels, n=ev.n_overfit, seed=seed)
    timings["overfitting"] = time.time() - t

    t = time.time()
    rob_sel = bench.sample_by_identity(labels, ev.n_robustness, seed)
    rob_paths = [test.paths[i] for i in rob_sel]
    images = [data.load_image(p) for p in rob_paths]
    degraded = {name: embed_images(embedder, images, size, prepare=fn, **kw) for name, fn in DEGRADATIONS.items()}
    rob = bench.robustness(emb[rob_sel], degraded, labels[rob_sel])
    timings["robustness"] = time.time() - t

    t = time.time()
    split = bench.open_set_split(labels, ev.gallery_frac, seed)
    os_scores = bench.open_set_scores(emb, labels, split)
    opn = bench.open_set(emb, labels, ev.gallery_frac, seed)
    ci = bench.bootstrap_ci(pq, scores, pairs, labels, os_scores, n=ev.n_bootstrap, seed=seed)
    timings["open_set_and_bootstrap"] = time.time() - t

    t = time.time()
    fpr, tpr, _ = bench.roc(scores, pairs[:, 2])
    cmc = bench.cmc(pq["first_rank"], 20)
    _draw(out, test, emb, pq, scores, pairs, fpr, tpr, rank, cmc, rob, f"{model} / {species}", seed)
    timings["plots"] = time.time() - t

    metrics = {
        "schema": SCHEMA, "model": model, "species": species, "run_dir": str(run_dir),
        "checkpoint_sha256": file_sha256(ckpt), "tta": ev.tta, "n_images": int(len(labels)),
        "n_identities": int(len(np.unique(labels))), "retrieval": ret, "clustering": clu, "ranking": rank,
        "verification": ver, "triplets": tri, "overfitting": ovf, "robustness": rob, "open_set": opn,
        "ci95": ci, "cmc": cmc.tolist(), "curves": {"roc": _thin(fpr, tpr)},
        "efficiency": {"params": count_parameters(embedder), "pt_bytes": ckpt.stat().st_size,
                       "onnx_bytes": (run_dir / "pet_embedder.onnx").stat().st_size
                       if (run_dir / "pet_embedder.onnx").is_file() else None,
                       "cpu_latency_ms": latency_ms(torch_runner(embedder.cpu().eval()), size, 1, repeats=30),
                       "image_size": size},
        "timings_s": timings,
    }
    atomic_write_json(out / "metrics.json", _clean(metrics))
    return metrics


def _thin(fpr: np.ndarray, tpr: np.ndarray, n: int = 400) -> dict:
    keep = np.unique(np.r_[np.linspace(0, len(fpr) - 1, min(n, len(fpr))).astype(int), len(fpr) - 1])
    return {"fpr": fpr[keep].round(6).tolist(), "tpr": tpr[keep].round(6).tolist()}


def _clean(o):
    """NaN is not JSON: store null (the schema says NaN = not measurable)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and math.isnan(o):
        return None
    return o


def _draw(out: Path, test, emb, pq, scores, pairs, fpr, tpr, rank, cmc, rob, title, seed):
    rng = np.random.default_rng(seed)
    q = rng.choice(len(pq["index"]), min(10, len(pq["index"])), replace=False)
    rows, borders, names = [], [], []
    for k in q:
        i = pq["index"][k]
        nn = pq["topk"][k][:5]
        rows.append([data.load_image(test.paths[i])] + [data.load_image(test.paths[j]) for j in nn])
        borders.append([None] + ["green" if test.labels[j] == test.labels[i] else "red" for j in nn])
        names.append(test.identities[int(test.labels[i])])
    plots.image_grid(rows, names, borders, size=1.2, path=out / "nearest_neighbors.png")
    y = pairs[:, 2].astype(bool)
    plots.similarity_distribution(scores[y], scores[~y], title, path=out / "similarity_distribution.png")
    plots.roc_curve(fpr, tpr, rank["roc_auc"], title, path=out / "roc_curve.png")
    plots.det_curve(fpr, 1 - tpr, rank["eer"], title, path=out / "det_curve.png")
    plots.cmc_curve(cmc, title, path=out / "cmc_curve.png")
    plots.robustness_bars({k: v for k, v in rob.items() if isinstance(v, dict)}, title, path=out / "robustness.png")


def load_metrics(eval_dir: str | Path) -> dict:
    p = Path(eval_dir) / "metrics.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: not found; run the 03_evaluate notebook for this model first")
    m = json.loads(p.read_text())
    if m.get("schema") != SCHEMA:
        raise ValueError(f"{p}: schema {m.get('schema')!r}, expected {SCHEMA!r}")
    return m

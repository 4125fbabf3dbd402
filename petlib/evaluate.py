"""The seven benchmark categories (design §6.2 A-G) plus open-set identification and bootstrap
intervals, for one trained run. `evaluate_run` embeds (cached), calls `petlib.metrics` and writes
`metrics.json` (schema in `petlib.schema`), `figures.npz` and `resample.npz` into the evaluation
directory; `petlib.eval_report` draws the figures from them.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

from . import data, metrics, protocols, reproducible, stages
from .config import StudyParams
from .embed import DEGRADATIONS, cached_embeddings, embed_images
from .io import atomic_path, atomic_write_json, file_sha256
from .latency import latency_ms, torch_runner
from .layout import Layout
from .models import count_parameters
from .run import RunDir
from .runtime import resolve_device
from .schema import REPEAT_KEYS, SCHEMA, clean_nan, load_metrics, save_samples



FIGURE_DATA = "figures.npz"  # what eval_report.draw plots beyond metrics.json


class _Timer:
    """Seconds per named step: `with timer("retrieval"): ...` (reported as metrics.json `timings_s`)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t = time.time()
        yield
        self.seconds[name] = time.time() - t


def _embeddings(embedder, run: RunDir, out: Path, test, train_idx, tr_sel, size: int, kw: dict):
    """Test and sampled-train embeddings, cached per checkpoint, path list and TTA."""
    tag = "tta" if kw["tta"] else "plain"
    ckpt = run.file("pet_embedder.pt")
    emb = cached_embeddings(out / "embeddings.npz", f"test-{tag}", ckpt, test.paths,
                            lambda: embed_images(embedder, test.paths, size, **kw))
    tr_paths = [train_idx.paths[i] for i in tr_sel]
    tr_emb = cached_embeddings(out / "embeddings.npz", f"train-sample-{tag}", ckpt, tr_paths,
                               lambda: embed_images(embedder, tr_paths, size, **kw))
    return emb, tr_emb


def _robustness(embedder, test, emb: np.ndarray, n: int, seed: int, size: int, kw: dict) -> tuple[dict, dict, np.ndarray]:
    """Design §6.2 F: the five degradations on about `n` test images (whole identities); also each
    image's similarity drop and its identity, for the intervals (resampled by identity)."""
    sel = metrics.sample_by_identity(test.labels, n, seed)
    images = [data.load_image(test.paths[i]) for i in sel]
    degraded = {name: embed_images(embedder, images, size, prepare=fn, **kw) for name, fn in DEGRADATIONS.items()}
    drops = {name: 1 - (emb[sel] * d).sum(1) for name, d in degraded.items()}
    return metrics.robustness(emb[sel], degraded, test.labels[sel]), drops, test.labels[sel]


def _efficiency(embedder, run: RunDir, size: int) -> dict:
    onnx = run.file("pet_embedder.onnx")
    return {"params": count_parameters(embedder), "pt_bytes": run.file("pet_embedder.pt").stat().st_size,
            "onnx_bytes": onnx.stat().st_size if onnx.is_file() else None,
            "cpu_latency_ms": latency_ms(torch_runner(embedder.cpu().eval()), size, 1, repeats=30), "image_size": size}


def _deployment(params: StudyParams, run: RunDir, test, emb, labels, scores, pairs, tr_emb, tr_labels) -> dict:
    """What an app team decides (how many photos to enrol, look-alike impostors, thresholds by
    false-accept rate, galleries that grow), on this test split at the run's validation thresholds."""
    ev, seed, s = params.eval, params.seed, run.summary()
    threshold, same = s["val_threshold"], pairs[:, 2].astype(bool)
    enrol = metrics.enrolment(emb, labels, n_boot=ev.n_bootstrap, seed=seed)
    nn_idx, nn_sim = metrics.nearest_impostors(emb, labels)
    lookalike = {"nearest impostor": nn_sim}
    families = data.lookalike_families(params, run.species, test.identities)
    if families is not None:
        lookalike[f"same {families[0]}"] = metrics.family_scores(emb, labels, families[1])
    first = np.unique(tr_labels, return_index=True)[1]
    worst = np.argsort(-nn_sim, kind="stable")[:6]
    return {"recommended_threshold": threshold,
            "thresholds": metrics.thresholds_on_test(s.get("val_far_thresholds") or {}, scores, same, ev.n_bootstrap, seed),
            "enrolment": enrol,
            "smallest_k_within_1pt_of_k5": {h: metrics.smallest_sufficient_k(enrol, h) for h in ("max", "mean", "centroid")},
            "impostors": metrics.impostor_study(scores[same], scores[~same], lookalike, threshold),
            "gallery_growth": metrics.gallery_growth(emb, labels, tr_emb[first], threshold, seed=seed),
            "worst_lookalikes": [[int(i), int(nn_idx[i]), float(nn_sim[i])] for i in worst]}


def _protocol(params: StudyParams, species: str, run: RunDir, embedder, splits, emb, labels, pairs, size: int,
              kw: dict) -> dict | None:
    """The data set's own protocol (written by 01_data), at the run's validation threshold; None without one."""
    proto = data.load_protocol(params, species)
    if proto is None:
        return None
    threshold = run.summary()["val_threshold"]
    if proto["name"] == "petface":
        return protocols.petface(embedder, run.class_centres(), splits, proto, threshold, size, kw)
    return protocols.dogfacenet(emb, labels, pairs, threshold, params.seed)


def headline_metrics(emb: np.ndarray, labels: np.ndarray, pairs: np.ndarray, params: StudyParams) -> dict:
    """The REPEAT_KEYS figures of one embedding of the test split (pairs and seeds fixed by the study)."""
    scores = metrics.pair_scores(emb, pairs)
    m = {"retrieval": metrics.retrieval(emb, labels), "ranking": metrics.pair_ranking(scores, pairs[:, 2]),
         "verification": metrics.best_threshold(scores, pairs[:, 2]),
         "open_set": metrics.open_set(emb, labels, params.eval.gallery_frac, params.seed),
         "clustering": metrics.clustering(emb, labels, seed=params.seed, identities=params.eval.cluster_identities)}
    return _pick(m)


def _pick(m: dict) -> dict:
    """The REPEAT_KEYS figures of a metrics dict, by section."""
    return {sec: {k: m[sec][k] for s2, k in REPEAT_KEYS if s2 == sec} for sec in dict.fromkeys(s for s, _ in REPEAT_KEYS)}


def repeat_stats(repeats: list[dict]) -> dict:
    """Per figure: mean, sample standard deviation (ddof 1; null with one repeat) and n over repeats."""
    out = {}
    for sec, k in REPEAT_KEYS:
        v = np.array([r[sec][k] for r in repeats if r[sec].get(k) is not None], dtype=float)
        v = v[~np.isnan(v)]
        out[f"{sec}.{k}"] = {"mean": float(v.mean()) if len(v) else None,
                             "std": float(v.std(ddof=1)) if len(v) > 1 else None, "n": int(len(v))}
    return out


def _repeats(params: StudyParams, model: str, species: str, test, pairs, first: dict, out: Path, device,
             progress: bool) -> tuple[list[dict], list[dict]]:
    """Repeat 0's figures (already computed) and those of every further training repeat, and each further
    repeat's resample data (for 04_compare's paired comparisons)."""
    rows, samples = [{"repeat": 0, "seed": params.train_seed(0), **_pick(first)}], []
    ev, kw = params.eval, dict(device=device, tta=params.eval.tta, progress=progress)
    for r in range(1, params.repeats(model, species)):
        run = RunDir(Layout(params).run_dir(model, species, r))
        embedder = run.load_embedder(device)
        emb = cached_embeddings(out / "embeddings.npz", f"test-{'tta' if params.eval.tta else 'plain'}-r{r}",
                                run.file("pet_embedder.pt"), test.paths,
                                lambda: embed_images(embedder, test.paths, run.config()["image_size"], device=device,
                                                     tta=params.eval.tta, progress=progress))
        rows.append({"repeat": r, "seed": params.train_seed(r), **headline_metrics(emb, test.labels, pairs, params)})
        # triplets and robustness on every repeat, so that their rows compare seeds on both sides too
        tri = metrics.triplet_items(emb, test.labels, ev.n_triplets, params.seed)
        _, drops, rb_labels = _robustness(embedder, test, emb, ev.n_robustness, params.seed, run.config()["image_size"], kw)
        samples.append(metrics.build_sample(emb, test.labels, pairs, ev.gallery_frac, params.seed, tri, drops,
                                            robustness_labels=rb_labels, cluster_identities=ev.cluster_identities))
    return rows, samples


def evaluate_run(params: StudyParams, model: str, species: str, progress: bool = True, force: bool = False,
                 log=print) -> dict:
    """Every benchmark on the test split of one trained run: metrics.json, figures.npz (what
    `eval_report.draw` plots) and resample.npz, then the stage stamp. Returns the metrics dict; when the
    stage's inputs (`stages.eval_check`) match its stamp, the one already written, unless `force`."""
    check, out = stages.eval_check(params, model, species), Layout(params).eval_dir(model, species)
    if not force and (out / "metrics.json").is_file() and (out / FIGURE_DATA).is_file() and check.up_to_date():
        log(f"{model}-{species}: evaluation up to date ({out / 'metrics.json'}); force=True evaluates again")
        return load_metrics(out)
    _evaluate(params, model, species, out, progress)
    check.write()
    return load_metrics(out)


def _evaluate(params: StudyParams, model: str, species: str, out: Path, progress: bool) -> None:
    run = RunDir(Layout(params).run_dir(model, species))
    out.mkdir(parents=True, exist_ok=True)
    ev, seed, stages = params.eval, params.seed, _Timer()
    device = resolve_device(params.train.device)
    kernels = reproducible.apply(params.reproducible, device)
    embedder, size = run.load_embedder(device), run.config()["image_size"]
    splits = data.load_splits(params, species)
    test, train_idx = splits["test"], splits["train"]
    labels, kw = test.labels, dict(device=device, tta=ev.tta, progress=progress)
    tr_sel = metrics.sample_by_identity(train_idx.labels, ev.n_overfit, seed)

    with stages("embed"):
        emb, tr_emb = _embeddings(embedder, run, out, test, train_idx, tr_sel, size, kw)
    with stages("retrieval"):
        pq = metrics.leave_one_out(emb, labels)
        ret = metrics.retrieval_figures(pq)
    with stages("clustering"):
        clu = metrics.clustering(emb, labels, seed=seed, identities=ev.cluster_identities)
    with stages("ranking"):
        pairs = metrics.sample_pairs(labels, ev.n_rank_pairs, seed)
        scores = metrics.pair_scores(emb, pairs)
        rank, ver = metrics.pair_ranking(scores, pairs[:, 2]), metrics.best_threshold(scores, pairs[:, 2])
    with stages("triplets"):
        tri_items = metrics.triplet_items(emb, labels, ev.n_triplets, seed)
        tri = metrics.triplet_figures(tri_items)
    with stages("overfitting"):
        ovf_q = metrics.overfitting_queries(tr_emb, train_idx.labels[tr_sel], emb, labels, ev.n_overfit, seed)
        ovf = metrics.overfitting_figures(*ovf_q)
    with stages("robustness"):
        rob, drops, rb_labels = _robustness(embedder, test, emb, ev.n_robustness, seed, size, kw)
    with stages("open_set_and_bootstrap"):
        os_scores = metrics.open_set_scores(emb, labels, metrics.open_set_split(labels, seed, ev.gallery_frac))
        opn = metrics.open_set(emb, labels, ev.gallery_frac, seed)
        sample = metrics.build_sample(emb, labels, pairs, ev.gallery_frac, seed, tri_items, drops, pq, os_scores,
                                      rb_labels, ev.cluster_identities)
        ci = {**metrics.intervals(sample, ev.n_bootstrap, seed), **metrics.overfitting_intervals(*ovf_q, ev.n_bootstrap, seed)}
    with stages("figure data"):
        fpr, tpr, _ = metrics.roc(scores, pairs[:, 2])
        cmc = metrics.cmc(pq.ranking.first_rank, 20)
        _save_figure_data(out, pq, scores, pairs, seed)

    with stages("deployment"):
        deploy = _deployment(params, run, test, emb, labels, scores, pairs, tr_emb, train_idx.labels[tr_sel])
    with stages("protocol"):
        proto = _protocol(params, species, run, embedder, splits, emb, labels, pairs, size, kw)

    first = {"retrieval": ret, "ranking": rank, "verification": ver, "open_set": opn, "clustering": clu}
    with stages("repeats"):
        repeats, samples = _repeats(params, model, species, test, pairs, first, out, device, progress)
        save_samples(out, [sample, *samples])
    result = {"schema": SCHEMA, "model": model, "backbone": run.config().get("backbone"), "species": species,
              "run_dir": os.path.relpath(run.path, out),
               "checkpoint_sha256": file_sha256(run.file("pet_embedder.pt")), "tta": ev.tta,
               "test_fingerprint": data.splits_fingerprint(params, splits, ("test",)), "kernels": kernels,
               "repeats": repeats, "repeat_stats": repeat_stats(repeats),
               "n_images": int(len(labels)), "n_identities": int(len(np.unique(labels))), "retrieval": ret,
               "clustering": clu, "ranking": rank, "verification": ver, "triplets": tri, "overfitting": ovf,
               "robustness": rob, "open_set": opn, "ci95": ci, "cmc": cmc.tolist(), "curves": {"roc": _thin(fpr, tpr)},
               "efficiency": _efficiency(embedder, run, size), "protocol": proto, "deployment": deploy,
               "timings_s": stages.seconds}
    atomic_write_json(out / "metrics.json", clean_nan(result))


def _save_figure_data(out: Path, pq, scores: np.ndarray, pairs: np.ndarray, seed: int) -> None:
    """What the report's figures need beyond metrics.json: the pair scores and ten queries' nearest five."""
    k = np.random.default_rng(seed).choice(len(pq.index), min(10, len(pq.index)), replace=False)
    with atomic_path(out / FIGURE_DATA) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, scores=scores, same=pairs[:, 2].astype(np.int8), nn_query=np.asarray(pq.index)[k],
                     nn_top=np.stack([pq.ranking.topk[i][:5] for i in k]))


def _thin(fpr: np.ndarray, tpr: np.ndarray, n: int = 400) -> dict:
    keep = np.unique(np.r_[np.linspace(0, len(fpr) - 1, min(n, len(fpr))).astype(int), len(fpr) - 1])
    return {"fpr": fpr[keep].round(6).tolist(), "tpr": tpr[keep].round(6).tolist()}



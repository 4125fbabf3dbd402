"""03_evaluate's presentation: the figures drawn from what `evaluate.evaluate_run` wrote (metrics.json
and figures.npz), the study index's headline, and the tables and sentences of the report. Kept apart
from the computation so that a change here re-draws the report and never re-evaluates."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import data, metrics, plots
from .evaluate import FIGURE_DATA
from .layout import Layout
from .schema import REPEAT_KEYS

PLOTS = ["nearest_neighbors.png", "similarity_distribution.png", "roc_curve.png", "det_curve.png", "cmc_curve.png",
         "robustness.png"]


def draw(params, model: str, species: str, m: dict) -> Path:
    """Every PNG of one evaluation into its folder, from metrics.json `m` and figures.npz; returns the folder."""
    out = Layout(params).eval_dir(model, species)
    test = data.load_split(params, species, "test")
    title = f"{model} / {species}"
    with np.load(out / FIGURE_DATA, allow_pickle=False) as z:
        f = {k: z[k] for k in z.files}
    _neighbours(out, test, f["nn_query"], f["nn_top"])
    y = f["same"].astype(bool)
    scores = f["scores"]
    fpr, tpr, _ = metrics.roc(scores, y.astype(int))
    plots.similarity_distribution(scores[y], scores[~y], title, path=out / "similarity_distribution.png")
    plots.roc_curve(fpr, tpr, m["ranking"]["roc_auc"], title, path=out / "roc_curve.png")
    plots.det_curve(fpr, 1 - tpr, m["ranking"]["eer"], title, path=out / "det_curve.png")
    plots.cmc_curve(np.asarray(m["cmc"]), title, path=out / "cmc_curve.png")
    plots.robustness_bars({k: v for k, v in m["robustness"].items() if isinstance(v, dict)}, title,
                          path=out / "robustness.png")
    _deployment(out, test, m["deployment"], title)
    return out


def _neighbours(out: Path, test, query: np.ndarray, top: np.ndarray) -> None:
    rows, borders, names = [], [], []
    for i, nn in zip(query, top):
        rows.append([data.load_image(test.paths[i])] + [data.load_image(test.paths[j]) for j in nn])
        borders.append([None] + ["green" if test.labels[j] == test.labels[i] else "red" for j in nn])
        names.append(test.identities[int(test.labels[i])])
    plots.image_grid(rows, names, borders, size=1.2, path=out / "nearest_neighbors.png")


def _deployment(out: Path, test, deploy: dict, title: str) -> None:
    if deploy["enrolment"]:
        plots.enrolment_curves(deploy["enrolment"], "rank1", title, out / "enrolment.png")
    if deploy["gallery_growth"]:
        plots.gallery_growth(deploy["gallery_growth"], title, out / "gallery_growth.png")
    rows = [[data.load_image(test.paths[i]), data.load_image(test.paths[j])] for i, j, _ in deploy["worst_lookalikes"]]
    plots.image_grid(rows, [f"{v:.3f}" for *_, v in deploy["worst_lookalikes"]], path=out / "worst_lookalikes.png")


def repeat_rows(metrics: dict) -> list[dict]:
    """metrics.json `repeats` as flat rows (repeat, seed, "section.key": value) for a table."""
    return [{"repeat": r["repeat"], "seed": r["seed"], **{f"{sec}.{k}": r[sec][k] for sec, k in REPEAT_KEYS}}
            for r in metrics["repeats"]]



def headline(metrics: dict) -> dict:
    """The study index's figures for one evaluation, with the spread over seeds where there are repeats."""
    out = {"R@1": metrics["retrieval"]["recall@1"], "ROC-AUC": metrics["ranking"]["roc_auc"],
           "EER": metrics["ranking"]["eer"], "DIR@FAR=1e-2": metrics["open_set"]["dir@far=1e-2"]}
    st = metrics["repeat_stats"]["retrieval.recall@1"]
    if st["n"] > 1:
        out[f"R@1 over {st['n']} seeds"] = f"{st['mean']:.4f} ± {st['std']:.4f} sd"
    return out


def protocol_rows(metrics: dict) -> list[dict]:
    """The `protocol` block as (part, metric, value) rows; empty when the data set has no protocol."""
    proto = metrics.get("protocol") or {}

    def flat(d: dict, part: str):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{part} / {k}" if part else k)
            elif k not in ("name", "family"):
                yield {"part": part, "metric": k, "value": v}

    return list(flat(proto, ""))


def _n(v, spec: str) -> str:
    """A figure for a sentence; "n/a" where metrics.json holds null (not measurable on this test set)."""
    return "n/a" if v is None or v != v else format(v, spec)


def deployment_summary(metrics: dict) -> str:
    """The deployment block's answers in sentences (03_evaluate, the README)."""
    d = metrics.get("deployment")
    if not d:
        return "No deployment figures in this metrics.json (evaluated before they existed)."
    ks, enrol = d["smallest_k_within_1pt_of_k5"], d["enrolment"]
    top = max(enrol, key=lambda r: r["k"]) if enrol else None
    lines = ["- **Enrolment:** the smallest number of photos per pet whose open-set rank-1 is within 1 point of "
             "the largest k measured: " + ", ".join(f"{k} matching by {h}" for h, k in ks.items() if k) + "."
             + (f" k = {top['k']} rests on {top['n_identities']} pets with {top['k'] + 1}+ photos: too few to decide "
                "(see the bands)." if top and top["n_identities"] < 20 else "")
             + " Only pets with at least k + 1 photos take part at each k, so the gallery shrinks as k grows, "
               "which by itself makes rank-1 easier: compare the rules within a k, and k against k with the "
               "n_identities column in view."]
    imp = {r["impostors"]: r for r in d["impostors"]}
    if "random" in imp:
        rest = [f"{n} {_n(r['false_match_rate@recommended'], '.3f')}" for n, r in imp.items() if n != "random"]
        lines.append(f"- **Look-alikes:** at the recommended threshold {_n(d['recommended_threshold'], '.2f')}, random "
                     f"impostors are accepted at {_n(imp['random']['false_match_rate@recommended'], '.3f')}; "
                     + "; ".join(rest) + ".")
    for key, t in d["thresholds"].items():
        if t["threshold"] is None:
            lines.append(f"- **FAR {key}:** not measurable on validation (too few negative pairs).")
        else:
            far = f"{_n(t['far'], '.4f')} [{_n(t['far_ci95'][0], '.4f')}, {_n(t['far_ci95'][1], '.4f')}]"
            tar = f"{_n(t['tar'], '.3f')} [{_n(t['tar_ci95'][0], '.3f')}, {_n(t['tar_ci95'][1], '.3f')}]"
            lines.append(f"- **FAR {key}:** threshold {_n(t['threshold'], '.4f')} (set on validation) accepts "
                         f"{far} of strangers' pairs on test and {tar} of the same pet's.")
    g = d["gallery_growth"]
    if g:
        lines.append(f"- **Gallery growth:** from {g[0]['gallery_size']} to {g[-1]['gallery_size']} pets, the "
                     f"false-alarm rate at the recommended threshold goes {_n(g[0]['false_alarm_rate@recommended'], '.3f')} "
                     f"-> {_n(g[-1]['false_alarm_rate@recommended'], '.3f')}.")
    return "\n".join(lines)

"""What an app team decides before shipping: how many photos to enrol, which threshold for a
false-accept rate, how look-alike strangers fare, what a growing gallery does to false alarms.
Splits come from `open_set.open_set_split`, thresholds from `verification.threshold_over`, intervals
from `bootstrap.bootstrap`."""
from __future__ import annotations

import math

import numpy as np

from ..constants import far_key
from .bootstrap import bootstrap, interval, repeat_by
from .open_set import dir_at_far, open_set_split
from .verification import accepted, rates_at, threshold_over


def thresholds_on_test(thresholds: dict, scores: np.ndarray, is_same: np.ndarray, n_boot: int = 200,
                       seed: int = 42) -> dict:
    """TAR and FAR on test pairs at each validation threshold, with 95% bootstrap intervals (pairs resampled)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(is_same).astype(bool)
    out = {}
    for key, t in thresholds.items():
        if t is None:
            out[key] = {"threshold": None, "tar": None, "far": None}
            continue

        def stat(c, t=t):
            acc = accepted(s, t)
            return [(c[y] * acc[y]).sum() / c[y].sum() if c[y].any() else math.nan,
                    (c[~y] * acc[~y]).sum() / c[~y].sum() if c[~y].any() else math.nan]

        ci = interval(bootstrap(stat, [len(s)], n_boot, seed)) if n_boot else np.full((2, 2), np.nan)
        out[key] = {"threshold": t, **rates_at(s, y, t), "tar_ci95": ci[:, 0].tolist(), "far_ci95": ci[:, 1].tolist()}
    return out


def identity_scores(probes: np.ndarray, enrolled: list[np.ndarray], how: str) -> np.ndarray:
    """(n_probes, n_identities) match scores against each enrolled identity's photos: `max` (best photo),
    `mean` (mean of the similarities) or `centroid` (cosine with the re-normalised mean embedding)."""
    if how == "centroid":
        c = np.stack([e.mean(0) for e in enrolled])
        c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        return probes @ c.T
    sims = [probes @ e.T for e in enrolled]
    return np.stack([s.max(1) if how == "max" else s.mean(1) for s in sims], axis=1)


def _open_set_figures(ms: np.ndarray, truth: np.ndarray, ns: np.ndarray, far: float) -> list[float]:
    best, top = ms.max(1), ms.argmax(1)
    return [float((top == truth).mean()), dir_at_far(best, top == truth, ns.max(1), far)]


def enrolment(emb: np.ndarray, labels: np.ndarray, ks=(1, 2, 3, 4, 5), hows=("max", "mean", "centroid"),
              far: float = 1e-2, n_boot: int = 200, seed: int = 42) -> list[dict]:
    """Open-set rank-1 and DIR@FAR by photos enrolled per pet (k) and how a probe is matched, with 95%
    bootstrap intervals (identities resampled, enrolled and strangers alike). At each k only pets with
    at least k + 1 photos take part: half are enrolled with k photos, half are strangers."""
    labels, rows, dk = np.asarray(labels), [], f"dir@far={far_key(far)}"
    for k in ks:
        sp = open_set_split(labels, [seed, k], 0.5, per_identity=k, min_photos=k + 1)
        ids, stranger_lab = sp["enrolled"], labels[sp["nonmated"]]
        strangers = np.unique(stranger_lab)
        if len(ids) < 2 or len(strangers) < 2:
            continue
        pos = {lab: j for j, lab in enumerate(ids)}
        g_lab, m_lab = labels[sp["gallery"]], labels[sp["mated"]]
        truth = np.array([pos[lab] for lab in m_lab], dtype=np.int64)
        stranger_group = np.searchsorted(strangers, stranger_lab)
        for how in hows:
            g = [emb[sp["gallery"][g_lab == lab]] for lab in ids]
            ms, ns = identity_scores(emb[sp["mated"]], g, how), identity_scores(emb[sp["nonmated"]], g, how)
            figures = _open_set_figures(ms, truth, ns, far)

            def stat(ce, cs, ms=ms, ns=ns):
                m, n = repeat_by(ce, truth), repeat_by(cs, stranger_group)
                return _open_set_figures(ms[m], truth[m], ns[n], far)

            ci = interval(bootstrap(stat, [len(ids), len(strangers)], n_boot, [seed, k, 1])) if n_boot \
                else np.full((2, 2), np.nan)
            rows.append({"k": k, "match": how, "n_identities": int(len(ids)), "n_mated": int(len(truth)),
                         "n_nonmated": int(len(sp["nonmated"])), "rank1": figures[0], dk: figures[1],
                         "rank1_ci95": ci[:, 0].tolist(), f"{dk}_ci95": ci[:, 1].tolist()})
    return rows


def smallest_sufficient_k(rows: list[dict], how: str, key: str = "rank1", within: float = 0.01) -> int | None:
    """The smallest k whose figure is within `within` of the largest k's, for one way of matching."""
    mine = sorted((r for r in rows if r["match"] == how), key=lambda r: r["k"])
    if not mine:
        return None
    top = mine[-1][key]
    return next((r["k"] for r in mine if r[key] >= top - within), mine[-1]["k"])


def nearest_impostors(emb: np.ndarray, labels: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each photo, the most similar photo of another identity: (its index, the similarity)."""
    idx, val = np.zeros(len(emb), np.int64), np.zeros(len(emb))
    for s in range(0, len(emb), chunk):
        sims = emb[s:s + chunk] @ emb.T
        sims[labels[s:s + chunk, None] == labels[None, :]] = -np.inf
        idx[s:s + chunk], val[s:s + chunk] = sims.argmax(1), sims.max(1)
    return idx, val


def family_scores(emb: np.ndarray, labels: np.ndarray, family: np.ndarray) -> np.ndarray:
    """Similarities of every pair of photos of two different pets of the same look-alike family
    (`family[label]`)."""
    fam = family[labels]
    out = []
    for f in np.unique(fam):
        idx = np.flatnonzero(fam == f)
        sims = emb[idx] @ emb[idx].T
        diff = labels[idx][:, None] != labels[idx][None, :]
        out.append(sims[np.triu(diff, 1)])
    return np.concatenate(out) if out else np.zeros(0)


def impostor_study(genuine: np.ndarray, random_neg: np.ndarray, lookalike_neg: dict[str, np.ndarray],
                   threshold: float, fars=(1e-2, 1e-3)) -> list[dict]:
    """Verification against random impostors and against look-alike ones, side by side: TAR at each FAR
    (the threshold set on that kind of impostor) and the false-match rate at the recommended threshold."""
    rows = []
    for name, neg in {"random": random_neg, **lookalike_neg}.items():
        row = {"impostors": name, "n": int(len(neg)),
               "false_match_rate@recommended": float(accepted(neg, threshold).mean()) if len(neg) else math.nan}
        for far in fars:
            t = threshold_over(neg, far)
            row[f"tar@far={far_key(far)}"] = math.nan if math.isnan(t) else float(accepted(genuine, t).mean())
        rows.append(row)
    return rows


def gallery_growth(emb: np.ndarray, labels: np.ndarray, distractors: np.ndarray | None, threshold: float,
                   sizes=(10, 20, 50, 100, 200, 500, 1000, 2000, 5000), fpir: float = 1e-2, seed: int = 42) -> list[dict]:
    """1:N identification as the gallery grows: one enrolled photo per pet for `size` pets (test pets,
    then distractor pets from other splits), mated probes of the test pets, non-mated probes of test pets
    kept out of the gallery; FNIR at FPIR and the false-alarm rate at the recommended threshold."""
    labels = np.asarray(labels)
    sp = open_set_split(labels, seed, 0.5, per_identity=1, min_photos=2)
    enrolled, mated, nonmated = sp["enrolled"], sp["mated"], sp["nonmated"]
    first = dict(zip(labels[sp["gallery"]].tolist(), sp["gallery"].tolist()))
    pos = {lab: i for i, lab in enumerate(enrolled)}
    pool = [emb[first[lab]] for lab in enrolled] + ([] if distractors is None else list(distractors))
    rows = []
    for n in [s for s in sizes if s <= len(pool)] + ([len(pool)] if len(pool) not in sizes else []):
        if n < 2:
            continue
        m = mated[np.isin(labels[mated], enrolled[: min(n, len(enrolled))])]
        truth = np.array([pos[lab] for lab in labels[m]], dtype=np.int64)
        g = np.stack(pool[:n])
        ms, ns = emb[m] @ g.T, emb[nonmated] @ g.T
        nm_best, hit, best = ns.max(1), ms.argmax(1) == truth, ms.max(1)
        t_fpir = threshold_over(nm_best, fpir)
        rows.append({"gallery_size": int(n), "n_mated": int(len(m)), "n_nonmated": int(len(nonmated)),
                     f"fnir@fpir={far_key(fpir)}": float(1 - (hit & accepted(best, t_fpir)).mean())
                     if not math.isnan(t_fpir) else math.nan,
                     "false_alarm_rate@recommended": float(accepted(nm_best, threshold).mean()),
                     "fnir@recommended": float(1 - (hit & accepted(best, threshold)).mean())})
    return rows

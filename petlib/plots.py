"""Figures from arrays and dicts. Each function returns a matplotlib Figure and, given `path`, saves it."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .convergence import plateau

sns.set_theme(style="whitegrid", context="notebook")


def _save(fig, path):
    if path:
        from .io import atomic_path

        p = Path(path)
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format=p.suffix.lstrip(".") or "png")
        plt.close(fig)  # saved figures are shown from their files; don't also render them inline
    return fig


def images_per_identity(counts: dict[str, np.ndarray], path=None):
    """Histogram of images per identity, one colour per species."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    hi = max(int(c.max()) for c in counts.values())
    bins = np.arange(0.5, hi + 1.5)
    for name, c in counts.items():
        ax.hist(c, bins=bins, alpha=0.6, label=f"{name} (n={len(c)})")
    ax.set_xlabel("images per identity")
    ax.set_ylabel("identities")
    ax.legend()
    return _save(fig, path)


def image_grid(rows: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str] | None = None,
               borders: Sequence[Sequence[str | None]] | None = None, size: float = 1.4, path=None):
    """A grid of images; `borders` optionally colours each cell's frame (e.g. green/red)."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows), squeeze=False)
    for i, r in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if j < len(r):
                ax.imshow(r[j])
                colour = borders[i][j] if borders else None
                for s in ax.spines.values():
                    s.set_visible(bool(colour))
                    if colour:
                        s.set_edgecolor(colour)
                        s.set_linewidth(4)
            else:
                ax.axis("off")
        if row_labels:
            axes[i][0].set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def denormalize(t) -> np.ndarray:
    """CHW ImageNet-normalised tensor -> HWC uint8 for display."""
    from .data import IMAGENET_MEAN, IMAGENET_STD

    a = np.asarray(t.detach().cpu() if hasattr(t, "detach") else t, dtype=np.float32).transpose(1, 2, 0)
    a = a * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return (np.clip(a, 0, 1) * 255).astype(np.uint8)


def training_curves(history: dict, title: str = "", path=None):
    """Loss, LR per parameter group, ArcFace margin and val accuracy per epoch (the `02_train` figure),
    the last third of the epochs shaded with its gain (`convergence.plateau`)."""
    ep = [e["epoch"] for e in history["epochs"]]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    axes[0].plot(ep, [e["loss"] for e in history["epochs"]], marker="o")
    axes[0].set_title("train loss (ArcFace CE)")
    for g in history["epochs"][0]["lr"]:
        axes[1].plot(ep, [e["lr"][g] for e in history["epochs"]], marker=".", label=g)
    axes[1].set_yscale("log")
    axes[1].legend()
    axes[1].set_title("learning rate (end of epoch)")
    axes[2].plot(ep, [e["margin"] for e in history["epochs"]], marker=".")
    axes[2].set_title("ArcFace margin")
    val = [(e["epoch"], e["val"]["accuracy"]) for e in history["epochs"] if e["val"]]
    if val:
        axes[3].plot(*zip(*val), marker="o", label="trained")
    if history.get("untrained_val"):
        axes[3].axhline(history["untrained_val"]["accuracy"], color="grey", ls="--", label="untrained")
    if (pl := plateau(history)) is not None:
        axes[3].axvspan(pl["from_epoch"], pl["to_epoch"], color="tab:green" if pl["converged"] else "tab:orange",
                        alpha=0.12, label=f"last third: {pl['gain'] * 100:+.1f} pt "
                                          f"({'plateau' if pl['converged'] else 'still rising'})")
    axes[3].set_title("val verification accuracy")
    axes[3].legend()
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def similarity_distribution(pos: np.ndarray, neg: np.ndarray, title: str = "", path=None):
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    bins = np.linspace(-1, 1, 81)
    ax.hist(neg, bins=bins, alpha=0.6, density=True, label=f"different pet (n={len(neg)})", color="tab:red")
    ax.hist(pos, bins=bins, alpha=0.6, density=True, label=f"same pet (n={len(pos)})", color="tab:green")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title(f"Similarity distribution {title}")
    ax.legend()
    return _save(fig, path)


def roc_curve(fpr, tpr, auc: float, title: str = "", path=None, ax=None, label=None):
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(4.5, 4.2))
    ax.plot(fpr, tpr, label=label or f"AUC = {auc:.4f}")
    ax.plot([0, 1], [0, 1], color="grey", ls=":")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"ROC {title}")
    ax.legend(loc="lower right")
    return _save(fig, path)


def det_curve(fpr, fnr, eer: float, title: str = "", path=None, ax=None, label=None):
    """Detection error trade-off on log-log axes: the low-FAR corner is where phone apps operate."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(4.5, 4.2))
    ok = (fpr > 0) & (fnr > 0)
    ax.plot(fpr[ok], fnr[ok], label=label or f"EER = {eer:.2%}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("false reject rate")
    ax.set_title(f"DET {title}")
    ax.legend(loc="lower left")
    return _save(fig, path)


def cmc_curve(cmc: np.ndarray, title: str = "", path=None):
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(np.arange(1, len(cmc) + 1), cmc, marker="o")
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"CMC {title}")
    return _save(fig, path)


def robustness_bars(rob: dict, title: str = "", path=None):
    names = list(rob)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].bar(names, [rob[n]["sim_drop"] for n in names], color="tab:blue")
    axes[0].set_title("similarity drop (1 - cos(clean, degraded))")
    axes[1].bar(names, [rob[n]["recall@1_drop"] for n in names], color="tab:orange")
    axes[1].set_title("Recall@1 drop")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"Robustness {title}")
    fig.tight_layout()
    return _save(fig, path)


def grouped_bars(table, names: list[str], intervals: dict | None = None, path=None):
    """One row per category of a comparison block (readable at any number of models), one bar per model,
    each with its 95% interval as an error bar where `intervals[model][metric]` = (low, high)."""
    cats = [c for c in dict.fromkeys(table["category"]) if c != "Efficiency"]
    fig, axes = plt.subplots(len(cats), 1, figsize=(9, 2.6 * len(cats)), squeeze=False)
    for ax, cat in zip(axes[:, 0], cats):
        sub = table[table["category"] == cat]
        x = np.arange(len(sub))
        w = 0.8 / max(len(names), 1)
        for i, n in enumerate(names):
            v = sub[n].astype(float).to_numpy()
            ci = np.array([(intervals or {}).get(n, {}).get(m) or (np.nan, np.nan) for m in sub["metric"]], float)
            err = np.abs(np.vstack([v - ci[:, 0], ci[:, 1] - v]))
            ax.bar(x + i * w - 0.4 + w / 2, v, w, label=n, yerr=np.nan_to_num(err), capsize=3,
                   error_kw={"elinewidth": 1})
        ax.set_xticks(x)
        ax.set_xticklabels(sub["metric"], fontsize=10)
        ax.set_title(cat, fontsize=11, loc="left")
        ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return _save(fig, path)


def roc_det_overlay(curves: dict[str, dict], path=None):
    """ROC and DET curves of several models on shared axes."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, c in curves.items():
        fpr, tpr = np.asarray(c["fpr"]), np.asarray(c["tpr"])
        roc_curve(fpr, tpr, 0, "", ax=a, label=name)
        det_curve(fpr, 1 - tpr, 0, "", ax=b, label=name)
    a.set_title("ROC")
    b.set_title("DET")
    fig.tight_layout()
    return _save(fig, path)


def enrolment_curves(rows: list[dict], key: str = "rank1", title: str = "", path=None):
    """A figure per way of matching: `key` by photos enrolled per pet, with its 95% bootstrap band."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for how in dict.fromkeys(r["match"] for r in rows):
        mine = sorted((r for r in rows if r["match"] == how), key=lambda r: r["k"])
        k = [r["k"] for r in mine]
        ax.plot(k, [r[key] for r in mine], marker="o", label=how)
        ax.fill_between(k, [r[f"{key}_ci95"][0] for r in mine], [r[f"{key}_ci95"][1] for r in mine], alpha=0.15)
    ax.set_xlabel("photos enrolled per pet (k)")
    ax.set_ylabel(key)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(sorted({r["k"] for r in rows}))
    ax.legend(title="match by")
    ax.set_title(f"Enrolment {title}")
    return _save(fig, path)


def gallery_growth(rows: list[dict], title: str = "", path=None):
    """FNIR at FPIR and the false-alarm rate at the recommended threshold by gallery size (log x)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    n = [r["gallery_size"] for r in rows]
    for key in [k for k in rows[0] if k.startswith("fnir@") or k.startswith("false_alarm")] if rows else []:
        ax.plot(n, [r[key] for r in rows], marker="o", label=key)
    ax.set_xscale("log")
    ax.set_xlabel("pets in the gallery")
    ax.set_ylabel("rate")
    ax.set_ylim(0, 1.02)
    ax.legend()
    ax.set_title(f"Gallery growth {title}")
    return _save(fig, path)

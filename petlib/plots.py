"""Figures from arrays and dicts. Each function returns a matplotlib Figure and, given `path`, saves it."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

sns.set_theme(style="whitegrid", context="notebook")


def _save(fig, path):
    if path:
        from .io import atomic_path

        p = Path(path)
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format=p.suffix.lstrip(".") or "png")
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
    """Loss, LR per parameter group, ArcFace margin and val accuracy per epoch (the `02_train` figure)."""
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
    axes[3].set_title("val verification accuracy")
    axes[3].legend()
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)

"""Model comparison (design §6.4 / §9.2): many metrics.json files in, one table out.

The best model per row is bolded in the right direction (lower is better for EER, violation rate,
drops, size and latency). Where the row's metric has bootstrap intervals and the best model's
interval overlaps the runner-up's, the row is marked a tie instead of bolding noise.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .metrics import load_metrics
from .io import atomic_write_text

# (category, label, path in metrics.json, higher is better, key in ci95 or None)
ROWS = [
    ("Retrieval", "Recall@1", ("retrieval", "recall@1"), True, "recall@1"),
    ("Retrieval", "Recall@5", ("retrieval", "recall@5"), True, None),
    ("Retrieval", "MRR", ("retrieval", "mrr"), True, "mrr"),
    ("Retrieval", "mAP@R", ("retrieval", "map@r"), True, None),
    ("Ranking", "ROC-AUC", ("ranking", "roc_auc"), True, "roc_auc"),
    ("Ranking", "EER", ("ranking", "eer"), False, "eer"),
    ("Ranking", "TAR@FAR=1e-3", ("ranking", "tar@far=1e-3"), True, "tar@far=1e-3"),
    ("Verification", "Accuracy (best threshold)", ("verification", "accuracy"), True, None),
    ("Open set", "DIR@FAR=1e-2", ("open_set", "dir@far=1e-2"), True, "dir@far=1e-2"),
    ("Clustering", "NMI", ("clustering", "nmi"), True, None),
    ("Clustering", "Purity", ("clustering", "purity"), True, None),
    ("Triplet", "Violation rate", ("triplets", "violation_rate"), False, None),
    ("Triplet", "Avg margin", ("triplets", "avg_margin"), True, None),
    ("Robustness (sim drop)", "Gaussian blur", ("robustness", "gaussian_blur", "sim_drop"), False, None),
    ("Robustness (sim drop)", "Gaussian noise", ("robustness", "gaussian_noise", "sim_drop"), False, None),
    ("Robustness (sim drop)", "JPEG compression", ("robustness", "jpeg_compression", "sim_drop"), False, None),
    ("Robustness (sim drop)", "Brightness", ("robustness", "brightness", "sim_drop"), False, None),
    ("Robustness (sim drop)", "Partial occlusion", ("robustness", "partial_occlusion", "sim_drop"), False, None),
    ("Efficiency", "Embedder params", ("efficiency", "params"), False, None),
    ("Efficiency", "ONNX size (bytes)", ("efficiency", "onnx_bytes"), False, None),
    ("Efficiency", "CPU latency (ms, batch 1)", ("efficiency", "cpu_latency_ms"), False, None),
]


def _get(m: dict, path: tuple):
    for k in path:
        if not isinstance(m, dict) or k not in m:
            return None
        m = m[k]
    return m


def load_all(runs: dict[str, str | Path]) -> dict[str, dict]:
    """`{name: eval_dir}` -> `{name: metrics}`; a missing or foreign metrics.json is one clear error."""
    return {name: load_metrics(d) for name, d in runs.items()}


def compare(metrics: dict[str, dict]) -> pd.DataFrame:
    """One row per metric, one column per model, plus `best` (the bold model names, comma-separated;
    'tie' where intervals overlap; '' where fewer than two models have a value) and `direction`."""
    rows = []
    for cat, label, path, higher, ci_key in ROWS:
        vals = {n: _get(m, path) for n, m in metrics.items()}
        valid = {n: v for n, v in vals.items() if isinstance(v, (int, float)) and not math.isnan(v)}
        best = ""
        if len(valid) >= 2:
            top = max(valid.values()) if higher else min(valid.values())
            leaders = [n for n, v in valid.items() if v == top]
            best = ",".join(leaders)  # equal values (e.g. the same architecture) share the bold
            rest = [n for n in sorted(valid, key=lambda n: valid[n], reverse=higher) if n not in leaders]
            if ci_key and rest:
                a, b = metrics[leaders[0]].get("ci95", {}).get(ci_key), metrics[rest[0]].get("ci95", {}).get(ci_key)
                if a and b and None not in a + b and a[0] <= b[1] and b[0] <= a[1]:
                    best = "tie"
        rows.append({"category": cat, "metric": label, **vals, "best": best,
                     "direction": "higher" if higher else "lower"})
    return pd.DataFrame(rows)


def _fmt(v, label: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if "params" in label or "bytes" in label:
        return f"{int(v):,}"
    if "ms" in label:
        return f"{v:.2f}"
    return f"{v:.4f}"


def to_markdown(df: pd.DataFrame, names: list[str]) -> str:
    lines = ["| Category | Metric | " + " | ".join(names) + " | better |",
             "|---|---|" + "---|" * len(names) + "---|"]
    for _, r in df.iterrows():
        cells = []
        for n in names:
            s = _fmt(r[n], r["metric"])
            cells.append(f"**{s}**" if n in str(r["best"]).split(",") else s)
        tie = " (tie: intervals overlap)" if r["best"] == "tie" else ""
        lines.append(f"| {r['category']} | {r['metric']} | " + " | ".join(cells) + f" | {r['direction']}{tie} |")
    return "\n".join(lines) + "\n"


def write(df: pd.DataFrame, names: list[str], out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    md, csv = out_dir / "comparison.md", out_dir / "comparison.csv"
    atomic_write_text(md, "# Model comparison\n\n" + to_markdown(df, names))
    atomic_write_text(csv, df.to_csv(index=False))
    return {"md": md, "csv": csv}

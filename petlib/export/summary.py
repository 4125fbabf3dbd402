"""What 05_export shows of an export's result: the index's headline figures, the INT8 verdict in words and
the INT8 search as a table. Rendering only: an edit here re-renders the report, never re-exports."""
from __future__ import annotations

from . import int8
from .measure import TASK_KEYS, ok_row


def headline(result: dict) -> dict:
    """The figures the study index shows for one export: shipped formats written and checked, the
    shipped INT8 model's size and accuracy change, and onnxruntime's batch-1 latency."""
    shipped = [r for r in result["rows"] if r["role"] == "shipped"]
    ok = [r for r in shipped if r["status"] in ("ok", "spec checked")]
    out = {"formats checked": f"{len(ok)}/{len(shipped)}"}
    kept, fp32 = ok_row(shipped, "onnx_int8"), ok_row(shipped, "onnx")
    if kept:
        out.update({"INT8 MB": round(kept["bytes"] / 1e6, 2),
                    "INT8 d-acc (pts)": round(kept["delta_verification_accuracy"] * 100, 2)})
    if fp32:
        out["ORT fp32 ms (b1, 1 thread)"] = round(fp32["ms_b1_t1"], 2)
    return out


def int8_summary(result: dict) -> str:
    """The shipped INT8 model against fp32 on test, and whether it keeps the task (every metric within
    `int8.TARGET_POINTS`, through this CPU's kernels and the kernel-free simulation), or why there is none."""
    kept, fp32 = ok_row(result["rows"], "onnx_int8"), ok_row(result["rows"], "onnx")
    test = result.get("int8_search", {}).get("test")
    if not kept or not fp32 or not test:
        return "INT8: no checked INT8 model next to a checked fp32 one (see the table for why)."
    deltas = ", ".join(f"{k} {test[f'delta_{k}'] * 100:+.2f} ({test[f'simulated_delta_{k}'] * 100:+.2f} simulated)"
                       for k in TASK_KEYS)
    verdict = "keeps" if test["loss_points"] <= int8.TARGET_POINTS else "does NOT keep"
    cap = "" if result["int8_search"].get("kept_under_cap", True) else \
        " No candidate was under export.int8_max_mb: this file is over the size goal."
    rc = test["recall_change"]
    flips = (f" Recall@1 through the kernels: {rc['lost']} of {rc['queries']} queries lost their rank-1 match and "
             f"{rc['gained']} gained one (95% interval of the change {rc['ci95_points'][0]:+.2f} to "
             f"{rc['ci95_points'][1]:+.2f} points; one query is {100 / rc['queries']:.2f} points)." + _equivalence(rc))
    return (f"INT8 ({result['int8_search']['kept']}): {kept['bytes'] / 1e6:.2f} MB, {fp32['bytes'] / kept['bytes']:.1f}x "
            f"smaller than fp32. On test, in points: {deltas}. Worst loss {test['loss_points']:.2f} points: it "
            f"{verdict} the task (every metric within {int8.TARGET_POINTS:g} point)." + flips + cap
            + qat_summary(result["int8_search"]))


def _equivalence(rc: dict) -> str:
    """The equivalence verdict on Recall@1 (±int8.TARGET_POINTS, 90% interval, identities resampled)."""
    if "equivalence" not in rc:
        return ""
    lo, hi = rc["ci90_points"]
    text = (f" Equivalence within ±{int8.TARGET_POINTS:g} point (90% interval {lo:+.2f} to {hi:+.2f}, "
            f"{rc['identities']} test identities): {rc['equivalence']}")
    return text + (f"; about {rc['identities_to_decide']:,} test identities would decide it." if rc["identities_to_decide"]
                   else ".")


def qat_summary(search: dict) -> str:
    """What quantisation-aware training bought on validation, beside its ranges alone ('' without QAT)."""
    if search.get("qat_error"):
        return f" QAT failed, so only post-training candidates were searched: {search['qat_error']}"
    rows = {r["setting"]: r for r in search.get("rows", []) if r["stage"] == "quantisation-aware training"}
    trained = [(k, h) for k, h in search.get("qat_history", {}).items() if h]
    if not trained or len(rows) < 2:
        return ""
    (label, hist), = trained
    alone = next(r for k, r in rows.items() if k != label)
    return (f" QAT ({label}): distillation loss on the training images {hist[0]['loss']:.5f} -> {hist[-1]['loss']:.5f}; "
            f"on validation mean cosine {rows[label]['mean_cosine']:.4f} (its ranges alone {alone['mean_cosine']:.4f}), "
            f"worst loss {rows[label]['loss_points']:.2f} points ({alone['loss_points']:.2f} points).")


def int8_search_table(result: dict):
    """The search as a table: one row per candidate, validation figures in points."""
    import pandas as pd

    rows = result.get("int8_search", {}).get("rows", [])
    cols = {"stage": "stage", "setting": "setting", "MB": "MB", "under_cap": "under cap", "mean_cosine": "mean cos",
            "min_cosine": "min cos", **{f"delta_{k}": f"d {k}" for k in TASK_KEYS},
            **{f"simulated_delta_{k}": f"d {k} (sim)" for k in TASK_KEYS}, "loss_points": "worst loss", "kept": "kept"}
    df = pd.DataFrame([{**r, "MB": r["bytes"] / 1e6} for r in rows], columns=[*cols, "bytes"]).drop(columns="bytes")
    for c in cols:
        if c.startswith(("delta_", "simulated_delta_")):
            df[c] = df[c] * 100
    return df.rename(columns=cols).round(3)

"""Has a training run converged? Issue 26's rule: the validation accuracy plateaus, the last third of
the epochs gaining under `PLATEAU_GAIN`. Read from a run's history; nothing trains here (so this rule
is report code, never a reason to retrain)."""
from __future__ import annotations

import numpy as np

PLATEAU_GAIN = 0.01  # one point of validation verification accuracy


def plateau(history: dict) -> dict | None:
    """What the last third of the epochs gains: the least-squares trend of the validations from the one
    nearest to two thirds of the epochs (the earlier on a tie) to the last, times that span (`gain`;
    one validation is noisy: about half a point on a few thousand pairs, and a trend is not fooled by
    one dip). Also the end points' difference (`endpoint_gain`) and the best validation after the
    reference minus the best up to it (`best_gain`, an upper bound: it picks maxima). None without
    two validations."""
    val = [(e["epoch"], e["val"]["accuracy"]) for e in history["epochs"] if e["val"]]
    n = len(history["epochs"])
    if len(val) < 2:
        return None
    k = min(range(len(val) - 1), key=lambda i: (abs(val[i][0] - 2 * n / 3), val[i][0]))
    (ref_epoch, ref), before, after = val[k], val[:k + 1], val[k + 1:]
    ep, acc = np.array([e for e, _ in val[k:]], float), np.array([a for _, a in val[k:]])
    gain = float(np.polyfit(ep, acc, 1)[0] * (ep[-1] - ep[0]))
    return {"from_epoch": ref_epoch, "from": ref, "to_epoch": val[-1][0], "to": val[-1][1], "gain": gain,
            "endpoint_gain": val[-1][1] - ref, "best_gain": max(a for _, a in after) - max(a for _, a in before),
            "converged": gain < PLATEAU_GAIN}


def summary(history: dict) -> str | None:
    """02's sentence on the plateau (None without two validations)."""
    pl = plateau(history)
    if pl is None:
        return None
    verdict = "a plateau (converged)" if pl["converged"] else "still rising"
    return (f"last third of the epochs (validation at epoch {pl['from_epoch']} -> {pl['to_epoch']}): "
            f"{pl['gain'] * 100:+.2f} pt, {verdict}")

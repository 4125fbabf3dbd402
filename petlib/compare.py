"""Model comparison (design §6.4 / §9.2): many metrics.json files in, tables and verdicts out.

Models are ranked only against models measured on the same test set (same species and test-split
fingerprint): one block per test set, as design table 9.2 does per species. Across test sets the
numbers stand side by side, unranked.

The rule, one sentence (`RULE`): within a block, the leading model of a row is called better than
the runner-up only when the Holm-adjusted 95% interval of their paired difference excludes zero. The
difference is paired: every bootstrap draw resamples the test identities once for both models (and
each model's training repeats, where it has them), so it carries the test set's and training's
variance; Holm's step-down over the block's metric rows (`petlib.metrics.paired`) bounds the chance of
any false call in a block by 5%, a rate measured by `benchmarks/error_rates.py`. The latency rows are a
Holm family of their own: they time the machine as much as the models, and their noise must not move a
metric row's interval from one CPU to another. Exact facts (parameters,
file size) are called when they differ; a latency measured once per model is not called.

This module holds the statistics alone (pure functions of metrics and resample data: tables of
differences, verdicts); `compare_report` writes and reads (markdown, CSV, claims.yaml, published figures,
the deployment table).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import metrics as _m
from .metrics import MetricSpec, specs
from .metrics.spec import RESAMPLED
from .schema import fmt
from .schema import get as _get

RULE = ("A row's leader is called better than the runner-up only when the Holm-adjusted 95% interval of their "
        "paired difference (the same test identities resampled for both; each model's figure the mean over its "
        "training seeds) excludes zero: Holm's step-down over the block's metric rows holds false calls to at "
        "most 5% of blocks (2.5%, 95% interval 1.7-3.7%, on a simulated null like the data: docs/results.md); "
        "latency rows are a Holm family of their own. A row compares the two recipes "
        "only when each model was trained at least twice: then its interval also counts both models' seed "
        "variance (s²/S each, on Satterthwaite's degrees of freedom: three seeds give about four); "
        "otherwise it compares the trained models and says so. Cells show the seed mean "
        "(with the seed sd; a single training's own 95% interval). Sizes and parameter counts are exact; latency "
        "is compared only when timed interleaved in one process.")


def _ci_key(spec: MetricSpec) -> str | None:
    """Where a row's interval is: its name in ci95, 'exact' for measured facts, None without one."""
    return spec.name if spec.interval in RESAMPLED else {"exact": "exact"}.get(spec.interval)


ROW_SPECS = [s for s in specs() if s.category]
# (category, label, path in metrics.json, higher is better, key in ci95 or None): every spec with a category.
ROWS = [(s.category, s.label, s.path, s.higher, _ci_key(s)) for s in ROW_SPECS]


def test_sets(metrics: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """{block label: {model name: metrics}}, one block per test set (species + test-split fingerprint)."""
    out: dict[str, dict[str, dict]] = {}
    for name, m in metrics.items():
        fp = m.get("test_fingerprint")
        label = f"{m.get('species', '?')} test set" + (f" {fp[:8]}" if fp else " (fingerprint unknown)")
        out.setdefault(label, {})[name] = m
    return out


def spread(m: dict, path: tuple) -> float | None:
    """Standard deviation of a figure across the model's training repeats (None with fewer than two)."""
    st = (m.get("repeat_stats") or {}).get(".".join(path[:2])) if len(path) == 2 else None
    return st["std"] if st and st.get("n", 0) > 1 else None


def _order(valid: dict[str, float], higher: bool) -> tuple[list[str], list[str]]:
    top = max(valid.values()) if higher else min(valid.values())
    leaders = [n for n, v in valid.items() if v == top]
    return leaders, [n for n in sorted(valid, key=lambda n: valid[n], reverse=higher) if n not in leaders]


def _pending(spec: MetricSpec, vals: dict, samples: dict | None, means: dict,
             timed: bool) -> tuple[dict, str, tuple | None]:
    """(the row's cells, its note, the (leader, runner-up) to test or None) before the paired tests."""
    valid = {n: v for n, v in vals.items() if isinstance(v, (int, float)) and not math.isnan(v)}
    row = {"best": "", "difference": ""}
    if len(valid) < 2:
        return row, "", None
    if spec.interval == "timing" and timed:
        leaders, rest = _order(valid, spec.higher)
        return row, "", (leaders[0], rest[0]) if rest else None
    tested = spec.interval in RESAMPLED and samples and all(samples.get(n) for n in valid)
    if tested:  # ranked by the mean over training repeats, as the paired difference is
        valid = {n: v for n in valid if not math.isnan(v := means[n].get(spec.name, math.nan))}
        if len(valid) < 2:
            return row, "not called: not measurable on this test set", None
    leaders, rest = _order(valid, spec.higher)
    if not rest:
        return row, "tie: equal values", None
    if spec.interval == "exact":
        return {**row, "best": ",".join(leaders)}, "", None
    if spec.interval == "timing":
        return row, "not called: one timing per model, not a distribution", None
    if not tested:
        return row, "not called: no resample data (evaluate again)" if spec.interval in RESAMPLED else \
            "not called: no interval", None
    return row, "", (leaders[0], rest[0])


def compare(metrics: dict[str, dict], samples: dict[str, list[dict] | None] | None = None, n_boot: int = 200,
            seed: int = 0, alpha: float = 0.05, timings: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One block (models measured on one test set): a row per metric, a column per model, `best` (the
    called model, '' when not called), `difference` (leader minus runner-up, mean over training repeats,
    with its Holm-adjusted interval), `note` (why not called) and `direction`. `timings`: each model's
    interleaved batch-1 latencies (`latency.block_timings`), which replace the separate timings of
    metrics.json and are compared like the other rows. See `RULE`."""
    if len(test_sets(metrics)) > 1:
        raise ValueError(f"models measured on different test sets cannot be ranked: {list(test_sets(metrics))}")
    means = {n: _m.model_values(s) for n, s in (samples or {}).items() if s and n in metrics}
    timed = bool(timings) and all(n in timings for n in metrics)
    rows, tests = [], {}
    for i, spec in enumerate(ROW_SPECS):
        vals = {n: _get(m, spec.path) for n, m in metrics.items()}
        if spec.interval in RESAMPLED and all(n in means for n in metrics):  # the seed mean: what is compared
            vals = {n: means[n].get(spec.name, math.nan) for n in metrics}
        if spec.interval == "timing" and timed:
            vals = {n: float(np.median(timings[n]) * 1000) for n in metrics}
        cells, note, pair = _pending(spec, vals, samples, means, timed)
        rows.append({"category": spec.category, "metric": spec.label, **vals, **cells, "note": note,
                     "direction": "higher" if spec.higher else "lower"})
        if pair:
            tests.setdefault(pair, []).append(i)
    df = min(int(m.get("n_identities") or 0) for m in metrics.values()) - 1
    df = df if df > 0 else None
    pair_of = {i: pair for pair, idx in tests.items() for i in idx}
    for family in (_metric_family(tests, samples, means, df, n_boot, seed),
                   _timing_family(tests, rows, timings, n_boot, seed)):
        if family["names"]:
            _record(rows, family, pair_of, samples, alpha)
    table = pd.DataFrame(rows)
    table.attrs["speed"] = speed_tests(metrics, timings, n_boot, seed, alpha) if timed else []
    return table


def _metric_family(tests: dict, samples, means, df: int | None, n_boot: int, seed: int) -> dict:
    """The resampled rows' Holm family: per tested pair, the paired identity draws and seed terms."""
    fam = {"names": [], "observed": {}, "columns": [], "extra": {}, "dfs": {}}
    for (a, b), idx in tests.items():
        rows = [i for i in idx if ROW_SPECS[i].interval != "timing"]
        if not rows:
            continue
        row_names = [ROW_SPECS[i].name for i in rows]
        fam["columns"].append(_m.paired_draws(samples[a], samples[b], row_names, n_boot, seed))
        pair_extra, pair_df = _m.seed_adjustment(samples[a], samples[b], fam["columns"][-1], row_names, df)
        for i in rows:
            name = ROW_SPECS[i].name
            fam["names"].append(i)
            fam["observed"][i] = means[a].get(name, math.nan) - means[b].get(name, math.nan)
            fam["extra"][str(i)], fam["dfs"][str(i)] = pair_extra[name], pair_df[name]
    return fam


def _timing_family(tests: dict, rows: list[dict], timings, n_boot: int, seed: int) -> dict:
    """The latency rows' own Holm family: they measure the machine as much as the models, so their timing
    noise must not move a metric row's Holm level (it did, by one step, between two CPUs)."""
    fam = {"names": [], "observed": {}, "columns": [], "extra": {}, "dfs": {}}
    for (a, b), idx in tests.items():
        for i in (i for i in idx if ROW_SPECS[i].interval == "timing"):
            fam["columns"].append(_m.latency_draws(timings[a], timings[b], n_boot, seed)[:, None])
            fam["names"].append(i)
            fam["observed"][i] = rows[i][a] - rows[i][b]
            fam["dfs"][str(i)] = min(len(timings[a]), len(timings[b])) - 1  # the draws resample rounds
    return fam


def _record(rows: list[dict], fam: dict, pair_of: dict, samples, alpha: float) -> None:
    """Holm over one family; each row's difference, interval, call and note written into its table row."""
    keys = [str(i) for i in fam["names"]]
    results = _m.holm(keys, {str(i): v for i, v in fam["observed"].items()},
                      pd.concat([pd.DataFrame(c) for c in fam["columns"]], axis=1).to_numpy(), alpha,
                      df=fam["dfs"], extra=fam["extra"])
    for i, t in zip(fam["names"], results):
        a, b = pair_of[i]
        rows[i]["difference"] = f"{a} − {b}: " + fmt(t.difference, t.adjusted_ci) + \
            (f"; detectable at 80% power: {fmt(t.mde)}" if not math.isnan(t.mde) else "")
        rows[i]["best"] = a if t.called else ""
        rows[i]["ci_low"], rows[i]["ci_high"] = t.adjusted_ci
        single = [] if ROW_SPECS[i].interval == "timing" else [n for n in (a, b) if len(samples[n]) < 2]
        rows[i]["note"] = _why(t, not single, single)


def _why(t, recipe: bool, single: list[str]) -> str:
    """A row's note: its true reason when not called; for a called row of trained models, that it is one."""
    if not t.called:
        return ("not called: Holm's step-down stopped at a row with a smaller p-value (this row's own adjusted "
                "interval excludes 0)" if t.excludes else
                "not called: the adjusted interval includes 0 (a difference below the detectable size may be missed)")
    return "" if recipe else (f"trained models compared, not recipes: {', '.join(single)} trained once "
                              "(no seed variance on that side)")


def side_by_side(metrics: dict[str, dict]) -> pd.DataFrame:
    """Every model's figures next to each other, unranked: for models measured on different test sets."""
    return pd.DataFrame([{"category": cat, "metric": label, **{n: _get(m, path) for n, m in metrics.items()}}
                         for cat, label, path, _, _ in ROWS])


def intervals_of(block: dict[str, dict]) -> dict[str, dict[str, tuple]]:
    """model -> row label -> its 95% interval (for the error bars of 04_compare's charts)."""
    return {n: {label: tuple(ci) for _, label, _, _, key in ROWS
                if (ci := (m.get("ci95") or {}).get(key or "")) and None not in ci} for n, m in block.items()}


def ranked_blocks(metrics: dict[str, dict], samples: dict | None = None, n_boot: int = 200, seed: int = 0,
                  timings: dict[str, dict] | None = None) -> dict[str, pd.DataFrame]:
    """Every test set's ranked table, computed once (the paired tests are the costly part); `timings`:
    block label -> model -> interleaved latencies."""
    return {label: compare(block, samples, n_boot, seed, timings=(timings or {}).get(label))
            for label, block in test_sets(metrics).items()}


# ------------------------------------------------------------------ design §9.3's takeaways, tested
def _family(m: dict, name: str) -> str:
    b = (m.get("backbone") or name).lower()
    return "mnv3" if "mobilenetv3" in b or "mnv3" in b else "mfn" if "mobilefacenet" in b or "mfn" in b else ""


def _rows_claim(rule: dict, table: pd.DataFrame, fam: dict[str, str], rows: pd.Series) -> dict:
    """A claim decided by called rows: geometry rows shown but not counted; `min_called` rows for it and
    none against -> supported; any against -> contradicted; else not called."""
    counted = rows & ~table["metric"].isin(rule.get("geometry_rows", []))
    other = "mfn" if rule["favours"] == "mnv3" else "mnv3"
    won = {f: [r["metric"] for _, r in table[counted].iterrows() if r["best"] and fam.get(r["best"]) == f]
           for f in (rule["favours"], other)}
    favoured, against = won[rule["favours"]], won[other]
    if not counted.any():
        return {"claim": rule["claim"], "verdict": "not decided by these rows",
                "evidence": "its rows (" + ", ".join(table[rows]["metric"]) + ") measure each model's embedding "
                            "geometry (1 - cos), which differs between models: shown, not counted"}
    verdict = "contradicted" if against else "supported" if len(favoured) >= rule["min_called"] else "not called"
    return {"claim": rule["claim"], "verdict": verdict,
            "evidence": f"called for it on {len(favoured)} of {int(counted.sum())} counted rows "
                        f"({', '.join(favoured) or 'none'}; {rule['min_called']} needed); against it on {len(against)} "
                        f"({', '.join(against) or 'none'})"}


def speed_tests(block: dict[str, dict], timings: dict[str, np.ndarray] | None, n_boot: int = 200, seed: int = 0,
                alpha: float = 0.05) -> list[dict]:
    """The speed claim's own family: every MobileNetV3 of the block against every MobileFaceNet, paired over
    the interleaved rounds, Holm across those pairs. The latency row tests only its leader against its
    runner-up, which in a three-model block can be two MobileNetV3s."""
    fam = {n: _family(m, n) for n, m in block.items()}
    pairs = [(a, b) for a in block for b in block if fam[a] == "mnv3" and fam[b] == "mfn"]
    if not pairs or not timings or not all(n in timings for p in pairs for n in p):
        return []
    keys = [f"{a} − {b}" for a, b in pairs]
    med = {n: float(np.median(timings[n]) * 1000) for p in pairs for n in p}
    draws = np.column_stack([_m.latency_draws(timings[a], timings[b], n_boot, seed) for a, b in pairs])
    dfs = {k: min(len(timings[a]), len(timings[b])) - 1 for k, (a, b) in zip(keys, pairs)}
    res = _m.holm(keys, {k: med[a] - med[b] for k, (a, b) in zip(keys, pairs)}, draws, alpha, df=dfs)
    return [{"mnv3": a, "mfn": b, "mnv3_ms": med[a], "mfn_ms": med[b], "ci": [float(x) for x in t.adjusted_ci],
             "called": bool(t.called)} for (a, b), t in zip(pairs, res)]


def _speed_pair(rule: dict, t: dict) -> tuple[str, str]:
    """One pair's verdict; the size from the ratio's interval, MobileFaceNet's median over MobileNetV3's
    with the difference's adjusted interval (MobileNetV3's median held fixed)."""
    fast, slow, (lo, hi) = t["mnv3_ms"], t["mfn_ms"], t["ci"]
    ratio = (slow / fast, 1 - hi / fast, 1 - lo / fast)
    text = (f"{t['mfn']} / {t['mnv3']} = {ratio[0]:.2f}x [{ratio[1]:.2f}, {ratio[2]:.2f}] "
            f"({t['mnv3']} − {t['mfn']}: {fmt(fast - slow, (lo, hi))} ms)")
    if not t["called"]:
        return "not called", text
    if lo > 0:
        return "contradicted", text
    inside = rule["about"][0] <= ratio[1] and ratio[2] <= rule["about"][1]
    outside = ratio[2] < rule["about"][0] or ratio[1] > rule["about"][1]
    return ("supported" if inside else "faster, but not about 3x" if outside else "faster; the size cannot be told"), text


def _speed(rule: dict, tests: list[dict]) -> dict:
    """The claim on its own tests (`speed_tests`): one verdict when every pair agrees; else a contradiction
    or an uncalled pair decides, and faster pairs of different sizes say so."""
    if not tests:
        return {"claim": rule["claim"], "verdict": "not called",
                "evidence": "no interleaved batch-1 timings of a MobileNetV3 and a MobileFaceNet"}
    got = [_speed_pair(rule, t) for t in tests]
    verdicts = {v for v, _ in got}
    verdict = (verdicts.pop() if len(verdicts) == 1 else "contradicted" if "contradicted" in verdicts
               else "not called" if "not called" in verdicts else "faster; the size depends on the MobileNetV3")
    return {"claim": rule["claim"], "verdict": verdict,
            "evidence": "; ".join(f"{text}: {v}" for v, text in got)
                        + f" (Holm over {len(tests)} pair{'s' * (len(tests) > 1)}; 'about 3x': inside {rule['about']})"}


def _overfitting(rule: dict, block: dict) -> dict:
    gaps = {n: (_get(m, ("overfitting", "gap")), (m.get("ci95") or {}).get("overfitting.gap")) for n, m in block.items()}
    hi = [ci[1] for _, ci in gaps.values() if ci and None not in ci]
    lo = [ci[0] for _, ci in gaps.values() if ci and None not in ci]
    verdict = ("cannot tell" if len(hi) < len(gaps) else "contradicted" if any(v > rule["max_gap"] for v in lo)
               else "supported" if all(v <= rule["max_gap"] for v in hi) else "cannot tell")
    return {"claim": rule["claim"], "verdict": verdict,
            "evidence": "train minus test Recall@1 at the same gallery size: "
                        + ", ".join(f"{n} {fmt(g, ci) if g is not None else 'n/a'}" for n, (g, ci) in gaps.items())
                        + f" (supported when every gap's 95% upper bound is at most {rule['max_gap']}; contradicted when "
                          "a lower bound is above it)"}


def takeaways(table: pd.DataFrame, block: dict[str, dict], rules: dict) -> list[dict]:
    """Each of design §9.3's conclusions on this test set under its rule (`rules`: petlib/claims.yaml, read
    by `compare_report.claims`), with the rows and intervals behind the verdict."""
    fam = {n: _family(m, n) for n, m in block.items()}
    both = {"mnv3", "mfn"} <= set(fam.values())
    missing = {"verdict": "not called", "evidence": "this test set lacks MobileNetV3 or MobileFaceNet"}
    acc, rob = rules["accuracy"], rules["robustness"]
    out = [_rows_claim(acc, table, fam, table["category"].isin(acc["categories"])) if both
           else {"claim": acc["claim"], **missing},
           _rows_claim(rob, table, fam, table["category"].str.startswith("Robustness") & table["metric"].isin(rob["metrics"]))
           if both else {"claim": rob["claim"], **missing}]
    ph = rules["phones"]
    lat_row = table.set_index("metric").loc["CPU latency (ms, batch 1)"] if "CPU latency (ms, batch 1)" in \
        set(table["metric"]) else None  # the interleaved timings where 04_compare measured them
    small = {n: (_get(m, ("efficiency", "params")), lat_row[n] if lat_row is not None else None) for n, m in block.items()}
    fits = {n: p is not None and p <= ph["max_bytes"] and (ms is None or ms <= ph["max_ms"]) for n, (p, ms) in small.items()}
    out.append({"claim": ph["claim"], "verdict": "supported" if all(fits.values()) else "contradicted",
                "evidence": "; ".join(f"{n}: {p:,} weights = {p / 1e6:.2f} MB at INT8 (goal {ph['max_bytes'] / 1e6:g} MB), "
                                      f"{ms:.3g} ms per face on this CPU at the study's size (goal {ph['max_ms']:g} ms)"
                                      for n, (p, ms) in small.items() if p and ms)})
    out.append(_speed(rules["speed"], table.attrs.get("speed") or []) if both else {"claim": rules["speed"]["claim"], **missing})
    out.append(_overfitting(rules["overfitting"], block))
    return out

"""Model comparison (design §6.4 / §9.2): many metrics.json files in, tables out.

Models are ranked only against models measured on the same test set (same species and test-split
fingerprint): one block per test set, as design table 9.2 does per species. Across test sets the
numbers stand side by side, unranked.

Within a block, the best model per row (in the right direction: lower is better for EER, violation
rate, drops, size and latency) is called better than the runner-up only when the difference exceeds
both kinds of variance the study measures:
  1. the test set's: the two models' 95% bootstrap intervals (identities resampled) do not overlap;
  2. training's: the difference is more than twice the larger standard deviation across training
     repeats (seeds) of the two models, where a model has repeats.
A row without a bootstrap interval is not called (measured facts such as size and latency are); a
row that fails a check is a tie. Where no model of a block has repeats, training variance was not
measured and the table says so.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .io import atomic_write_text
from .metrics import MetricSpec, specs
from .schema import get as _get
from .schema import load_metrics


def _ci_key(spec: MetricSpec) -> str | None:
    """Where a row's interval is: its key in ci95, 'exact' for measured facts (timings are still treated as
    such: one median per model, no spread), None without one."""
    return {"identities": spec.key, "exact": "exact", "timing": "exact"}.get(spec.interval)


# (category, label, path in metrics.json, higher is better, key in ci95 or None): every spec with a category.
ROWS = [(s.category, s.label, s.path, s.higher, _ci_key(s)) for s in specs() if s.category]


def load_all(runs: dict[str, str | Path]) -> dict[str, dict]:
    """`{name: eval_dir}` -> `{name: metrics}`; a missing or foreign metrics.json is one clear error."""
    return {name: load_metrics(d) for name, d in runs.items()}


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


def _verdict(a: dict, b: dict, va: float, vb: float, path: tuple, ci_key: str | None) -> str:
    """'' when the leader `a` is called better than the runner-up `b`, else why it is a tie."""
    if ci_key == "exact":
        return ""
    ca, cb = (a.get("ci95") or {}).get(ci_key or ""), (b.get("ci95") or {}).get(ci_key or "")
    if not (ca and cb) or None in ca + cb:
        return "not called: no interval"
    if ca[0] <= cb[1] and cb[0] <= ca[1]:
        return "tie: intervals overlap"
    sds = [sd for sd in (spread(a, path), spread(b, path)) if sd is not None]
    if sds and abs(va - vb) <= 2 * max(sds):
        return "tie: within training spread"
    return ""


def compare(metrics: dict[str, dict]) -> pd.DataFrame:
    """One block (models measured on one test set): a row per metric, a column per model, plus `best`
    (the called model names, comma-separated when equal; '' when not called), `note` (why not) and
    `direction`."""
    if len(test_sets(metrics)) > 1:
        raise ValueError(f"models measured on different test sets cannot be ranked: {list(test_sets(metrics))}")
    rows = []
    for cat, label, path, higher, ci_key in ROWS:
        vals = {n: _get(m, path) for n, m in metrics.items()}
        valid = {n: v for n, v in vals.items() if isinstance(v, (int, float)) and not math.isnan(v)}
        best, note = "", ""
        if len(valid) >= 2:
            top = max(valid.values()) if higher else min(valid.values())
            leaders = [n for n, v in valid.items() if v == top]
            rest = [n for n in sorted(valid, key=lambda n: valid[n], reverse=higher) if n not in leaders]
            note = _verdict(metrics[leaders[0]], metrics[rest[0]], top, valid[rest[0]], path, ci_key) if rest \
                else "tie: equal values"
            best = "" if note else ",".join(leaders)  # equal values (e.g. the same architecture) share the bold
        rows.append({"category": cat, "metric": label, **vals, "best": best, "note": note,
                     "direction": "higher" if higher else "lower"})
    return pd.DataFrame(rows)


def side_by_side(metrics: dict[str, dict]) -> pd.DataFrame:
    """Every model's figures next to each other, unranked: for models measured on different test sets."""
    return pd.DataFrame([{"category": cat, "metric": label, **{n: _get(m, path) for n, m in metrics.items()}}
                         for cat, label, path, _, _ in ROWS])


def _measured_spread(metrics: dict[str, dict]) -> dict[str, dict]:
    return {n: m["repeat_stats"]["retrieval.recall@1"] for n, m in metrics.items()
            if (m.get("repeat_stats") or {}).get("retrieval.recall@1", {}).get("n", 0) > 1}


def training_variance_note(block: dict[str, dict], study: dict[str, dict] | None = None) -> str:
    """Whether training variance was measured for the block's models, and how large it was where it was
    (in the block, else elsewhere in `study`)."""
    def fmt(measured):
        return "; ".join(f"{n}: {st['std']:.4f} over {st['n']} repeats (mean {st['mean']:.4f})"
                         for n, st in measured.items())
    if measured := _measured_spread(block):
        return "Training variance (standard deviation of Recall@1 across seeds): " + fmt(measured)
    note = ("Training variance was not measured for these models (one training repeat each): differences are "
            "judged by the test-set bootstrap alone. Set train.repeats (and train.repeat_runs) to measure it.")
    if elsewhere := _measured_spread(study or {}):
        note += " Elsewhere in this study, on another test set: " + fmt(elsewhere) + "."
    return note


def _fmt(v, label: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if "params" in label or "bytes" in label:
        return f"{int(v):,}"
    if "ms" in label:
        return f"{v:.2f}"
    return f"{v:.4f}"


def _cell(m: dict | None, v, label: str, path: tuple, ci_key: str | None) -> str:
    s = _fmt(v, label)
    if m is None or v is None:
        return s
    ci = (m.get("ci95") or {}).get(ci_key or "")
    if ci and None not in ci:
        s += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    sd = spread(m, path)
    if sd is not None:
        s += f" ±{sd:.3f} sd ({m['repeat_stats']['.'.join(path)]['n']} seeds)"
    return s


def to_markdown(df: pd.DataFrame, names: list[str], metrics: dict[str, dict] | None = None) -> str:
    """The table with the called best in bold; with `metrics`, each cell also shows its 95% bootstrap
    interval [low, high] and its standard deviation across training repeats."""
    paths = {label: (path, ci) for _, label, path, _, ci in ROWS}
    ranked = "best" in df.columns
    lines = ["| Category | Metric | " + " | ".join(names) + (" | better |" if ranked else " |"),
             "|---|---|" + "---|" * len(names) + ("---|" if ranked else "")]
    for _, r in df.iterrows():
        path, ci = paths[r["metric"]]
        cells = []
        for n in names:
            s = _cell((metrics or {}).get(n), r[n], r["metric"], path, ci) if metrics else _fmt(r[n], r["metric"])
            cells.append(f"**{s}**" if ranked and n in str(r["best"]).split(",") else s)
        tail = f" {r['direction']}" + (f" ({r['note']})" if r.get("note") else "") + " |" if ranked else ""
        lines.append(f"| {r['category']} | {r['metric']} | " + " | ".join(cells) + " |" + tail)
    return "\n".join(lines) + "\n"


def report_markdown(metrics: dict[str, dict]) -> str:
    """Every block (ranked within one test set), then the unranked view across test sets."""
    parts = []
    for label, block in test_sets(metrics).items():
        parts += [f"## {label}: {', '.join(block)}\n", to_markdown(compare(block), list(block), block),
                  training_variance_note(block, metrics) + "\n"]
    if len(test_sets(metrics)) > 1:
        parts += ["## Across test sets (side by side, not ranked: measured on different test sets)\n",
                  to_markdown(side_by_side(metrics), list(metrics))]
    return "\n".join(parts)


def write(metrics: dict[str, dict], out_dir: str | Path) -> dict[str, Path]:
    """comparison.md (every block and the side-by-side view) and comparison.csv (one row per model and
    metric, with its block)."""
    out_dir = Path(out_dir)
    md, csv = out_dir / "comparison.md", out_dir / "comparison.csv"
    atomic_write_text(md, "# Model comparison\n\n" + report_markdown(metrics))
    long = []
    for label, block in test_sets(metrics).items():
        df = compare(block)
        for _, r in df.iterrows():
            for n in block:
                long.append({"test_set": label, "category": r["category"], "metric": r["metric"], "model": n,
                             "value": r[n], "called_best": n in str(r["best"]).split(","), "note": r["note"]})
    atomic_write_text(csv, pd.DataFrame(long).to_csv(index=False))
    return {"md": md, "csv": csv}


def headline(metrics: dict[str, dict]) -> dict:
    """The study index's figures: per test set with two or more models, who is called best on Recall@1."""
    return {f"best R@1 ({label})": compare(block).set_index("metric").loc["Recall@1", "best"] or "tie"
            for label, block in test_sets(metrics).items() if len(block) > 1}


def published_figures(benchmark: str) -> list[dict]:
    """The published figures of one benchmark (petlib/published.yaml: values with their sources)."""
    from importlib.resources import files

    import yaml

    return yaml.safe_load(files("petlib").joinpath("published.yaml").read_text()).get(benchmark, []) if benchmark else []


def published_table(benchmark: str, metrics: dict[str, dict]) -> pd.DataFrame:
    """Published figures for the study's data set, with each of our models' value measured the same way
    beside them (on the same species). Published values were not re-run here."""
    rows = []
    for r in published_figures(benchmark):
        ours = {n: m for n, m in metrics.items() if m["species"] == r["species"]}
        if not ours:
            continue
        row = {"species": r["species"], "metric": r["metric"], "published model": r["model"],
               "published": r["value"] if r["checked"] else None, "source": r["source"], "note": r.get("note", "")}
        row.update({f"ours: {n}": _get(m, tuple(r["ours"].split("."))) for n, m in ours.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def published_markdown(benchmark: str, metrics: dict[str, dict]) -> str:
    if not benchmark:
        return ("No published figures: `data.benchmark` is empty (synthetic or own data). Set it to `design`, "
                "`dogfacenet` or `petface` when the data is that data set.")
    df = published_table(benchmark, metrics)
    if df.empty:
        return f"No published `{benchmark}` figures for the species of this study."
    fmt = lambda v: ("—" if v is None or (isinstance(v, float) and math.isnan(v))
                     else f"{v:.3f}" if isinstance(v, float) else str(v))
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("not checked" if c == "published" and r[c] is None else fmt(r[c]) for c in cols) + " |"
              for _, r in df.iterrows()]
    return (f"**Published figures ({benchmark}): published, not re-run here.** Each comes from the source in "
            f"its row; ours beside it is measured the same way, on our test split of the same data set.\n\n"
            + "\n".join(lines))


DEPLOYMENT_COLUMNS = [  # (column, path in metrics.json)
    ("threshold (accuracy)", ("deployment", "recommended_threshold")),
    ("threshold FAR 1e-3", ("deployment", "thresholds", "1e-3", "threshold")),
    ("test FAR at it", ("deployment", "thresholds", "1e-3", "far")),
    ("test TAR at it", ("deployment", "thresholds", "1e-3", "tar")),
]


def deployment_table(metrics: dict[str, dict]) -> pd.DataFrame:
    """The deployment answers of each evaluation side by side (not ranked: each row is its own test set's
    and its own model's threshold): thresholds by FAR, false matches by kind of impostor, rank-1 with one
    enrolled photo, and FNIR at the recommended threshold in the largest gallery."""
    rows = []
    for name, m in metrics.items():
        d = m.get("deployment") or {}
        row = {"model": name, "species": m["species"], **{c: _get(m, p) for c, p in DEPLOYMENT_COLUMNS}}
        for r in d.get("impostors", []):
            row[f"false matches: {r['impostors']}"] = r["false_match_rate@recommended"]
        one = [r for r in d.get("enrolment", []) if r["k"] == 1 and r["match"] == "max"]
        row["open-set rank-1, 1 photo"] = one[0]["rank1"] if one else None
        growth = d.get("gallery_growth") or []
        row["FNIR, largest gallery"] = growth[-1]["fnir@recommended"] if growth else None
        rows.append(row)
    return pd.DataFrame(rows)

"""The comparison as people read it (04_compare, `petface compare`): the ranked tables in markdown,
comparison.md and comparison.csv, the published figures beside ours, the deployment table, the claims
read from petlib/claims.yaml, and the metrics files read in. The statistics (paired tests, verdicts) are
`petlib.compare`'s pure functions, as `eval_report` is to evaluation."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .compare import ROWS, RULE, side_by_side, spread, takeaways, test_sets
from .io import atomic_write_text
from .schema import fmt, load_metrics, load_samples
from .schema import get as _get


def load_all(runs: dict[str, str | Path]) -> dict[str, dict]:
    """`{name: eval_dir}` -> `{name: metrics}`; a missing or foreign metrics.json is one clear error."""
    return {name: load_metrics(d) for name, d in runs.items()}

def load_all_samples(runs: dict[str, str | Path]) -> dict[str, list[dict] | None]:
    """`{name: eval_dir}` -> each evaluation's resample data (None for one evaluated before it existed)."""
    return {name: load_samples(d) for name, d in runs.items()}

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

def _cell(m: dict | None, v, path: tuple, ci_key: str | None, seed_mean: bool = False) -> str:
    """A model's figure: a single training's value with its 95% interval, or (`seed_mean`, a ranked
    table's resampled rows) the mean over its seeds with their sd: the interval of one seed is not the mean's."""
    if m is None:
        return fmt(v)
    n = len(m.get("repeats") or [])
    if seed_mean and n > 1 and v is not None:
        sd = spread(m, path)
        return f"{fmt(v)} (mean of {n} seeds" + (f", sd {sd:.3g})" if sd is not None else ")")
    return fmt(v, (m.get("ci95") or {}).get(ci_key or ""))

def to_markdown(df: pd.DataFrame, names: list[str], metrics: dict[str, dict] | None = None) -> str:
    """The table with the called best in bold; with `metrics`, each cell also shows its 95% bootstrap
    interval [low, high] and its standard deviation across training repeats; a ranked table adds the
    difference (leader minus runner-up, Holm-adjusted interval) and why a row is not called."""
    paths = {label: (path, ci) for _, label, path, _, ci in ROWS}
    ranked = "best" in df.columns
    lines = ["| Category | Metric | " + " | ".join(names) + (" | leader − runner-up [Holm-adjusted 95%] | better |"
                                                            if ranked else " |"),
             "|---|---|" + "---|" * len(names) + ("---|---|" if ranked else "")]
    for _, r in df.iterrows():
        path, ci = paths[r["metric"]]
        cells = []
        for n in names:
            s = _cell((metrics or {}).get(n), r[n], path, ci, ranked and ci not in (None, "exact"))
            cells.append(f"**{s}**" if ranked and n in str(r["best"]).split(",") else s)
        tail = f" {r['difference']} | {r['direction']}" + (f" ({r['note']})" if r.get("note") else "") + " |" \
            if ranked else ""
        lines.append(f"| {r['category']} | {r['metric']} | " + " | ".join(cells) + " |" + tail)
    return "\n".join(lines) + "\n"

def report_markdown(metrics: dict[str, dict], tables: dict[str, pd.DataFrame]) -> str:
    """Every block (ranked within one test set, `tables` from `ranked_blocks`), its takeaways, then the
    unranked view across test sets."""
    parts = [RULE + "\n"]
    for label, block in test_sets(metrics).items():
        parts += [f"## {label}: {', '.join(block)}\n", to_markdown(tables[label], list(block), block),
                  training_variance_note(block, metrics) + "\n", takeaways_markdown(takeaways(tables[label], block, claims()))]
    if len(test_sets(metrics)) > 1:
        parts += ["## Across test sets (side by side, not ranked: measured on different test sets)\n",
                  to_markdown(side_by_side(metrics), list(metrics), metrics)]
    return "\n".join(parts)

def write(metrics: dict[str, dict], tables: dict[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """comparison.md (every block, its takeaways and the side-by-side view) and comparison.csv (one row per
    model and metric, with its block and the row's difference and verdict)."""
    out_dir = Path(out_dir)
    md, csv = out_dir / "comparison.md", out_dir / "comparison.csv"
    atomic_write_text(md, "# Model comparison\n\n" + report_markdown(metrics, tables))
    long = []
    for label, block in test_sets(metrics).items():
        for _, r in tables[label].iterrows():
            for n in block:
                long.append({"test_set": label, "category": r["category"], "metric": r["metric"], "model": n,
                             "value": r[n], "called_best": n in str(r["best"]).split(","),
                             "difference": r["difference"], "note": r["note"]})
    atomic_write_text(csv, pd.DataFrame(long).to_csv(index=False))
    return {"md": md, "csv": csv}

def headline(metrics: dict[str, dict], tables: dict[str, pd.DataFrame]) -> dict:
    """The study index's figures: per test set with two or more models, who is called best on Recall@1,
    and each takeaway's verdict."""
    out = {}
    for label, block in test_sets(metrics).items():
        if len(block) > 1:
            out[f"best R@1 ({label})"] = tables[label].set_index("metric").loc["Recall@1", "best"] or "not called"
            out.update({f"{t['claim']} ({label})": t["verdict"] for t in takeaways(tables[label], block, claims())})
    return out

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

CLAIMS = Path(__file__).with_name("claims.yaml")  # each claim and its rule, as data


def claims() -> dict:
    import yaml

    return yaml.safe_load(CLAIMS.read_text())

def takeaways_markdown(rows: list[dict]) -> str:
    lines = ["**What this test set concludes (design §9.3):**", ""]
    lines += [f"- **{r['claim']}: {r['verdict']}.** {r['evidence']}." for r in rows]
    return "\n".join(lines) + "\n"

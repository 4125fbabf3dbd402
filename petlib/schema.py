"""The `metrics.json` file one evaluation writes and every comparison reads (`petface-metrics/1`).
No torch here, so that `petface compare` of finished evaluations starts in a blink.

The figures' sections (retrieval, ranking, verification, open_set, clustering, triplets, overfitting,
robustness, efficiency) hold exactly the keys declared by `petlib.metrics` specs; `schema_markdown`
documents them (docs/metrics.md is generated from it). Every rate is a fraction in [0, 1]; null = not
measurable. Beside them:
  model, species, run_dir, checkpoint_sha256, tta, n_images, n_identities  -- what was evaluated
                (run_dir relative to the metrics.json folder; load_metrics makes it absolute)
  test_fingerprint: the test split's fingerprint (relative paths and sizes): only metrics with the same
                one were measured on the same test set and may be ranked against each other
  kernels:      the CPU kernel settings it was computed with (petlib.reproducible)
  repeats:      one entry per training repeat {repeat, seed, <section>: {key: value}} with the figures
                whose spec says `per_repeat` (repeat 0 = the run above)
  repeat_stats: "section.key" -> {mean, std (sample, null with one repeat), n} over the repeats
  ci95:         "section.key" -> [low, high] for every figure whose spec has an interval (identities
                resampled; images for robustness; clustering in metrics.resample.CLUSTER_DRAWS of the draws)
  cmc:          identification rate at ranks 1..20
  curves:       roc {fpr, tpr} thinned to <= 400 points, for overlays in 04_compare
  protocol:     null, or the data set's own protocol (petlib.protocols): petface {verification,
                reidentification}, dogfacenet {verification, one_shot}
  deployment:   thresholds by FAR on test, enrolment by k, impostors by kind, gallery growth
  timings_s:    seconds per step of the evaluation
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from .io import read_json
from .metrics import INTERVALS_DOC, specs

SCHEMA = "petface-metrics/2"  # 2: ci95 keyed "section.key" for every figure with an interval; resample.npz beside it

# (section, key) of the figures kept for every training repeat, in declaration order.
REPEAT_KEYS = [(s.section, s.key) for s in specs() if s.per_repeat]
SECTIONS = tuple(dict.fromkeys(s.section for s in specs()))


def load_metrics(eval_dir: str | Path) -> dict:
    """One evaluation's metrics; a missing, unreadable or foreign file is one clear error."""
    p = Path(eval_dir) / "metrics.json"
    m = read_json(p)
    if not isinstance(m, dict) or m.get("schema") != SCHEMA:
        raise ValueError(f"{p}: schema {m.get('schema') if isinstance(m, dict) else None!r}, expected {SCHEMA!r}")
    if m.get("run_dir"):  # written relative to the evaluation folder, so a moved study still finds its run
        m["run_dir"] = str((p.parent / m["run_dir"]).resolve())
    return m


# The arrays every sample of resample.npz has (`metrics.build_sample`; the rest depend on which checks ran).
SAMPLE_KEYS = ("uniq", "emb", "labels", "seed", "q_group", "q_hit1", "q_hit5", "q_hit10", "q_rr", "q_apr", "q_ndcg",
               "p_group", "p_group2", "p_same", "p_score", *(f"o{k}_{f}" for k in "mn" for f in ("group", "score", "correct")))


def save_samples(eval_dir: Path, samples: list[dict]) -> Path:
    """Each training repeat's resample data (`metrics.build_sample`) in `resample.npz` beside
    metrics.json, what 04_compare's paired comparisons read; plain arrays, no pickle."""
    from .io import atomic_path

    path = Path(eval_dir) / "resample.npz"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{f"r{r}/{k}": np.asarray(v) for r, s in enumerate(samples) for k, v in s.items()})
    return path


def load_samples(eval_dir: str | Path) -> list[dict] | None:
    """The resample data of an evaluation, one dict per training repeat; None where it has none (an
    evaluation written before it existed); a damaged file, or one an older petlib wrote, is one clear error."""
    path = Path(eval_dir) / "resample.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            out: dict[int, dict] = {}
            for key in z.files:
                r, name = key.split("/", 1)
                out.setdefault(int(r[1:]), {})[name] = z[key]
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: unreadable resample data ({e}); re-run 03_evaluate for this run") from None
    missing = sorted({k for s in out.values() for k in SAMPLE_KEYS if k not in s})
    if not out or missing:
        raise ValueError(f"{path}: resample data without {', '.join(missing) or 'any repeat'} (written by an older "
                         "petlib?); re-run 03_evaluate for this run")
    return [out[r] for r in sorted(out)]


def clean_nan(o):
    """NaN is not JSON: store null (the schema says NaN = not measurable)."""
    if isinstance(o, dict):
        return {k: clean_nan(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean_nan(v) for v in o]
    if isinstance(o, float) and math.isnan(o):
        return None
    return o


def get(m: dict, path: tuple):
    """The value at `path` in a metrics dict, None where any step is missing."""
    for k in path:
        if not isinstance(m, dict) or k not in m:
            return None
        m = m[k]
    return m


def section_keys(metrics: dict) -> set[str]:
    """Every "section.key" (dotted below the section) a metrics dict holds in the specs' sections."""
    def walk(d: dict, prefix: str):
        for k, v in d.items():
            yield from walk(v, f"{prefix}.{k}") if isinstance(v, dict) else [f"{prefix}.{k}"]

    return {k for sec in SECTIONS if isinstance(metrics.get(sec), dict) for k in walk(metrics[sec], sec)}


def fmt(value, ci=None) -> str:
    """A figure for a table: 4 significant digits (integers whole), its 95% interval in the same cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    whole = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer() \
        and abs(value) >= 1e4  # counts and bytes (a table column of mixed figures holds them as floats)
    text = f"{int(value):,}" if whole else f"{value:.4g}"
    if ci and None not in ci:
        text += f" [{ci[0]:.3g}, {ci[1]:.3g}]"
    return text


def section_rows(metrics: dict, section: str) -> list[dict]:
    """One section of a metrics dict as table rows: label, value with its interval, direction, how the
    interval is computed (03_evaluate's tables)."""
    better = {True: "higher", False: "lower", None: ""}
    ci = metrics.get("ci95") or {}
    return [{"figure": s.label, "value": fmt(get(metrics, s.path), ci.get(s.name)),
             "better": better[s.higher], "interval": INTERVALS_DOC[s.interval]} for s in specs(section)]


def schema_markdown() -> str:
    """The metrics reference (docs/metrics.md): one table row per declared figure."""
    lines = ["# metrics.json figures", "",
             f"Generated from the specs in `petlib/metrics/` by `petlib.schema.schema_markdown` (schema `{SCHEMA}`); "
             "`tests/test_schema.py` keeps this file current. Other blocks of the file: `petlib/schema.py`.", "",
             "| figure | label | better | interval | per repeat | in 04_compare | what |", "|---|---|---|---|---|---|---|"]
    better = {True: "higher", False: "lower", None: "—"}
    for s in specs():
        lines.append(f"| `{s.name}` | {s.label} | {better[s.higher]} | {INTERVALS_DOC[s.interval]} | "
                     f"{'yes' if s.per_repeat else ''} | {s.category} | {s.doc} |")
    return "\n".join(lines) + "\n"

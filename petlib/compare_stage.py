"""04_compare's stage: every test set's ranked table (paired tests with Holm's correction, and the
models' batch-1 latencies timed interleaved), computed once per set of inputs (`stages.compare_check`:
the metrics and resample files it reads, its params, its code) and kept in the compare folder, so that
re-rendering the report re-draws from the tables instead of re-running the tests and the timings."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import compare, compare_report, latency, stages
from .io import atomic_write_json, read_json
from .layout import Layout

TABLES = "tables.json"


def ranked_tables(params, force: bool = False, log=print) -> tuple[dict[str, dict], dict[str, pd.DataFrame]]:
    """(metrics by model, ranked table by test set) of the study's comparison; writes comparison.md/.csv
    and tables.json when it computes them."""
    lay = Layout(params)
    runs, out = lay.comparison_runs(), lay.compare_dir()
    metrics = compare_report.load_all(runs)
    check = stages.compare_check(params)
    if not force and (out / TABLES).is_file() and check.up_to_date():
        log(f"comparison up to date ({out / TABLES}); force=True compares again")
        return metrics, load_tables(out / TABLES)
    blocks = compare.test_sets(metrics)
    timings = {label: latency.block_timings(block) for label, block in blocks.items() if len(block) > 1}
    tables = compare.ranked_blocks(metrics, compare_report.load_all_samples(runs), params.eval.n_bootstrap, params.seed, timings)
    compare_report.write(metrics, tables, out)
    save_tables(out / TABLES, tables)
    check.write()
    return metrics, tables


def save_tables(path: Path, tables: dict[str, pd.DataFrame]) -> None:
    atomic_write_json(path, {label: {"rows": t.to_dict(orient="records"), "speed": t.attrs.get("speed", [])}
                             for label, t in tables.items()})


def load_tables(path: Path) -> dict[str, pd.DataFrame]:
    """The tables `save_tables` wrote, as the same DataFrames (rows and columns in order, and the speed
    claim's tests in `attrs`)."""
    out = {}
    for label, saved in read_json(path).items():
        out[label] = pd.DataFrame(saved["rows"])
        out[label].attrs["speed"] = saved["speed"]
    return out

"""`table`: a CSV or Parquet file in the wildlife-datasets convention (`image_id`, `identity`, `path`,
optional `split`, `bbox` [x, y, w, h], `species`, `date`). The study keeps a folder of its own for it
(`outputs/<study>/table/<species>/`): links to the listed files, crops where a row has a box. A listed
file that does not exist is a skipped row with its reason."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ...constants import SPLITS
from ...io import atomic_path, atomic_write_json
from ..decode import DataError, ImageDecodeError, load_image
from ..types import Listing
from .base import Source


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "_"


def read_table(path: Path):
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: table not found")
    try:
        df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path, dtype=str,
                                                                                                    keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: not a readable CSV or Parquet table ({str(e).splitlines()[0]})") from None
    for c in ("image_id", "identity", "path"):
        if c not in df.columns:
            raise DataError(f"{path}: missing column {c!r} (columns: {list(df.columns)})")
    return df


def _bbox(path: Path, line: int, value) -> tuple[int, int, int, int] | None:
    if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and np.isnan(value)):
        return None
    try:
        box = json.loads(value) if isinstance(value, str) else list(value)
        x, y, w, h = (float(v) for v in box)
    except (ValueError, TypeError):
        raise DataError(f"{path}:{line}: column 'bbox' must be [x, y, w, h], got {value!r}") from None
    if w <= 0 or h <= 0:
        raise DataError(f"{path}:{line}: column 'bbox' has a non-positive width or height: {value!r}")
    return round(x), round(y), round(w), round(h)


def listing(path: Path, image_root: Path, species: str, out: Path) -> Listing:
    """Rows of `species` (all rows when the table has no `species` column) as links or crops in `out`."""
    df = read_table(path)
    line = np.arange(len(df)) + 2
    if "species" in df.columns:
        keep = (df["species"].astype(str) == species).to_numpy()
        if not keep.any():
            raise DataError(f"{path}: no row has species {species!r} (column 'species' has "
                            f"{sorted(df['species'].astype(str).unique())[:10]})")
        df, line = df[keep], line[keep]
    candidates, skipped, split_of, seen = [], [], {}, {}
    crops: list[tuple[Path, Path, tuple]] = []
    for ln, (_, r) in zip(line.tolist(), df.iterrows()):
        ident, src = str(r["identity"]), image_root / str(r["path"])
        dest_dir = out / _safe(ident)
        stem = _safe(r["image_id"])
        if (ident, stem) in seen:
            raise DataError(f"{path}:{ln}: column 'image_id' {r['image_id']!r} repeats line {seen[(ident, stem)]}")
        seen[(ident, stem)] = ln
        split = str(r["split"]).strip() if "split" in df.columns else None
        if split is not None and split not in SPLITS:
            raise DataError(f"{path}:{ln}: column 'split' must be one of {list(SPLITS)}, got {split!r}")
        box = _bbox(path, ln, r["bbox"]) if "bbox" in df.columns else None
        if not src.is_file():
            skipped.append((str(src), f"{path.name}:{ln} names a file that does not exist"))
            continue
        dest = dest_dir / (stem + (".png" if box else src.suffix.lower()))
        if box:
            crops.append((src, dest, box))
        else:
            _link(src, dest)
        candidates.append((ident, dest))
        if split is not None:
            split_of[dest] = split
    skipped += _crop_all(crops, out)
    bad = {Path(s) for s, _ in skipped}
    candidates = [(i, f) for i, f in candidates if f not in bad]
    return Listing(out, candidates, split_of if "split" in df.columns else None, skipped)


def table_attribute(path: Path, species: str, column: str) -> dict[str, str]:
    """Each identity's value of `column` (a breed or colour: what look-alike pets share), under its table
    name and its folder name; the most frequent non-empty value where an identity's rows disagree."""
    df = read_table(path)
    if column not in df.columns:
        raise DataError(f"{path}: data.lookalike_column names {column!r}, which the table lacks "
                        f"(columns: {list(df.columns)})")
    if "species" in df.columns:
        df = df[df["species"].astype(str) == species]
    values = df[column].astype(str).str.strip()
    df = df.assign(_v=values)[(values != "") & (values.str.lower() != "nan")]
    out = {}
    for ident, v in df.groupby(df["identity"].astype(str))["_v"]:
        counts = v.value_counts()
        out[ident] = out[_safe(ident)] = sorted(counts[counts == counts.max()].index)[0]
    return out


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() and os.readlink(dest) == str(src.resolve()):
        return
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(src.resolve())
    os.replace(tmp, dest)


def _crop_all(crops: list[tuple[Path, Path, tuple]], out: Path) -> list[tuple[str, str]]:
    """Write each box's crop (before any resizing) as PNG, once: a record keyed by the source's size and
    modification time and the box skips unchanged ones. Returns the rows skipped, with reasons."""
    record_path = out / ".crops.json"
    try:
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    except (OSError, ValueError):
        record = {}
    skipped, fresh = [], {}
    for src, dest, box in crops:
        st = src.stat()
        key = [str(src.resolve()), st.st_size, st.st_mtime_ns, list(box)]
        rel = dest.relative_to(out).as_posix()
        fresh[rel] = key
        if record.get(rel) == key and dest.is_file():
            continue
        why = _write_crop(src, dest, box)
        if why:
            skipped.append((str(dest), why))
            fresh.pop(rel)
    atomic_write_json(record_path, fresh)
    return skipped


def _write_crop(src: Path, dest: Path, box: tuple) -> str | None:
    from PIL import Image

    try:
        img = load_image(src)
    except ImageDecodeError as e:
        return str(e)
    x, y, w, h = box
    x0, y0, x1, y1 = max(0, x), max(0, y), min(img.shape[1], x + w), min(img.shape[0], y + h)
    if x1 <= x0 or y1 <= y0:
        return f"{src}: bbox {list(box)} lies outside the {img.shape[1]}x{img.shape[0]} image"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        Image.fromarray(img[y0:y1, x0:x1]).save(tmp, "PNG")
    return None


def _list(p, species: str, root: Path, progress: bool) -> Listing:
    table = Path(p.data.tables[species])
    return listing(table, Path(p.data.roots.get(species) or table.parent), species, root)


def _families(p, species: str, identities: list[str]):
    """The identities sharing a value of `data.lookalike_column` (None when it is not set)."""
    column = p.data.lookalike_column
    if not column:
        return None
    attr = table_attribute(Path(p.data.tables[species]), species, column)
    values = sorted(set(attr.values()))
    code = {v: i for i, v in enumerate(values)}
    return column, np.array([code[attr[n]] if n in attr else len(values) + i for i, n in enumerate(identities)])


SOURCE = Source("table", "a table (wildlife-datasets convention)", listing=_list,
                root=lambda p, species, study: study / "table" / species, needs="tables", columns=True,
                families=_families)

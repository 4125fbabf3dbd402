"""Where a species' images come from, and which split each belongs to.

- `synth`: the embedded procedural faces (generated on first use).
- `folders`: one folder per identity (design §3.1; also DogFaceNet's `after_4_bis/<dog_id>/`).
- `petface`: PetFace's release: `images/<family>/<id>/<nn>.png` and `split/<family>/` with `train.csv`,
  `val.txt`, `test.txt`, `verification.csv`, `reidentification.csv`, read as PetFace's own code reads
  them (`src/dataset.py`): paths relative to `images/`, train labels are integers.
- `table`: a CSV or Parquet file in the wildlife-datasets convention (`image_id`, `identity`, `path`,
  optional `split`, `bbox` [x, y, w, h], `species`, `date`). The study keeps a folder of its own for it
  (`outputs/<study>/table/<species>/`): links to the listed files, crops where a row has a box.

Every source ends in the same list of (identity, file) candidates that the scan verifies, so skipping
bad files works the same everywhere. A listed file that does not exist is a skipped row with its reason;
a missing column, a label that is not an integer or a pair naming an unknown file is one error naming
the file, the line and the column.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .decode import DataError, ImageDecodeError, load_image

PETFACE_FILES = ("train.csv", "val.txt", "test.txt", "verification.csv", "reidentification.csv")
TABLE_SPLITS = ("train", "val", "test")


@dataclass
class Listing:
    """What a source lists for one species, before the scan. Paths in `protocol` are relative to `root`."""
    root: Path
    candidates: list[tuple[str, Path]]
    split_of: dict[Path, str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    protocol: dict | None = None


# --------------------------------------------------------------------------- reading split files
def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line number, row) of a CSV file that must have `columns`."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column {missing[0]!r} (columns: {reader.fieldnames})")
        return [(i, r) for i, r in enumerate(reader, start=2)]


def _int(path: Path, line: int, column: str, value) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise DataError(f"{path}:{line}: column {column!r} must be an integer, got {value!r}") from None


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-empty lines of a list file (one name per line)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return [(i, t.strip()) for i, t in enumerate(path.read_text().splitlines(), start=1) if t.strip()]


# --------------------------------------------------------------------------- PetFace
def _petface_identity(rel: str) -> str:
    """`cat/000123/00.png` -> `cat/000123`: PetFace keeps one folder per animal."""
    return Path(rel).parent.as_posix()


def petface(root: Path, family: str) -> Listing:
    """PetFace's train/val/test lists as the split, `reidentification.csv` as an extra `reid` split (seen
    animals, unseen photos), and `verification.csv` as the protocol's pairs."""
    images, split_dir = root / "images", root / "split" / family
    for name in PETFACE_FILES:
        if not (split_dir / name).is_file():
            raise DataError(f"{split_dir / name}: file not found (a PetFace root holds images/ and split/{family}/)")
    split_of: dict[Path, str] = {}
    candidates, skipped = [], []
    label_ident: dict[int, str] = {}

    def add(rel: str, split: str, where: str) -> None:
        f = images / rel
        if not f.is_file():
            skipped.append((str(f), f"listed in {where} but not found"))
        elif f not in split_of:
            split_of[f] = split
            candidates.append((_petface_identity(rel), f))

    train_csv = split_dir / "train.csv"
    for line, r in _rows(train_csv, ("filename", "label")):
        lab, ident = _int(train_csv, line, "label", r["label"]), _petface_identity(r["filename"])
        if label_ident.setdefault(lab, ident) != ident:
            raise DataError(f"{train_csv}:{line}: column 'label' {lab} is already the label of {label_ident[lab]}, "
                            f"not of {ident}")
        add(r["filename"], "train", f"{train_csv}:{line}")
    for split in ("val", "test"):
        path = split_dir / f"{split}.txt"
        for line, rel in _lines(path):
            add(rel, split, f"{path}:{line}")
    reid_csv = split_dir / "reidentification.csv"
    for line, r in _rows(reid_csv, ("filename", "label")):
        lab = _int(reid_csv, line, "label", r["label"])
        if lab not in label_ident:
            raise DataError(f"{reid_csv}:{line}: column 'label' {lab} is not a label of {train_csv.name}")
        if _petface_identity(r["filename"]) != label_ident[lab]:
            raise DataError(f"{reid_csv}:{line}: {r['filename']} is not in the folder of label {lab} ({label_ident[lab]})")
        add(r["filename"], "reid", f"{reid_csv}:{line}")
    pairs = _petface_pairs(split_dir / "verification.csv", images, set(split_of) | {Path(s) for s, _ in skipped})
    return Listing(images, candidates, split_of, skipped, {"name": "petface", "family": family, "pairs": pairs,
                                                           "pairs_file": str(split_dir / "verification.csv")})


def _petface_pairs(path: Path, images: Path, known: set[Path]) -> list[list]:
    pairs = []
    for line, r in _rows(path, ("filename1", "filename2", "label")):
        for col in ("filename1", "filename2"):
            if images / r[col] not in known:
                raise DataError(f"{path}:{line}: column {col!r} names {r[col]}, which no split file lists")
        lab = _int(path, line, "label", r["label"])
        if lab not in (0, 1):
            raise DataError(f"{path}:{line}: column 'label' must be 0 or 1, got {lab}")
        pairs.append([r["filename1"], r["filename2"], lab])
    return pairs


# --------------------------------------------------------------------------- identity lists
def identity_splits(lists: dict[str, str], identities: list[str], val_frac: float, seed: int) -> tuple[dict, list]:
    """Split -> identity names from `{train: FILE, test: FILE}` (one name per line, as DogFaceNet ships them);
    val is carved from train with the study's seed. Identities in neither list are skipped."""
    from .splits import split_identities

    named: dict[str, str] = {}
    for split in ("train", "test"):
        path = Path(lists[split])
        for line, name in _lines(path):
            if named.setdefault(name, split) != split:
                raise DataError(f"{path}:{line}: identity {name!r} is also in the {named[name]} list")
    have = set(identities)
    train = sorted(n for n, s in named.items() if s == "train" and n in have)
    if not train:
        raise DataError(f"{lists['train']}: none of its identities has usable images")
    names = split_identities(train, (1 - val_frac, val_frac, 0.0), seed=seed) if val_frac > 0 else {
        "train": train, "val": []}
    names["test"] = sorted(n for n, s in named.items() if s == "test" and n in have)
    skipped = [(n, "identity is in neither identity list") for n in identities if n not in named]
    skipped += [(n, f"identity in the {s} list has no usable images") for n, s in named.items() if n not in have]
    return names, skipped


# --------------------------------------------------------------------------- tables
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "_"


def _read_table(path: Path):
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


def table(path: Path, image_root: Path, species: str, out: Path) -> Listing:
    """Rows of `species` (all rows when the table has no `species` column) as links or crops in `out`."""
    df = _read_table(path)
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
        if split is not None and split not in TABLE_SPLITS:
            raise DataError(f"{path}:{ln}: column 'split' must be one of {list(TABLE_SPLITS)}, got {split!r}")
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
    df = _read_table(path)
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
    from ..io import atomic_write_json

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

    from ..io import atomic_path

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

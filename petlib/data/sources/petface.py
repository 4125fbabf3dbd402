"""`petface`: PetFace's release, `images/<family>/<id>/<nn>.png` and `split/<family>/` with `train.csv`,
`val.txt`, `test.txt`, `verification.csv`, `reidentification.csv`, read as PetFace's own code reads them
(`src/dataset.py`): paths relative to `images/`, train labels are integers. Its split is fixed; its
verification pairs and re-identification photos are the protocol of 03_evaluate."""
from __future__ import annotations

from pathlib import Path

from ...constants import PETFACE_FAMILIES
from ..decode import DataError
from ..types import Listing
from . import files
from .base import Source

PETFACE_FILES = ("train.csv", "val.txt", "test.txt", "verification.csv", "reidentification.csv")


def _petface_identity(rel: str) -> str:
    """`cat/000123/00.png` -> `cat/000123`: PetFace keeps one folder per animal."""
    return Path(rel).parent.as_posix()


def listing(root: Path, family: str) -> Listing:
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
    for line, r in files.rows(train_csv, ("filename", "label")):
        lab, ident = files.int_cell(train_csv, line, "label", r["label"]), _petface_identity(r["filename"])
        if label_ident.setdefault(lab, ident) != ident:
            raise DataError(f"{train_csv}:{line}: column 'label' {lab} is already the label of {label_ident[lab]}, "
                            f"not of {ident}")
        add(r["filename"], "train", f"{train_csv}:{line}")
    for split in ("val", "test"):
        path = split_dir / f"{split}.txt"
        for line, rel in files.lines(path):
            add(rel, split, f"{path}:{line}")
    reid_csv = split_dir / "reidentification.csv"
    for line, r in files.rows(reid_csv, ("filename", "label")):
        lab = files.int_cell(reid_csv, line, "label", r["label"])
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
    for line, r in files.rows(path, ("filename1", "filename2", "label")):
        for col in ("filename1", "filename2"):
            if images / r[col] not in known:
                raise DataError(f"{path}:{line}: column {col!r} names {r[col]}, which no split file lists")
        lab = files.int_cell(path, line, "label", r["label"])
        if lab not in (0, 1):
            raise DataError(f"{path}:{line}: column 'label' must be 0 or 1, got {lab}")
        pairs.append([r["filename1"], r["filename2"], lab])
    return pairs


SOURCE = Source(
    "petface", "PetFace (official split files)",
    listing=lambda p, species, root, progress: listing(Path(p.data.roots[species]), species),
    root=lambda p, species, study: Path(p.data.roots[species]) / "images",
    needs="roots", species=PETFACE_FAMILIES, fixed_split=True, benchmark="petface")

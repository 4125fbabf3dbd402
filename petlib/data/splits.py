"""Identity splits and the split manifest (path, identity, split) that pins them for every later step."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..constants import SPLITS
from ..io import atomic_path
from .decode import DataError
from .sources import files
from .types import IdentityIndex

PROTOCOL_SPLITS = ("reid",)  # PetFace's re-identification photos: seen animals, never trained on


def split_identities(identities: Sequence[str], ratios: Sequence[float] = (0.8, 0.1, 0.1),
                     seed: int = 42) -> dict[str, list[str]]:
    """Split identity names into train/val/test. Names are sorted first, so the result does not depend
    on file-system order; each split keeps at least one identity when its ratio is positive."""
    names = sorted(set(identities))
    if len(names) != len(identities):
        raise DataError("split_identities: identity names are not unique")
    if len(ratios) != 3 or abs(sum(ratios) - 1) > 1e-6:
        raise DataError(f"split_identities: ratios must be three numbers summing to 1, got {list(ratios)}")
    order = np.random.default_rng(seed).permutation(len(names))
    n = len(names)
    n_val = int(round(ratios[1] * n))
    n_test = int(round(ratios[2] * n))
    if ratios[1] > 0:
        n_val = max(n_val, 1)
    if ratios[2] > 0:
        n_test = max(n_test, 1)
    n_train = n - n_val - n_test
    if n_train < (1 if ratios[0] > 0 else 0):
        raise DataError(f"split_identities: {n} identities are too few for ratios {list(ratios)}")
    shuffled = [names[i] for i in order]
    return {"train": sorted(shuffled[:n_train]), "val": sorted(shuffled[n_train:n_train + n_val]),
            "test": sorted(shuffled[n_train + n_val:])}


def by_identity(index: IdentityIndex, names: dict[str, list[str]]) -> dict[Path, str]:
    """Each file's split from identity lists (`split_identities`' result): what `write_manifest` takes."""
    where = {n: s for s, ns in names.items() for n in ns}
    idents = [index.identities[int(l)] for l in index.labels]
    return {p: where[i] for p, i in zip(index.paths, idents) if i in where}


def write_manifest(path: str | Path, index: IdentityIndex, split_of: dict[Path, str]) -> None:
    """CSV of (path relative to the data root, identity, split) for every file in `split_of`: pin a later
    run to it via `data.manifest`."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "identity", "split"])
        for p, lab in zip(index.paths, index.labels):
            if p in split_of:
                w.writerow([p.relative_to(index.root).as_posix(), index.identities[int(lab)], split_of[p]])


def read_manifest(path: str | Path, root: str | Path) -> dict[str, IdentityIndex]:
    """Per-split indices from a manifest; every listed file must still exist."""
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise DataError(f"{path}: split manifest not found")
    rows: dict[str, list[tuple[Path, str]]] = {s: [] for s in SPLITS + PROTOCOL_SPLITS}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["path", "identity", "split"]:
            raise DataError(f"{path}: manifest header must be path,identity,split; got {reader.fieldnames}")
        for i, r in enumerate(reader, start=2):
            if r["split"] not in rows:
                raise DataError(f"{path}:{i}: unknown split {r['split']!r}")
            p = root / r["path"]
            if not p.is_file():
                raise DataError(f"{path}:{i}: listed image {p} does not exist")
            rows[r["split"]].append((p, r["identity"]))
    out = {}
    for s, items in rows.items():
        if s in PROTOCOL_SPLITS and not items:
            continue
        names = sorted({ident for _, ident in items})
        lab = {n: i for i, n in enumerate(names)}
        out[s] = IdentityIndex(root, [p for p, _ in items], np.array([lab[i] for _, i in items], dtype=np.int64), names)
    return out


def sample_identities(index: IdentityIndex, n_identities: int = 6, per_identity: int = 5,
                      seed: int = 0) -> list[list[Path]]:
    """Paths of a few images of a few identities (deterministic), for sample grids."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(index.identities), min(n_identities, len(index.identities)), replace=False)
    return [[index.paths[i] for i in np.flatnonzero(index.labels == lab)[:per_identity]] for lab in sorted(picks)]


def identity_splits(lists: dict[str, str], identities: list[str], val_frac: float, seed: int) -> tuple[dict, list]:
    """Split -> identity names from `{train: FILE, test: FILE}` (one name per line, as DogFaceNet ships them);
    val is carved from train with the study's seed. Identities in neither list are skipped."""
    named: dict[str, str] = {}
    for split in ("train", "test"):
        path = Path(lists[split])
        for line, name in files.lines(path):
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

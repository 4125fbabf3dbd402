"""One species, ready to use: list its source, verify (scan), split, write the split manifest and the
protocol file that later notebooks read."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_write_json
from . import sources
from .decode import DataError
from .scan import IdentityIndex, index_candidates, list_identity_folders
from .splits import SPLITS, by_identity, read_manifest, split_identities, write_manifest


@dataclass
class PreparedData:
    """A species' data after generation/scan and split: what `01_data` reports and training reads."""
    species: str
    root: Path
    index: IdentityIndex
    splits: dict[str, IdentityIndex]
    manifest: Path
    fingerprint: str
    protocol: dict | None = None


def list_source(params, species: str, progress: bool = True) -> sources.Listing:
    """The candidates of `data.source` for one species (the synthetic set is generated first)."""
    d, root = params.data, params.data_root(species)
    if d.source == "petface":
        return sources.petface(Path(d.roots[species]), species)
    if d.source == "table":
        table = Path(d.tables[species])
        return sources.table(table, Path(d.roots.get(species) or table.parent), species, root)
    if d.source == "synth":
        from .. import synth

        s = d.synth
        synth.generate(root, species, n_identities=s.n_identities, image_size=s.image_size, seed=s.seed,
                       family=s.lookalike_family, progress=progress)
    return list_identity_folders(root)


def lookalike_families(params, species: str, identities: list[str]) -> tuple[str, np.ndarray] | None:
    """(what the look-alikes share, a family code per identity) where the data records one: the synthetic
    set (identities i // synth.lookalike_family share fur colour and pattern), or a table's
    `data.lookalike_column`. Identities without a value get a family of their own. None otherwise."""
    d = params.data
    if d.source == "synth":
        return "look-alike family", np.array([int(re.sub(r"\D", "", n)) // max(d.synth.lookalike_family, 1)
                                              for n in identities])
    if d.source == "table" and d.lookalike_column:
        attr = sources.table_attribute(Path(d.tables[species]), species, d.lookalike_column)
        values = sorted(set(attr.values()))
        code = {v: i for i, v in enumerate(values)}
        return d.lookalike_column, np.array([code[attr[n]] if n in attr else len(values) + i
                                             for i, n in enumerate(identities)])
    return None


def _assign(params, index: IdentityIndex, listing: sources.Listing) -> dict[Path, str]:
    """The split of every usable file: pinned by the source, by identity lists, or drawn with the seed."""
    if listing.split_of is not None:
        return {p: listing.split_of[p] for p in index.paths}
    d = params.data
    if not d.identity_lists:
        return by_identity(index, split_identities(index.identities, d.split_ratios, seed=params.seed))
    val_frac = d.split_ratios[1] / (d.split_ratios[0] + d.split_ratios[1])
    names, skipped = sources.identity_splits(d.identity_lists, index.identities, val_frac, params.seed)
    index.skipped += skipped
    return by_identity(index, names)


def _protocol(params, species: str, listing: sources.Listing, index: IdentityIndex) -> dict | None:
    """The data set's own protocol, written to `outputs/<study>/protocol/<species>.json` (pairs whose
    files were skipped are dropped and counted)."""
    path = params.out("protocol", f"{species}.json")
    proto = listing.protocol
    if proto is None and params.data.benchmark == "dogfacenet":
        proto = {"name": "dogfacenet"}
    if proto is None:
        path.unlink(missing_ok=True)
        return None
    if "pairs" in proto:
        usable = {p.relative_to(index.root).as_posix() for p in index.paths}
        kept = [p for p in proto["pairs"] if p[0] in usable and p[1] in usable]
        proto = {**proto, "pairs": kept, "pairs_dropped": len(proto["pairs"]) - len(kept)}
    atomic_write_json(path, proto)
    return proto


def prepare_species(params, species: str, progress: bool = True) -> PreparedData:
    """List, scan, split and write (or read) the split manifest and the protocol for one species.

    A manifest named in `data.manifest` pins the split: it is read, never rewritten.
    """
    listing = list_source(params, species, progress)
    index = index_candidates(listing.root, listing.candidates, listing.skipped, min_images=params.data.min_images,
                             max_pixels=params.data.max_pixels, progress=progress,
                             cache=params.out("scan", f"{species}.json"))
    manifest = params.split_manifest(species)
    if species not in params.data.manifest:
        write_manifest(manifest, index, _assign(params, index, listing))
    splits = read_manifest(manifest, listing.root)
    protocol = _protocol(params, species, listing, index)
    return PreparedData(species, listing.root, index, splits, manifest, index.fingerprint(), protocol)


def load_splits(params, species: str) -> dict[str, IdentityIndex]:
    """All splits from the study's manifest (written by `01_data`), read once, without re-scanning the tree."""
    manifest = params.split_manifest(species)
    if not manifest.is_file():
        raise DataError(f"{manifest}: split manifest not found; run the 01_data notebook "
                        f"(petface study PARAMS --only 01_data) first")
    return read_manifest(manifest, params.data_root(species))


def load_split(params, species: str, split: str) -> IdentityIndex:
    return load_splits(params, species)[split]


def load_protocol(params, species: str) -> dict | None:
    """The protocol `01_data` wrote for this species, or None when the data set has none."""
    import json

    path = params.out("protocol", f"{species}.json")
    return json.loads(path.read_text()) if path.is_file() else None


def split_table(prepared: dict[str, PreparedData]) -> list[dict]:
    """Identities and images per split and species (and the protocol's own `reid` split where there is one)."""
    rows = []
    for sp, d in prepared.items():
        for s in [*SPLITS, *(k for k in d.splits if k not in SPLITS)]:
            idx = d.splits[s]
            rows.append({"species": sp, "split": s, "identities": len(idx.identities), "images": len(idx.paths)})
    return rows

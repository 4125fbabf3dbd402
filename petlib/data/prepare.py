"""One species, ready to use: list its source, verify (scan), split, write the split manifest and the
protocol file that later notebooks read."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import SPLITS
from ..io import atomic_write_json
from ..layout import Layout
from . import audit
from .scan import index_candidates
from .sources import SOURCES
from .read import data_root
from .splits import by_identity, identity_splits, read_manifest, split_identities, write_manifest
from .types import IdentityIndex, Listing


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
    audit: dict | None = None  # the data audit (audit.report), also in outputs/<study>/audit/<species>.json


def list_source(params, species: str, progress: bool = True) -> Listing:
    """The candidates of `data.source` for one species (the synthetic set is generated first)."""
    return SOURCES[params.data.source].listing(params, species, data_root(params, species), progress)


def _assign(params, index: IdentityIndex, listing: Listing, together: dict[str, str]) -> dict[Path, str]:
    """The split of every usable file: pinned by the source, by identity lists, or drawn with the seed
    (identities `together` maps to one group, the audit's linked ones, draw one split between them)."""
    if listing.split_of is not None:
        return {p: listing.split_of[p] for p in index.paths}
    d = params.data
    val_frac = d.split_ratios[1] / (d.split_ratios[0] + d.split_ratios[1])
    if not d.identity_lists:
        held = listing.test_identities
        ratios = (1 - val_frac, val_frac, 0.0) if held else d.split_ratios  # held out: the test split alone
        heads = sorted({together[n] for n in index.identities if n not in held})
        drawn = split_identities(heads, ratios, seed=params.seed)
        where = {h: s for s, hs in drawn.items() for h in hs}
        names = {s: sorted(n for n in index.identities if n not in held and where[together[n]] == s) for s in drawn}
        if held:
            names["test"] = sorted(n for n in index.identities if n in held)
        return by_identity(index, names)
    names, skipped = identity_splits(d.identity_lists, index.identities, val_frac, params.seed)
    index.skipped += skipped
    return by_identity(index, names)


def _protocol(params, species: str, listing: Listing, index: IdentityIndex) -> dict | None:
    """The data set's own protocol, written to `outputs/<study>/protocol/<species>.json` (pairs whose
    files were skipped are dropped and counted)."""
    path = Layout(params).protocol_file(species)
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
                             cache=Layout(params).scan_cache(species))
    policy = params.data.duplicates
    fixed = listing.split_of is not None or bool(params.data.identity_lists) or species in params.data.manifest
    try:
        pairs, problem = audit.duplicate_pairs(index), None
    except Exception as e:  # the audit reports; it never stops a study
        pairs, problem = [], f"the audit could not finish: {type(e).__name__}: {e}"
    linked = audit.links(index, pairs)
    together = audit.components(index.identities, linked if policy == "group" and not fixed else {})
    usable = _without(index, audit.redundant_copies(index, pairs, policy), policy, params.data.min_images)
    manifest = Layout(params).split_manifest(species)
    if species not in params.data.manifest:
        write_manifest(manifest, usable, _assign(params, usable, listing, together))
    splits = read_manifest(manifest, listing.root)
    split_of = {p: s for s, idx in splits.items() if s in SPLITS for p in idx.paths}
    found = {**audit.report(index, pairs, split_of, policy, fixed), "error": problem}
    atomic_write_json(Layout(params).audit_file(species), found)
    protocol = _protocol(params, species, listing, usable)
    fingerprint = usable.fingerprint(cache=Layout(params).content_cache())
    return PreparedData(species, listing.root, usable, splits, manifest, fingerprint, protocol, found)


def _without(index: IdentityIndex, drop: set[int], policy: str, min_images: int) -> IdentityIndex:
    """The index less the files the duplicate policy leaves out, and less the identities left with fewer
    than `min_images` (each listed in `skipped` with why)."""
    if not drop:
        return index
    keep = [i for i in range(len(index.paths)) if i not in drop]
    skipped = index.skipped + [(str(index.paths[i]), f"a duplicate photo (data.duplicates: {policy})") for i in sorted(drop)]
    counts = np.bincount(index.labels[keep], minlength=len(index.identities))
    enough = [n for n, c in zip(index.identities, counts) if c >= min_images]
    skipped += [(str(index.root / n), f"identity has {c} photo(s) once duplicates are left out, below min_images="
                 f"{min_images}") for n, c in zip(index.identities, counts) if c < min_images]
    reduced = IdentityIndex(index.root, [index.paths[i] for i in keep], index.labels[keep], index.identities).subset(enough)
    reduced.skipped, reduced.hashes = skipped, index.hashes
    return reduced


def split_table(prepared: dict[str, PreparedData]) -> list[dict]:
    """Identities and images per split and species (and the protocol's own `reid` split where there is one)."""
    rows = []
    for sp, d in prepared.items():
        for s in [*SPLITS, *(k for k in d.splits if k not in SPLITS)]:
            idx = d.splits[s]
            rows.append({"species": sp, "split": s, "identities": len(idx.identities), "images": len(idx.paths)})
    return rows

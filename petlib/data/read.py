"""What the stages read of the data `01_data` prepared: the split manifest's splits, their content
fingerprint, the audit and the protocol, the data root and the look-alike families. Apart from
`prepare` (which writes them) because this code runs inside every stage and is part of its code."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..layout import Layout
from . import content
from .decode import DataError
from .sources import SOURCES
from .splits import read_manifest
from .types import IdentityIndex


def data_root(params, species: str) -> Path:
    """The folder the split manifest's paths are relative to (for a table: the study's own folder of
    links and crops)."""
    return SOURCES[params.data.source].root(params, species, Layout(params).root)


def lookalike_families(params, species: str, identities: list[str]) -> tuple[str, np.ndarray] | None:
    """(what the look-alikes share, a family code per identity) where the data records one: the synthetic
    set's families, or a table's `data.lookalike_column`. Identities without a value get a family of
    their own. None otherwise."""
    families = SOURCES[params.data.source].families
    return families(params, species, identities) if families else None


def load_splits(params, species: str) -> dict[str, IdentityIndex]:
    """All splits from the study's manifest (written by `01_data`), read once, without re-scanning the tree."""
    manifest = Layout(params).split_manifest(species)
    if not manifest.is_file():
        raise DataError(f"{manifest}: split manifest not found; run the 01_data notebook "
                        f"(petface study PARAMS --only 01_data) first")
    return read_manifest(manifest, data_root(params, species))


def splits_fingerprint(params, splits: dict[str, IdentityIndex], names: tuple[str, ...]) -> str:
    """The named splits' content fingerprint (`data.content`): what the stages and the reports record."""
    return content.fingerprint([(n, splits[n]) for n in names], Layout(params).content_cache())


def load_split(params, species: str, split: str) -> IdentityIndex:
    return load_splits(params, species)[split]


def load_audit(params, species: str) -> dict | None:
    """The data audit `01_data` wrote for this species (None before one was written)."""
    import json

    path = Layout(params).audit_file(species)
    return json.loads(path.read_text()) if path.is_file() else None


def load_protocol(params, species: str) -> dict | None:
    """The protocol `01_data` wrote for this species, or None when the data set has none."""
    import json

    path = Layout(params).protocol_file(species)
    return json.loads(path.read_text()) if path.is_file() else None

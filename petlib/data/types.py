"""The data package's types: what a source lists (`Listing`) and the usable images of a tree
(`IdentityIndex`), in a module of their own so that sources, the scan and the splits share them."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Listing:
    """What a source lists for one species, before the scan. Paths in `protocol` are relative to `root`."""
    root: Path
    candidates: list[tuple[str, Path]]
    split_of: dict[Path, str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    protocol: dict | None = None
    test_identities: frozenset[str] = frozenset()  # held out by the source for the test split alone


@dataclass
class IdentityIndex:
    """Usable images of a folder-per-identity tree. Label i belongs to `identities[i]`."""
    root: Path
    paths: list[Path]
    labels: np.ndarray
    identities: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    hashes: dict[str, tuple[str, int]] = field(default_factory=dict)  # relative path -> (SHA-1, pHash): the audit's

    def fingerprint(self, split: str = "all", cache: Path | None = None) -> str:
        from .content import fingerprint

        return fingerprint([(split, self)], cache)

    def subset(self, identities: Iterable[str]) -> IdentityIndex:
        keep = set(identities)
        names = [n for n in self.identities if n in keep]
        new_label = {self.identities.index(n): i for i, n in enumerate(names)}
        rows = [(p, new_label[int(l)]) for p, l in zip(self.paths, self.labels) if int(l) in new_label]
        return IdentityIndex(self.root, [p for p, _ in rows], np.array([l for _, l in rows], dtype=np.int64),
                             names, [])


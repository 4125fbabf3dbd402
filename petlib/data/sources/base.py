"""What a data source is: one `Source` entry, declared in the source's own module."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """listing(params, species, root, progress) -> Listing: the (identity, file) candidates the scan
    verifies, with the split where the source fixes one. root(params, species, study_dir) -> the folder
    the split manifest's paths are relative to. families(params, species, identities) -> (what look-alikes
    share, a code per identity) or None."""
    name: str
    label: str
    listing: Callable
    root: Callable
    needs: str = ""  # the per-species mapping of data params it requires: "roots" or "tables"
    species: tuple[str, ...] = ()  # the species it holds; empty: any name
    fixed_split: bool = False  # the data set's own files fix the split: never re-split, no identity lists
    benchmark: str = ""  # the published data set it is, when it is one
    columns: bool = False  # rows carry attributes (data.lookalike_column)
    families: Callable | None = None

    def problems(self, d) -> list[str]:
        """What is wrong with data params `d` for this source, one sentence each."""
        out = []
        missing = [s for s in d.species if s not in getattr(d, self.needs, {s: 1})]
        if self.needs and missing:
            what = {"roots": "folder", "tables": "table"}[self.needs]
            out.append(f"data.{self.needs} has no {what} for species {missing} (data.source is {self.name!r})")
        unknown = [s for s in d.species if self.species and s not in self.species]
        if unknown:
            out.append(f"data.species {unknown} are not {self.name} species; known: {list(self.species)}")
        if self.benchmark and d.benchmark not in ("", self.benchmark):
            out.append(f"data.benchmark is {self.benchmark!r} with the {self.name} source, got {d.benchmark!r}")
        if d.lookalike_column and not self.columns:
            out.append(f"data.lookalike_column names a table column; data.source is {self.name!r}")
        if d.identity_lists and (len(d.species) != 1 or self.fixed_split):
            out.append("data.identity_lists applies to one species of a source without a split of its own "
                       "(folders, synth, table; one params file per data set)")
        return out

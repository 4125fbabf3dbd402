"""Where a species' images come from: one module per source, one entry each in `SOURCES` (as the
export formats are registered). Every source ends in the same list of (identity, file) candidates that
the scan verifies, so skipping bad files works the same everywhere. Adding a source: a module with its
`SOURCE = Source(...)` and one line below."""
from __future__ import annotations

from . import folders, petface, synth, table
from .base import Source

SOURCES: dict[str, Source] = {s.name: s for s in (synth.SOURCE, folders.SOURCE, petface.SOURCE, table.SOURCE)}

__all__ = ["SOURCES", "Source"]

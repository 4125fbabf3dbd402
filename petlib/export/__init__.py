"""Exports of the embedder, one module per format behind one registry (`registry.FORMATS`), each file
re-loaded in its own runtime and checked against PyTorch on the task (`pipeline.export_run`; what the
report shows of it: `summary`).

Importing this package imports no torch: the CLI takes its choices from the registry. There are no
lazily loaded names: every use of a module is an import the stage system can see."""
from .registry import EXPORT_INSTALL, FORMATS, Format, converter_available, read_metadata

__all__ = ["EXPORT_INSTALL", "FORMATS", "Format", "converter_available", "read_metadata"]

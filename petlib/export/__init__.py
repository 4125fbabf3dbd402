"""Exports of the embedder, one module per format behind one registry (`registry.FORMATS`), each file
re-loaded in its own runtime and checked against PyTorch on the task (`pipeline.export_run`).

Importing this package imports no torch: the CLI takes its choices from the registry. The heavier
names are loaded on first use."""
from .registry import EXPORT_INSTALL, FORMATS, Format, converter_available, read_metadata

_LAZY = {"export_run": "pipeline", "headline": "pipeline", "int8_summary": "pipeline", "int8_search_table": "pipeline",
         "ExportError": "tools", "ConvertContext": "tools"}

__all__ = ["EXPORT_INSTALL", "FORMATS", "Format", "converter_available", "read_metadata", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"petlib.export.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'petlib.export' has no attribute {name!r}")

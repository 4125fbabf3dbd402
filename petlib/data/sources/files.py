"""Readers of the split and list files sources ship: a CSV with required columns, integer cells, and
one-name-per-line lists; a bad file is one `DataError` naming the file, the line and the column."""
from __future__ import annotations

import csv
from pathlib import Path

from ..decode import DataError


def rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line number, row) of a CSV file that must have `columns`."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column {missing[0]!r} (columns: {reader.fieldnames})")
        return [(i, r) for i, r in enumerate(reader, start=2)]


def int_cell(path: Path, line: int, column: str, value) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise DataError(f"{path}:{line}: column {column!r} must be an integer, got {value!r}") from None


def lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-empty lines of a list file (one name per line)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return [(i, t.strip()) for i, t in enumerate(path.read_text().splitlines(), start=1) if t.strip()]

"""Atomic artefact writing: a temp file in the same directory, then `os.replace`.

A run killed mid-write therefore leaves the previous file intact, never a half-written one.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artefacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Like `atomic_path` for a directory artefact (a CoreML .mlpackage): the temp directory keeps the
    suffix (converters check it), replaces `path` on success, and is removed on error."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent))
    tmp.rmdir()  # the converter creates it; an existing one would be refused
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)  # left by a run killed between the two renames
        had_old = path.exists()
        if had_old:
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if had_old:
                os.replace(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class UnsafeFileError(ValueError):
    """A file the project reads back is not what it writes: refused (never unpickled), in one line."""


def load_torch(path: str | Path, map_location="cpu") -> Any:
    """`torch.load` with `weights_only=True` for every .pt the project reads back (checkpoints, best
    model, embedder, pretrained weights): tensors, numbers, strings and containers load; anything that
    would need the unpickler that can run code is refused, as is a truncated or foreign file, with one
    line naming the file."""
    import pickle

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise UnsafeFileError(f"{path}: refused: it holds Python objects ({found.group(1) if found else 'not plain weights'}) "
                              "that only the code-running unpickler could load; the project writes plain weights") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0].split(". ")[0]
        raise UnsafeFileError(f"{path}: not a readable weights file (truncated, or not written by torch.save): {first}") from None


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found (has the notebook that writes it run?)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None

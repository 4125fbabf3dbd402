"""Traced TorchScript; the metadata travels as the extra file `petface.json`."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..io import atomic_path
from ..latency import torch_runner
from .tools import ConvertContext, example_input


def convert(ctx: ConvertContext, path: Path) -> None:
    with atomic_path(path) as tmp, torch.no_grad():
        traced = torch.jit.trace(ctx.embedder, example_input(ctx.embedder, 1))
        torch.jit.save(traced, str(tmp), _extra_files={"petface.json": json.dumps(ctx.metadata)})


def runner(path: Path, threads: int | None = None):
    return torch_runner(torch.jit.load(str(path)))


def read_metadata(path: Path) -> dict:
    files = {"petface.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files["petface.json"] or "{}")

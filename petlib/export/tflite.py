"""TFLite via litert-torch, run with the ai-edge-litert interpreter. Batch-1 graph: litert cannot lower
a dynamic-batch flatten, and a phone app embeds one face at a time. The metadata is a flatbuffer
Metadata entry `petface` (UTF-8 JSON).

The conversion runs in a child Python process: litert-torch imports JAX, whose threads make any later
fork() in this process (DataLoader workers, the synth pool) liable to deadlock; the child also lets
the conversion run beside the other converters on the second core."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..io import load_torch
from .tools import ChildConversion, ConvertContext, example_input, quiet_fds


def start(ctx: ConvertContext, path: Path) -> ChildConversion:
    """Start the conversion in a child process and return at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    src = Path(tmp).with_suffix(".src.pt")
    torch.save({"config": ctx.embedder.config, "state_dict": ctx.embedder.state_dict(), "metadata": ctx.metadata}, src)
    argv = [sys.executable, "-c", "import sys; from petlib.export.tflite import child_main; child_main(*sys.argv[1:])",
            str(src), tmp]
    return ChildConversion(argv, Path(tmp), path, [src])


def child_main(src: str, path: str) -> None:
    """Child-process side of `start`."""
    from ..models import embedder_from_config

    blob = load_torch(src)
    embedder = embedder_from_config(blob["config"], blob["state_dict"]).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _convert(embedder, Path(path), blob["metadata"])


def _convert(embedder: torch.nn.Module, path: Path, metadata: dict) -> None:
    import flatbuffers
    import litert_torch
    from ai_edge_litert import schema_py_generated as schema

    litert_torch.convert(embedder, (example_input(embedder, 1),)).export(str(path))
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = "petface", len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != b"petface"] + [entry]
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())


def runner(path: Path, threads: int | None = None):
    """One image per interpreter call (the graph is batch 1)."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_fds():
        interp = Interpreter(model_path=str(path), num_threads=threads or None)
        interp.allocate_tensors()
    i_in, i_out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]

    def run(x):
        out = []
        for img in np.ascontiguousarray(x, dtype=np.float32):
            interp.set_tensor(i_in, img[None])
            interp.invoke()
            out.append(interp.get_tensor(i_out)[0].copy())
        return np.stack(out)
    return run


def read_metadata(path: Path) -> dict:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
    for i in range(model.MetadataLength()):
        if model.Metadata(i).Name() == b"petface":
            return json.loads(model.Buffers(model.Metadata(i).Buffer()).DataAsNumpy().tobytes().decode())
    return {}

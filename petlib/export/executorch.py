"""ExecuTorch program lowered to XNNPACK (batch 1..MAX_BATCH), run with the ExecuTorch Python runtime.
The metadata travels inside the .pte as a constant method `petface_metadata` (UTF-8 JSON, uint8)."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path
from .tools import ConvertContext, example_input, quiet_fds

MAX_BATCH = 32  # memory is planned for the largest batch up front; phones run batch 1


def convert(ctx: ConvertContext, path: Path) -> None:
    """In this process: a child would pay the ~15 s cold start of torch.export again (measured slower)."""
    embedder = ctx.embedder
    meta = torch.tensor(list(json.dumps(ctx.metadata).encode()), dtype=torch.uint8)
    with atomic_path(path) as tmp, quiet_fds():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        # The example must be the largest batch: memory planning sizes buffers from it, not from Dim(max=).
        program = torch.export.export(embedder, (example_input(embedder, MAX_BATCH),),
                                      dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}})
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                              constant_methods={"petface_metadata": meta}).to_executorch()
        tmp.write_bytes(lowered.buffer)


def runner(path: Path, threads: int | None = None):
    """XNNPACK threadpool sized to `threads`; inputs above MAX_BATCH run in slices."""
    with quiet_fds():
        from executorch.runtime import Runtime

        if threads:
            with contextlib.suppress(ImportError):
                from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
                _unsafe_reset_threadpool(threads)
        method = Runtime.get().load_program(str(path)).load_method("forward")

    def run(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        return np.concatenate([method.execute([torch.from_numpy(x[i:i + MAX_BATCH])])[0].numpy()
                               for i in range(0, len(x), MAX_BATCH)])
    return run


def read_metadata(path: Path) -> dict:
    with quiet_fds():
        from executorch.runtime import Runtime

        blob = Runtime.get().load_program(str(path)).load_method("petface_metadata").execute([])[0]
    return json.loads(bytes(blob.numpy().tobytes()).decode())

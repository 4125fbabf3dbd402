"""What several converters share: the conversion context, silencing a converter's own output, and a
conversion run in a child Python process."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..onnx_file import ExportError, example_input  # noqa: F401  (re-exported for the format modules)
from ..run import RunDir
from .measure import TestSet
from .qat import QATRecipe


@dataclass
class ConvertContext:
    """Everything a converter may need: the run, its embedder (CPU, eval), the metadata every file
    carries, training images to calibrate INT8 on, the validation set INT8 candidates are scored on and
    the INT8 size cap, and the training images and recipe of a QAT candidate (None: no QAT); converters
    leave what the report shows about them in `notes`."""
    run: RunDir
    embedder: torch.nn.Module
    metadata: dict
    calibration: Sequence
    validation: TestSet | None
    int8_cap_bytes: int
    image_size: int
    embedding_dim: int
    progress: bool = False
    notes: dict = field(default_factory=dict)
    train_images: Sequence = ()
    qat: QATRecipe | None = None
    cache_mb: float = 0.0  # RAM for QAT's training images preprocessed once (train.cache_mb)


@contextlib.contextmanager
def quiet_fds():
    """Silence a converter's own logging at the file-descriptor level (C++ logs, progress bars); on an
    error the captured tail is attached to the exception so nothing needed for a diagnosis is lost."""
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    with tempfile.TemporaryFile() as log:
        saved = []
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(log.fileno(), fd)
        except OSError:  # no real descriptors (an odd host): run unsilenced
            for fd, keep in saved:
                os.dup2(keep, fd)
                os.close(keep)
            yield
            return
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except Exception as e:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
            if tail:
                e.add_note("converter log (last lines): " + " | ".join(tail))
            raise
        finally:
            for fd, keep in saved:
                os.dup2(keep, fd)
                os.close(keep)


class ChildConversion:
    """A conversion running in a separate Python process; `.wait()` returns its output path or raises
    ExportError with the child's last log lines. The file appears only on success."""

    def __init__(self, argv: list[str], tmp: Path, out: Path, cleanup: list[Path]):
        self.tmp, self.out, self.cleanup = tmp, out, cleanup
        # One thread each: OpenMP threads of several torch processes spin against each other on a small
        # machine (measured here: 25x slower), and the converters are single-threaded Python anyway.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._remove_temps()

    def _remove_temps(self) -> None:
        for p in [self.tmp, *self.cleanup]:
            p.unlink(missing_ok=True)

    def wait(self) -> Path:
        _, err = self.proc.communicate()
        try:
            if self.proc.returncode != 0:
                tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-3:])
                raise ExportError(f"{self.out}: conversion failed (exit {self.proc.returncode}): {tail}")
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.out)
            return self.out
        finally:
            self._remove_temps()

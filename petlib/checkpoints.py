"""Checkpoint files and when to write them: byte-stable atomic torch saves, the mid-epoch schedule, and
SIGTERM/SIGINT turned into "checkpoint at the next step"."""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .io import atomic_path


def save_torch(obj, path: Path) -> None:
    """Atomic torch.save through a file object: torch then names the archive's inner folder "archive"
    rather than after the (random) temp file, so the same weights give the same bytes and checksum."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
    except OSError as e:
        raise OSError(e.errno, f"{path}: cannot be written ({e.strerror or e}); the previous file is intact") from None


@dataclass
class Checkpoints:
    """When the loop writes `last_checkpoint.pt` inside an epoch: every `minutes` (0: every step), and at
    the next step boundary after SIGTERM or SIGINT (what schedulers send before preemption)."""
    minutes: float
    last: float = field(default_factory=time.time)
    signum: int | None = None

    def due(self) -> bool:
        return self.signum is not None or time.time() - self.last >= self.minutes * 60


@contextlib.contextmanager
def stop_on_signals(ck: Checkpoints):
    """SIGTERM/SIGINT set a flag the loop checks after each step; a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if ck.signum is not None:
            raise KeyboardInterrupt
        ck.signum = signum

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)

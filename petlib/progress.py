"""Progress that reaches the terminal of `petface study` while a notebook runs in its own kernel.

A notebook's bars go to its output cells; the runner cannot see them. So every bar of the library also
leaves its current line (epoch, step, images/s, loss) in the file named by `$PETFACE_PROGRESS`, which
the runner sets for each notebook and prints, with the elapsed time, while the notebook runs.
"""
from __future__ import annotations

import os
import time

from tqdm import tqdm

ENV = "PETFACE_PROGRESS"


class bar(tqdm):
    """tqdm that also writes its current line to `$PETFACE_PROGRESS` (at most once a second)."""

    def display(self, msg=None, pos=None):
        shown = super().display(msg, pos)
        path = os.environ.get(ENV)
        if path and time.time() - getattr(self, "_side_t", 0.0) >= 1.0:
            self._side_t = time.time()
            try:
                with open(f"{path}.tmp", "w") as f:
                    f.write(str(self))
                os.replace(f"{path}.tmp", path)
            except OSError:
                pass  # progress is a courtesy: never fail the work for it
        return shown


def latest(path: str | os.PathLike) -> str:
    """The last line a bar wrote to `path`, or "" before the first."""
    try:
        with open(path) as f:
            return " ".join(f.read().split())
    except OSError:
        return ""

"""The first call of every notebook: the study's params and folder layout, in a kernel that can run it.

A kernel without the project installed fails one line earlier, at `from petlib import notebook`; the
notebooks' comment on that line says which kernel to pick."""
from __future__ import annotations

import importlib.util
import sys

from .config import StudyParams, load_params
from .constants import KERNEL_HINT
from .layout import Layout

NEEDED = ("pandas", "IPython", "matplotlib", "torch")


def start(params_path: str, needed: tuple[str, ...] = NEEDED) -> tuple[StudyParams, Layout]:
    """Validated params (relative paths resolved against the params file's project, wherever the kernel
    runs) and their Layout; a kernel missing one of the project's packages is one clear error."""
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise ModuleNotFoundError(f"{missing[0]} is not importable in this kernel ({sys.executable}). {KERNEL_HINT}")
    params = load_params(params_path)
    return params, Layout(params)

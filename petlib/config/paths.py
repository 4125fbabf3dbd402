"""The path rule: relative paths in a params file are relative to its project (the package docstring)."""
from __future__ import annotations

import copy
from pathlib import Path

from .params import StudyParams


def project_root(start: str | Path) -> Path:
    """The nearest folder at or above `start` holding a pyproject.toml; `start` itself when none does."""
    start = Path(start).resolve()
    for d in (start, *start.parents):
        if (d / "pyproject.toml").is_file():
            return d
    return start


def find_params_file(path: str | Path) -> Path:
    """A params file by name: as given (absolute, or relative to the working directory), else relative
    to a folder above the working directory, so `params/demo.yaml` also works from `notebooks/`."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.is_file():
        return path.resolve() if path.is_file() else path
    for d in Path.cwd().resolve().parents:
        if (d / path).is_file():
            return d / path
    return path


def _absolute(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def map_paths(p: StudyParams, fn) -> StudyParams:
    """`p` with `fn` applied to every path parameter (the one list of them)."""
    p.output_dir, p.reports_dir = fn(p.output_dir), fn(p.reports_dir)
    d = p.data
    d.synth_dir = fn(d.synth_dir)
    d.roots = {k: fn(v) for k, v in d.roots.items()}
    d.tables = {k: fn(v) for k, v in d.tables.items()}
    d.identity_lists = {k: fn(v) for k, v in d.identity_lists.items()}
    d.manifest = {k: fn(v) for k, v in d.manifest.items()}
    for m in p.models:
        if m.pretrained and m.pretrained != "hub":
            m.pretrained = fn(m.pretrained)
    p.eval.compare = [f"{c.split(':', 1)[0]}:{fn(c.split(':', 1)[1])}" if ":" in c else c for c in p.eval.compare]
    return p


def resolve_paths(p: StudyParams, base: str | Path) -> StudyParams:
    """Make every path parameter absolute against `base` (see the module docstring for the rule)."""
    return map_paths(p, lambda v: _absolute(v, Path(base)))


def relative_paths(p: StudyParams, base: str | Path) -> StudyParams:
    """A copy of `p` whose paths inside `base` are relative to it (what a run folder records, so that a
    moved checkout reads the same params); paths elsewhere stay absolute."""
    base = Path(base).resolve()

    def rel(v: str) -> str:
        q = Path(v)
        return q.relative_to(base).as_posix() if q.is_absolute() and q.is_relative_to(base) else v
    return map_paths(copy.deepcopy(p), rel)

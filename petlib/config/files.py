"""Params files: YAML read with one clear line on error, `extends` merged, loaded and written."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .convert import _build, apply_overrides, params_from_dict, params_to_dict
from .params import ParamsError, StudyParams
from .paths import _absolute, find_params_file, project_root


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML ({getattr(e, 'problem', None) or type(e).__name__}{where})") from None
    return raw or {}


def merge(parent: dict, child: dict) -> dict:
    """`child` over `parent`: mappings merge key by key, other values (lists included) are replaced, except
    `models`, which the child lists by name: an entry takes the parent's model of that name as its base, so
    `models: [{name: mfn}]` keeps the parent's MobileFaceNet settings and drops its other models."""
    out = copy.deepcopy(parent)
    for k, v in child.items():
        if k == "models" and isinstance(v, list) and isinstance(out.get(k), list):
            base = {m.get("name"): m for m in out[k] if isinstance(m, dict)}
            out[k] = [merge(base.get(m.get("name"), {}), m) if isinstance(m, dict) else m for m in v]
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_params(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A params file with what it `extends` merged under it. The `extends` path follows the relative-path
    rule (the file's project); each file's keys and types are checked on their own, so an error names the
    file that has it."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    parent = raw.pop("extends", None)
    _build(StudyParams, raw, "", str(path))
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise ParamsError(f"{path}: 'extends' must be a params file name, got {parent!r}")
    target = Path(_absolute(parent, project_root(path.parent)))
    if target in (path, *seen):
        raise ParamsError(f"{path}: 'extends: {parent}' makes a loop ({' -> '.join(map(str, (*seen, path, target)))})")
    if not target.is_file():
        raise ParamsError(f"{path}: 'extends' names {target}, which does not exist")
    return merge(read_params(target, (*seen, path)), raw)


def load_params(path: str | Path, overrides: list[str] | None = None) -> StudyParams:
    """Load (with what it extends), override and validate a params file; the single entry point for
    notebooks and the CLI. Relative paths in it are resolved against the file's project (`project_root`)."""
    path = find_params_file(path)
    raw = apply_overrides(read_params(Path(path)), overrides or [], where=f"{path} --set")
    return params_from_dict(raw, where=str(path), base=project_root(Path(path).parent))


def dump_params(p: StudyParams, path: str | Path) -> None:
    from ..io import atomic_write_text
    atomic_write_text(path, yaml.safe_dump(params_to_dict(p), sort_keys=False))

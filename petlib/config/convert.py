"""A params mapping into the dataclasses, with every key and type checked, and back; `--set` overrides."""
from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .params import ParamsError, StudyParams
from .paths import project_root, resolve_paths


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check `value` against the annotation `tp`, recursing into dataclasses, lists and dicts."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, where)
            except ParamsError as e:
                errors.append(e)
        raise errors[0]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
        return _build(tp, value, key, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ParamsError(f"{where}: '{key}' must be a list, got {type(value).__name__}")
        return [_convert(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
        return {str(k): _convert(v, vt, f"{key}.{k}", where) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ParamsError(f"{where}: '{key}' must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return value


def _build(cls: type, raw: dict, prefix: str, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in raw.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(names)})"
            raise ParamsError(f"{where}: unknown key '{key}'{hint}")
        kwargs[k] = _convert(v, hints[k], key, where)
    return cls(**kwargs)


def params_from_dict(raw: dict, where: str = "<params>", base: str | Path | None = None) -> StudyParams:
    """Validated params from a mapping; relative paths are resolved against `base` (default: the
    project of the working directory)."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: top level must be a mapping")
    p = _build(StudyParams, raw, "", where)
    p.validate(where)
    return resolve_paths(p, base or project_root(Path.cwd()))


def params_to_dict(p: Any) -> dict:
    return dataclasses.asdict(p)


def _set_path(tree: dict, dotted: str, value: Any, where: str) -> None:
    parts = dotted.split(".")
    node: Any = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            matches = [m for m in node if isinstance(m, dict) and m.get("name") == part]
            if part.isdigit() and int(part) < len(node):
                idx = int(part)
            elif matches:
                idx = node.index(matches[0])
            else:
                raise ParamsError(f"{where}: --set {dotted}: '{part}' is neither an index nor a model name")
            if last:
                node[idx] = value
            node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ParamsError(f"{where}: --set {dotted}: '{'.'.join(parts[:i])}' is not a mapping")


def apply_overrides(raw: dict, overrides: list[str], where: str = "--set") -> dict:
    """Apply `key.sub=value` strings (value parsed as YAML) to a raw params mapping, returning a copy.

    List items can be addressed by index or, for `models`, by name: `models.mfn.epochs=3`.
    """
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ParamsError(f"{where}: override {item!r} must look like key=value")
        key, text = item.split("=", 1)
        _set_path(out, key.strip(), yaml.safe_load(text) if text.strip() else None, where)
    return out

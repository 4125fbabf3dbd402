"""docs/params.md, generated from the dataclasses."""
from __future__ import annotations

import dataclasses
import typing

from .convert import _type_name
from .params import StudyParams


def _field_comments(cls: type) -> dict[str, str]:
    """The trailing `# ...` comment of each field in the class's source: the parameter's documentation."""
    import inspect
    import io
    import tokenize

    out, name = {}, None
    for tok in tokenize.generate_tokens(io.StringIO(inspect.getsource(cls)).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and name is None:
            name = tok.string
        elif tok.type == tokenize.COMMENT and name:
            out[name] = tok.string.lstrip("# ").strip()
        elif tok.type == tokenize.NEWLINE:
            name = None
    return out


def params_markdown() -> str:
    """The parameter reference (docs/params.md), generated from the dataclasses: every key, its type, its
    default and its field comment. `tests/test_docs.py` keeps the file current."""
    lines = ["# Parameters", "",
             "Generated from the dataclasses in `petlib/config/params.py` by `petlib.config.params_markdown` "
             "(`tests/test_docs.py` keeps it current). Every key of a params file is one of these; an unknown or "
             "mistyped key is an error naming it. `extends: OTHER.yaml` takes another file as the base; "
             "`--set key=value` overrides any key (values are YAML; models by name: `--set models.mfn.epochs=3`). "
             "Relative paths are relative to the params file's project (the folder above it with a pyproject.toml).",
             ""]

    def section(cls: type, prefix: str) -> None:
        docs, hints = _field_comments(cls), typing.get_type_hints(cls)
        rows, nested = [], []
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            inner = typing.get_args(tp)[0] if typing.get_origin(tp) is list else tp
            if dataclasses.is_dataclass(inner):
                nested.append((inner, f"{prefix}{f.name}" + ("[]" if inner is not tp else "")))
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kind = str(tp).replace("typing.", "") if typing.get_args(tp) else _type_name(tp)
            rows.append(f"| `{prefix}{f.name}` | {kind} | `{default!r}` | {docs.get(f.name, '')} |")
        lines.extend([f"## {prefix.rstrip('.') or 'top level'}", "", (cls.__doc__ or "").split("\n\n")[0].strip()
                      if cls.__doc__ and not cls.__doc__.startswith(cls.__name__) else "", "",
                      "| key | type | default | what |", "|---|---|---|---|", *rows, ""])
        for inner, name in nested:
            section(inner, name + ".")

    section(StudyParams, "")
    return "\n".join(lines).replace("\n\n\n", "\n\n")

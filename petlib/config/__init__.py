"""Study parameters: one validated dataclass tree loaded from YAML. One concern a module: the dataclasses
and their checks (`params`), conversion and `--set` (`convert`), the path rule (`paths`), files and
`extends` (`files`), the generated reference (`docs`).

Papermill only warns on unknown parameters, so every params file goes through `load_params` before
anything runs: an unknown or mistyped key, or a value of the wrong type, is a `ParamsError` that names
the key and the file.

Relative paths in a params file (`output_dir`, `reports_dir`, `data.synth_dir`, `data.roots`,
`data.tables`, `data.identity_lists`, `data.manifest`, `models[].pretrained`, the folders of `eval.compare`)
are relative to the params
file's project: the nearest folder at or above the file that holds a `pyproject.toml` (for this
repository's `params/*.yaml`, the repository root), or the file's own folder when there is none.
`load_params` makes them absolute, so they mean the same from the CLI, the study runner, plain
papermill and a notebook opened in JupyterLab, whatever the working directory.

A params file may start with `extends: OTHER.yaml` (same path rule): it then states only what differs
from that file (`merge` says how lists and models combine), and every key is still checked.
"""
from __future__ import annotations

from .convert import apply_overrides, params_from_dict, params_to_dict
from .docs import params_markdown
from .files import dump_params, load_params, merge, read_params, read_yaml
from .params import (BENCHMARKS, DataParams, EvalParams, ExportParams, ModelParams, ParamsError, StudyParams,
                     SynthParams, TrainParams)
from .paths import find_params_file, map_paths, project_root, relative_paths, resolve_paths

__all__ = [
    "ParamsError", "SynthParams", "DataParams", "TrainParams", "ModelParams", "EvalParams", "ExportParams",
    "StudyParams", "BENCHMARKS", "load_params", "read_params", "read_yaml", "merge", "params_from_dict",
    "params_to_dict", "apply_overrides", "dump_params", "params_markdown", "project_root", "find_params_file",
    "resolve_paths", "relative_paths", "map_paths",
]

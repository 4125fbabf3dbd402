"""Study parameters: one validated dataclass tree loaded from YAML.

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

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .constants import FORMAT_IDS
from .data.sources import SOURCES
from .layout import run_name

__all__ = [
    "ParamsError", "SynthParams", "DataParams", "TrainParams", "ModelParams", "EvalParams", "ExportParams",
    "StudyParams", "load_params", "read_params", "merge", "params_from_dict", "params_to_dict", "apply_overrides", "dump_params",
    "project_root", "find_params_file", "resolve_paths", "relative_paths", "map_paths",
]


class ParamsError(ValueError):
    """A params file or override is invalid; the message names the key and the file."""


@dataclass
class SynthParams:
    """The embedded, procedurally generated data set (used when `data.source` is `synth`)."""
    n_identities: int = 200  # identities per species
    image_size: int = 112  # px the faces are drawn at (the transforms resize to data.image_size)
    seed: int = 0  # the generator's seed (not the study's)
    lookalike_family: int = 4  # identities i // this share fur colour and pattern (look-alikes)


BENCHMARKS = ("", "design", "dogfacenet", "petface")  # keys of petlib/published.yaml


@dataclass
class DataParams:
    """Where the images come from (`source`, see petlib.data.sources) and how they are split.

    `roots`: per species, the identity-folder tree (folders), the PetFace root holding images/ and
    split/ (petface), or the folder a table's paths are relative to (table; default: the table's folder).
    `tables`: per species, a CSV or Parquet table (table). `identity_lists`: `{train: FILE, test: FILE}`
    pins which identities go where (one species). `benchmark`: the published data set these images are,
    for its protocol and published figures (petface is implied by the petface source). `lookalike_column`:
    a table column (breed, colour) whose sharers are the look-alike impostors of 03_evaluate."""
    source: str = "synth"  # synth, folders, petface or table (petlib.data.sources)
    roots: dict[str, str] = field(default_factory=dict)  # species -> identity folders / PetFace root / a table's image folder
    tables: dict[str, str] = field(default_factory=dict)  # species -> CSV or Parquet table (source table)
    identity_lists: dict[str, str] = field(default_factory=dict)  # {train: FILE, test: FILE}: pins the identity split
    benchmark: str = ""  # the published data set these images are: design, dogfacenet, petface
    lookalike_column: str = ""  # a table column look-alike pets share (breed, colour)
    species: list[str] = field(default_factory=lambda: ["cat", "dog"])  # the species studied, in order
    synth_dir: str = "outputs/data"  # where the synthetic set is generated
    synth: SynthParams = field(default_factory=SynthParams)  # the synthetic set (source synth)
    min_images: int = 2  # identities with fewer usable images are left out
    split_ratios: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train/val/test share of identities (design §3.3)
    manifest: dict[str, str] = field(default_factory=dict)  # species -> a split manifest CSV that pins the split
    image_size: int = 224  # px the models see (design §3.4)
    n_pairs: int = 2500  # validation verification pairs per class (design §3.5)
    max_pixels: int = 64_000_000  # larger images are skipped as decompression bombs
    duplicates: str = "group"  # report, drop or group: what the data audit's duplicates do (docs/data.md)

    def validate(self, where: str) -> None:
        source = SOURCES.get(self.source)
        if source is None:
            raise ParamsError(f"{where}: data.source must be one of {list(SOURCES)}, got {self.source!r}")
        if self.benchmark not in BENCHMARKS:
            raise ParamsError(f"{where}: data.benchmark must be one of {list(BENCHMARKS)}, got {self.benchmark!r}")
        for problem in source.problems(self):
            raise ParamsError(f"{where}: {problem}")
        self.benchmark = self.benchmark or source.benchmark
        if len(self.split_ratios) != 3 or abs(sum(self.split_ratios) - 1.0) > 1e-6 or min(self.split_ratios) < 0:
            raise ParamsError(f"{where}: data.split_ratios must be three non-negative numbers summing to 1, "
                              f"got {self.split_ratios}")
        if self.image_size < 32:
            raise ParamsError(f"{where}: data.image_size must be at least 32, got {self.image_size}")
        if self.min_images < 2:
            raise ParamsError(f"{where}: data.min_images must be at least 2 (pairs need two images)")
        if self.duplicates not in ("report", "drop", "group"):
            raise ParamsError(f"{where}: data.duplicates must be report, drop or group, got {self.duplicates!r}")


@dataclass
class TrainParams:
    """Settings shared by every model of the study (design §5.1)."""
    batch_size: int = 96  # images per step (over all GPUs)
    weight_decay: float = 5e-4  # AdamW
    warmup_epochs: int = 5  # linear LR warm-up, then cosine
    eta_min: float = 1e-6  # the cosine schedule's floor
    arcface_s: float = 32.0  # ArcFace scale
    arcface_m: float = 0.4  # ArcFace margin (radians)
    margin_warmup_frac: float = 1.0 / 3.0  # share of the epochs over which the margin ramps up from 0
    label_smoothing: float = 0.1  # of the ArcFace cross-entropy
    grad_clip: float = 1.0  # max gradient norm
    dropout: float = 0.4  # before the embedding layer
    embedding_dim: int = 128  # embedding size (design §1)
    val_every: int = 3  # validate every N epochs (and at the last)
    num_workers: int = 2  # DataLoader workers
    pin_memory: bool = True  # DataLoader pinned memory (GPU)
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    amp: bool = True  # mixed precision on a GPU
    channels_last: bool = True  # NHWC memory format on a GPU
    max_steps_per_epoch: int = 0  # cap on steps per epoch (0: all); for smoke runs
    repeats: int = 1  # training repeats with seeds seed, seed + 1, ... (training variance)
    repeat_runs: list[str] = field(default_factory=list)  # runs (model-species) that repeat; empty: all
    partial_fc: float = 1.0  # ArcFace classes scored per step (Partial-FC sample rate); 1.0: all
    checkpoint_minutes: float = 10.0  # also write last_checkpoint.pt inside an epoch this often; 0: every step
    cache_mb: float = 4096.0  # RAM (MB) for the training images decoded and resized once (same pixels); 0: off

    def validate(self, where: str) -> None:
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ParamsError(f"{where}: train.device must be auto, cpu or cuda[:N], got {self.device!r}")
        for name in ("batch_size", "val_every", "embedding_dim", "repeats"):
            if getattr(self, name) < 1:
                raise ParamsError(f"{where}: train.{name} must be positive")
        if self.cache_mb < 0:
            raise ParamsError(f"{where}: train.cache_mb must be >= 0, got {self.cache_mb}")
        if self.checkpoint_minutes < 0:
            raise ParamsError(f"{where}: train.checkpoint_minutes must be >= 0, got {self.checkpoint_minutes}")
        if not 0.0 < self.partial_fc <= 1.0:
            raise ParamsError(f"{where}: train.partial_fc must be in (0, 1], got {self.partial_fc}")


@dataclass
class ModelParams:
    """One backbone to train; the per-backbone rows of design table 5.1."""
    name: str = "mnv3"  # the model's name in run folders (mnv3-cat)
    backbone: str = "mobilenetv3_small_100"  # timm name, or mobilefacenet
    head: str = "gdconv"  # gdconv or mlp (design §4)
    pretrained: str | None = None  # a local weights file (no downloads); null: from scratch
    lr: float = 5e-4  # base learning rate of the head
    backbone_lr_mult: float = 0.1  # the backbone's LR as a multiple of lr
    epochs: int = 40  # training epochs
    species: list[str] = field(default_factory=list)  # the species it trains on; empty: every data.species

    def validate(self, where: str) -> None:
        if self.head not in ("gdconv", "mlp"):
            raise ParamsError(f"{where}: models[{self.name}].head must be 'gdconv' or 'mlp', got {self.head!r}")
        if self.epochs < 1:
            raise ParamsError(f"{where}: models[{self.name}].epochs must be at least 1")


@dataclass
class EvalParams:
    """What 03_evaluate measures on the test split (design §6), and what 04_compare compares."""
    tta: bool = False  # average with the horizontal flip
    n_rank_pairs: int = 50000  # test pairs for ranking and verification (half of each class)
    n_triplets: int = 20000  # random test triplets
    n_overfit: int = 2000  # images of each split in the overfitting check
    n_robustness: int = 1000  # test images degraded for robustness
    n_bootstrap: int = 200  # bootstrap draws per interval
    gallery_frac: float = 0.5  # share of test identities enrolled for open set
    compare: list[str] = field(default_factory=list)  # NAME:EVAL_DIR entries for 04_compare; empty: this study's runs


@dataclass
class ExportParams:
    """What `05_export` converts (design §8.3: a chosen list of formats for a chosen embedder)."""
    runs: list[str] = field(default_factory=list)  # "model-species" runs to export; empty: every run
    formats: list[str] = field(default_factory=list)  # registry ids (petlib.export.FORMATS); empty: all
    int8_max_mb: float = 2.0  # the phone goal (design §1): an INT8 candidate over it is never shipped
    qat_epochs: int = 0  # > 0: the INT8 search also tries quantisation-aware training for this many epochs
    qat_lr: float = 1e-5  # Adam's learning rate for it (cosine to 0): docs/results.md, "INT8 on the converged models"

    def validate(self, where: str) -> None:
        if not self.int8_max_mb > 0:
            raise ParamsError(f"{where}: export.int8_max_mb must be positive, got {self.int8_max_mb}")
        if self.qat_epochs < 0 or not self.qat_lr > 0:
            raise ParamsError(f"{where}: export.qat_epochs must be >= 0 and export.qat_lr positive, got "
                              f"{self.qat_epochs} and {self.qat_lr}")
        unknown = [f for f in self.formats if f not in FORMAT_IDS]
        if unknown:
            raise ParamsError(f"{where}: export.formats names {unknown}; known: {list(FORMAT_IDS)}")


@dataclass
class StudyParams:
    """One study: its data, training, models, evaluation and export, and which notebooks run."""
    name: str = "demo"  # the study's folder under output_dir and reports_dir
    seed: int = 42  # the random seed of splits, pairs, samples and training
    reproducible: bool = True  # pin CPU kernels (AVX2 and friends) so any x86 machine gives the same numbers
    output_dir: str = "outputs"  # runs, evaluations, exports, caches
    reports_dir: str = "reports"  # the HTML reports
    data: DataParams = field(default_factory=DataParams)
    train: TrainParams = field(default_factory=TrainParams)
    models: list[ModelParams] = field(default_factory=lambda: [ModelParams()])
    eval: EvalParams = field(default_factory=EvalParams)
    export: ExportParams = field(default_factory=ExportParams)
    notebooks: list[str] = field(default_factory=lambda: ["01_data", "02_train", "03_evaluate", "04_compare",
                                                          "05_export", "06_inference"])  # run in this order

    def validate(self, where: str) -> None:
        self.data.validate(where)
        self.train.validate(where)
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ParamsError(f"{where}: models have duplicate names {names}")
        for m in self.models:
            m.validate(where)
            other = [s for s in m.species if s not in self.data.species]
            if other:
                raise ParamsError(f"{where}: models[{m.name}].species names {other}, which data.species "
                                  f"{self.data.species} does not hold")
        runs = self.run_names()
        for key, named in (("train.repeat_runs", self.train.repeat_runs), ("export.runs", self.export.runs)):
            unknown = [r for r in named if r not in runs]
            if unknown:
                raise ParamsError(f"{where}: {key} names {unknown}, which this study does not train; runs: {runs}")
        self.export.validate(where)

    def runs(self) -> list[tuple[str, str]]:
        """(model, species) of every training run, species by species in the order of `data.species`."""
        return [(m.name, s) for s in self.data.species for m in self.models if not m.species or s in m.species]

    def run_names(self) -> list[str]:
        return [run_name(m, s) for m, s in self.runs()]

    def pick_run(self, model: str | None = None, species: str | None = None) -> tuple[str, str]:
        """The first training run matching the given model and/or species (either may be None)."""
        for m, s in self.runs():
            if model in (None, m) and species in (None, s):
                return m, s
        raise ParamsError(f"no training run of model {model!r} on species {species!r}; runs: {self.run_names()}")

    def exports(self, model: str, species: str) -> bool:
        """Whether the study exports this run (`export.runs`, empty: every run)."""
        return not self.export.runs or run_name(model, species) in self.export.runs

    def repeats(self, model: str, species: str) -> int:
        """Training repeats of one run (`train.repeats`, for the runs in `train.repeat_runs` or all)."""
        rr = self.train.repeat_runs
        return self.train.repeats if not rr or run_name(model, species) in rr else 1

    def train_seed(self, repeat: int = 0) -> int:
        """Repeat r trains with the study seed plus r; the data split and the pairs keep the study seed."""
        return self.seed + repeat

    def model(self, name: str) -> ModelParams:
        for m in self.models:
            if m.name == name:
                return m
        raise ParamsError(f"no model named {name!r}; the params name {[m.name for m in self.models]}")


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
    from .io import atomic_write_text
    atomic_write_text(path, yaml.safe_dump(params_to_dict(p), sort_keys=False))


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
             "Generated from the dataclasses in `petlib/config.py` by `petlib.config.params_markdown` "
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

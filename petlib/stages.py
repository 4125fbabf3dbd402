"""What each stage of the study reads, declared once (as a DVC stage declares `params` and `deps`), and
the stamp that records it beside the stage's artefacts.

A stage's inputs come in three groups:
- **params**: the keys it reads (`PARAMS`), by value. Paths are never inputs: what a path holds is
  (`files`), so a moved checkout or output folder reuses everything.
- **files**: fingerprints of the data splits (each image's relative path, identity, split and SHA-1:
  `data.content`), hashes of checkpoints,
  metrics files, a pretrained weights file, the protocol file.
- **code**: the petlib modules the stage's entry point uses (`petlib.codegraph`: imports and re-exports
  followed), each by a digest that ignores comments, docstrings and layout. Left out, with what only
  they use: `NEUTRAL` modules, which cannot change a result (file writing, progress bars, params
  parsing, paths), and `DATA_MODULES`, whose effect reaches a stage only through the files they
  write, which the `files` fingerprints cover.

- **software**: the versions of the libraries that compute the stage (`LIBRARIES`; None: not installed,
  so installing a converter later re-runs the export). `library_versions: provenance` records them
  without comparing, for a user who knows an upgrade is harmless.

How and where a stage computes (device, AMP, worker and process count, CPU kernel pins) is provenance,
recorded in the run, never a reason to redo it: a run trained on four GPUs with torchrun is used by a
CPU study with the same inputs. `petface study --force train` redoes a stage after a change the inputs
cannot see (a fix outside petlib).

A stage writes `stage.json` last, after its artefacts, with state "finished"; training writes it with
state "started" first, so that a study killed mid-run resumes from the last checkpoint.
"""
from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import codegraph
from .config import StudyParams
from .constants import FORMAT_IDS
from .io import atomic_write_json, file_sha256
from .layout import Layout, run_name

STAMP = "stage.json"

# Modules that cannot change a stage's numbers, and why (tests/test_forgotten.py: every petlib module is
# some stage's or report's code, a package that only re-exports, or here).
NEUTRAL_WHY = {
    "petlib.io": "writes and reads files atomically", "petlib.progress": "progress bars",
    **{f"petlib.config{m}": "parses and validates params: their values are the inputs"
       for m in ("", ".params", ".convert", ".paths", ".files", ".docs")}, "petlib.layout": "paths",
    "petlib.lock": "the study folder's lock", "petlib.stages": "declares the inputs",
    "petlib.codegraph": "reads the code", "petlib.curves": "TensorBoard curves beside a run",
    "petlib.study": "the runner: executes and renders", "petlib.stage_table": "decides what runs",
    "petlib.status": "says what would run",
    "petlib.index_page": "the index page", "petlib.cli": "the command line: calls the stages",
    "petlib.metrics.simulate": "synthetic embeddings for the statistics tests; no stage",
    "petlib.metrics.calibration": "the null simulation of benchmarks/error_rates.py and the tests; no stage",
    "petlib.data.content": "hashes the data files for the split fingerprints (the inputs themselves)",
    "petlib": "the package: a check that the environment is the project's, a warning filter",
}
NEUTRAL = frozenset(NEUTRAL_WHY)
# Modules that only produce the data (01_data's work, never run inside a later stage: tests/test_forgotten.py
# traces it): the split fingerprints in `files` cover what they do. What stages run of the data package
# (reading the manifest, the sources' roots and look-alike families) is their code.
DATA_MODULES = frozenset({"petlib.synth", "petlib.data.prepare", "petlib.data.scan", "petlib.data.audit"})

_OPENCV = ("opencv-python-headless", "opencv-python")
LIBRARIES = {
    "data": ("numpy", _OPENCV, "pillow", "imagehash"),
    "train": ("torch", "torchvision", "timm", "albumentations", "numpy", _OPENCV, "pillow"),
    "eval": ("torch", "timm", "numpy", "scipy", "scikit-learn", "faiss-cpu", _OPENCV, "pillow"),
    "export": ("torch", "timm", "numpy", "onnx", "onnxscript", "onnxruntime", "executorch", "coremltools",
               "litert-torch", "ai-edge-litert"),
    "compare": ("numpy", "scipy"),
}

# What each stage writes that later stages and reports read, relative to its folder: recorded by hash when it
# finishes, so that an output deleted or edited by hand makes the stage stale (and the runner says which).
OUTPUTS = {"train": ("pet_embedder.pt", "history.json", "config.json"),
           "eval": ("metrics.json", "figures.npz", "resample.npz"),
           "export": ("export.json", "pet_embedder.*"), "compare": ("tables.json",)}

ENTRY = {"train": {"petlib.train"}, "eval": {"petlib.evaluate"}, "export": {"petlib.export.pipeline"},
         "compare": {"petlib.compare_stage"}}

_TRAIN = ("batch_size", "weight_decay", "warmup_epochs", "eta_min", "arcface_s", "arcface_m", "margin_warmup_frac",
          "label_smoothing", "grad_clip", "dropout", "embedding_dim", "val_every", "max_steps_per_epoch", "partial_fc")
PARAMS = {
    "data": ("seed", "data.source", "data.benchmark", "data.lookalike_column", "data.species", "data.synth.n_identities",
             "data.synth.n_test_identities", "data.synth.image_size", "data.synth.seed", "data.synth.lookalike_family",
             "data.min_images", "data.split_ratios", "data.max_pixels", "data.duplicates"),
    "train": ("seed", "data.image_size", "data.n_pairs", *(f"train.{k}" for k in _TRAIN), "model.backbone",
              "model.image_size", "model.head", "model.lr", "model.backbone_lr_mult", "model.epochs"),
    "eval": ("seed", "eval.tta", "eval.n_rank_pairs", "eval.n_triplets", "eval.n_overfit", "eval.n_robustness",
             "eval.n_bootstrap", "eval.gallery_frac", "eval.cluster_identities",
             "data.lookalike_column", "data.synth.lookalike_family"),
    "export": ("seed", "eval.n_rank_pairs", "export.formats", "export.int8_max_mb", "export.qat_epochs",
               "export.qat_lr"),
    "compare": ("seed", "eval.n_bootstrap", "data.benchmark"),
}
# Every other params key, and why it is not an input (tests/test_stages.py checks that each key is one or the other).
NOT_INPUTS = {
    "name": "the study's folder name", "output_dir": "a path", "reports_dir": "a path", "data.synth_dir": "a path",
    "data.roots": "paths: the files' fingerprints are inputs", "data.tables": "paths: the files' hashes are inputs",
    "data.identity_lists": "paths: the files' hashes are inputs", "data.manifest": "paths: the splits' fingerprints are inputs",
    "model.pretrained": "a path: the weights file's hash is an input", "model.name": "names the run folder",
    "model.species": "which runs exist", "notebooks": "which reports exist", "export.runs": "which runs are exported",
    "eval.compare": "NAME:DIR entries: the metrics files' hashes are inputs", "train.repeats": "how many runs exist",
    "train.repeat_runs": "which runs repeat",
    "train.run_repeats": "how many runs exist", "reproducible": "how kernels are picked (provenance)",
    "train.device": "where it runs (provenance)", "train.amp": "how it computes on a GPU (provenance)",
    "train.channels_last": "memory layout (provenance)", "train.num_workers": "loader processes; augmentations are "
    "seeded per image and epoch", "train.pin_memory": "a transfer detail", "train.checkpoint_minutes": "how often "
    "a resumable checkpoint is written",
    "train.cache_mb": "decoded images kept in RAM, in training and QAT: the same pixels (tests check)",
    "library_versions": "whether the libraries' versions are inputs (the `software` group) or provenance",
}


def param_value(params: StudyParams, key: str, model: str | None = None):
    """The value of a dotted key (`model.` keys of the named model)."""
    node = params.model(model) if key.startswith("model.") else params
    for part in key.split(".")[1:] if key.startswith("model.") else key.split("."):
        node = getattr(node, part)
    return json.loads(json.dumps(node))


def code_inputs(entries: set[str], leave_out: frozenset[str] = NEUTRAL | DATA_MODULES) -> dict[str, str]:
    """petlib file -> digest, for every module the entry points use, neutral and data modules aside."""
    mods = codegraph.closure(entries, stop=leave_out) - leave_out
    return {codegraph.relpath(m): codegraph.code_digest(m) for m in sorted(mods)}


def _version(dists: str | tuple[str, ...]) -> str | None:
    from importlib import metadata

    for d in (dists,) if isinstance(dists, str) else dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


def software_inputs(params: StudyParams, stage: str) -> dict | None:
    """{library: version or None} the stage computes with; None when versions are provenance only."""
    if params.library_versions == "provenance":
        return None
    return {(d if isinstance(d, str) else d[0].split("-python")[0]): _version(d) for d in LIBRARIES[stage]}


def file_digest(path: Path) -> str | None:
    """A file's SHA-256 (16 hex digits), None when it does not exist."""
    return file_sha256(path)[:16] if Path(path).is_file() else None


@dataclass
class Check:
    """One stage's inputs now, and its stamp file; `reasons()` says what changed since it last finished."""
    stage: str
    stamp: Path
    params: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    code: dict = field(default_factory=dict)
    software: dict | None = None
    outputs: tuple[str, ...] = ()

    def inputs(self) -> dict:
        out = {"params": self.params, "files": self.files, "code": self.code}
        return out if self.software is None else {**out, "software": self.software}

    def recorded(self) -> dict | None:
        try:
            return json.loads(self.stamp.read_text())
        except (OSError, ValueError):
            return None

    def reasons(self) -> list[str]:
        """Empty when up to date, else what changed, in words (`eval.n_bootstrap 200 -> 21`)."""
        old = self.recorded()
        if old is None:
            return ["not run yet"]
        why = diff(old.get("inputs", {}), self.inputs())
        if old.get("state") != "finished":
            return ["did not finish"] + why
        return why + [f"output {k} {how}" for k, how in self.output_changes(old).items()]

    def output_changes(self, old: dict | None = None) -> dict[str, str]:
        """{recorded output: "missing" or "edited"} for the outputs that are not as the stage wrote them."""
        old = self.recorded() if old is None else old
        if not old or old.get("state") != "finished":
            return {}
        now = self.output_digests()
        return {k: "missing" if k not in now else "edited" for k, v in old.get("outputs", {}).items() if now.get(k) != v}

    def missing_outputs(self) -> list[str]:
        return [k for k, how in self.output_changes().items() if how == "missing"]

    def output_digests(self) -> dict:
        """{file relative to the stage folder: SHA-256 (16 digits)} of the stage's outputs now."""
        folder = self.stamp.parent
        found = sorted({p for pattern in self.outputs for p in folder.glob(pattern) if p.is_file()})
        return {p.relative_to(folder).as_posix(): file_digest(p) for p in found}

    def up_to_date(self) -> bool:
        return not self.reasons()

    def resumable(self) -> bool:
        """Started with these very inputs and stopped before the end (training resumes then)."""
        old = self.recorded()
        return bool(old) and old.get("state") == "started" and not diff(old.get("inputs", {}), self.inputs())

    def write(self, state: str = "finished", **provenance) -> None:
        outputs = self.output_digests() if state == "finished" else {}
        atomic_write_json(self.stamp, {"stage": self.stage, "state": state, "inputs": self.inputs(), "outputs": outputs,
                                       "host": socket.gethostname(), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                       **provenance})

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(self.inputs(), sort_keys=True).encode()).hexdigest()[:16]


def diff(old: dict, new: dict, most: int = 6) -> list[str]:
    """What differs between two recorded inputs: params and software by value, files and code by name.
    A group `new` does not have (software, when versions are provenance) is not compared."""
    out = []
    for group in ("params", "files", "code", "software"):
        if group not in new and group != "params":
            continue
        a, b = old.get(group, {}), new.get(group, {})
        for k in sorted(set(a) | set(b)):
            if a.get(k) == b.get(k):
                continue
            if group in ("params", "software"):
                out.append(f"{k} {json.dumps(a.get(k))} -> {json.dumps(b.get(k))}")
            elif group == "code":
                out.append(f"code {k} " + ("changed" if k in a and k in b else "added" if k in b else "no longer used"))
            else:
                out.append(f"{k} " + ("changed" if a.get(k) and b.get(k) else "new" if b.get(k) else "gone"))
    return out if len(out) <= most else out[:most] + [f"and {len(out) - most} more"]


def _params_of(params: StudyParams, stage: str, model: str | None = None) -> dict:
    return {k: param_value(params, k, model) for k in PARAMS[stage]}


def _split_fingerprints(params: StudyParams, species: str, *groups: tuple[str, ...]) -> dict:
    """One fingerprint per group of splits ("train+val split": ...), from one read of the manifest."""
    from . import data

    try:
        splits = data.load_splits(params, species)
    except data.DataError:
        return {f"{'+'.join(g)} split": None for g in groups}
    return {f"{'+'.join(g)} split": data.splits_fingerprint(params, splits, g) for g in groups}


def train_check(params: StudyParams, model: str, species: str, repeat: int = 0) -> Check:
    m = params.model(model)
    files = _split_fingerprints(params, species, ("train", "val"))
    if m.pretrained:
        files["pretrained weights"] = (file_digest(Path(m.pretrained)) if m.pretrained != "hub"
                                       else _hub_weights(m.backbone))
    ps = {**_params_of(params, "train", model), "train seed": params.train_seed(repeat)}
    return Check(f"train {run_name(model, species, repeat)}", Layout(params).run_dir(model, species, repeat) / STAMP,
                 ps, files, code_inputs(ENTRY["train"]), software_inputs(params, "train"), OUTPUTS["train"])


def _hub_weights(backbone: str) -> str:
    """The digest of the file `pretrained: hub` resolves to in the local hub cache, not the word "hub"."""
    from .models import hub_weights_file

    path = hub_weights_file(backbone)
    return f"hub {file_digest(path)}" if path else "hub (not in this machine's cache)"


def _run_files(params: StudyParams, model: str, species: str, repeats: int) -> dict:
    out = {}
    for r in range(repeats):
        run = Layout(params).run_dir(model, species, r)
        tag = f" r{r}" if r else ""
        out[f"checkpoint{tag}"] = file_digest(run / "pet_embedder.pt")
        out[f"val thresholds{tag}"] = _thresholds(run)
    return out


def _thresholds(run: Path) -> str | None:
    """The run's validation thresholds (what evaluation and export apply), as a short digest."""
    import hashlib

    from .run import RunDir

    if not (run / "history.json").is_file():
        return None
    s = RunDir(run).summary()
    text = json.dumps([s.get("val_threshold"), s.get("val_far_thresholds")], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def eval_check(params: StudyParams, model: str, species: str) -> Check:
    files = {**_run_files(params, model, species, params.repeats(model, species)),
             **_split_fingerprints(params, species, ("test",), ("train",)),
             "protocol": file_digest(Layout(params).protocol_file(species))}
    return Check(f"eval {run_name(model, species)}", Layout(params).eval_dir(model, species) / STAMP,
                 _params_of(params, "eval"), files, code_inputs(ENTRY["eval"]), software_inputs(params, "eval"),
                 OUTPUTS["eval"])


def export_check(params: StudyParams, model: str, species: str) -> Check:
    files = {**_run_files(params, model, species, 1), **_split_fingerprints(params, species, ("train", "val", "test"))}
    ps = _params_of(params, "export")
    ps["export.formats"] = ps["export.formats"] or list(FORMAT_IDS)  # empty means every format
    return Check(f"export {run_name(model, species)}", Layout(params).export_dir(model, species) / STAMP,
                 ps, files, code_inputs(ENTRY["export"]), software_inputs(params, "export"), OUTPUTS["export"])


def compare_check(params: StudyParams) -> Check:
    files = {}
    for name, d in Layout(params).comparison_runs().items():
        files[f"{name} metrics"] = file_digest(Path(d) / "metrics.json")
        files[f"{name} resample"] = file_digest(Path(d) / "resample.npz")
    files["published figures"] = file_digest(codegraph.PETLIB / "published.yaml")  # the rows beside ours
    files["claims"] = file_digest(codegraph.PETLIB / "claims.yaml")  # design §9.3's claims and their rules
    return Check("compare", Layout(params).compare_dir() / STAMP, _params_of(params, "compare"), files,
                 code_inputs(ENTRY["compare"]), software_inputs(params, "compare"), OUTPUTS["compare"])


def _tree_fingerprint(root: Path, cache: Path) -> str | None:
    """Relative path and SHA-1 (`data.content`) of every file under `root` (None when it does not exist)."""
    import hashlib
    import os

    from .data import content

    if not root.is_dir():
        return None
    paths = []
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        paths += [Path(d) / f for f in sorted(files)]
    h = hashlib.sha256()
    for p, digest in zip(paths, content.sha1s(paths, cache)):
        h.update(f"{p.relative_to(root).as_posix()}\t{digest}\n".encode())
    return h.hexdigest()[:16]


def data_inputs(params: StudyParams) -> dict:
    """01_data's inputs: its params, and the files it reads (the image trees, tables, lists, manifests)."""
    from .data import data_root

    files = {}
    for s in params.data.species:
        root = params.data.roots.get(s) if params.data.source == "table" else data_root(params, s)
        if root:
            files[f"{s} images"] = _tree_fingerprint(Path(root), Layout(params).content_cache())
        for kind, table in (("table", params.data.tables), ("manifest", params.data.manifest)):
            if s in table:
                files[f"{s} {kind}"] = file_digest(Path(table[s]))
    for k, v in params.data.identity_lists.items():
        files[f"{k} identity list"] = file_digest(Path(v))
    software = software_inputs(params, "data")
    return {"params": _params_of(params, "data"), "files": files, **({} if software is None else {"software": software})}

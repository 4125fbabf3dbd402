"""The params' dataclasses, their defaults (each field's comment is its documentation) and their checks."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..constants import FORMAT_IDS
from ..data.sources import SOURCES
from ..layout import run_name


class ParamsError(ValueError):
    """A params file or override is invalid; the message names the key and the file."""


@dataclass
class SynthParams:
    """The embedded, procedurally generated data set (used when `data.source` is `synth`)."""
    n_identities: int = 200  # identities per species, split train / val / test by data.split_ratios
    n_test_identities: int = 0  # > 0: this many more, drawn apart, are the test split alone (size it by power)
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
    run_repeats: dict[str, int] = field(default_factory=dict)  # run (model-species) -> its own repeats, over the two above
    partial_fc: float = 1.0  # ArcFace classes scored per step (Partial-FC sample rate); 1.0: all
    checkpoint_minutes: float = 10.0  # also write last_checkpoint.pt inside an epoch this often; 0: every step
    cache_mb: float = 4096.0  # RAM (MB) for the training images decoded and resized once (same pixels); 0: off

    def validate(self, where: str) -> None:
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ParamsError(f"{where}: train.device must be auto, cpu or cuda[:N], got {self.device!r}")
        for name in ("batch_size", "val_every", "embedding_dim", "repeats"):
            if getattr(self, name) < 1:
                raise ParamsError(f"{where}: train.{name} must be positive")
        if any(n < 1 for n in self.run_repeats.values()):
            raise ParamsError(f"{where}: train.run_repeats must give each run at least 1 repeat, got {self.run_repeats}")
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
    image_size: int | None = None  # px this model sees (a backbone's last map should be >= 3x3); null: data.image_size

    def validate(self, where: str) -> None:
        if self.image_size is not None and self.image_size < 32:
            raise ParamsError(f"{where}: models[{self.name}].image_size must be at least 32, got {self.image_size}")
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
    cluster_identities: int | None = None  # test identities clustered (drawn once by the seed); null: all
    compare: list[str] = field(default_factory=list)  # NAME:EVAL_DIR entries for 04_compare; empty: this study's runs

    def validate(self, where: str) -> None:
        if self.cluster_identities is not None and self.cluster_identities < 2:
            raise ParamsError(f"{where}: eval.cluster_identities must be at least 2 (or null: all), "
                              f"got {self.cluster_identities}")


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
    library_versions: str = "input"  # "input": upgrading a library a stage computes with re-runs it; "provenance": only recorded
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
        if self.library_versions not in ("input", "provenance"):
            raise ParamsError(f"{where}: library_versions must be 'input' or 'provenance', got {self.library_versions!r}")
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
        for key, named in (("train.repeat_runs", self.train.repeat_runs), ("train.run_repeats", list(self.train.run_repeats)),
                           ("export.runs", self.export.runs)):
            unknown = [r for r in named if r not in runs]
            if unknown:
                raise ParamsError(f"{where}: {key} names {unknown}, which this study does not train; runs: {runs}")
        self.export.validate(where)
        self.eval.validate(where)

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
        """Training repeats of one run: its `train.run_repeats`, else `train.repeats` for the runs in
        `train.repeat_runs` (or all), else 1."""
        rr, run = self.train.repeat_runs, run_name(model, species)
        if run in self.train.run_repeats:
            return self.train.run_repeats[run]
        return self.train.repeats if not rr or run in rr else 1

    def train_seed(self, repeat: int = 0) -> int:
        """Repeat r trains with the study seed plus r; the data split and the pairs keep the study seed."""
        return self.seed + repeat

    def image_size(self, name: str) -> int:
        """The input size model `name` trains and is evaluated at: its own, else data.image_size."""
        return self.model(name).image_size or self.data.image_size

    def model(self, name: str) -> ModelParams:
        for m in self.models:
            if m.name == name:
                return m
        raise ParamsError(f"no model named {name!r}; the params name {[m.name for m in self.models]}")

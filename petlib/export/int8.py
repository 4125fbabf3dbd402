"""INT8 that keeps the task: a search over post-training quantisation settings, scored on validation by
the task metrics (verification accuracy, Recall@1, TAR@FAR=1e-3), not by mean cosine. INT8 is one of the
formats of design §8.1; the size goal, under 2 MB on disk, is design §1.

Why a search: one fixed setting met the 2 MB goal but not reliably the task, and which setting won
flipped with the training noise. Three things decide what INT8 keeps:
- the calibration: how activation ranges are set (MinMax, Entropy, Percentile) and on how many images;
- the weights: per-tensor or per-channel scales, full 8-bit or 7-bit ("reduce_range") weights. On x86
  CPUs without VNNI, onnxruntime's u8 x s8 kernels can saturate (VPMADDUBSW); 7-bit weights avoid it;
- which nodes stay fp32: the first conv, squeeze-excite blocks, the embedding head (each costs size).

Every candidate is scored twice on validation: through this CPU's integer kernels and through a
kernel-free simulation (the QDQ graph with graph optimisations off, so every QuantizeLinear and
DequantizeLinear runs as written and the convolutions in fp32). A phone's kernels do not saturate like
an AVX2 CPU's, so a candidate must keep the task in both to count as kept. Its score is its worst loss
in points over the three metrics and both modes; over the size cap it cannot be shipped.

The search is greedy, one stage at a time (each from the best so far): calibration method x weight
scheme at 256 images, then the calibration set size, then the fp32 node groups. What counts as best
is in `_rank`. With `export.qat_epochs`, a last stage adds quantisation-aware training (`qat`): its
observers' ranges alone (0 epochs) and after fine-tuning, so what the training buys is measured apart
from what torch.ao's own placement of the quantisation does.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .. import metrics
from ..io import atomic_path
from .measure import TASK_KEYS, TestSet, parity, run_batched

METHODS = ("MinMax", "Entropy", "Percentile")
CALIBRATION_SIZES = (64, 256, 1024)
# onnxruntime's Entropy default (128 bins into 128 quantised bins) leaves one candidate range, the full
# one: its ranges then equal MinMax's exactly. 512 bins give the KL search 193 ranges to choose from.
CALIBRATOR_OPTIONS = {"MinMax": {}, "Entropy": {"num_bins": 512, "num_quantized_bins": 128},
                      "Percentile": {"num_bins": 2048, "percentile": 99.999}}
CALIBRATION_BATCH = 16  # images per collect call
TARGET_POINTS = 1.0  # a candidate keeps the task when no metric drops by more than this many points


@dataclass(frozen=True)
class Setting:
    method: str = "MinMax"
    calibration_images: int = 256
    per_channel: bool = False
    reduce_range: bool = False
    fp32: tuple[str, ...] = ()
    qat_epochs: int | None = None  # None: post-training quantisation; a number: QAT for that many epochs

    def label(self) -> str:
        weights = ("per-channel" if self.per_channel else "per-tensor") + (", 7-bit" if self.reduce_range else "")
        keep = f", fp32: {' + '.join(self.fp32)}" if self.fp32 else ""
        qat = "" if self.qat_epochs is None else \
            ("QAT observers only (0 epochs), " if not self.qat_epochs else f"QAT {self.qat_epochs} epochs, ")
        return f"{qat}{self.method}, {self.calibration_images} images, {weights}{keep}"


BEFORE_SEARCH = Setting(per_channel=True)  # what was shipped before the search (when its cosine won)


def node_groups(model) -> dict[str, list[str]]:
    """The node groups that may stay fp32, by the exported graph's node names (timm and our heads);
    a group the model lacks (MobileFaceNet has no squeeze-excite) is left out."""
    names = [n.name for n in model.graph.node]
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    groups = {"first conv": convs[:1], "squeeze-excite": [n for n in names if "/se/" in n],
              "embedding head": [n for n in names if n.startswith("/head/")]}
    return {k: v for k, v in groups.items() if v}


class _Batch:
    """onnxruntime CalibrationDataReader over one preprocessed batch."""

    def __init__(self, x: np.ndarray, name: str):
        self.feed = [{name: x}]

    def get_next(self):
        return self.feed.pop() if self.feed else None


def calibrate(pre: Path, items: Sequence, image_size: int, method: str, workdir: Path):
    """Activation ranges (onnxruntime TensorsData) of the preprocessed model on `items`, collected a batch
    at a time: the activations of all images at once would take gigabytes at 224 px, and the histogram
    collectors stack each call's batches, so they must be one batch (a short last one included)."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    from ..embed import preprocess_images

    calibrator = create_calibrator(pre, None, augmented_model_path=str(workdir / f"augmented.{method}.onnx"),
                                   calibrate_method=getattr(CalibrationMethod, method),
                                   extra_options=CALIBRATOR_OPTIONS[method])
    name = calibrator.infer_session.get_inputs()[0].name
    with contextlib.redirect_stdout(io.StringIO()):
        for i in range(0, len(items), CALIBRATION_BATCH):
            calibrator.collect_data(_Batch(preprocess_images(items[i:i + CALIBRATION_BATCH], image_size), name))
        return calibrator.compute_data()


def quantize(pre: Path, ranges, setting: Setting, groups: dict[str, list[str]], out: Path) -> Path:
    """Static QDQ INT8 (u8 activations, s8 weights) of the preprocessed model with the given ranges: what
    `quantize_static` does after its own calibration, which cannot be given the histogram sizes."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    from onnxruntime.quantization.quantize import update_opset_version
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    model = update_opset_version(load_model_with_shape_infer(pre), QuantType.QInt8)
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    q = QDQQuantizer(model, setting.per_channel, setting.reduce_range, QuantType.QInt8, QuantType.QUInt8, ranges,
                     [], [n for g in setting.fp32 for n in groups[g]], op_types, {})
    q.quantize_model()
    q.model.topological_sort()  # the quantizer appends its nodes out of order; the ONNX spec asks for order
    model = compact_names(q.model.model)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return out


def compact_names(model):
    """Short names for every node and inner tensor (the graph's inputs and outputs keep theirs).

    onnxruntime names QDQ tensors after the exporter's module paths ("/backbone/blocks/blocks.2/...
    _QuantizeLinear_Output"): 160 kB of a 1.9 MB MobileNetV3, which the phone never needs. The graph,
    weights and outputs are unchanged."""
    g = model.graph
    keep = {v.name for v in [*g.input, *g.output]}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, np.base_repr(len(names), 36).lower())

    for i in [*g.initializer, *g.value_info]:
        i.name = short(i.name)
    for n in g.node:
        n.name = ""
        n.input[:] = [short(x) for x in n.input]
        n.output[:] = [short(x) for x in n.output]
    return model


def simulated_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The QDQ graph with every optimisation off: quantise/dequantise run as written and the convolutions
    in fp32, so no integer kernel (and no CPU-specific saturation) is involved."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def judge(path: Path, ts: TestSet, recall_flips: bool = False) -> dict:
    """Cosine and task deltas through this CPU's kernels and through the kernel-free simulation, and the
    candidate's loss: its worst drop in points over both (0 when nothing drops). With `recall_flips`,
    also `recall_change` of the kernels' embeddings (the verdict on test)."""
    from ..onnx_file import onnx_runner

    emb = run_batched(onnx_runner(path), ts.x)
    kernels = parity(emb, ts)
    simulated = parity(run_batched(simulated_runner(path), ts.x), ts)
    drops = [-d[f"delta_{k}"] for d in (kernels, simulated) for k in TASK_KEYS]
    out = {**kernels, **{f"simulated_{k}": v for k, v in simulated.items()},
           "loss_points": round(max(0.0, *drops) * 100, 4)}
    if recall_flips:
        out["recall_change"] = recall_change(emb, ts)
    return out


def _next_settings(stage: str, best: Setting, groups: dict, available: int) -> list[Setting]:
    """The candidates of one stage; calibration sizes are capped by the images there are."""
    if stage == "calibration and weights":
        n = min(256, available)
        return [Setting(m, n, pc, rr) for m, pc, rr in itertools.product(METHODS, (False, True), (False, True))]
    if stage == "calibration set size":
        return [replace(best, calibration_images=n) for n in sorted({min(n, available) for n in CALIBRATION_SIZES})]
    subsets = [c for r in range(1, len(groups) + 1) for c in itertools.combinations(groups, r)]
    return [replace(best, fp32=s) for s in subsets]


def _rank(row: dict) -> tuple:
    """Under the size cap first; then those that keep the task (worst loss within `TARGET_POINTS`),
    among which the most faithful (mean cosine), then the smaller file; then the rest by their loss.

    Gains over fp32 on validation are not rewarded: a candidate far from fp32 (cosine 0.94) can gain
    2 points on a few hundred images by chance and lose them on the next set."""
    keeps = row["loss_points"] <= TARGET_POINTS
    return (not row["under_cap"], not keeps, 0.0 if keeps else row["loss_points"], -row["mean_cosine"], row["bytes"])


@dataclass
class SearchResult:
    rows: list[dict]
    best: Setting
    before: Setting
    paths: dict
    qat_error: str | None = None  # why the QAT stage stopped, when it failed

    def to_json(self) -> dict:
        kept = next(r for r in self.rows if r["kept"])
        return {"rows": self.rows, "kept": self.best.label(), "kept_setting": asdict(self.best),
                "kept_under_cap": kept["under_cap"], **({"qat_error": self.qat_error} if self.qat_error else {})}


def _prepare(fp32: Path, pre: Path) -> dict[str, list[str]]:
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with contextlib.redirect_stdout(io.StringIO()):
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    return node_groups(onnx.load(str(pre)))


def quantize_file(fp32: Path, out: Path, calibration_items: Sequence, image_size: int,
                  setting: Setting = BEFORE_SEARCH) -> Path:
    """One INT8 file of a post-training setting, without the search (benchmarks/run_all.py times it)."""
    import tempfile

    if setting.qat_epochs is not None:
        raise ValueError(f"{setting.label()}: a QAT setting needs the torch model (petlib.export.qat)")

    with tempfile.TemporaryDirectory() as d:
        pre = Path(d) / "preprocessed.onnx"
        groups = _prepare(fp32, pre)
        ranges = calibrate(pre, calibration_items[:setting.calibration_images], image_size, setting.method, Path(d))
        return quantize(pre, ranges, setting, groups, out)


def qat_settings(epochs: int, calibration_images: int) -> list[Setting]:
    """The QAT stage's candidates: the observers' ranges alone, then after `epochs` of fine-tuning."""
    base = Setting("MinMax", calibration_images, per_channel=True)
    return [replace(base, qat_epochs=e) for e in sorted({0, epochs})]


def search(fp32: Path, calibration_items: Sequence, image_size: int, val: TestSet, cap_bytes: int, workdir: Path,
           progress: bool = False, qat: Callable[[Setting, Path], Path] | None = None,
           qat_epochs: int = 0) -> SearchResult:
    """Greedy search (see the module docstring). `calibration_items` are images (paths or arrays) not in
    `val`; the first n of them calibrate an n-image candidate. `qat(setting, out)` writes a QAT
    candidate (with `qat_epochs` > 0); if it raises, the stage stops there with the reason in
    `qat_error` and the post-training candidates stand. Returns every candidate's row and files."""
    from ..progress import bar

    pre = workdir / "preprocessed.onnx"
    groups = _prepare(fp32, pre)
    ranges, rows, files, qat_error = {}, [], {}, None
    best = Setting()
    stages = ["calibration and weights", "calibration set size", "fp32 nodes"]
    stages += ["quantisation-aware training"] if qat and qat_epochs > 0 else []
    with bar(total=None, desc="INT8 search", disable=not progress) as pbar:
        for stage in stages:
            todo = qat_settings(qat_epochs, len(calibration_items)) if stage.startswith("quantisation") else \
                _next_settings(stage, best, groups, len(calibration_items))
            for s in todo:
                if s in files:
                    continue
                out = workdir / f"candidate{len(files)}.onnx"
                if s.qat_epochs is None:
                    key = (s.method, s.calibration_images)
                    if key not in ranges:
                        ranges[key] = calibrate(pre, calibration_items[:s.calibration_images], image_size, s.method,
                                                workdir)
                    files[s] = quantize(pre, ranges[key], s, groups, out)
                else:
                    try:
                        files[s] = qat(s, out)
                    except Exception as e:  # an extra candidate: a model torch.ao cannot trace loses only it
                        qat_error = f"{s.label()}: {type(e).__name__}: {e}".replace("\n", " ")
                        break
                size = files[s].stat().st_size
                rows.append({"stage": stage, "setting": s.label(), "bytes": size, "under_cap": size <= cap_bytes,
                             **judge(files[s], val), "_setting": s})
                pbar.update(1)
            best = min(rows, key=_rank)["_setting"]
    for r in rows:
        r["kept"] = r.pop("_setting") == best
    before = replace(BEFORE_SEARCH, calibration_images=min(256, len(calibration_items)))
    return SearchResult(rows, best, before, files, qat_error)


def recall_change(emb: np.ndarray, ts: TestSet, n_boot: int = 1000, seed: int = 0) -> dict:
    """Which queries find their rank-1 match through fp32 but not INT8 (lost) and the reverse (gained),
    and the change in Recall@1 in points with its paired bootstrap intervals, test identities resampled
    (a pet's queries flip together), and the equivalence verdict on the 90% one (`equivalence`)."""
    q = metrics.leave_one_out(emb, ts.labels)
    diff = q.hit1 - metrics.leave_one_out(ts.reference, ts.labels).hit1
    uniq, group = np.unique(q.label, return_inverse=True)
    boot = metrics.bootstrap(lambda c: [(diff * c[group]).sum() / max(1, c[group].sum()) * 100], [len(uniq)],
                             n_boot, seed)
    (lo, hi), (lo90, hi90) = metrics.interval(boot)[:, 0], metrics.interval(boot, 0.90)[:, 0]
    delta = float(diff.mean() * 100)
    return {"queries": int(len(diff)), "identities": int(len(uniq)), "lost": int((diff < 0).sum()),
            "gained": int((diff > 0).sum()), "delta_points": delta, "ci95_points": [float(lo), float(hi)],
            "ci90_points": [float(lo90), float(hi90)],
            **equivalence(delta, (float(lo90), float(hi90)), TARGET_POINTS, len(uniq))}


def equivalence(delta: float, ci90: tuple[float, float], margin: float, n_identities: int) -> dict:
    """Two one-sided tests as one interval: the 90% interval inside (-margin, +margin) -> "equivalent";
    wholly outside it -> "not equivalent"; straddling a bound -> "cannot tell at this test size", with
    about how many test identities would decide it were the change what it is (the half-width shrinks as
    1/sqrt(n))."""
    lo, hi = ci90
    half = (hi - lo) / 2
    if -margin < lo and hi < margin:
        return {"equivalence": "equivalent", "identities_to_decide": None}
    if hi < -margin or lo > margin:
        return {"equivalence": "not equivalent", "identities_to_decide": None}
    room = abs(abs(delta) - margin)  # how far the point estimate is from the nearer bound
    need = math.ceil(round(n_identities * (half / room) ** 2, 6)) if room > 0 else None
    return {"equivalence": "cannot tell at this test size", "identities_to_decide": need}

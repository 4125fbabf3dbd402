"""Quantisation-aware training's parts: BatchNorm folding keeps the outputs, the cleaned QDQ file computes
what the fake-quantised torch model computes (and runs on integer kernels), weights are quantised as the
ONNX spec says, and training moves the weights against frozen scales that the file then carries."""
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from petlib.export import int8, qat
from petlib.models import create_embedder

pytestmark = [pytest.mark.slow, pytest.mark.export]

SIZE = 32


def _embedder(name: str = "mobilenetv3_small_100"):
    """A random embedder whose BatchNorms have non-trivial statistics (folding must use them)."""
    torch.manual_seed(0)
    e = create_embedder(name, image_size=SIZE, embedding_dim=16)
    for m in e.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return e.eval()


def _images(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [a for a in rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)]


@pytest.mark.parametrize("name", ["mobilenetv3_small_100", "mobilefacenet"])
def test_folding_removes_every_conv_batchnorm_and_keeps_the_outputs(name):
    e = _embedder(name)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in e.modules())
    folded = qat.fold_batchnorm(e)
    left = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert n_bn > 10 and left == 0, (n_bn, left)
    assert not [m for m in folded.modules() if isinstance(m, (nn.Dropout, nn.Identity))]
    assert not [n for n in folded.graph.nodes if "dropout" in str(n.target)]
    x = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(folded(x), e(x), atol=1e-5)


def test_weights_quantise_as_the_onnx_spec_reads():
    """Round half to even, the zero point added, saturation, one scale per output channel (axis 0)."""
    w = np.array([[0.5, 1.5, -2.5, 300.0], [0.25, -0.25, 0.75, -1000.0]], np.float32)
    q = qat._quantize_array(w, np.array([1.0, 0.5], np.float32), np.array([0, 0], np.int8), axis=0)
    assert q.dtype == np.int8
    assert q.tolist() == [[0, 2, -2, 127], [0, 0, 2, -128]]
    u = qat._quantize_array(np.array([0.0, 1.0, -9.0], np.float32), np.array(0.5, np.float32), np.array(10, np.uint8), 1)
    assert u.dtype == np.uint8 and u.tolist() == [10, 12, 0]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """The MNv3 embedder prepared, its observers set on 32 images, exported (no fine-tuning)."""
    e = _embedder()
    student = qat.prepare(e, SIZE)
    qat.fine_tune(student, e, _images(8), _images(32, 1), SIZE, qat.QATRecipe(0, 1e-4, 0))
    path = qat.export_qdq(student, SIZE, tmp_path_factory.mktemp("qat") / "q.onnx")
    return e, student, path


def test_qdq_file_computes_what_the_fake_quantised_model_computes(calibrated):
    """The kernel-free simulation of the file against torch's fake quantisation: the same graph up to a
    rare rounding flip (torch multiplies by 1/scale, ONNX divides by the scale)."""
    e, student, path = calibrated
    x = torch.from_numpy(np.stack([qat._batch([im], SIZE)[0].numpy() for im in _images(16, 2)]))
    with torch.no_grad():
        ref = student(x).numpy()
    sim = int8.simulated_runner(path)(x.numpy())
    cos = (sim * ref).sum(1) / np.linalg.norm(sim, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.999, cos.min()
    with torch.no_grad():
        fp32 = e(x).numpy()
    assert np.abs(ref - fp32).max() > 1e-3  # the fake quantisation is really there


def test_qdq_file_stores_int8_weights_and_fuses_into_integer_kernels(calibrated, tmp_path):
    import onnxruntime as ort

    _, _, path = calibrated
    m = onnx.load(str(path))
    ops = [n.op_type for n in m.graph.node]
    assert "Identity" not in ops and "QuantizeLinear" in ops
    made_by = {o: n.op_type for n in m.graph.node for o in n.output}
    doubles = [n.name for n in m.graph.node if n.op_type == "QuantizeLinear" and made_by.get(n.input[0]) == "DequantizeLinear"]
    assert not doubles, doubles  # onnxruntime's double-pair remover writes invalid zero points
    weights = [i for i in m.graph.initializer if len(i.dims) == 4]
    assert weights and all(i.data_type == onnx.TensorProto.INT8 for i in weights)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    convs = sum(op == "Conv" for op in ops)
    assert fused.count("QLinearConv") == convs, (fused.count("QLinearConv"), convs)


def _activation_scales(student):
    from torch.ao.quantization import FakeQuantize

    return sorted(float(m.scale) for m in student.modules() if isinstance(m, FakeQuantize) and m.scale.numel() == 1)


def test_training_moves_the_weights_against_frozen_scales_which_the_file_carries(tmp_path):
    """The ranges are set on the calibration images and then frozen: fine-tuning changes the weights, not
    the scales, and the exported graph's activation scales are the ones trained against. Epoch 0 is the
    ranges alone, measured without a step; the teacher is not trained along."""
    e = _embedder()
    train, cal = _images(64, 3), _images(32, 4)
    x = qat._batch(train, SIZE)
    with torch.no_grad():
        before = e(x)
    ranges_only = qat.prepare(e, SIZE)
    qat.fine_tune(ranges_only, e, train, cal, SIZE, qat.QATRecipe(0, 1e-4, 0))
    student = qat.prepare(e, SIZE)
    hist = qat.fine_tune(student, e, train, cal, SIZE, qat.QATRecipe(2, 1e-3, 0))
    assert [h["epoch"] for h in hist] == [0, 1, 2]
    assert _activation_scales(student) == _activation_scales(ranges_only)
    w0 = dict(ranges_only.named_parameters())
    moved = [n for n, w in student.named_parameters() if not torch.equal(w, w0[n])]
    assert len(moved) > len(w0) // 2, (len(moved), len(w0))
    with torch.no_grad():
        loss0 = (1 - torch.nn.functional.cosine_similarity(ranges_only(x), e(x))).mean().item()
        assert torch.equal(e(x), before)
    assert hist[0]["loss"] == pytest.approx(loss0, rel=0.5)  # the same images, about half of them flipped
    path = qat.export_qdq(student, SIZE, tmp_path / "q.onnx")
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    in_file = {round(float(inits[n.input[1]]), 9) for n in m.graph.node
               if n.op_type == "QuantizeLinear" and inits[n.input[1]].ndim == 0}
    assert in_file == {round(v, 9) for v in _activation_scales(student)}


def test_a_qat_setting_says_so_and_cannot_be_quantised_without_the_model(tmp_path):
    settings = int8.qat_settings(5, 1024)
    assert [s.qat_epochs for s in settings] == [0, 5]
    assert settings[0].label().startswith("QAT observers only (0 epochs), MinMax, 1024 images, per-channel")
    assert settings[1].label().startswith("QAT 5 epochs")
    assert int8.Setting().label() == "MinMax, 256 images, per-tensor"
    with pytest.raises(ValueError, match="needs the torch model"):
        int8.quantize_file(tmp_path / "missing.onnx", tmp_path / "q.onnx", [], SIZE, settings[1])


def test_training_images_held_in_memory_train_the_same_student():
    """`train.cache_mb` preprocesses QAT's training images once instead of every epoch: the same
    history and the same weights as decoding a batch at a time."""
    e = _embedder()
    train, cal = _images(40, 5), _images(16, 6)
    runs = []
    for cache_mb in (0.0, 100.0):
        student = qat.prepare(e, SIZE)
        hist = qat.fine_tune(student, e, train, cal, SIZE, qat.QATRecipe(2, 1e-4, 0), cache_mb=cache_mb)
        runs.append((hist, dict(student.named_parameters())))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(w, runs[1][1][n]) for n, w in runs[0][1].items())
    assert torch.is_tensor(qat._in_memory(train, SIZE, 100.0)) and qat._in_memory(train, SIZE, 0.01) is train

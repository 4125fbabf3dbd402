"""The INT8 search's parts on hand-built cases: the kernel-free simulation against a numpy QDQ
interpreter, calibration methods that really differ, short names that change nothing, the ranking rule
and the Recall@1 flips against a brute-force count."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from petlib.export import int8
from petlib.export.measure import TestSet as EvalSet
from petlib.layout import Layout

pytestmark = [pytest.mark.slow, pytest.mark.export]

RNG = np.random.default_rng(0)


def _tiny_conv(path, cout=4):
    """input (N, 3, 4, 4) -> 1x1 Conv with bias -> 'embedding', with exporter-style long node names."""
    w = RNG.normal(size=(cout, 3, 1, 1)).astype(np.float32) * np.array([1, 3, 0.2, 8][:cout], np.float32)[:, None,
                                                                                                          None, None]
    b = RNG.normal(size=cout).astype(np.float32)
    node = helper.make_node("Conv", ["input", "backbone.conv.weight", "backbone.conv.bias"], ["embedding"],
                            name="/backbone/blocks/blocks.0/blocks.0.0/conv_pw/Conv")
    g = helper.make_graph([node], "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", cout, 4, 4])],
                          [numpy_helper.from_array(w, "backbone.conv.weight"),
                           numpy_helper.from_array(b, "backbone.conv.bias")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), str(path))
    return path


def _images(n, outliers=0.0):
    """RGB uint8 4x4 images, mid-grey with noise; a fraction of pixels saturated (heavy tails)."""
    x = np.clip(RNG.normal(128, 12, (n, 4, 4, 3)), 0, 255)
    x[RNG.random(x.shape) < outliers] = 255
    return [a for a in x.astype(np.uint8)]


def _qdq_numpy(model, x):
    """An independent interpreter of QuantizeLinear / DequantizeLinear / 1x1 Conv, as the ONNX spec reads."""
    env = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    env["input"] = x

    def per_axis(v, ref, axis):
        return v if v.ndim == 0 else v.reshape([-1 if d == axis else 1 for d in range(ref.ndim)])

    pending = list(model.graph.node)
    while pending:  # topological order: the quantizer appends its nodes out of order
        n = next(n for n in pending if all(i in env for i in n.input))
        pending.remove(n)
        a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
        ins = [env[i] for i in n.input]
        if n.op_type == "QuantizeLinear":
            v, s, z = ins
            info = np.iinfo(z.dtype)
            q = np.rint(v / per_axis(s, v, a.get("axis", 1))) + per_axis(z, v, a.get("axis", 1)).astype(np.int64)
            env[n.output[0]] = np.clip(q, info.min, info.max).astype(z.dtype)
        elif n.op_type == "DequantizeLinear":
            v, s, z = ins
            ax = a.get("axis", 1)
            env[n.output[0]] = ((v.astype(np.int64) - per_axis(z, v, ax)) * per_axis(s, v, ax)).astype(np.float32)
        elif n.op_type == "Conv":
            xx, w, b = ins
            env[n.output[0]] = np.einsum("nchw,oc->nohw", xx, w[:, :, 0, 0]) + b[None, :, None, None]
        else:
            raise AssertionError(f"unexpected op {n.op_type}")
    return env["embedding"]


@pytest.mark.parametrize("per_channel", [False, True])
def test_simulation_is_the_qdq_graph_as_written(tmp_path, per_channel):
    pre = _tiny_conv(tmp_path / "m.onnx")
    ranges = int8.calibrate(pre, _images(32), 4, "MinMax", tmp_path)
    out = int8.quantize(pre, ranges, int8.Setting(per_channel=per_channel), {}, tmp_path / "q.onnx")
    model = onnx.load(str(out))
    assert {n.op_type for n in model.graph.node} == {"QuantizeLinear", "DequantizeLinear", "Conv"}
    from petlib.embed import preprocess_images

    x = preprocess_images(_images(5), 4)
    np.testing.assert_allclose(int8.simulated_runner(out)(x), _qdq_numpy(model, x), rtol=1e-5, atol=1e-5)


def test_entropy_clips_where_minmax_does_not_and_onnxruntime_default_would_not(tmp_path):
    """onnxruntime's default Entropy histogram (128 bins into 128 quantised bins) can only return the full
    range, i.e. MinMax's; with our bin counts the KL search clips the tail that rare saturated pixels give
    the conv output. Percentile (99.999) never widens a range."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    pre = _tiny_conv(tmp_path / "m.onnx")
    items = _images(64, outliers=0.002)
    got = {m: {k: [float(np.ravel(x)[0]) for x in v.range_value]
               for k, v in int8.calibrate(pre, items, 4, m, tmp_path).data.items()} for m in int8.METHODS}
    lo_minmax, lo_entropy = got["MinMax"]["embedding"][0], got["Entropy"]["embedding"][0]
    assert lo_entropy > 0.5 * lo_minmax, got  # both negative: Entropy's range is less than half as wide
    for k, (lo, hi) in got["Percentile"].items():
        assert got["MinMax"][k][0] <= lo <= hi <= got["MinMax"][k][1], (k, got)
    default = create_calibrator(pre, None, augmented_model_path=str(tmp_path / "aug.onnx"),
                                calibrate_method=CalibrationMethod.Entropy)
    from petlib.embed import preprocess_images

    default.collect_data(int8._Batch(preprocess_images(items, 4), "input"))
    lo_default = float(np.ravel(default.compute_data().data["embedding"].range_value[0])[0])
    assert lo_default == pytest.approx(lo_minmax, rel=1e-3), "onnxruntime's default Entropy is MinMax here"


@pytest.mark.parametrize("method", int8.METHODS)
def test_calibration_batch_by_batch_covers_all_images(tmp_path, method):
    """A last batch smaller than the others is fine for every method; MinMax's range is that of all images."""
    pre = _tiny_conv(tmp_path / "m.onnx")
    items = _images(int8.CALIBRATION_BATCH * 4 + 5)
    from petlib.embed import preprocess_images

    x = preprocess_images(items, 4)
    lo, hi = (float(np.ravel(v)[0]) for v in int8.calibrate(pre, items, 4, method, tmp_path).data["input"].range_value)
    if method != "MinMax":
        return
    assert lo == pytest.approx(min(x.min(), 0), abs=1e-6) and hi == pytest.approx(x.max(), abs=1e-6)


def test_short_names_change_nothing_but_the_size(tmp_path):
    pre = _tiny_conv(tmp_path / "m.onnx")
    out = int8.quantize(pre, int8.calibrate(pre, _images(16), 4, "MinMax", tmp_path), int8.Setting(), {},
                        tmp_path / "q.onnx")
    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["embedding"]
    assert all(not n.name for n in model.graph.node)
    assert max(len(i.name) for i in model.graph.initializer) <= 2
    onnx.checker.check_model(model)
    long = onnx.load(str(pre))
    x = RNG.normal(size=(3, 3, 4, 4)).astype(np.float32)
    short = int8.compact_names(onnx.load(str(pre)))
    onnx.save(short, str(tmp_path / "short.onnx"))
    from petlib.onnx_file import onnx_runner

    assert np.array_equal(onnx_runner(tmp_path / "short.onnx")(x), onnx_runner(pre)(x))
    assert len(short.SerializeToString()) < len(long.SerializeToString())


def test_node_groups_name_the_first_conv_squeeze_excite_and_head(trained_ci, tmp_path):
    from petlib.run import RunDir

    model = onnx.load(str(RunDir(Layout(trained_ci).run_dir("mnv3", "cat")).file("pet_embedder.onnx")))
    g = int8.node_groups(model)
    assert g["first conv"] == ["/backbone/conv_stem/Conv"]
    assert g["squeeze-excite"] and all("/se/" in n for n in g["squeeze-excite"])
    assert {n.split("/")[2] for n in g["embedding head"]} >= {"gdconv", "proj"}
    tiny = int8.node_groups(onnx.load(str(_tiny_conv(tmp_path / "m.onnx"))))
    assert tiny == {"first conv": ["/backbone/blocks/blocks.0/blocks.0.0/conv_pw/Conv"]}  # groups it lacks: left out


def _row(loss, cos, size, cap=True):
    return {"loss_points": loss, "mean_cosine": cos, "bytes": size, "under_cap": cap}


def test_rank_keeps_the_task_first_then_fidelity_not_lucky_gains():
    far_but_lucky = _row(0.0, 0.94, 100)  # gains on validation, far from fp32
    faithful = _row(0.8, 0.995, 120)  # within the target, close to fp32
    loses = _row(1.5, 0.999, 90)
    over_cap = _row(0.0, 0.9999, 10**9, cap=False)
    rows = [far_but_lucky, faithful, loses, over_cap]
    assert min(rows, key=int8._rank) is faithful
    assert min([far_but_lucky, loses, over_cap], key=int8._rank) is far_but_lucky
    assert min([loses, _row(2.0, 0.9999, 80), over_cap], key=int8._rank) is loses  # none keeps it: least loss


def test_recall_change_counts_flipped_queries_by_brute_force():
    labels = np.repeat(np.arange(20), 3)
    ref = RNG.normal(size=(60, 8)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    emb = ref + RNG.normal(scale=0.6, size=ref.shape).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)  # as every exported model returns them

    def hits(e):
        s = e @ e.T
        np.fill_diagonal(s, -np.inf)
        return labels[s.argmax(1)] == labels

    h_ref, h_new = hits(ref), hits(emb)
    ts = EvalSet(np.zeros((60, 1)), labels, np.zeros((0, 3), int), ref, {})
    got = int8.recall_change(emb, ts)
    assert got["lost"] == int((h_ref & ~h_new).sum()) and got["gained"] == int((~h_ref & h_new).sum())
    assert got["delta_points"] == pytest.approx((h_new.mean() - h_ref.mean()) * 100)
    assert got["ci95_points"][0] <= got["delta_points"] <= got["ci95_points"][1]
    assert got["lost"] + got["gained"] > 0  # the case exercises both directions, not a trivial zero
    assert got["identities"] == 20 and got["ci90_points"][0] >= got["ci95_points"][0]


def test_int8_equivalence_reads_the_90_percent_interval_against_the_margin():
    assert int8.equivalence(0.1, (-0.5, 0.7), 1.0, 200)["equivalence"] == "equivalent"
    assert int8.equivalence(-2.0, (-3.0, -1.2), 1.0, 200)["equivalence"] == "not equivalent"
    straddle = int8.equivalence(-0.4, (-1.6, 0.8), 1.0, 200)
    # half-width 1.2 must shrink to the 0.6 between the estimate and the bound: 200 x (1.2 / 0.6)^2 identities
    assert straddle == {"equivalence": "cannot tell at this test size", "identities_to_decide": 800}


def test_the_recall_change_interval_resamples_identities_not_queries():
    """All of one pet's queries flip together: resampling queries would make the interval too narrow."""
    labels = np.repeat(np.arange(10), 10)
    ref = np.eye(100, dtype=np.float32)[labels * 10]  # every query's rank-1 neighbour is its own pet
    emb = ref.copy()
    emb[labels < 2] = np.eye(100, dtype=np.float32)[99]  # pets 0 and 1: every query now lands on pet 9
    ts = EvalSet(np.zeros((100, 1)), labels, np.zeros((0, 3), int), ref + 1e-3 * RNG.normal(size=ref.shape), {})
    got = int8.recall_change(emb / np.linalg.norm(emb, axis=1, keepdims=True), ts, n_boot=2000)
    lo, hi = got["ci95_points"]
    # what resampling the 100 queries independently would give (an independent percentile bootstrap)
    flips = np.zeros(100)
    flips[: got["lost"]] = -100
    rng = np.random.default_rng(0)
    by_query = np.percentile([rng.choice(flips, 100).mean() for _ in range(2000)], [2.5, 97.5])
    assert hi - lo > 1.5 * (by_query[1] - by_query[0]), (lo, hi, by_query)



def test_a_failing_qat_stage_keeps_the_post_training_search(trained_ci, tmp_path, monkeypatch):
    """QAT is an extra candidate: when it raises (a backbone torch.ao cannot trace), the search still
    returns its post-training pick, and the reason is one line in the result and in 05's sentence."""
    from petlib.export import summary
    from petlib.export.measure import task_metrics
    from petlib.onnx_file import onnx_runner
    from petlib.run import RunDir

    run = RunDir(Layout(trained_ci).run_dir("mnv3", "cat"))
    fp32 = run.file("pet_embedder.onnx")
    monkeypatch.setattr(int8, "_next_settings", lambda stage, best, groups, n:
                        [int8.Setting(calibration_images=4)] if stage == "calibration and weights" else [])
    x = np.random.default_rng(0).normal(size=(12, 3, 64, 64)).astype(np.float32)
    labels = np.repeat(np.arange(6), 2)
    pairs = np.array([[i, j, int(labels[i] == labels[j])] for i in range(12) for j in range(i + 1, 12)])
    ref = onnx_runner(fp32)(x)  # the reference: the fp32 file itself
    ts = EvalSet(x, labels, pairs, ref, task_metrics(ref, labels, pairs))

    def broken(setting, out):
        raise RuntimeError("symbolically traced variables cannot be used\nas inputs to control flow")

    found = int8.search(fp32, _images(8), 64, ts, 10 ** 9, tmp_path, qat=broken, qat_epochs=2)
    assert [r["setting"] for r in found.rows] == [int8.Setting(calibration_images=4).label()]
    assert found.best == int8.Setting(calibration_images=4)
    assert found.qat_error == ("QAT observers only (0 epochs), MinMax, 8 images, per-channel: RuntimeError: "
                               "symbolically traced variables cannot be used as inputs to control flow")
    line = summary.qat_summary(found.to_json())
    assert line.startswith(" QAT failed, so only post-training candidates were searched: QAT observers only")
    assert "\n" not in line

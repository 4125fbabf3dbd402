"""Exports: every format re-loaded in its own runtime and checked against PyTorch on the test split,
metadata read back from each file, skipped and failed converters reported without losing files."""
import json
import sys

import numpy as np
import pytest
import torch

from petlib import export
from petlib.export import coreml, pipeline, summary, tflite
from petlib.export.tools import ChildConversion, ExportError
from petlib.io import atomic_dir
from petlib.layout import Layout
from petlib.run import RunDir

pytestmark = [pytest.mark.slow, pytest.mark.export]

PHONE = ["executorch", "coreml", "tflite"]
needs_converters = pytest.mark.skipif(not all(export.converter_available(f) for f in PHONE),
                                      reason="export extra not installed (pip install -e '.[export]')")


def _rows(result):
    return {r["label"]: r for r in result["rows"]}


@pytest.fixture(scope="module")
def exported(trained_ci):
    """mnv3-cat exported once to every format; later tests read the files."""
    return pipeline.export_run(trained_ci, "mnv3", "cat")


def test_cli_takes_the_formats_from_the_registry_without_torch():
    import subprocess

    code = ("import sys; from petlib.cli import build_parser; from petlib.export import FORMATS; "
            "a = build_parser().parse_args(['export', 'RUN', '--formats', *FORMATS]); "
            "assert a.formats == list(FORMATS), a.formats; assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_rows_have_stable_ids_and_roles(exported):
    rows = exported["rows"]
    assert rows[0]["id"] == "pytorch" and rows[0]["role"] == "reference"
    shipped = [r["id"] for r in rows if r["role"] == "shipped"]
    assert shipped == list(export.FORMATS)  # one shipped row per format, in registry order
    cands = [r for r in rows if r["role"] == "candidate"]
    assert {r["id"] for r in cands} == {"onnx_int8"} and cands[0]["label"].startswith("ONNX INT8 (before the search")
    qat_kept = exported["int8_search"]["kept_setting"]["qat_epochs"] is not None
    assert [r["label"].startswith("ONNX INT8 (QAT: QAT 1 epochs") for r in cands[1:]] == ([] if qat_kept else [True])


def test_int8_search_is_on_validation_and_ships_its_pick(exported, trained_ci):
    """Every stage ran; the kept candidate is under the cap and, if it keeps the task on validation, no
    other candidate under the cap that keeps it is more faithful; the shipped file is that candidate."""
    search, rows = exported["int8_search"], exported["int8_search"]["rows"]
    assert [r["stage"] for r in rows][:12] == ["calibration and weights"] * 12
    assert {r["stage"] for r in rows} == {"calibration and weights", "calibration set size", "fp32 nodes",
                                          "quantisation-aware training"}  # params/ci.yaml: export.qat_epochs 1
    qat_rows = [r["setting"] for r in rows if r["stage"] == "quantisation-aware training"]
    assert [s.split(",")[0] for s in qat_rows] == ["QAT observers only (0 epochs)", "QAT 1 epochs"]
    assert [h["epoch"] for h in search["qat_history"][qat_rows[1]]] == [0, 1]
    kept = [r for r in rows if r["kept"]]
    assert len(kept) == 1 and kept[0]["under_cap"] and kept[0]["setting"] == search["kept"]
    if kept[0]["loss_points"] <= 1.0:
        rivals = [r for r in rows if r["under_cap"] and r["loss_points"] <= 1.0]
        assert kept[0]["mean_cosine"] == max(r["mean_cosine"] for r in rivals)
    for r in rows:
        drops = [-r[f"{m}delta_{k}"] for m in ("", "simulated_") for k in ("verification_accuracy", "recall@1",
                                                                            "tar@far=1e-3")]
        assert r["loss_points"] == pytest.approx(max(0.0, *drops) * 100, abs=1e-3)
    shipped = next(r for r in exported["rows"] if r["id"] == "onnx_int8" and r["role"] == "shipped")
    assert shipped["label"] == f"ONNX INT8 (kept: {search['kept']})"
    assert shipped["bytes"] <= trained_ci.export.int8_max_mb * 1e6
    test = search["test"]
    assert test["mean_cosine"] == pytest.approx(shipped["mean_cosine"], abs=1e-6)  # the same file, on test
    assert test["recall_change"]["queries"] > 0
    assert "queries lost their rank-1 match" in summary.int8_summary(exported)
    table = summary.int8_search_table(exported)
    assert len(table) == len(rows) and table["kept"].sum() == 1


def test_onnx_int8_torchscript_parity_and_metadata(exported, trained_ci):
    rows = _rows(exported)
    assert rows["ONNX fp32"]["min_cosine"] >= 0.999 and rows["TorchScript"]["min_cosine"] >= 0.999
    assert rows["ONNX fp32"]["delta_verification_accuracy"] == pytest.approx(0, abs=1e-9)
    kept = [k for k in rows if k.startswith("ONNX INT8 (kept")][0]
    assert rows[kept]["bytes"] < rows["ONNX fp32"]["bytes"] / 2
    assert rows[kept]["min_cosine"] > 0.8
    out = Layout(trained_ci).export_dir("mnv3", "cat")
    import onnxruntime as ort
    meta = ort.InferenceSession(str(out / "pet_embedder.int8.onnx")).get_modelmeta().custom_metadata_map
    assert meta["channel_order"] == "RGB" and "recommended_threshold" in meta
    files = {"petface.json": ""}
    torch.jit.load(str(out / "pet_embedder.ts"), _extra_files=files)
    assert json.loads(files["petface.json"])["input_size"] == 64
    assert json.loads((out / "export.json").read_text())["rows"]


@needs_converters
def test_phone_formats_match_pytorch_on_the_task(exported):
    rows = _rows(exported)
    for label in ("ExecuTorch (XNNPACK)", "TFLite (batch-1 graph)"):
        r = rows[label]
        assert r["status"] == "ok", r
        assert r["min_cosine"] >= 0.999
        for k in ("delta_verification_accuracy", "delta_recall@1", "delta_tar@far=1e-3"):
            assert abs(r[k]) <= 0.01, (label, k, r[k])
        assert r["ms_b1_t1"] > 0
    assert rows["ExecuTorch (XNNPACK)"]["ms_b32_t1"] > 0
    assert rows["TFLite (batch-1 graph)"]["ms_b32_t1"] is None  # not faked by looping
    assert rows["CoreML (ML Program, fp32)"]["status"] == "spec checked"
    assert not [r for r in exported["rows"] if r["status"] == "failed"]
    # litert's JAX must stay in its child process: its threads would make later fork()s deadlock
    assert "jax" not in sys.modules


def test_headline_counts_shipped_formats_and_reads_the_kept_int8():
    ok = {"status": "ok", "bytes": 1_970_000, "delta_verification_accuracy": -0.008, "delta_recall@1": 0.01,
          "ms_b1_t1": 0.4321}
    result = {"rows": [{"id": "pytorch", "role": "reference", "status": "ok"},
                       {**ok, "id": "onnx", "role": "shipped", "bytes": 6_900_000},
                       {**ok, "id": "onnx_int8", "role": "candidate"}, {**ok, "id": "onnx_int8", "role": "candidate"},
                       {**ok, "id": "onnx_int8", "role": "shipped"},
                       {"id": "coreml", "role": "shipped", "status": "skipped"},
                       {"id": "tflite", "role": "shipped", "status": "failed"}]}
    assert summary.headline(result) == {"formats checked": "2/4", "INT8 MB": 1.97, "INT8 d-acc (pts)": -0.8,
                                       "ORT fp32 ms (b1, 1 thread)": 0.43}
    assert summary.headline({"rows": result["rows"][:1] + result["rows"][5:]}) == {"formats checked": "0/2"}
    assert "no checked INT8" in summary.int8_summary({"rows": result["rows"][:4]})  # INT8 failed: no StopIteration
    deltas = {f"{m}delta_{k}": d for m in ("", "simulated_") for k, d in
              (("verification_accuracy", -0.008), ("recall@1", 0.01), ("tar@far=1e-3", -0.02))}
    result["int8_search"] = {"kept": "MinMax, 256 images, per-tensor", "test": {
        **deltas, "loss_points": 2.0, "recall_change": {"queries": 100, "lost": 3, "gained": 4, "ci95_points": [-2, 4]}}}
    got = summary.int8_summary(result)
    assert got.startswith("INT8 (MinMax, 256 images, per-tensor): 1.97 MB, 3.5x smaller than fp32."), got
    assert "recall@1 +1.00 (+1.00 simulated)" in got and "does NOT keep the task" in got
    assert "3 of 100 queries lost their rank-1 match and 4 gained one" in got
    assert "QAT" not in got
    qat_rows = [{"stage": "quantisation-aware training", "setting": s, "mean_cosine": c, "loss_points": p}
                for s, c, p in (("QAT observers only (0 epochs), x", 0.9971, 0.585), ("QAT 10 epochs, x", 0.9967, 1.25))]
    result["int8_search"].update(rows=qat_rows, qat_history={"QAT observers only (0 epochs), x": [],
                                                             "QAT 10 epochs, x": [{"loss": 0.004}, {"loss": 0.0026}]})
    assert summary.int8_summary(result).endswith(
        " QAT (QAT 10 epochs, x): distillation loss on the training images 0.00400 -> 0.00260; on validation mean "
        "cosine 0.9967 (its ranges alone 0.9971), worst loss 1.25 points (0.58 points).")
    assert "over the size goal" not in got
    result["int8_search"]["kept_under_cap"] = False  # every candidate over the cap: said, not hidden
    assert "No candidate was under export.int8_max_mb" in summary.int8_summary(result)


@needs_converters
def test_every_format_carries_the_same_metadata(exported, trained_ci):
    out = Layout(trained_ci).export_dir("mnv3", "cat")
    want = exported["metadata"]
    assert want["far_thresholds"]["1e-2"] is not None, "the FAR -> threshold map travels with every format"
    for fmt in export.FORMATS.values():
        got = export.read_metadata(out / fmt.file_name)
        name = fmt.file_name
        assert {k: got.get(k) for k in want} == want, name
    with pytest.raises(ValueError, match="not an exported model"):
        export.read_metadata(out / "export.json")


@needs_converters
def test_coreml_check_catches_a_wrong_spec(exported, trained_ci):
    path = Layout(trained_ci).export_dir("mnv3", "cat") / "pet_embedder.mlpackage"
    ok = coreml.check(path, 64, 128, exported["metadata"])
    assert ok["batch_range"][0] == 1
    with pytest.raises(ExportError, match=r"shape range"):
        coreml.check(path, 112, 128, exported["metadata"])
    with pytest.raises(ExportError, match=r"metadata keys missing: \['phone_app_key'\]"):
        coreml.check(path, 64, 128, {**exported["metadata"], "phone_app_key": 1})


@needs_converters
def test_tflite_runner_embeds_any_number_of_images(exported, trained_ci):
    path = Layout(trained_ci).export_dir("mnv3", "cat") / "pet_embedder.tflite"
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    got = tflite.runner(path, 1)(x)
    emb = RunDir(Layout(trained_ci).run_dir("mnv3", "cat")).load_embedder()
    with torch.no_grad():
        ref = emb(torch.from_numpy(x)).numpy()
    assert got.shape == (3, 128) and np.allclose(got, ref, atol=1e-4)


def test_missing_converter_is_skipped_with_install_command(trained_ci, monkeypatch, tmp_path):
    import dataclasses

    monkeypatch.setitem(export.FORMATS, "coreml",
                        dataclasses.replace(export.FORMATS["coreml"], packages=("petface_no_such_converter",)))
    r = pipeline.export_run(trained_ci, "mnv3", "cat", formats=["coreml"], out_dir=tmp_path)
    row = _rows(r)["CoreML (ML Program, fp32)"]
    assert row["status"] == "skipped" and "pip install" in row["reason"]
    assert not (tmp_path / "pet_embedder.mlpackage").exists()


def test_failing_converter_keeps_the_previous_file(trained_ci, monkeypatch, tmp_path):
    old = tmp_path / "pet_embedder.ts"
    old.write_bytes(b"previous export")

    def broken(*a, **k):
        raise RuntimeError("converter exploded")
    monkeypatch.setattr(torch.jit, "save", broken)
    r = pipeline.export_run(trained_ci, "mnv3", "cat", formats=["torchscript", "onnx"], out_dir=tmp_path)
    rows = _rows(r)
    assert rows["TorchScript"]["status"] == "failed" and "converter exploded" in rows["TorchScript"]["reason"]
    assert rows["ONNX fp32"]["status"] == "ok"  # the other formats still ran
    assert old.read_bytes() == b"previous export"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_failed_child_conversion_is_one_clear_error_and_keeps_the_file(tmp_path):
    out = tmp_path / "pet_embedder.tflite"
    out.write_bytes(b"previous export")
    tmp = tmp_path / ".pet_embedder.tflite.x.tmp"
    tmp.write_bytes(b"")
    src = tmp_path / ".src.pt"
    src.write_bytes(b"")
    child = ChildConversion([sys.executable, "-c", "import sys; print('converter noise'); sys.exit('boom: op not lowered')"],
                          tmp, out, [src])
    with pytest.raises(ExportError, match=r"pet_embedder.tflite: conversion failed \(exit 1\): boom"):
        child.wait()
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pet_embedder.tflite"]


def test_unknown_format_is_an_error(trained_ci):
    with pytest.raises(ValueError, match="unknown export formats"):
        pipeline.export_run(trained_ci, "mnv3", "cat", formats=["pdf"])


def test_atomic_dir_replaces_on_success_and_keeps_on_error(tmp_path):
    target = tmp_path / "m.mlpackage"
    target.mkdir()
    (target / "old").write_text("1")
    with pytest.raises(KeyError):
        with atomic_dir(target) as tmp:
            tmp.mkdir()
            (tmp / "new").write_text("2")
            raise KeyError("killed mid-write")
    assert [p.name for p in target.iterdir()] == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.mlpackage"]
    with atomic_dir(target) as tmp:
        assert tmp.suffix == ".mlpackage"
        tmp.mkdir()
        (tmp / "new").write_text("2")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.mlpackage"]


def test_cli_export(trained_ci, tmp_path, capsys):
    from petlib.cli import main

    run = Layout(trained_ci).run_dir("mnv3", "cat")
    assert main(["export", str(run), "--formats", "onnx", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ONNX fp32" in out and (tmp_path / "pet_embedder.onnx").is_file()
    assert main(["export", str(tmp_path), "--formats", "onnx"]) == 2
    assert "config.json: missing" in capsys.readouterr().err


def test_model_card_carries_what_metrics_json_and_export_json_say(exported, trained_ci):
    """MODEL_CARD.md beside the export: the model card's sections, every figure with its interval from
    metrics.json, every shipped file and size from export.json, the thresholds by FAR, INT8's equivalence
    verdict and the limits of the embedded study; an edited metrics.json shows in the next card."""
    import json

    from petlib import evaluate
    from petlib.export import model_card
    from petlib.layout import Layout
    from petlib.schema import fmt

    m = evaluate.evaluate_run(trained_ci, "mnv3", "cat", progress=False)
    path = model_card.write(trained_ci, "mnv3", "cat", exported)
    text = path.read_text()
    assert path.parent == Layout(trained_ci).export_dir("mnv3", "cat")
    for section in ("Model details", "Intended use", "Out-of-scope use", "Training data", "Evaluation data",
                    "Test figures", "Recommended thresholds", "INT8", "Training variance", "Limitations",
                    "How to load each format"):
        assert f"\n## {section}" in text, section
    r1, ci = m["retrieval"]["recall@1"], m["ci95"]["retrieval.recall@1"]
    assert f"| Recall@1 | {fmt(r1, ci)} |" in text and f"{r1:.4g}" in text
    assert f"| EER | {fmt(m['ranking']['eer'], m['ci95']['ranking.eer'])} |" in text
    assert f"Parameters: {m['efficiency']['params']:,}" in text
    for r in exported["rows"]:
        if r["role"] == "shipped" and r["status"] in ("ok", "spec checked"):
            assert f"`{r['file']}` ({r['bytes']:,} bytes)" in text and f"- {r['label']}: " in text
    for far, t in m["deployment"]["thresholds"].items():
        assert f"| {far} | {t['threshold']:.4f} |" in text if t["threshold"] is not None else f"| {far} | — " in text
    assert f"**{exported['int8_search']['test']['recall_change']['equivalence']}**" in text
    assert "synthetic faces" in text and "from scratch" in text and f"input {m['efficiency']['image_size']} x" in text
    f = Layout(trained_ci).eval_dir("mnv3", "cat") / "metrics.json"
    original = f.read_text()
    edited = json.loads(original)
    edited["retrieval"]["recall@1"] = 0.123456
    f.write_text(json.dumps(edited))
    try:
        assert "| Recall@1 | 0.1235 [" in model_card.card(trained_ci, "mnv3", "cat", exported)
    finally:
        f.write_text(original)

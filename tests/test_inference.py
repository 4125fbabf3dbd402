"""Recognition pipeline, gallery safety, detectors and their CLI."""

import numpy as np
import pytest

from petlib import data, inference
from petlib.inference import GalleryError, PetRecognitionPipeline
from petlib.layout import Layout

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def split(trained_ci):
    return data.load_split(trained_ci, "cat", "test")


def _by_identity(split):
    return {name: [p for p, l in zip(split.paths, split.labels) if l == i] for i, name in enumerate(split.identities)}


@pytest.mark.parametrize("kind", ["onnx", "pt"])
def test_register_recognize_and_unknown(trained_ci, split, tmp_path, kind):
    run = Layout(trained_ci).run_dir("mnv3", "cat")
    pipe = PetRecognitionPipeline("none", run / f"pet_embedder.{kind}")
    ids = _by_identity(split)
    names = list(ids)
    for n in names[:2]:
        assert pipe.register_pet(n, ids[n][:-1]) == len(ids[n]) - 1
    probe = ids[names[0]][-1]
    res = pipe.recognize(probe, threshold=-1.0)  # everything above threshold: the nearest pet is named
    assert len(res) == 1 and res[0]["identity"] in names[:2] and res[0]["box"][2] == 64
    assert res[0]["similarity"] >= res[0]["mean_similarity"]
    res = pipe.recognize(ids[names[2]][0], threshold=1.01)
    assert res[0]["identity"] == "unknown" and res[0]["nearest"] in names[:2]
    same, score = pipe.compare_faces(ids[names[0]][0], ids[names[0]][0])
    assert same and score == pytest.approx(1.0, abs=1e-5)
    g = tmp_path / "g.npz"
    pipe.save_gallery(g)
    other = PetRecognitionPipeline("none", run / f"pet_embedder.{kind}")
    other.load_gallery(g)
    assert set(other.gallery) == set(names[:2])
    assert np.allclose(other.gallery[names[0]][0], pipe.gallery[names[0]][0])


def test_onnx_and_torch_agree_and_metadata_is_read(trained_ci, split):
    run = Layout(trained_ci).run_dir("mnv3", "cat")
    o = inference.ONNXPetRecognition(run / "pet_embedder.onnx")
    t = inference.TorchEmbedder(run / "pet_embedder.pt")
    assert o.image_size == 64 and o.threshold is not None
    a, b = o.get_embedding(split.paths[0]), t.get_embedding(split.paths[0])
    assert float(a @ b) > 0.9999


def test_gallery_refuses_other_model_tampering_and_truncation(trained_ci, split, tmp_path):
    run = Layout(trained_ci).run_dir("mnv3", "cat")
    pipe = PetRecognitionPipeline("none", run / "pet_embedder.onnx")
    pipe.register_pet("rex", split.paths[:2])
    g = tmp_path / "g.npz"
    pipe.save_gallery(g)
    with pytest.raises(GalleryError, match="built by embedder"):
        inference.load_gallery(g, fingerprint="someothermodel")
    raw = g.read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(GalleryError, match="not a readable gallery"):
        inference.load_gallery(tmp_path / "t.npz")
    assert (tmp_path / "t.npz").read_bytes() == raw[: len(raw) // 2], "the bad file is left as it was"
    with np.load(g) as z:
        header, emb = str(z["header"]), z["embeddings"].copy()
    emb[0, 0] += 0.5
    np.savez(tmp_path / "x.npz", header=np.array(header), embeddings=emb)
    with pytest.raises(GalleryError, match="checksum"):
        inference.load_gallery(tmp_path / "x.npz")
    with pytest.raises(GalleryError, match="not found"):
        inference.load_gallery(tmp_path / "none.npz")


def test_opencv_cat_detector_finds_a_real_cat_and_reports_no_face():
    from skimage.data import chelsea

    det = inference.OpenCVCatDetector()
    assert len(det.detect(chelsea())) >= 1
    assert det.detect(np.full((200, 200, 3), 127, np.uint8)) == []
    with pytest.raises(ValueError, match="unknown detector"):
        inference.make_detector("magic")


def test_cli_register_recognize_compare(trained_ci, split, tmp_path, capsys):
    from petlib.cli import main

    emb = str(Layout(trained_ci).run_dir("mnv3", "cat") / "pet_embedder.onnx")
    g = str(tmp_path / "g.npz")
    assert main(["register", g, "rex", *map(str, split.paths[:2]), "--embedder", emb]) == 0
    assert main(["recognize", g, str(split.paths[0]), "--embedder", emb]) == 0
    assert "rex" in capsys.readouterr().out
    assert main(["compare", str(split.paths[0]), str(split.paths[1]), "--embedder", emb]) == 0
    assert "cosine" in capsys.readouterr().out
    (tmp_path / "bad.npz").write_bytes(b"junk")
    assert main(["recognize", str(tmp_path / "bad.npz"), str(split.paths[0]), "--embedder", emb]) == 2
    assert "bad.npz" in capsys.readouterr().err


def test_far_thresholds_reach_the_app(trained_ci, split, capsys):
    """Validation's FAR -> threshold map is in the run's metadata, the ONNX file's and the pipeline's;
    `--far` uses it, and a FAR validation could not measure is one clear error."""
    import json

    from petlib.cli import main
    from petlib.inference import PetRecognitionPipeline
    from petlib.metrics import far_thresholds
    from petlib.run import RunDir, best_val_epoch

    run = RunDir(Layout(trained_ci).run_dir("mnv3", "cat"))
    best = best_val_epoch(run.history())
    meta = run.deploy_metadata()
    assert meta["far_thresholds"] == best["val"]["far_thresholds"]
    assert meta["far_thresholds"]["1e-2"] is not None and meta["far_thresholds"]["1e-4"] is None  # 200 negatives
    assert set(far_thresholds(np.zeros(3))) == set(meta["far_thresholds"])
    onnx = str(run.file("pet_embedder.onnx"))
    pipe = PetRecognitionPipeline("none", onnx)
    assert pipe.threshold_at_far(1e-2) == meta["far_thresholds"]["1e-2"]
    assert main(["compare", str(split.paths[0]), str(split.paths[1]), "--embedder", onnx, "--far", "1e-2"]) == 0
    assert f"threshold {meta['far_thresholds']['1e-2']:.4f}, FAR 0.01 on validation" in capsys.readouterr().out
    assert main(["compare", str(split.paths[0]), str(split.paths[1]), "--embedder", onnx, "--far", "1e-4"]) == 2
    err = capsys.readouterr().err
    assert "no threshold for FAR 1e-4" in err and "1e-2" in err and len(err.strip().splitlines()) == 1
    assert json.loads(json.dumps(meta)) == meta

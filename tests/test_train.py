import json
import math
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from petlib.checkpoints import save_torch
from petlib import run as rundir
from petlib import train
from petlib.layout import Layout
from petlib.train import lr_factor, margin_at

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------ schedules
def test_lr_schedule_values():
    total, warm, r = 100, 10, 0.01
    assert lr_factor(0, total, warm, r) == pytest.approx(0.1)
    assert lr_factor(4, total, warm, r) == pytest.approx(0.5)
    assert lr_factor(9, total, warm, r) == pytest.approx(1.0)
    assert lr_factor(10, total, warm, r) == pytest.approx(1.0)
    assert lr_factor(55, total, warm, r) == pytest.approx(r + (1 - r) * 0.5)  # halfway through the cosine
    assert lr_factor(100, total, warm, r) == pytest.approx(r)
    xs = [lr_factor(s, total, warm, r) for s in range(warm, total)]
    assert all(a >= b for a, b in zip(xs, xs[1:])), "cosine part decreases monotonically"


def test_margin_schedule_values():
    assert margin_at(0, 90, 0.4, 1 / 3) == 0.0
    assert margin_at(15, 90, 0.4, 1 / 3) == pytest.approx(0.2)
    assert margin_at(30, 90, 0.4, 1 / 3) == pytest.approx(0.4)
    assert margin_at(89, 90, 0.4, 1 / 3) == pytest.approx(0.4)


def test_sampler_depends_only_on_seed_and_epoch():
    a = train.EpochSampler(20, seed=3)
    a.set_epoch(2)
    b = train.EpochSampler(20, seed=3)
    b.set_epoch(2)
    assert list(a) == list(b) and sorted(a) == list(range(20))
    b.set_epoch(3)
    assert list(a) != list(b)
    r0, r1 = train.EpochSampler(20, 3, 0, 2), train.EpochSampler(20, 3, 1, 2)
    assert not set(r0) & set(r1) and len(list(r0)) == 10


# ------------------------------------------------------------------ runs on the tiny synthetic set
@pytest.fixture
def params(make_params, tmp_path):
    """The CI params in this test's folder; the synthetic data is shared by the tests of one session."""
    return lambda *sets: make_params(tmp_path, *sets, synth_dir=tmp_path.parent / "shared-synth")


@pytest.mark.timeout(900)
def test_run_writes_the_designs_artefacts(params, tmp_path):
    p = params()
    hist = train.train_model(p, "mnv3", "cat", progress=False, log=lambda *_: None).history
    run = Layout(p).run_dir("mnv3", "cat")
    for name in rundir.ARTEFACTS:
        assert (run / name).is_file(), name
    assert len(hist["epochs"]) == 2 and hist["untrained_val"] is not None
    saved = json.loads((run / "history.json").read_text())
    assert saved == json.loads(json.dumps(hist))
    e = saved["epochs"][0]
    assert set(e["lr"]) == {"backbone", "head"} and e["images_per_s"] > 0 and "margin" in e
    state = torch.load(run / "pet_embedder.pt", weights_only=True)
    emb, cfg = rundir.RunDir(run).load_embedder(), rundir.RunDir(run).config()
    from petlib.data import load_split
    assert cfg["num_classes"] == len(load_split(p, "cat", "train").identities)
    assert set(state) == set(emb.state_dict()) and not any(k.startswith("arcface") for k in state)
    m = onnx.load(str(run / "pet_embedder.onnx"))
    onnx.checker.check_model(m, full_check=True)
    assert m.opset_import[0].version == 18 or any(o.version == 18 for o in m.opset_import)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer), "weights inside"
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["input_size"] == "64" and meta["channel_order"] == "RGB" and meta["embedding_dim"] == "128"
    import onnxruntime as ort
    x = np.random.default_rng(0).normal(size=(4, 3, 64, 64)).astype(np.float32)
    got = ort.InferenceSession(str(run / "pet_embedder.onnx")).run(None, {"input": x})[0]
    with torch.no_grad():
        ref = emb(torch.from_numpy(x)).numpy()
    assert ((got * ref).sum(1)).min() >= 0.9999
    _check_tensorboard(run, saved)


def _check_tensorboard(run, hist):
    """The run folder holds TensorBoard events with the live curves; TensorBoard's own reader sees them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/margin", "lr/head", "lr/backbone", "epoch/images_per_s", "epoch/data_wait_frac",
            "val/accuracy"} <= tags
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == list(range(1, 2 * 3 + 1)), "one point per step of the 2 epochs of 3 steps"
    val = [e.value for e in acc.Scalars("val/accuracy")]
    assert val == pytest.approx([e["val"]["accuracy"] for e in hist["epochs"] if e["val"]])
    assert [e.value for e in acc.Scalars("epoch/images_per_s")] == pytest.approx([e["images_per_s"] for e in hist["epochs"]])


@pytest.mark.timeout(900)
def test_resume_reproduces_an_uninterrupted_run(params, tmp_path):
    p = params("models.mnv3.epochs=3")
    full = train.train_model(p, "mnv3", "cat", out_dir=tmp_path / "full", progress=False, log=lambda *_: None).history
    part = train.train_model(p, "mnv3", "cat", out_dir=tmp_path / "part", progress=False, log=lambda *_: None,
                             stop_after_epoch=1).history
    assert len(part["epochs"]) == 1 and not (tmp_path / "part" / "pet_embedder.pt").exists()
    resumed = train.train_model(p, "mnv3", "cat", out_dir=tmp_path / "part", resume=True, progress=False,
                                log=lambda *_: None).history
    timing = ("images_per_s", "train_time_s", "data_wait_frac")
    strip = lambda h: [{k: v for k, v in e.items() if k not in timing} for e in h["epochs"]]
    a, b = strip(full), strip(resumed)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-6, abs=1e-6)
        assert x["lr"] == pytest.approx(y["lr"]) and x["margin"] == pytest.approx(y["margin"])
        assert (x["val"] is None) == (y["val"] is None)
        if x["val"]:
            assert x["val"]["accuracy"] == pytest.approx(y["val"]["accuracy"], abs=1e-9)
    wa = torch.load(tmp_path / "full" / "pet_embedder.pt", weights_only=True)
    wb = torch.load(tmp_path / "part" / "pet_embedder.pt", weights_only=True)
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5) for k in wa)


@pytest.mark.timeout(900)
def test_non_finite_loss_stops_and_keeps_checkpoint(params, tmp_path, monkeypatch):
    p = params("models.mnv3.epochs=3")
    out = tmp_path / "run"
    train.train_model(p, "mnv3", "cat", out_dir=out, progress=False, log=lambda *_: None, stop_after_epoch=1)
    before = (out / "last_checkpoint.pt").read_bytes()
    real = train.arcface_loss
    calls = {"n": 0}

    def poisoned(logits, y, ls):
        calls["n"] += 1
        loss = real(logits, y, ls)
        return loss * float("nan") if calls["n"] == 2 else loss

    monkeypatch.setattr(train, "arcface_loss", poisoned)
    with pytest.raises(train.TrainingDiverged, match=r"epoch 2, step 2"):
        train.train_model(p, "mnv3", "cat", out_dir=out, resume=True, progress=False, log=lambda *_: None)
    assert (out / "last_checkpoint.pt").read_bytes() == before


def test_missing_pretrained_file_stops_before_training(params, tmp_path):
    p = params("models.mnv3.pretrained=/nonexistent/mnv3.safetensors")
    from petlib.models import PretrainedWeightsError
    with pytest.raises(PretrainedWeightsError, match="/nonexistent/mnv3.safetensors"):
        train.train_model(p, "mnv3", "cat", progress=False, log=lambda *_: None)
    assert not (Layout(p).run_dir("mnv3", "cat") / "last_checkpoint.pt").exists()


@pytest.mark.timeout(900)
def test_ddp_two_cpu_processes_end_identical(params, tmp_path, repo):
    p = params("train.batch_size=8")
    from petlib.data import prepare_species
    prepare_species(p, "cat", progress=False)  # the study's 01_data step, done once before launching ranks
    f = tmp_path / "resolved.yaml"
    from petlib.config import dump_params
    dump_params(p, f)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    import socket
    with socket.socket() as sock:  # torchrun's --master_port=0 can hang in rendezvous: pick a free port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                        "--master_addr=127.0.0.1",
                        str(repo / "tests" / "ddp_worker.py"), str(f), str(out)],
                       capture_output=True, text=True, timeout=600, env=env, cwd=repo)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = torch.load(out / "rank0.pt", weights_only=True), torch.load(out / "rank1.pt", weights_only=True)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), f"ranks differ at {k}"
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["epochs"]) == 2 and all(math.isfinite(e["loss"]) for e in hist["epochs"])
    assert hist["epochs"][-1]["val"] is not None
    assert (out / "pet_embedder.onnx").is_file()
    from petlib import stages

    stamp = json.loads((out / stages.STAMP).read_text())
    assert stamp["state"] == "finished" and stamp["processes"] == 2, "rank 0 stamped the run, with its process count"
    check = stages.train_check(p, "mnv3", "cat")
    check.stamp = out / stages.STAMP
    assert check.up_to_date(), "a study (one process) with these params uses the torchrun run as it is"


@pytest.mark.timeout(900)
def test_training_clearly_beats_the_untrained_model(params, tmp_path):
    """A real (small) training run on the synthetic set: val accuracy must rise well above the untrained
    model's. 800 identities drawn and trained at 64 px for 6 epochs: about a minute on 2 cores."""
    p = params("data.synth.n_identities=800", "data.synth.image_size=64", "train.batch_size=64",
                "train.max_steps_per_epoch=0", "train.val_every=6", "models.mnv3.epochs=6", "models.mnv3.lr=4e-3",
                "data.n_pairs=1000")
    h = train.train_model(p, "mnv3", "cat", progress=False, log=lambda *_: None).history
    before, after = h["untrained_val"]["accuracy"], h["epochs"][-1]["val"]["accuracy"]
    print(f"val accuracy untrained {before:.3f} -> trained {after:.3f}")
    assert after >= before + 0.08, (before, after)


def test_reuse_shows_the_finished_run_and_only_for_the_same_params(trained_ci):
    """02_train opened after a study shows the finished run; a change of an input means training again,
    and the stamp says which."""
    import copy

    from petlib import stages

    run = Layout(trained_ci).run_dir("mnv3", "cat")
    stamp = (run / "last_checkpoint.pt").stat().st_mtime_ns
    logs = []
    r = train.train_model(trained_ci, "mnv3", "cat", reuse=True, progress=False, log=logs.append)
    assert r.model is None and r.history == rundir.RunDir(run).history() and "training up to date" in logs[0]
    assert (run / "last_checkpoint.pt").stat().st_mtime_ns == stamp, "nothing was trained or written"
    changed = copy.deepcopy(trained_ci)
    changed.model("mnv3").lr *= 2
    assert stages.train_check(changed, "mnv3", "cat").reasons() == ["model.lr 0.001 -> 0.002"]
    assert stages.train_check(trained_ci, "mnv3", "cat").up_to_date()
    moved = copy.deepcopy(trained_ci)
    moved.reports_dir, moved.train.device, moved.train.num_workers = "/elsewhere", "cpu", 3
    assert stages.train_check(moved, "mnv3", "cat").up_to_date(), "paths and provenance are not inputs"


def test_same_weights_give_the_same_checkpoint_bytes(tmp_path):
    """metrics.json records the checkpoint's sha256: it must not change with the temp file's random name."""
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    save_torch(state, tmp_path / "a.pt")
    save_torch(state, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], state["w"])


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    """Resume loads last_checkpoint.pt with weights_only=True: the RNG states must survive that."""
    import random

    from petlib import runtime

    runtime.seed_everything(7)
    save_torch({"rng": runtime.rng_state()}, tmp_path / "c.pt")
    want = (np.random.rand(3), random.random(), torch.rand(3))
    runtime.seed_everything(99)
    runtime.set_rng_state(torch.load(tmp_path / "c.pt", weights_only=True)["rng"])
    got = (np.random.rand(3), random.random(), torch.rand(3))
    assert np.array_equal(want[0], got[0]) and want[1] == got[1] and torch.equal(want[2], got[2])


def test_the_plateau_rule_by_hand():
    from petlib.convergence import plateau

    def hist(accs, every=3, n=12):
        return {"epochs": [{"epoch": e, "val": {"accuracy": accs[e]} if e in accs else None} for e in range(1, n + 1)]}
    flat = plateau(hist({3: 0.6, 6: 0.8, 9: 0.85, 12: 0.855}))
    assert flat["from_epoch"] == 9 and flat["gain"] == pytest.approx(0.005) and flat["converged"]
    rising = plateau(hist({3: 0.6, 6: 0.7, 9: 0.8, 12: 0.9}))
    assert rising["from_epoch"] == 9 and rising["gain"] == pytest.approx(0.1) and not rising["converged"]
    dip = plateau(hist({3: 0.6, 6: 0.9, 8: 0.88, 10: 0.9, 12: 0.9}, n=12))  # a dip at the reference, then flat
    x, y = np.array([8, 10, 12.0]), np.array([0.88, 0.9, 0.9])  # the trend by hand: slope * 4 epochs
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    assert dip["gain"] == pytest.approx(slope * 4) and dip["endpoint_gain"] == pytest.approx(0.02)
    tie = plateau(hist({7: 0.5, 9: 0.6, 12: 0.6}, n=12))  # 2/3 of 12 = 8: epochs 7 and 9 tie, the earlier wins
    assert tie["from_epoch"] == 7 and tie["best_gain"] == pytest.approx(0.1)
    assert plateau(hist({12: 0.9})) is None


@pytest.mark.timeout(900)
def test_a_model_trains_and_is_evaluated_at_its_own_input_size(params, tmp_path):
    """models[].image_size overrides data.image_size for that model: the embedder is built for it, the
    run records it (evaluation and export read it from there), the stage keys it; below 32 px is an error."""
    from petlib import stages
    from petlib.config import ParamsError

    p = params("models.mnv3.image_size=48")
    assert (p.data.image_size, p.image_size("mnv3")) == (64, 48)
    r = train.train_model(p, "mnv3", "cat", progress=False, log=lambda *_: None)
    run = rundir.RunDir(r.out_dir)
    assert run.config()["image_size"] == 48
    emb = run.load_embedder("cpu").eval()
    with torch.no_grad():
        assert emb(torch.zeros(2, 3, 48, 48)).shape == (2, 128)
    assert stages.train_check(p, "mnv3", "cat").params["model.image_size"] == 48
    assert stages.train_check(params(), "mnv3", "cat").reasons() != []  # another size: another training
    with pytest.raises(ParamsError, match=r"models\[mnv3\].image_size must be at least 32"):
        params("models.mnv3.image_size=16")

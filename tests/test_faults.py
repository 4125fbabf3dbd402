"""Faults and untrusted files (issue 15), each in a real child process on the CI params: kills, signals,
a full disk, truncated and foreign checkpoints, and files whose unpickling would run code."""
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from petlib.io import UnsafeFileError, load_torch

pytestmark = pytest.mark.slow

SETS = ["models.mnv3.epochs=2", "train.max_steps_per_epoch=5", "train.val_every=2", "train.checkpoint_minutes=0"]


class Evil:
    """Unpickling this creates `marker`: what a malicious .pt would do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def cli(*args, sets=(), env=None, timeout=600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "petlib.cli", *map(str, args), *[x for s in sets for x in ("--set", s)]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def one_line(r: subprocess.CompletedProcess) -> str:
    """The one line a failing command prints on stderr (progress bars of the work before it aside)."""
    lines = [x.strip() for x in r.stderr.replace("\r", "\n").splitlines()]
    lines = [x for x in lines if x and not re.search(r"\d+%\|.*\[", x)]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def study(tmp_path_factory, make_params):
    """A params file for the CI study (outputs in a temp folder) and one uninterrupted run to compare with."""
    folder = tmp_path_factory.mktemp("faults")
    make_params(folder)
    pfile = folder / "p.yaml"
    r = cli("train", pfile, "--model", "mnv3", "--species", "cat", sets=SETS + ["name=full"])
    assert r.returncode == 0, r.stderr[-2000:]
    return pfile, folder / "outputs" / "full" / "runs" / "mnv3-cat"


def _same_run(a: Path, b: Path) -> None:
    """Equal per-epoch losses, learning rates, margins and validation, and bit-equal weights."""
    strip = lambda h: [{k: e[k] for k in ("epoch", "loss", "lr", "margin", "val")} for e in h["epochs"]]
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (a, b))
    assert strip(ha) == strip(hb)
    wa, wb = load_torch(a / "pet_embedder.pt"), load_torch(b / "pet_embedder.pt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _start(pfile: Path, name: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "petlib.cli", "train", str(pfile), "--model", "mnv3", "--species", "cat",
           *[x for s in SETS + [f"name={name}"] for x in ("--set", s)]]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_mid_epoch(proc: subprocess.Popen, ckpt: Path, epoch: int, step: int, timeout: float = 300) -> None:
    """Until last_checkpoint.pt was written inside `epoch` at `step` or later."""
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        if ckpt.is_file():
            try:
                ck = load_torch(ckpt)
            except UnsafeFileError:
                ck = {}
            if ck.get("epoch") == epoch and (ck.get("partial") or {}).get("step", 0) >= step:
                return
        time.sleep(0.02)
    raise AssertionError(f"no mid-epoch checkpoint at epoch {epoch + 1}, step {step}")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("sig, epoch, step", [(signal.SIGKILL, 1, 2), (signal.SIGTERM, 0, 1)])
def test_killed_or_preempted_run_resumes_to_the_uninterrupted_one(study, sig, epoch, step):
    """SIGKILL in the middle of the second epoch, or SIGTERM in the first (a checkpoint at the next step
    boundary, exit 128 + 15, one line saying how to resume); then --resume equals the uninterrupted run."""
    pfile, full = study
    name = signal.Signals(sig).name.lower()
    run = pfile.parent / "outputs" / name / "runs" / "mnv3-cat"
    proc = _start(pfile, name)
    _wait_mid_epoch(proc, run / "last_checkpoint.pt", epoch=epoch, step=step)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert not (run / "pet_embedder.pt").exists()
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        line = err.strip().splitlines()[-1]
        assert "SIGTERM" in line and "--resume" in line and str(run / "last_checkpoint.pt") in line
        assert "Traceback" not in err and load_torch(run / "last_checkpoint.pt").get("partial") is not None
    r = cli("train", pfile, "--model", "mnv3", "--species", "cat", "--resume", sets=SETS + [f"name={name}"])
    assert r.returncode == 0, r.stderr[-2000:]
    _same_run(full, run)


ENOSPC_CHILD = r"""
import errno, shutil, sys
from petlib import reproducible
reproducible.pin_env()
import torch
from petlib import cli
real, calls = torch.save, {"n": 0}
run = sys.argv[1]
def save(obj, f, *a, **k):
    calls["n"] += 1
    if calls["n"] == 4:  # the third mid-epoch checkpoint: the disk is full
        shutil.copyfile(run + "/last_checkpoint.pt", run + "/before.pt")
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(obj, f, *a, **k)
torch.save = save
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.timeout(900)
def test_a_full_disk_keeps_the_previous_checkpoint_byte_for_byte(study):
    pfile, _ = study
    run = pfile.parent / "outputs" / "full-disk" / "runs" / "mnv3-cat"
    cmd = [sys.executable, "-c", ENOSPC_CHILD, str(run), "train", str(pfile), "--model", "mnv3", "--species", "cat",
           *[x for s in SETS + ["name=full-disk"] for x in ("--set", s)]]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2
    line = one_line(r)
    assert str(run / "last_checkpoint.pt") in line and "No space left on device" in line and "intact" in line
    assert (run / "last_checkpoint.pt").read_bytes() == (run / "before.pt").read_bytes()
    assert not [f for f in run.iterdir() if f.name.endswith(".tmp")], "no temp file left behind"


@pytest.mark.timeout(900)
def test_truncated_checkpoint_and_changed_params_are_one_line(study, tmp_path):
    pfile, full = study
    run = pfile.parent / "outputs" / "broken" / "runs" / "mnv3-cat"
    shutil.copytree(full, run)
    shutil.copytree(pfile.parent / "outputs" / "full" / "splits", pfile.parent / "outputs" / "broken" / "splits")
    ck = run / "last_checkpoint.pt"
    r = cli("train", pfile, "--model", "mnv3", "--species", "cat", "--resume", sets=SETS + ["name=broken",
                                                                                          "models.mnv3.lr=0.002"])
    assert r.returncode == 2 and "lr 0.001 -> 0.002" in one_line(r) and "without --resume" in one_line(r)
    manifest = pfile.parent / "outputs" / "broken" / "splits" / "cat.csv"
    rows = manifest.read_text().splitlines(keepends=True)
    first = next(i for i, r in enumerate(rows[1:], 1) if r.strip().endswith(",train")
                 and sum(x.split(",")[1] == r.split(",")[1] for x in rows) >= 3)
    manifest.write_text("".join(rows[:first] + rows[first + 1:]))  # one training photo fewer: other data
    r = cli("train", pfile, "--model", "mnv3", "--species", "cat", "--resume", sets=SETS + ["name=broken"])
    assert r.returncode == 2 and "data_fingerprint" in one_line(r)
    manifest.write_text("".join(rows))
    ck.write_bytes(ck.read_bytes()[:5000])
    r = cli("train", pfile, "--model", "mnv3", "--species", "cat", "--resume", sets=SETS + ["name=broken"])
    assert r.returncode == 2 and f"{ck}: not a readable weights file" in one_line(r)


@pytest.mark.timeout(900)
def test_no_loader_unpickles_a_malicious_file(study, tmp_path):
    """A .pt whose unpickling would create a file, put where each loader looks: each refuses it in one
    line, and the file is never created."""
    pfile, full = study
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"model": Evil(marker), "state_dict": Evil(marker)}, evil)
    cases = {}
    for name in ("last_checkpoint.pt", "pet_embedder.pt"):
        run = tmp_path / name.replace(".pt", "") / "mnv3-cat"
        shutil.copytree(full, run)
        shutil.copyfile(evil, run / name)
        cases[name] = run
    resume_run = pfile.parent / "outputs" / "evil" / "runs" / "mnv3-cat"
    shutil.copytree(full, resume_run)
    shutil.copytree(pfile.parent / "outputs" / "full" / "splits", pfile.parent / "outputs" / "evil" / "splits")
    shutil.copyfile(evil, resume_run / "last_checkpoint.pt")
    photo = next((pfile.parent / "data").rglob("*.jpg"))
    runs = [
        ("train --resume", ["train", pfile, "--model", "mnv3", "--species", "cat", "--resume"], SETS + ["name=evil"]),
        ("train, pretrained", ["train", pfile, "--model", "mnv3", "--species", "cat"],
         SETS + ["name=evil2", f"models.mnv3.pretrained={evil}"]),
        ("embed", ["embed", cases["pet_embedder.pt"]], []),
        ("export", ["export", cases["pet_embedder.pt"], "--formats", "onnx", "--out", tmp_path / "x"], []),
        ("compare photos", ["compare", photo, photo, "--embedder", cases["pet_embedder.pt"] / "pet_embedder.pt"], []),
    ]
    for label, args, sets in runs:
        r = cli(*args, sets=sets)
        assert r.returncode == 2, (label, r.stderr[-1500:])
        assert "refused: it holds Python objects" in one_line(r), label
        assert not marker.exists(), label
    from petlib import train
    from petlib.run import RunDir

    best = tmp_path / "best" / "mnv3-cat"
    shutil.copytree(full, best)
    shutil.copyfile(evil, best / "best_model.pt")
    for label, call in (("class centres", lambda: RunDir(best).class_centres()), ("finalize", lambda: train.finalize(best))):
        with pytest.raises(UnsafeFileError, match="refused") as e:
            call()
        assert "\n" not in str(e.value) and not marker.exists(), label
    # the embeddings cache and galleries are npz without pickle: an object array is never loaded
    cache = tmp_path / "embeddings.npz"
    np.savez(cache, __meta__=np.array([Evil(marker)], dtype=object))
    from petlib.embed import cached_embeddings
    out = cached_embeddings(cache, "k", full / "pet_embedder.pt", [], lambda: np.ones((1, 2), np.float32))
    assert out.shape == (1, 2) and not marker.exists()


def _bomb_png(path: Path, w: int = 20_000, h: int = 20_000) -> None:
    """A PNG whose header says w x h (a decompression bomb's signature) with next to no data."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(f): (f.stat().st_size, f.stat().st_mtime_ns) for f in root.rglob("*") if f.is_file()}


@pytest.mark.timeout(900)
def test_every_entry_point_gives_bad_input_one_line(study, tmp_path):
    """Each CLI command with each bad input that applies: exit code 2, one line on stderr naming the file
    or key, no traceback, and no file changed."""
    pfile, full = study
    onnx, pt = full / "pet_embedder.onnx", full / "pet_embedder.pt"
    photo = next((pfile.parent / "data").rglob("*.jpg"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("not a photo\n")
    (bad / "trunc.jpg").write_bytes(photo.read_bytes()[:300])
    _bomb_png(bad / "bomb.png")
    (bad / "params.yaml").write_text("data: [unclosed\n")
    (bad / "norun").mkdir()
    gallery = tmp_path / "gallery.npz"
    assert cli("register", gallery, "rex", photo, "--embedder", onnx).returncode == 0
    raw = gallery.read_bytes()
    (bad / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    tampered = bytearray(raw)
    at = raw.index(b"embeddings") + 200
    tampered[at] ^= 0xFF
    (bad / "tampered.npz").write_bytes(bytes(tampered))
    train = ["train", pfile, "--model", "mnv3", "--species", "cat"]
    cases = [
        ("missing photo", ["compare", photo, bad / "missing.jpg", "--embedder", onnx], [], "missing.jpg: photo not found"),
        ("0-byte photo", ["recognize", gallery, bad / "zero.jpg", "--embedder", onnx], [], "zero.jpg: empty file (0 bytes)"),
        ("text named .jpg", ["compare", bad / "text.jpg", photo, "--embedder", onnx], [], "text.jpg: not an image"),
        ("truncated JPEG", ["register", gallery, "rex", bad / "trunc.jpg", "--embedder", onnx], [],
         "trunc.jpg: unreadable image"),
        ("bomb PNG header", ["compare", bad / "bomb.png", photo, "--embedder", onnx], [], "decompression bomb"),
        ("gallery of another model", ["recognize", gallery, photo, "--embedder", pt], [], "gallery.npz: built by embedder"),
        ("truncated gallery", ["recognize", bad / "truncated.npz", photo, "--embedder", onnx], [],
         "truncated.npz: not a readable gallery"),
        ("tampered gallery", ["recognize", bad / "tampered.npz", photo, "--embedder", onnx], [], "tampered.npz: "),
        ("run without config.json", ["embed", bad / "norun"], [], "norun/config.json: missing"),
        ("export of a missing run", ["export", bad / "nowhere"], [], "nowhere/config.json: missing"),
        ("evaluate before train", ["evaluate", pfile], ["name=untrained"],
         "pet_embedder.pt: missing; has this run finished training?"),
        ("params not YAML", ["train", bad / "params.yaml"], [], "params.yaml: not valid YAML"),
        ("unknown key", train, ["train.batchsize=3"], "train.batchsize"),
        ("wrong type", train, ["train.batch_size=many"], "train.batch_size"),
        ("--resume without checkpoint", train + ["--resume"], ["name=never-trained"], "no checkpoint to resume from"),
    ]
    before = _files(tmp_path) | _files(pfile.parent / "outputs")
    for label, args, sets, expect in cases:
        r = cli(*args, sets=sets)
        assert r.returncode == 2, (label, r.returncode, r.stderr[-1500:])
        line = one_line(r)
        assert line.startswith(f"petface {args[0]}: error: ") and expect in line, (label, line)
        print(f"{label}: {line}")
    assert _files(tmp_path) | _files(pfile.parent / "outputs") == before, "a failing command changed a file"

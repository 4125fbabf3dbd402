import io
import shutil

import numpy as np
import pytest
from PIL import Image

from petlib import data, metrics
from petlib.data import DataError, ImageDecodeError


def _jpg(path, size=(32, 32), color=(200, 100, 50)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")
    return path


# ------------------------------------------------------------------ splits
def test_split_deterministic_disjoint_and_ratios():
    names = [f"id{i:04d}" for i in range(1000)]
    a = data.split_identities(names, (0.8, 0.1, 0.1), seed=42)
    b = data.split_identities(list(reversed(names)), (0.8, 0.1, 0.1), seed=42)
    assert a == b, "order of the input must not matter"
    assert [len(a[s]) for s in ("train", "val", "test")] == [800, 100, 100]
    assert not (set(a["train"]) & set(a["val"])) and not (set(a["train"]) & set(a["test"]))
    assert not (set(a["val"]) & set(a["test"]))
    assert set(a["train"]) | set(a["val"]) | set(a["test"]) == set(names)
    c = data.split_identities(names, (0.8, 0.1, 0.1), seed=7)
    assert c != a


def test_split_small_keeps_every_split_and_rejects_too_few():
    s = data.split_identities(["a", "b", "c", "d", "e"], (0.8, 0.1, 0.1))
    assert all(len(s[k]) >= 1 for k in s)
    with pytest.raises(DataError):
        data.split_identities(["a", "b"], (0.8, 0.1, 0.1))


def test_manifest_roundtrip(tiny_synth, tmp_path):
    idx = data.scan_identities(tiny_synth, progress=False)
    split = data.split_identities(idx.identities, seed=1)
    data.write_manifest(tmp_path / "m.csv", idx, data.by_identity(idx, split))
    back = data.read_manifest(tmp_path / "m.csv", tiny_synth)
    for s in data.SPLITS:
        assert back[s].identities == split[s]
        assert len(back[s].paths) == sum((idx.labels == idx.identities.index(n)).sum() for n in split[s])


def test_manifest_missing_file_is_one_clear_error(tiny_synth, tmp_path):
    idx = data.scan_identities(tiny_synth, progress=False)
    data.write_manifest(tmp_path / "m.csv", idx, data.by_identity(idx, data.split_identities(idx.identities)))
    root = tmp_path / "copy"
    shutil.copytree(tiny_synth, root)
    victim = next(root.glob("*/0_face0.jpg"))
    victim.unlink()
    with pytest.raises(DataError, match="does not exist"):
        data.read_manifest(tmp_path / "m.csv", root)


# ------------------------------------------------------------------ bad input
def test_scan_records_every_bad_case(tmp_path):
    root = tmp_path / "root"
    for i in range(3):
        _jpg(root / "good" / f"{i}.jpg")
    _jpg(root / "good" / "UPPER.JPG")
    (root / "good" / ".hidden.jpg").write_bytes(b"junk")
    (root / "good" / "notes.txt").write_text("hello")
    (root / "zero" / "0.jpg").parent.mkdir(parents=True)
    (root / "zero" / "0.jpg").write_bytes(b"")
    _jpg(root / "zero" / "1.jpg")
    _jpg(root / "zero" / "2.jpg")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "JPEG")
    (root / "trunc").mkdir()
    (root / "trunc" / "0.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    _jpg(root / "trunc" / "1.jpg")
    (root / "fake").mkdir()
    (root / "fake" / "0.png").write_text("this is not a png")
    (root / "fake" / "1.png").write_text("nor this")
    (root / "empty").mkdir()
    _jpg(root / "single" / "0.jpg")
    (root / "stray.jpg").write_bytes(b"x")
    idx = data.scan_identities(root, min_images=2, progress=False)
    assert idx.identities == ["good", "zero"]
    assert len(idx.paths) == 6 and list(idx.labels) == [0, 0, 0, 0, 1, 1]
    reasons = {p.split("root/")[-1]: r for p, r in idx.skipped}
    assert "0 bytes" in reasons["zero/0.jpg"]
    assert "truncated" in reasons["trunc/0.jpg"] or "unreadable" in reasons["trunc/0.jpg"]
    assert "below min_images" in reasons["trunc"]
    assert "not an image" in reasons["fake/0.png"]
    assert "no images" in reasons["empty"]
    assert "below min_images" in reasons["single"]
    assert "extension" in reasons["good/notes.txt"]
    assert "top level" in reasons["stray.jpg"]
    assert not any(".hidden" in p for p, _ in idx.skipped)


def test_scan_cache_decodes_only_new_or_changed_files(tmp_path, monkeypatch):
    root = tmp_path / "root"
    for ident in ("a", "b"):
        for i in range(3):
            _jpg(root / ident / f"{i}.jpg")
    cache = tmp_path / "scan" / "cat.json"
    decoded = []
    from petlib.data import scan

    real = scan._check
    monkeypatch.setattr(scan, "_check", lambda p, m: decoded.append(p.name) or real(p, m))
    first = data.scan_identities(root, progress=False, cache=cache)
    assert len(decoded) == 6 and cache.is_file()
    decoded.clear()
    again = data.scan_identities(root, progress=False, cache=cache)
    assert decoded == [] and again.paths == first.paths and again.skipped == first.skipped
    (root / "a" / "1.jpg").write_bytes(b"not a jpeg any more")  # changed: size and time differ
    _jpg(root / "b" / "3.jpg")  # new
    changed = data.scan_identities(root, progress=False, cache=cache)
    assert sorted(decoded) == ["1.jpg", "3.jpg"]
    assert any(p.endswith("a/1.jpg") for p, _ in changed.skipped) and len(changed.paths) == 6
    decoded.clear()
    data.scan_identities(root, progress=False, cache=cache, max_pixels=50_000_000)  # another policy: re-check all
    assert len(decoded) == 7
    cache.write_text("{ damaged")
    decoded.clear()
    assert data.scan_identities(root, progress=False, cache=cache).paths == changed.paths and len(decoded) == 7


def test_missing_root_and_no_usable_identity(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.scan_identities(tmp_path / "nope", progress=False)
    _jpg(tmp_path / "r" / "a" / "0.jpg")
    with pytest.raises(DataError, match="no usable identity"):
        data.scan_identities(tmp_path / "r", progress=False)


# ------------------------------------------------------------------ decoding
def test_decode_modes(tmp_path):
    Image.new("L", (10, 8), 77).save(tmp_path / "g.png")
    Image.new("RGBA", (10, 8), (255, 0, 0, 0)).save(tmp_path / "a.png")
    Image.new("P", (10, 8), 3).save(tmp_path / "p.png")
    Image.new("CMYK", (10, 8), (0, 255, 0, 0)).save(tmp_path / "c.jpg")
    Image.fromarray(np.full((8, 10), 65535 // 2, np.uint16)).save(tmp_path / "i16.png")
    for name in ["g.png", "a.png", "p.png", "c.jpg", "i16.png"]:
        a = data.load_image(tmp_path / name)
        assert a.shape == (8, 10, 3) and a.dtype == np.uint8, name
    assert (data.load_image(tmp_path / "g.png") == 77).all()
    assert (data.load_image(tmp_path / "a.png") == 255).all(), "transparent pixels composite on white"
    assert abs(int(data.load_image(tmp_path / "i16.png")[0, 0, 0]) - 127) <= 1, "16-bit scaled, not clipped"
    cmyk = data.load_image(tmp_path / "c.jpg")[0, 0]
    assert cmyk[1] < 60 and cmyk[0] > 150, "CMYK magenta converts to an RGB magenta"


def test_exif_orientation(tmp_path):
    im = Image.new("RGB", (20, 10), (0, 0, 0))
    im.paste((255, 255, 255), (0, 0, 10, 10))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    im.save(tmp_path / "e.jpg", exif=exif.tobytes(), quality=100)
    a = data.load_image(tmp_path / "e.jpg")
    assert a.shape[:2] == (20, 10)
    assert a[2, 5].mean() > 200 and a[-3, 5].mean() < 50, "white half ends up on top"


def test_decompression_bomb_refused(tmp_path):
    Image.new("L", (3000, 3000)).save(tmp_path / "big.png")
    with pytest.raises(ImageDecodeError, match="decompression-bomb"):
        data.load_image(tmp_path / "big.png", max_pixels=1_000_000)


def test_training_decoder_gives_the_same_pixels(tmp_path):
    """`decode_verified` (OpenCV for grey and colour JPEGs) equals `load_image` (PIL) pixel for pixel:
    all eight EXIF orientations, grey, progressive, 4:4:4; CMYK JPEG and PNG go to PIL; the bomb guard holds."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)
    files = []
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        Image.fromarray(base).save(tmp_path / f"o{o}.jpg", exif=exif.tobytes())
        files.append(f"o{o}.jpg")
    Image.fromarray(base[..., 0]).save(tmp_path / "g.jpg")
    Image.fromarray(base).save(tmp_path / "p.jpg", progressive=True)
    Image.fromarray(base).save(tmp_path / "s.jpg", subsampling=0, quality=95)
    Image.new("CMYK", (10, 8), (0, 255, 0, 0)).save(tmp_path / "c.jpg")
    Image.fromarray(base).save(tmp_path / "rgb.png")
    Image.new("RGBA", (10, 8), (255, 0, 0, 0)).save(tmp_path / "a.png")
    for name in files + ["g.jpg", "p.jpg", "s.jpg", "c.jpg", "rgb.png", "a.png"]:
        a, b = data.load_image(tmp_path / name), data.decode_verified(tmp_path / name)
        assert a.shape == b.shape and np.array_equal(a, b), name
    Image.new("RGB", (1200, 1000)).save(tmp_path / "big.jpg")
    with pytest.raises(ImageDecodeError, match="decompression-bomb"):
        data.decode_verified(tmp_path / "big.jpg", max_pixels=1_000_000)


def test_in_place_reseed_equals_albumentations_set_random_seed(tiny_synth):
    idx = data.scan_identities(tiny_synth, progress=False)
    ours, ref = data.train_transforms(64), data.train_transforms(64)
    for i in range(300):
        img = data.load_image(idx.paths[i % len(idx.paths)])
        data.reseed(ours, i * 7_919)
        ref.set_random_seed(i * 7_919)
        assert np.array_equal(ours(image=img)["image"].numpy(), ref(image=img)["image"].numpy()), i


def test_uint8_loader_then_batch_normalisation_equals_per_image_normalize(tiny_synth):
    """The GPU loader hands uint8 over and normalises the batch on the device: the same tensor, bit for bit."""
    import torch

    idx = data.scan_identities(tiny_synth, progress=False)
    a = data.FaceDataset(idx.paths[:20], idx.labels[:20], data.train_transforms(64), seed=3)
    b = data.FaceDataset(idx.paths[:20], idx.labels[:20], data.train_transforms(64, normalize=False), seed=3)
    for epoch in (0, 1):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        xa = torch.stack([a[i][0] for i in range(20)])
        xb = torch.stack([b[i][0] for i in range(20)])
        assert xb.dtype == torch.uint8 and xa.dtype == torch.float32
        assert torch.equal(data.normalize_batch(xb), xa)


# ------------------------------------------------------------------ pairs and datasets
def test_pairs_deterministic_and_valid():
    labels = np.repeat(np.arange(50), 4)
    a = metrics.make_pairs(labels, 100, seed=5)
    b = metrics.make_pairs(labels, 100, seed=5)
    assert (a == b).all()
    pos, neg = a[a[:, 2] == 1], a[a[:, 2] == 0]
    assert len(pos) == 100 and len(neg) == 100
    assert (labels[pos[:, 0]] == labels[pos[:, 1]]).all() and (pos[:, 0] != pos[:, 1]).all()
    assert (labels[neg[:, 0]] != labels[neg[:, 1]]).all()
    assert len({tuple(r) for r in neg[:, :2]}) == 100 and len({tuple(r) for r in pos[:, :2]}) == 100
    assert not (metrics.make_pairs(labels, 100, seed=6) == a).all()


def test_pairs_stay_balanced_when_positives_are_scarce():
    labels = np.array([0, 0, 1, 1, 2])
    p = metrics.make_pairs(labels, 2500)
    assert (p[:, 2] == 1).sum() == 2 and (p[:, 2] == 0).sum() == 2


def test_dataset_augmentation_is_seeded_per_epoch_and_index(tiny_synth):
    idx = data.scan_identities(tiny_synth, progress=False)
    ds = data.FaceDataset(idx.paths[:3], idx.labels[:3], data.train_transforms(64), seed=1)
    x0 = ds[1][0].clone()
    ds[0], ds[2]
    assert (ds[1][0] == x0).all(), "same epoch and index give the same augmentation"
    ds.set_epoch(1)
    assert not (ds[1][0] == x0).all()
    assert tuple(x0.shape) == (3, 64, 64)


@pytest.mark.parametrize("size", [48, 64])
def test_the_in_memory_cache_gives_the_same_pixels_bit_for_bit(tiny_synth, size):
    """Training from the preloaded images (decoded and resized once) equals decoding every epoch: the
    resize that opens the augmentations finds the size it wants and leaves the pixels as they are."""
    import torch

    idx = data.scan_identities(tiny_synth, progress=False)
    paths, labels = idx.paths[:24], idx.labels[:24]
    cache = data.preload(paths, size)
    assert all(c.dtype == np.uint8 and c.shape == (size, size, 3) for c in cache)
    for normalize in (True, False):
        plain = data.FaceDataset(paths, labels, data.train_transforms(size, normalize), seed=3)
        cached = data.FaceDataset(paths, labels, data.train_transforms(size, normalize), seed=3, cache=cache)
        for epoch in (0, 1, 5):
            plain.set_epoch(epoch)
            cached.set_epoch(epoch)
            for i in range(len(paths)):
                a, b = plain[i], cached[i]
                assert a[1] == b[1] and torch.equal(a[0], b[0]), (normalize, epoch, i)
    with pytest.raises(ValueError, match="cache holds"):
        data.FaceDataset(paths, labels, data.train_transforms(size), cache=cache[:3])


def test_eval_transform_matches_phone_preprocessing(tiny_synth):
    import cv2

    p = next(tiny_synth.glob("*/0_face0.jpg"))
    x = data.eval_transforms(48)(image=data.load_image(p))["image"].numpy()
    ref = cv2.resize(data.load_image(p), (48, 48), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    ref = ((ref - np.array(data.IMAGENET_MEAN)) / np.array(data.IMAGENET_STD)).transpose(2, 0, 1)
    assert np.abs(x - ref).max() < 1e-4


def test_content_hashes_read_each_file_once_and_see_a_same_size_replacement(tmp_path, monkeypatch):
    """The SHA-1 cache: a second look reads no file and (memoised in the process) not the cache file
    either, unless another process rewrote it; a photo replaced by one of equal size is hashed again."""
    import hashlib
    import json
    from pathlib import Path

    from petlib.data import content

    files = [tmp_path / f"{i}.jpg" for i in range(3)]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 10)
    cache = tmp_path / "content.json"
    want = [hashlib.sha1(f.read_bytes()).hexdigest() for f in files]
    assert content.sha1s(files, cache) == want
    reads = []
    real_read_bytes, real_read_text = Path.read_bytes, Path.read_text
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or real_read_bytes(self))
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self.name) or real_read_text(self, *a, **k))
    assert content.sha1s(files, cache) == want and reads == []
    files[1].write_bytes(b"\x07" * 10)  # same size, new content
    assert content.sha1s(files, cache)[1] == hashlib.sha1(b"\x07" * 10).hexdigest() and reads == ["1.jpg"]
    other = json.loads(real_read_text(cache))  # another process's entry: the cache file is read again
    other["files"][str(files[0].resolve())][3] = "written elsewhere"
    cache.write_text(json.dumps(other) + " ")
    assert content.sha1s(files, cache)[0] == "written elsewhere" and "content.json" in reads

import hashlib

import numpy as np

from petlib import data, synth


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.jpg")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_whatever_the_workers(tmp_path):
    a = synth.generate(tmp_path / "a", "dog", 12, 48, seed=9, workers=1, progress=False)
    b = synth.generate(tmp_path / "b", "dog", 12, 48, seed=9, workers=2, progress=False)
    assert a == b and _digest(tmp_path / "a") == _digest(tmp_path / "b")
    synth.generate(tmp_path / "c", "dog", 12, 48, seed=10, workers=1, progress=False)
    assert _digest(tmp_path / "c") != _digest(tmp_path / "a")


def test_layout_and_skip_when_unchanged(tmp_path):
    rec = synth.generate(tmp_path / "cat", "cat", 5, 40, seed=1, progress=False)
    files = sorted((tmp_path / "cat").rglob("*.jpg"))
    assert len(files) == rec["n_images"]
    assert all(f.name.endswith("_face0.jpg") for f in files)
    mtime = files[0].stat().st_mtime_ns
    synth.generate(tmp_path / "cat", "cat", 5, 40, seed=1, progress=False)
    assert files[0].stat().st_mtime_ns == mtime, "an unchanged request regenerates nothing"
    idx = data.scan_identities(tmp_path / "cat", progress=False)
    assert not idx.skipped and len(idx.identities) == 5


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep me")
    try:
        synth.generate(tmp_path / "x", "cat", 2, 32, progress=False)
        raise AssertionError("should refuse")
    except FileExistsError:
        pass
    assert (tmp_path / "x" / "mine.txt").read_text() == "keep me"


def test_images_per_identity_follow_seed_statistics():
    counts = np.array([synth.images_per_identity("cat", i, 0) for i in range(20000)])
    assert counts.min() == 3 and np.median(counts) == 4
    assert 4.1 <= counts.mean() <= 4.5 and 1.3 <= counts.std() <= 1.9
    assert 15 <= counts.max() <= 22


def test_lookalike_families_share_colour_not_identity():
    a = synth.identity_traits("cat", 0, 0, 4)
    b = synth.identity_traits("cat", 1, 0, 4)
    assert a.pattern == b.pattern
    assert sum(abs(x - y) for x, y in zip(a.fur, b.fur)) < 80
    assert (a.eye_col, a.eye_spacing, a.pattern_seed) != (b.eye_col, b.eye_spacing, b.pattern_seed)


def test_species_differ():
    rng = np.random.default_rng(0)
    cat = synth.render(synth.identity_traits("cat", 0, 0, 4), 64, rng)
    dog = synth.render(synth.identity_traits("dog", 0, 0, 4), 64, np.random.default_rng(0))
    assert cat.shape == dog.shape == (64, 64, 3) and not (cat == dog).all()


def test_a_change_to_the_drawing_code_redraws_the_set(tmp_path, monkeypatch):
    """The set is keyed by the digest of the code that draws it (no version to bump by hand)."""
    from petlib import codegraph

    out = tmp_path / "cat"
    first = synth.generate(out, "cat", n_identities=2, image_size=32, workers=1, progress=False)
    assert first["code"] == synth.code_version()
    assert synth.generate(out, "cat", n_identities=2, image_size=32, workers=1, progress=False) == first
    real = codegraph.code_digest
    monkeypatch.setattr(codegraph, "code_digest", lambda m: "edited" if m == "petlib.synth" else real(m))
    marker = (out / ".synth.json").stat().st_mtime_ns
    again = synth.generate(out, "cat", n_identities=2, image_size=32, workers=1, progress=False)
    assert again["code"] != first["code"] and (out / ".synth.json").stat().st_mtime_ns != marker


def test_test_identities_of_their_own_are_the_test_split_alone(make_params, tmp_path):
    """data.synth.n_test_identities > 0: that many more identities are drawn (identities 0..n-1 keep
    their pixels) and make the whole test split; train and val split the n by the ratios' own shares."""
    def prepared(name, *sets):
        (tmp_path / name).mkdir()
        p = make_params(tmp_path / name, "data.synth.n_identities=12", "data.synth.image_size=32", *sets)
        data.prepare_species(p, "cat", progress=False)
        return data.load_splits(p, "cat")

    plain, held = prepared("plain"), prepared("held", "data.synth.n_test_identities=5")
    assert held["test"].identities == [synth.identity_name("cat", i) for i in range(12, 17)]
    assert set(held["train"].identities) | set(held["val"].identities) == {synth.identity_name("cat", i)
                                                                           for i in range(12)}
    assert len(held["val"].identities) == max(1, round(12 * 0.1 / 0.9))  # val's share of train + val

    def pixels(idx, name):
        return sorted(hashlib.sha1(q.read_bytes()).hexdigest() for q, lab in zip(idx.paths, idx.labels)
                      if idx.identities[lab] == name)

    name = plain["train"].identities[0]
    where = next(s for s in ("train", "val") if name in held[s].identities)
    assert pixels(plain["train"], name) == pixels(held[where], name), "the first n identities keep their pixels"

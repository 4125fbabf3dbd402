"""The data audit (petlib.data.audit): planted duplicates are found by file and identity, linked identities
share a split under `group`, fixed splits are reported and never changed, the clean synthetic set is clean."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_sources import _params, write_petface, write_table

from petlib import data, synth
from petlib.data import audit


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """16 synthetic cats at 64 px."""
    root = tmp_path_factory.mktemp("audit") / "cat"
    synth.generate(root, "cat", n_identities=16, image_size=64, seed=11, progress=False)
    return root


def _reencode(src: Path, dst: Path, scale: float = 1.0, quality: int = 75) -> None:
    im = Image.open(src).convert("RGB")
    if scale != 1:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BICUBIC)
    im.save(dst, quality=quality)


def _plant(tree: Path, dest: Path) -> dict:
    """A copy of `tree` with planted findings; returns what was planted (relative paths)."""
    shutil.copytree(tree, dest)
    ids = sorted(d.name for d in dest.iterdir() if d.is_dir())
    a, b, c, d, e = ids[:5]
    first = {i: sorted((dest / i).glob("*.jpg"))[0] for i in ids}
    shutil.copy(first[a], dest / b / "copied_from_a.jpg")                      # exact, across identities
    _reencode(first[c], dest / d / "resized_from_c.jpg", scale=1.5, quality=60)  # near: resized + re-encoded
    shutil.copy(first[a], dest / a / "burst_copy.jpg")                         # exact, within one identity
    (dest / "twin").mkdir()
    for f in sorted((dest / e).glob("*.jpg")):                                # one animal under a second name
        _reencode(f, dest / "twin" / f.name, quality=85)
    return {"exact": (f"{a}/{first[a].name}", f"{b}/copied_from_a.jpg"), "near": (f"{c}/{first[c].name}",
            f"{d}/resized_from_c.jpg"), "twins": (e, "twin"), "burst": (f"{a}/{first[a].name}", f"{a}/burst_copy.jpg"),
            "pairs": {(a, b), (c, d)}}


def test_near_pairs_match_a_brute_force_count():
    h = np.random.default_rng(0).integers(0, 2**63, 300, dtype=np.uint64)
    h[5] = h[17] ^ np.uint64(0b1011)  # 3 bits apart
    h[40] = h[41]
    got = {(int(i), int(j)): int(d) for i, j, d in audit.near_pairs(h, 6)}
    want = {(i, j): bin(int(h[i]) ^ int(h[j])).count("1") for i in range(len(h)) for j in range(i + 1, len(h))
            if bin(int(h[i]) ^ int(h[j])).count("1") <= 6}
    assert got == want and got[(5, 17)] == 3 and got[(40, 41)] == 0


def test_the_threshold_survives_resizing_and_re_encoding_but_not_another_photo(tree, tmp_path):
    photos = sorted(tree.glob("*/*.jpg"))[:40]
    moved = []
    for k, f in enumerate(photos[:20]):
        for scale, q in ((0.5, 90), (1.5, 60), (2.0, 40), (1.0, 95)):
            _reencode(f, tmp_path / f"{k}-{scale}-{q}.jpg", scale, q)
            a, b = audit.phash(data.load_image(f)), audit.phash(data.load_image(tmp_path / f"{k}-{scale}-{q}.jpg"))
            moved.append(bin(a ^ b).count("1"))
    assert max(moved) <= audit.NEAR_HAMMING, f"copies moved by {sorted(moved)[-5:]} bits"
    copies = [audit.correlation(audit.thumbnail(f), audit.thumbnail(tmp_path / f"{k}-2.0-40.jpg"))
              for k, f in enumerate(photos[:20])]
    assert min(copies) >= audit.NEAR_CORRELATION, "the pixel check confirms every copy"
    by_id = {}
    for f in sorted(tree.glob("*/*.jpg")):
        by_id.setdefault(f.parent.name, []).append(audit.phash(data.load_image(f)))
    same = [bin(x ^ y).count("1") for hs in by_id.values() for i, x in enumerate(hs) for y in hs[i + 1:]]
    assert np.percentile(same, 5) > audit.NEAR_HAMMING, "two photos of one animal are not near duplicates"


def test_planted_findings_are_reported_by_file_and_identity(tree, tmp_path, make_params):
    planted = _plant(tree, tmp_path / "cats")
    p = _params(make_params, tmp_path, {"source": "folders", "roots": {"cat": str(tmp_path / "cats")}}, ["cat"])
    d = data.prepare_species(p, "cat", progress=False)
    found = data.load_audit(p, "cat")
    assert found == d.audit
    pairs = {(tuple(f["files"]), f["kind"]) for f in found["findings"]}
    assert (planted["exact"], "exact") in pairs and (planted["near"], "near") in pairs
    e, twin = planted["twins"]
    n_twin = len(list((tmp_path / "cats" / e).glob("*.jpg")))
    twins = [f for f in found["findings"] if set(f["identities"]) == {e, twin}]
    assert len(twins) == n_twin, "every photo of the copied identity is found"
    linked = {tuple(x["identities"]): x for x in found["linked_identity_pairs"]}
    assert linked[(e, twin)]["verdict"] == "likely the same animal"
    assert set(linked) == planted["pairs"] | {(e, twin)}, "no other identity pair is linked"
    assert found["within_identity"]["exact"] == 1
    # group (the default): linked identities share one split; the burst copy counts once
    split_of = {i: s for s, idx in d.splits.items() for i in idx.identities}
    for a, b in linked:
        assert split_of[a] == split_of[b], (a, b)
    assert not found["leakage"], found["leakage"]
    kept = {x.relative_to(d.root).as_posix() for x in d.index.paths}
    assert planted["burst"][0] in kept and planted["burst"][1] not in kept
    assert any(path.endswith("burst_copy.jpg") and "duplicate" in why for path, why in d.index.skipped)


def test_report_changes_nothing_and_drop_leaves_the_copies_out(tree, tmp_path, make_params):
    planted = _plant(tree, tmp_path / "cats")
    cfg = {"source": "folders", "roots": {"cat": str(tmp_path / "cats")}}
    (tmp_path / "r").mkdir()
    (tmp_path / "d").mkdir()
    rep = data.prepare_species(_params(make_params, tmp_path / "r", {**cfg, "duplicates": "report"}, ["cat"]), "cat",
                               progress=False)
    assert len(rep.index.paths) == rep.audit["images"], "report keeps every file"
    drop = data.prepare_species(_params(make_params, tmp_path / "d", {**cfg, "duplicates": "drop"}, ["cat"]), "cat",
                                progress=False)
    later = {f["files"][1] for f in rep.audit["findings"]} | {planted["burst"][1]}  # the second file of each pair
    assert {x.relative_to(drop.root).as_posix() for x in drop.index.paths} == \
        {x.relative_to(rep.root).as_posix() for x in rep.index.paths} - later


def test_the_clean_synthetic_set_has_no_cross_identity_finding(tree, tmp_path, make_params):
    p = _params(make_params, tmp_path, {"source": "folders", "roots": {"cat": str(tree)}}, ["cat"])
    found = data.prepare_species(p, "cat", progress=False).audit
    assert found["across_identities"] == {"exact": 0, "near": 0} and found["within_identity"]["exact"] == 0
    assert found["linked_identity_pairs"] == [] and found["leakage"] == {}


def _leaky(faces: dict) -> dict:
    """The faces with the last identity's second photo replaced by a copy of the first identity's second
    (a training photo in both miniatures: PetFace puts each first photo in its re-identification split,
    and the table crops even photos by their box)."""
    names = sorted(faces)
    out = {n: list(v) for n, v in faces.items()}
    out[names[-1]][1] = faces[names[0]][1]
    return out


def test_fixed_splits_report_leakage_and_are_never_re_split(tmp_path, make_params):
    faces = {}
    for sp in ("cat",):
        root = tmp_path / f"faces-{sp}"
        synth.generate(root, sp, n_identities=24, image_size=64, seed=5, progress=False)
        faces[sp] = {d.name: [data.load_image(f) for f in sorted(d.glob("*.jpg"))] for d in sorted(root.iterdir())
                     if d.is_dir()}
    leaky = {"cat": _leaky(faces["cat"])}
    pf = write_petface(tmp_path / "PetFace", leaky)
    (tmp_path / "pf").mkdir()
    (tmp_path / "tb").mkdir()
    p = _params(make_params, tmp_path / "pf", {"source": "petface", "roots": {"cat": str(pf)}}, ["cat"])
    d = data.prepare_species(p, "cat", progress=False)
    assert d.audit["splits_fixed_by_the_data_set"] and d.audit["leakage"]["test photos with a duplicate in train"] == 1
    test_files = sorted(x.relative_to(pf / "images").as_posix() for x in d.splits["test"].paths)
    assert test_files == sorted((pf / "split" / "cat" / "test.txt").read_text().split()), "the split files rule"
    assert "Leakage" in audit.leakage_note(d.audit) and "not moved" in audit.leakage_note(d.audit)
    table = write_table(tmp_path / "wild", leaky["cat"])
    p = _params(make_params, tmp_path / "tb", {"source": "table", "tables": {"cat": str(table)}}, ["cat"])
    d = data.prepare_species(p, "cat", progress=False)
    assert d.audit["leakage"]["test photos with a duplicate in train"] == 1
    assert len(d.splits["train"].identities) == 16 and len(d.splits["test"].identities) == 5, "the table's split column rules"


def test_an_audit_that_cannot_finish_reports_and_never_stops_the_study(tree, tmp_path, make_params, monkeypatch):
    def broken(_index, *a):
        raise OSError("disk went away")
    monkeypatch.setattr(audit, "duplicate_pairs", broken)
    p = _params(make_params, tmp_path, {"source": "folders", "roots": {"cat": str(tree)}}, ["cat"])
    d = data.prepare_species(p, "cat", progress=False)
    assert "disk went away" in d.audit["error"] and len(d.splits["train"].paths) > 0
    assert "could not finish" in audit.summary_markdown("cat", d.audit)

"""Real data sets in the formats they ship in, on miniature trees the tests write in exactly that format
(from synthetic faces): PetFace, DogFaceNet's identity lists, a wildlife-datasets table. Protocol metrics
against hand computations; every bad input is one error naming the file, line and column."""
import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from petlib import data, metrics
from petlib.data import DataError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """24 synthetic identities per species with 4-5 photos each, as {species: {identity: [arrays]}}."""
    from petlib import synth

    out = {}
    for sp in ("cat", "dog"):
        root = tmp_path_factory.mktemp(f"faces-{sp}")
        synth.generate(root, sp, n_identities=24, image_size=64, seed=5, progress=False)
        out[sp] = {d.name: [data.load_image(f) for f in sorted(d.glob("*.jpg"))] for d in sorted(root.iterdir())
                   if d.is_dir()}
    return out


def write_petface(root: Path, faces: dict) -> Path:
    """PetFace's layout: images/<family>/<id>/<nn>.png and split/<family>/ with its five files."""
    for fam, ids in faces.items():
        split = root / "split" / fam
        split.mkdir(parents=True)
        names = sorted(ids)
        train, val = names[:14], names[14:18]
        rows, reid, lines = [], [], {"val": [], "test": []}
        for k, name in enumerate(names):
            pid = f"{k:06d}"
            for n, img in enumerate(ids[name]):
                rel = f"{fam}/{pid}/{n:02d}.png"
                (root / "images" / fam / pid).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(root / "images" / rel)
                if name in train:
                    (reid if n == 0 else rows).append((rel, train.index(name)))
                else:
                    lines["val" if name in val else "test"].append(rel)
        with open(split / "train.csv", "w", newline="") as f:
            csv.writer(f).writerows([("filename", "label"), *rows])
        with open(split / "reidentification.csv", "w", newline="") as f:
            csv.writer(f).writerows([("filename", "label"), *reid])
        for s in ("val", "test"):
            (split / f"{s}.txt").write_text("\n".join(lines[s]) + "\n")
        t = lines["test"]
        pairs = [(a, b, int(Path(a).parent == Path(b).parent)) for i, a in enumerate(t) for b in t[i + 1:]][::3]
        with open(split / "verification.csv", "w", newline="") as f:
            csv.writer(f).writerows([("filename1", "filename2", "label"), *pairs])
    return root


def write_dogfacenet(root: Path, faces: dict) -> tuple[Path, Path, Path]:
    """after_4_bis/<dog_id>/<n>.jpg and the two class lists."""
    names = sorted(faces)
    for k, name in enumerate(names):
        d = root / "after_4_bis" / str(k)
        d.mkdir(parents=True)
        for n, img in enumerate(faces[name]):
            Image.fromarray(img).save(d / f"{k}.{n}.jpg", quality=95)
    (root / "classes_train.txt").write_text("\n".join(str(k) for k in range(16)) + "\n")
    (root / "classes_test.txt").write_text("\n".join(str(k) for k in range(16, len(names))) + "\n")
    return root / "after_4_bis", root / "classes_train.txt", root / "classes_test.txt"


def write_table(root: Path, faces: dict) -> Path:
    """A wildlife-datasets frame with split and bbox: each photo pasted at an offset in a larger canvas
    whose box is given for even photos (odd ones are used whole)."""
    rows = []
    for k, (name, imgs) in enumerate(sorted(faces.items())):
        split = "train" if k < 16 else ("val" if k < 19 else "test")
        for n, img in enumerate(imgs):
            canvas = np.full((96, 112, 3), 40, np.uint8)
            canvas[10:74, 20:84] = img
            rel = f"photos/{name}_{n}.png"
            (root / "photos").mkdir(parents=True, exist_ok=True)
            Image.fromarray(canvas).save(root / rel)
            rows.append({"image_id": f"{name}-{n}", "identity": name, "path": rel, "split": split,
                         "bbox": "[20, 10, 64, 64]" if n % 2 == 0 else "", "species": "cat", "date": "2024-05-01",
                         "breed": "" if k == 20 else f"breed{k // 2}"})
    table = root / "metadata.csv"
    with open(table, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return table


def _params(make_params, folder: Path, data_cfg: dict, species: list[str], notebooks=("01_data",), **top):
    """params/ci.yaml with its data block updated by `data_cfg` (validated on load, like any params file)."""
    import yaml

    raw = yaml.safe_load((REPO / "params" / "ci.yaml").read_text())["data"]
    raw.update(data_cfg, species=species)
    return make_params(folder, notebooks=list(notebooks), data=raw, **top)


def _one_error(p, message: str) -> None:
    with pytest.raises(DataError, match=message) as e:
        data.prepare_species(p, "cat", progress=False)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ PetFace
def test_petface_split_files_and_protocol(make_params, tmp_path, faces):
    root = write_petface(tmp_path / "PetFace", faces)
    p = _params(make_params, tmp_path, {"source": "petface", "roots": {"cat": str(root), "dog": str(root)}},
                ["cat", "dog"])
    for fam in ("cat", "dog"):
        d = data.prepare_species(p, fam, progress=False)
        split = root / "split" / fam
        train = [r["filename"] for r in csv.DictReader(open(split / "train.csv"))]
        assert sorted(x.relative_to(root / "images").as_posix() for x in d.splits["train"].paths) == sorted(train)
        assert sorted(x.relative_to(root / "images").as_posix() for x in d.splits["test"].paths) == \
            sorted((split / "test.txt").read_text().split())
        reid = [r["filename"] for r in csv.DictReader(open(split / "reidentification.csv"))]
        assert sorted(x.relative_to(root / "images").as_posix() for x in d.splits["reid"].paths) == sorted(reid)
        assert set(d.splits["reid"].identities) <= set(d.splits["train"].identities)
        assert not set(d.splits["train"].identities) & set(d.splits["test"].identities)
        proto = data.load_protocol(p, fam)
        n_pairs = sum(1 for _ in open(split / "verification.csv")) - 1
        assert proto["name"] == "petface" and len(proto["pairs"]) == n_pairs and proto["pairs_dropped"] == 0


@pytest.mark.parametrize("file, edit, message", [
    ("train.csv", lambda t: t.replace("filename,label", "file,label"), r"train\.csv: missing column 'filename'"),
    ("train.csv", lambda t: t.replace(",3\n", ",three\n", 1), r"train\.csv:\d+: column 'label' must be an integer"),
    ("verification.csv", lambda t: t + "cat/999999/00.png,cat/000018/00.png,1\n",
     r"verification\.csv:\d+: column 'filename1' names cat/999999/00\.png, which no split file lists"),
    ("reidentification.csv", lambda t: t + "cat/000000/00.png,77\n", r"reidentification\.csv:\d+: column 'label' 77"),
])
def test_petface_bad_split_files_are_one_error(make_params, tmp_path, faces, file, edit, message):
    root = write_petface(tmp_path / "PetFace", {"cat": faces["cat"]})
    f = root / "split" / "cat" / file
    f.write_text(edit(f.read_text()))
    _one_error(_params(make_params, tmp_path, {"source": "petface", "roots": {"cat": str(root)}}, ["cat"]), message)


def test_petface_listed_file_missing_is_a_skipped_row(make_params, tmp_path, faces):
    root = write_petface(tmp_path / "PetFace", {"cat": faces["cat"]})
    gone = root / "images" / "cat" / "000018" / "01.png"
    gone.unlink()
    p = _params(make_params, tmp_path, {"source": "petface", "roots": {"cat": str(root)}}, ["cat"])
    d = data.prepare_species(p, "cat", progress=False)
    assert any(s == str(gone) and "test.txt" in why and "not found" in why for s, why in d.index.skipped)
    assert data.load_protocol(p, "cat")["pairs_dropped"] > 0


# ------------------------------------------------------------------ DogFaceNet lists
def test_identity_lists_pin_the_split(make_params, tmp_path, faces):
    root, tr, te = write_dogfacenet(tmp_path / "DogFaceNet", faces["dog"])
    cfg = {"source": "folders", "roots": {"dog": str(root)}, "identity_lists": {"train": str(tr), "test": str(te)},
           "benchmark": "dogfacenet"}
    p = _params(make_params, tmp_path, cfg, ["dog"])
    d = data.prepare_species(p, "dog", progress=False)
    assert set(d.splits["test"].identities) == set(te.read_text().split())
    assert set(d.splits["train"].identities) | set(d.splits["val"].identities) == set(tr.read_text().split())
    assert len(d.splits["val"].identities) == round(16 * 0.1 / 0.9)
    assert data.load_protocol(p, "dog") == {"name": "dogfacenet"}
    again = data.prepare_species(p, "dog", progress=False)
    assert again.splits["val"].identities == d.splits["val"].identities


def test_identity_in_both_lists_is_one_error(make_params, tmp_path, faces):
    root, tr, te = write_dogfacenet(tmp_path / "DogFaceNet", faces["dog"])
    te.write_text(te.read_text() + "3\n")
    p = _params(make_params, tmp_path, {"source": "folders", "roots": {"dog": str(root)},
                                        "identity_lists": {"train": str(tr), "test": str(te)}}, ["dog"])
    with pytest.raises(DataError, match=r"classes_test\.txt:\d+: identity '3' is also in the train list"):
        data.prepare_species(p, "dog", progress=False)


# ------------------------------------------------------------------ tables
def test_table_split_and_bbox(make_params, tmp_path, faces):
    table = write_table(tmp_path / "wild", faces["cat"])
    p = _params(make_params, tmp_path, {"source": "table", "tables": {"cat": str(table)}}, ["cat"])
    d = data.prepare_species(p, "cat", progress=False)
    rows = list(csv.DictReader(open(table)))
    assert len(d.splits["train"].identities) == 16 and len(d.splits["test"].identities) == 5
    first = rows[0]
    crop = d.root / first["identity"] / f"{first['image_id']}.png"
    whole = data.load_image(tmp_path / "wild" / first["path"])
    assert np.array_equal(data.load_image(crop), whole[10:74, 20:84]), "cropped by [x, y, w, h] before resizing"
    linked = d.root / rows[1]["identity"] / f"{rows[1]['image_id']}.png"
    assert np.array_equal(data.load_image(linked), data.load_image(tmp_path / "wild" / rows[1]["path"]))
    assert sum(len(s.paths) for s in d.splits.values()) == len(rows)


def test_table_in_parquet_reads_like_csv(make_params, tmp_path, faces):
    """The same frame as Parquet (boxes as lists, as wildlife-datasets keeps them) gives the same split."""
    import pandas as pd

    table = write_table(tmp_path / "wild", faces["cat"])
    df = pd.read_csv(table, keep_default_na=False)
    df["bbox"] = [[20, 10, 64, 64] if b else None for b in df["bbox"]]
    df.to_parquet(tmp_path / "wild" / "metadata.parquet")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = data.prepare_species(_params(make_params, tmp_path / "a", {"source": "table", "tables": {"cat": str(table)}},
                                     ["cat"]), "cat", progress=False)
    b = data.prepare_species(_params(make_params, tmp_path / "b", {"source": "table", "tables": {
        "cat": str(tmp_path / "wild" / "metadata.parquet")}}, ["cat"]), "cat", progress=False)
    for split in ("train", "val", "test"):
        assert a.splits[split].identities == b.splits[split].identities
        assert [data.load_image(x).shape for x in a.splits[split].paths] == \
            [data.load_image(x).shape for x in b.splits[split].paths]


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("identity,", "ident,", 1), r"metadata\.csv: missing column 'identity'"),
    (lambda t: t.replace(",train,", ",training,", 1), r"metadata\.csv:2: column 'split' must be one of"),
    (lambda t: t.replace('"[20, 10, 64, 64]"', '"[20, 10]"', 1), r"metadata\.csv:2: column 'bbox' must be \[x, y, w, h\]"),
])
def test_table_bad_input_is_one_error(make_params, tmp_path, faces, edit, message):
    table = write_table(tmp_path / "wild", faces["cat"])
    table.write_text(edit(table.read_text()))
    _one_error(_params(make_params, tmp_path, {"source": "table", "tables": {"cat": str(table)}}, ["cat"]), message)


def test_table_row_naming_a_missing_file_is_skipped(make_params, tmp_path, faces):
    table = write_table(tmp_path / "wild", faces["cat"])
    rows = list(csv.DictReader(open(table)))
    (tmp_path / "wild" / rows[3]["path"]).unlink()
    p = _params(make_params, tmp_path, {"source": "table", "tables": {"cat": str(table)}}, ["cat"])
    d = data.prepare_species(p, "cat", progress=False)
    assert any("metadata.csv:5 names a file that does not exist" in why for _, why in d.index.skipped)


def test_table_lookalike_column_gives_each_identity_its_family(make_params, tmp_path, faces):
    """Identities sharing a breed share a family; one without a breed is in a family of its own."""
    table = write_table(tmp_path / "wild", faces["cat"])
    p = _params(make_params, tmp_path, {"source": "table", "tables": {"cat": str(table)}, "lookalike_column": "breed"},
                ["cat"])
    test = data.prepare_species(p, "cat", progress=False).splits["test"]
    breed = {r["identity"]: r["breed"] for r in csv.DictReader(open(table))}
    name, fam = data.lookalike_families(p, "cat", test.identities)
    assert name == "breed"
    for i, a in enumerate(test.identities):
        for j, b in enumerate(test.identities):
            same = bool(breed[a]) and breed[a] == breed[b]
            assert (fam[i] == fam[j]) == (same or i == j), (a, b)
    assert any(not breed[a] for a in test.identities) and any(
        breed[a] == breed[b] for a in test.identities for b in test.identities if a != b and breed[a])
    p.data.lookalike_column = "colour"
    with pytest.raises(DataError, match=r"metadata\.csv: data\.lookalike_column names 'colour', which the table lacks"):
        data.lookalike_families(p, "cat", test.identities)


def test_lookalike_column_needs_a_table(make_params, tmp_path):
    from petlib.config import ParamsError

    with pytest.raises(ParamsError, match="data.lookalike_column names a table column; data.source is 'synth'"):
        _params(make_params, tmp_path, {"lookalike_column": "breed"}, ["cat"])


# ------------------------------------------------------------------ protocol metrics
def test_petface_auc_clips_negative_scores_like_compute_auc():
    scores = np.array([0.9, -0.2, 0.4, -0.5, 0.1, -0.1])
    same = np.array([1, 1, 0, 0, 1, 0])
    # clipped: [0.9, 0, 0.4, 0, 0.1, 0]; positives {0.9, 0, 0.1} vs negatives {0.4, 0, 0}:
    # 0.9 beats all 3; 0 ties two and loses one (0 + 0.5 + 0.5); 0.1 beats two zeros, loses to 0.4
    assert metrics.petface_auc(scores, same) == pytest.approx((3 + 1 + 2) / 9)
    # without clipping: 0.9 > all; -0.2 beats -0.5 only; 0.1 beats -0.5 and -0.1
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(same, scores) == pytest.approx((3 + 1 + 2) / 9)
    assert metrics.petface_auc(np.array([-0.3, -0.1]), np.array([1, 0])) == 0.5


def test_reid_topk_against_a_brute_force_loop():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(90, 8)).astype(np.float32)
    g_lab, truth = rng.integers(0, 12, 90), rng.integers(0, 12, 40)
    scores = metrics.class_max_scores(q, g, g_lab, 12, chunk=7)
    for i in range(40):
        for c in range(12):
            members = [float(q[i] @ g[j]) for j in range(90) if g_lab[j] == c]
            assert scores[i, c] == pytest.approx(max(members) if members else -np.inf, abs=1e-5)
    got = metrics.topk_identification(scores, truth, ks=(1, 5))
    hits = {1: 0, 5: 0}
    for i in range(40):
        ranked = sorted(range(12), key=lambda c: (-scores[i, c], c))
        hits[1] += truth[i] in ranked[:1]
        hits[5] += truth[i] in ranked[:5]
    assert got == {"top1": hits[1] / 40, "top5": hits[5] / 40}


def test_published_design_figures_match_the_design_document():
    """Every design §9.2 figure in petlib/published.yaml equals the table in docs/design.md."""
    from petlib.compare_report import published_figures

    text = (REPO / "docs" / "design.md").read_text()
    table = text[text.index("### 9.2"):text.index("### 9.3")]
    rows = {r[0].strip(): [c.strip() for c in r[1:5]] for r in
            (line.strip("|").split("|") for line in table.splitlines() if line.startswith("| ")) if len(r) >= 5}
    col = {("MobileNetV3-Small + GDConv", "cat"): 0, ("MobileFaceNet", "cat"): 1,
           ("MobileNetV3-Small + GDConv", "dog"): 2, ("MobileFaceNet", "dog"): 3}
    figs = published_figures("design")
    assert len(figs) == 28
    for f in figs:
        cell = rows[f["metric"]][col[(f["model"], f["species"])]]
        value = float(cell.rstrip(" %")) / (100 if cell.endswith("%") else 1)
        assert f["value"] == pytest.approx(value), f
    for f in published_figures("petface") + published_figures("dogfacenet"):
        assert f["source"] and (f["value"] is None) == (not f["checked"])


def test_published_petface_figures_are_the_authors_tables():
    """The per-family ArcFace figures the issue quotes, and every row against the reference tables
    (../shared/reference/published-figures.md, read from the authors' project page) where that copy is at hand."""
    from petlib.compare_report import published_figures
    from petlib.constants import PETFACE_FAMILIES

    figs = published_figures("petface")
    arcface = {(f["species"], f["metric"][:5]): f["value"] for f in figs if f["model"].startswith("ArcFace, ResNet-50, per")}
    assert arcface[("cat", "re-id")] == 0.5429 and arcface[("cat", "verif")] == 0.9771
    assert arcface[("dog", "re-id")] == 0.7786 and arcface[("dog", "verif")] == 0.9945
    assert {f["species"] for f in figs} == set(PETFACE_FAMILIES) and all(f["checked"] for f in figs)
    ref = REPO.parent / "shared" / "reference" / "published-figures.md"
    if not ref.is_file():
        pytest.skip("the reference tables are not beside this checkout")
    text = ref.read_text()
    for table, metric in (("Re-identification, top-1", "re-id"), ("Verification, ROC-AUC", "verif")):
        block = text[text.index(table):]
        block = block[:block.index("\n\n", block.index("| method"))]
        rows = {c[0]: c[1:14] for c in ([x.strip() for x in line.strip("|").split("|")] for line in block.splitlines()
                                         if line.startswith("| ") and not line.startswith("| method"))}
        mine = [f for f in figs if f["metric"].startswith(metric)]
        assert len(mine) == 13 * len(rows)
        for f in mine:
            row = next(v for k, v in rows.items() if f["model"].split(",")[0].split(" ")[0] in k and
                       ("joint" in k) == ("joint" in f["model"]))
            assert f["value"] == pytest.approx(float(row[PETFACE_FAMILIES.index(f["species"])]) / 100), f


# ------------------------------------------------------------------ the study on each source
@pytest.mark.timeout(900)
@pytest.mark.slow
@pytest.mark.parametrize("source", ["petface", "dogfacenet", "table"])
def test_study_runs_on_each_source(make_params, tmp_path, faces, source):
    """01 -> 04 on a miniature of each format through the stage functions the notebooks call: the protocol
    block in metrics.json and the published figures (with their source) in 04_compare. PetFace's 01_data
    also runs as its notebook, the one whose cells read the format (split files, audit); the study runner
    and every notebook are exercised by the shared synthetic study (tests/conftest.py `finished`)."""
    from petlib import compare_report, eval_report, evaluate, train
    from petlib.study import run_study

    if source == "petface":
        root = write_petface(tmp_path / "PetFace", {"cat": faces["cat"]})
        cfg, sp = {"source": "petface", "roots": {"cat": str(root)}}, "cat"
    elif source == "dogfacenet":
        root, tr, te = write_dogfacenet(tmp_path / "DogFaceNet", faces["dog"])
        cfg, sp = {"source": "folders", "benchmark": "dogfacenet", "roots": {"dog": str(root)},
                   "identity_lists": {"train": str(tr), "test": str(te)}}, "dog"
    else:
        cfg, sp = {"source": "table", "tables": {"cat": str(write_table(tmp_path / "wild", faces["cat"]))},
                   "lookalike_column": "breed"}, "cat"
    p = _params(make_params, tmp_path, cfg, [sp], notebooks=["01_data"],
                eval={"n_rank_pairs": 400, "n_triplets": 400, "n_overfit": 40, "n_robustness": 10, "n_bootstrap": 5})
    d = data.prepare_species(p, sp, progress=False)
    if source == "petface":  # the notebook's split table counts the official split files' identities and images
        assert run_study(p, log=lambda *_: None) == 0
        text = " ".join(re.sub(r"<[^>]+>", " ", (tmp_path / "reports" / "ci" / "01_data.html").read_text()).split())
        assert "source: petface" in text and " ".join(f"{s} {len(d.splits[s].identities)} {len(d.splits[s].paths)}"
                                                        for s in ("train", "val", "test")) in text, text[-3000:]
    train.train_model(p, "mnv3", sp, progress=False, log=lambda *_: None)
    m = evaluate.evaluate_run(p, "mnv3", sp, progress=False, log=lambda *_: None)
    page = compare_report.published_markdown(p.data.benchmark, {f"mnv3-{sp}": m})
    assert bool(eval_report.protocol_rows(m)) == (source != "table")  # 03_evaluate's protocol section
    if source == "petface":
        v, r = m["protocol"]["verification"], m["protocol"]["reidentification"]
        assert v["n_pairs"] > 0 and 0 <= v["roc_auc_petface"] <= 1 and 0 <= v["accuracy_at_val_threshold"] <= 1
        assert r["n_queries"] == 14 and 0 <= r["arcface_centres"]["top1"] <= r["arcface_centres"]["top5"] <= 1
        assert "published, not re-run here" in page and "arXiv 2407.13555" in page and "0.543" in page
    elif source == "dogfacenet":
        assert m["protocol"]["one_shot"]["n_gallery"] == 8 and 0 <= m["protocol"]["one_shot"]["rank5"] <= 1
        assert "published, not re-run here" in page and "PRICAI 2019" in page
    else:
        assert m["protocol"] is None and "No published figures" in page
        kinds = [r["impostors"] for r in m["deployment"]["impostors"]]
        assert kinds == ["random", "nearest impostor", "same breed"], kinds

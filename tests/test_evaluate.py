"""03_evaluate's engine on a tiny trained run, the embedding cache, and the CLI."""
import json

import numpy as np
import pytest

from petlib import embed, eval_report, evaluate, metrics, schema
from petlib.data import load_split
from petlib.layout import Layout
from petlib.run import RunDir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(trained_ci):
    return trained_ci


@pytest.mark.timeout(900)
def test_evaluate_run_writes_every_number_and_plot(trained):
    m = evaluate.evaluate_run(trained, "mnv3", "cat", progress=False)
    out = Layout(trained).eval_dir("mnv3", "cat")
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["schema"] == schema.SCHEMA
    for section, keys in {"retrieval": ["recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "map@r", "n_queries"],
                          "clustering": ["nmi", "ari", "purity"],
                          "ranking": ["roc_auc", "eer", "spearman", "tar@far=1e-2", "tar@far=1e-3", "tar@far=1e-4"],
                          "verification": ["accuracy", "threshold", "precision", "recall", "f1"],
                          "triplets": ["violation_rate", "avg_margin"],
                          "overfitting": ["train_recall@1", "test_recall@1", "gap"],
                          "open_set": ["rank1_identification", "dir@far=1e-2", "dir@far=1e-3"],
                          }.items():
        assert set(keys) <= set(saved[section]), section
    with_interval = {s.name for s in metrics.specs() if s.interval in ("identities", "clusters", "images")}
    assert set(saved["ci95"]) == with_interval, "every figure whose spec has an interval has one"
    ci = saved["ci95"]["retrieval.recall@1"]
    assert ci[0] <= saved["retrieval"]["recall@1"] <= ci[1]
    samples = schema.load_samples(out)
    assert len(samples) == 1 and metrics.model_values(samples)["retrieval.recall@1"] == \
        pytest.approx(saved["retrieval"]["recall@1"]), "resample.npz reproduces the figures"
    assert set(embed.DEGRADATIONS) <= set(saved["robustness"])
    assert saved["ranking"]["tar@far=1e-4"] is None, "2,000 pairs cannot measure FAR 1e-4: null, not 0"
    assert 0 <= saved["retrieval"]["recall@1"] <= 1 and len(saved["cmc"]) == 20
    assert saved["efficiency"]["params"] > 1_000_000
    eval_report.draw(trained, "mnv3", "cat", saved)
    for name in eval_report.PLOTS:
        assert (out / name).stat().st_size > 1000, name
    assert m["retrieval"] == saved["retrieval"]
    declared = {s.name for s in metrics.specs()}
    assert schema.section_keys(saved) == declared, "metrics.json and the metric specs differ"


def test_embedding_cache_hits_and_invalidates(trained, tmp_path):
    run = Layout(trained).run_dir("mnv3", "cat")
    calls = []
    paths = ["a", "b"]

    def compute():
        calls.append(1)
        return np.ones((2, 4), np.float32) * len(calls)

    cache = tmp_path / "e.npz"
    a = embed.cached_embeddings(cache, "test-plain", run / "pet_embedder.pt", paths, compute)
    b = embed.cached_embeddings(cache, "test-plain", run / "pet_embedder.pt", paths, compute)
    assert len(calls) == 1 and np.array_equal(a, b)
    embed.cached_embeddings(cache, "test-tta", run / "pet_embedder.pt", paths, compute)
    assert len(calls) == 2
    c = embed.cached_embeddings(cache, "test-plain", run / "pet_embedder.pt", paths + ["c"], compute)
    assert len(calls) == 3 and c[0, 0] == 3
    cache.write_bytes(b"garbage")  # an unreadable cache is recomputed, never a crash
    embed.cached_embeddings(cache, "test-plain", run / "pet_embedder.pt", paths, compute)
    assert len(calls) == 4


def test_degradations_follow_the_design():
    img = np.full((40, 40, 3), 100, np.uint8)
    occ = embed.DEGRADATIONS["partial_occlusion"](img)
    assert (occ == 0).mean() == pytest.approx(0.25)
    assert (embed.DEGRADATIONS["brightness"](img) == 150).all()
    noisy = embed.DEGRADATIONS["gaussian_noise"](img).astype(float) / 255
    assert noisy.std() == pytest.approx(0.05, rel=0.15)


def test_tta_embeddings_are_unit_and_flip_invariant(trained):
    emb_model = RunDir(Layout(trained).run_dir("mnv3", "cat")).load_embedder()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    a = embed.embed_images(emb_model, [img], 64, tta=True)
    b = embed.embed_images(emb_model, [img[:, ::-1].copy()], 64, tta=True)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.allclose(a, b, atol=1e-4)


def test_cli_embed_and_evaluate(trained, capsys):
    from petlib.cli import main

    run = Layout(trained).run_dir("mnv3", "cat")
    assert main(["embed", str(run), "--split", "val"]) == 0
    assert "embeddings" in capsys.readouterr().out
    with np.load(run / "embeddings.npz") as z:
        assert "val-plain" in z.files
    assert main(["embed", str(run.parent / "nope")]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.timeout(900)
def test_repeats_train_with_other_seeds_and_are_evaluated_on_the_same_test_set(trained):
    """train.repeats=2: repeat 1 trains with seed + 1 into its own folder; the evaluation keeps both."""
    import copy

    from petlib import train

    p = copy.deepcopy(trained)
    p.train.repeats, p.train.repeat_runs = 2, ["mnv3-cat"]
    r1 = train.train_model(p, "mnv3", "cat", repeat=1, progress=False, log=lambda *_: None)
    assert r1.out_dir == Layout(p).run_dir("mnv3", "cat", 1) and r1.out_dir.name == "mnv3-cat-r1"
    cfg0, cfg1 = RunDir(Layout(p).run_dir("mnv3", "cat")).config(), RunDir(r1.out_dir).config()
    assert (cfg0["seed"], cfg1["seed"]) == (p.seed, p.seed + 1) and cfg0["data_fingerprint"] == cfg1["data_fingerprint"]
    m = evaluate.evaluate_run(p, "mnv3", "cat", progress=False)
    assert [r["repeat"] for r in m["repeats"]] == [0, 1] and [r["seed"] for r in m["repeats"]] == [42, 43]
    assert m["repeats"][0]["retrieval"]["recall@1"] == m["retrieval"]["recall@1"]
    r1_values = [r["retrieval"]["recall@1"] for r in m["repeats"]]
    st = m["repeat_stats"]["retrieval.recall@1"]
    assert st["n"] == 2 and st["mean"] == pytest.approx(np.mean(r1_values))
    assert st["std"] == pytest.approx(np.std(r1_values, ddof=1))
    # repeat 1's figures are its own embedding's, computed the same way as repeat 0's
    test = load_split(p, "cat", "test")
    emb1 = embed.embed_images(RunDir(r1.out_dir).load_embedder(), test.paths, 64)
    assert m["repeats"][1]["retrieval"]["recall@1"] == pytest.approx(metrics.retrieval(emb1, test.labels)["recall@1"])
    assert len(m["test_fingerprint"]) == 16
    assert eval_report.headline(m)["R@1 over 2 seeds"] == f"{st['mean']:.4f} ± {st['std']:.4f} sd"
    results = [train.TrainResult(RunDir(Layout(p).run_dir("mnv3", "cat", r)).history(), None, Layout(p).run_dir("mnv3", "cat", r))
               for r in (0, 1)]
    s = train.repeat_summary(results)
    accs = [row["val_accuracy"] for row in s["rows"]]
    assert s["n"] == 2 and s["val_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert "val acc over 2 seeds" in train.headline(results)

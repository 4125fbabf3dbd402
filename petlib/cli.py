"""The `petface` command. Errors the user can fix are one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
import sys

from .config import ParamsError, load_params
from .layout import Layout


def _params(a):
    """The command's params; with `reproducible` the CPU pins go into the environment before torch loads."""
    p = load_params(a.params, a.set)
    _pin(p)
    return p


def _pin(p) -> None:
    if p.reproducible and "torch" not in sys.modules:
        from . import reproducible

        reproducible.pin_env()


def _study(a) -> int:
    from .study import run_study

    p = load_params(a.params, a.set)
    force = True if a.force == [] else a.force
    return 1 if run_study(p, only=a.only, force=force, wait=a.wait, dry_run=a.dry_run) else 0


def _status(a) -> int:
    import json

    from .status import as_json, lines, study_status

    statuses = study_status(load_params(a.params, a.set), only=a.only)
    print(json.dumps(as_json(statuses), indent=1) if a.json else "\n".join(lines(statuses)[:-1]))
    return 0


def _data(a) -> int:
    p = _params(a)
    from .data import dataset_stats, prepare_species

    for s in p.data.species:
        d = prepare_species(p, s)
        print(f"{s}: {dataset_stats(d.index.labels)}; skipped {len(d.index.skipped)}; manifest {d.manifest}; "
              f"fingerprint {d.fingerprint}")
    return 0


def _runs(p, a) -> list[tuple[str, str]]:
    """The study's runs, narrowed by --model/--species; naming a model or species it lacks is an error."""
    for flag, given, known in (("--model", a.model, [m.name for m in p.models]),
                               ("--species", a.species, p.data.species)):
        if given and (bad := [g for g in given if g not in known]):
            raise ParamsError(f"{flag} {' '.join(bad)}: the params name {known}")
    return [(m, s) for m, s in p.runs() if (not a.model or m in a.model) and (not a.species or s in a.species)]


def _train(a) -> int:
    p = _params(a)
    from .run import summary
    from .train import train_repeats

    for m, s in _runs(p, a):
        for r in train_repeats(p, m, s, resume=a.resume, reuse=not a.force):
            if r.history["epochs"] and r.main:
                print(f"{r.out_dir.name}: {summary(r.history)}")
    return 0


def _evaluate(a) -> int:
    p = _params(a)
    from .evaluate import evaluate_run

    for m, s in _runs(p, a):
        r = evaluate_run(p, m, s, force=a.force)
        print(f"{m}-{s}: R@1 {r['retrieval']['recall@1']:.4f}, ROC-AUC {r['ranking']['roc_auc']:.4f}, "
              f"EER {r['ranking']['eer']:.4f} -> {Layout(p).eval_dir(m, s) / 'metrics.json'}")
    return 0


def _embed(a) -> int:
    from pathlib import Path

    from .run import RunDir

    run = RunDir(a.run_dir)
    p = run.params()
    _pin(p)
    from .data import load_split
    from .embed import cached_embeddings, embed_images

    embedder, size = run.load_embedder(), run.config()["image_size"]
    idx = load_split(p, run.species, a.split)
    out = Path(a.out) if a.out else run.file("embeddings.npz")
    key = f"{a.split}-{'tta' if a.tta else 'plain'}"
    emb = cached_embeddings(out, key, run.file("pet_embedder.pt"), idx.paths,
                            lambda: embed_images(embedder, idx.paths, size, tta=a.tta, progress=True))
    print(f"{len(emb)} embeddings of {len(idx.identities)} identities ({a.split}, {key}) in {out} "
          f"[{json.dumps(list(emb.shape))}]")
    return 0


def _export(a) -> int:
    from pathlib import Path

    from .run import RunDir

    run = RunDir(a.run_dir)
    p = run.params()
    _pin(p)
    from .export.pipeline import export_run
    from .export.summary import int8_summary

    out = Path(a.out) if a.out else Layout(p).export_dir(run.model, run.species)
    r = export_run(p, run.model, run.species, formats=a.formats, out_dir=out, run_dir=run.path, progress=True,
                   force=a.force)
    for row in r["rows"]:
        if row["status"] in ("ok", "spec checked"):
            parity = f"min cos {row['min_cosine']:.4f}, d-acc {row['delta_verification_accuracy'] * 100:+.2f} pt, " \
                     f"{row['ms_b1_t1']:.2f} ms (b1, 1 thread)" if "delta_verification_accuracy" in row else row.get("note", "")
            print(f"{row['label']}: {row['bytes'] / 1e6:.2f} MB; {parity}")
        else:
            print(f"{row['label']}: {row['status']}: {row['reason']}")
    if "int8_search" in r:
        print(int8_summary(r))
    print(f"written: {out}/ (export.json holds the full table)")
    return 0 if all(row["status"] != "failed" for row in r["rows"]) else 1


def _compare(a) -> int:
    from pathlib import Path

    from . import compare, compare_report
    from .data import IMAGE_EXTENSIONS

    photos = a.embedder or all(Path(r).suffix.lower() in IMAGE_EXTENSIONS for r in a.runs)
    if photos:
        from .inference import PetRecognitionPipeline

        if len(a.runs) != 2:
            raise ValueError(f"comparing photos takes exactly two, got {len(a.runs)}")
        for r in a.runs:
            if not Path(r).is_file():
                raise FileNotFoundError(f"{r}: photo not found")
        if not a.embedder:
            raise ValueError("comparing two photos needs --embedder (pet_embedder.onnx or a run's pet_embedder.pt)")
        pipe = PetRecognitionPipeline("none", a.embedder)
        t = _threshold(pipe, a)
        same, score = pipe.compare_faces(a.runs[0], a.runs[1], t)
        print(f"{'same pet' if same else 'different pets'}: cosine {score:.4f} (threshold {t:.4f}"
              + (f", FAR {a.far:g} on validation)" if a.far else ")"))
        return 0
    runs = {}
    for item in a.runs:
        if ":" not in item:
            raise ValueError(f"{item!r}: give NAME:EVAL_DIR (a folder holding metrics.json)")
        name, d = item.split(":", 1)
        runs[name] = d
    metrics = compare_report.load_all(runs)
    tables = compare.ranked_blocks(metrics, compare_report.load_all_samples(runs))
    print(compare_report.report_markdown(metrics, tables))
    files = compare_report.write(metrics, tables, a.out)
    print(f"written: {files['md']}, {files['csv']}")
    return 0


def _threshold(pipe, a) -> float:
    """--threshold, else the model's threshold for --far, else its recommended (accuracy) threshold."""
    if a.threshold is not None and a.far is not None:
        raise ValueError("give --threshold or --far, not both")
    if a.far is not None:
        return pipe.threshold_at_far(a.far)
    return pipe.default_threshold if a.threshold is None else a.threshold


def _register(a) -> int:
    from pathlib import Path

    from .inference import PetRecognitionPipeline

    pipe = PetRecognitionPipeline(a.detector, a.embedder)
    if Path(a.gallery).exists():
        pipe.load_gallery(a.gallery)
    n = pipe.register_pet(a.name, a.images)
    if n == 0:
        raise ValueError(f"no face found in any of the {len(a.images)} photo(s) of {a.name}; gallery unchanged")
    pipe.save_gallery(a.gallery)
    print(f"registered {n} photo(s) of {a.name}; gallery {a.gallery} holds {len(pipe.gallery)} pet(s)")
    return 0


def _recognize(a) -> int:
    from .inference import PetRecognitionPipeline

    pipe = PetRecognitionPipeline(a.detector, a.embedder)
    pipe.load_gallery(a.gallery)
    t = _threshold(pipe, a)
    for image in a.images:
        res = pipe.recognize(image, t)
        if not res:
            print(f"{image}: no result ({pipe.no_face_reason})")
        for r in res:
            print(f"{image}: {r['identity']} (best {r['similarity']:.3f}, mean {r['mean_similarity']:.3f}, "
                  f"nearest {r['nearest']}, threshold {r['threshold']:.2f}, box {r['box']})")
    return 0


def _kernel(a) -> int:
    from .study import install_kernel

    print(f"installed the Jupyter kernel 'petface-study (.venv)' (CPU pins in its environment): {install_kernel()}")
    return 0


def _digest(a) -> int:
    from . import reproducible

    if "torch" not in sys.modules:
        reproducible.pin_env()
    import tempfile
    from pathlib import Path

    import torch

    from . import kernel_digest as kd

    state = reproducible.apply(True, torch.device("cpu"))
    mine = kd.compute(informational=a.all or a.write)
    if a.training or a.write:
        with tempfile.TemporaryDirectory() as tmp:
            run = kd.training_vector(Path(tmp))
            mine["ci_training"] = {k: run[k] for k in ("losses", "weights", "val")}
            print(f"MKL computed {run['mkl_gemm_calls']} matrix products in the pinned CI training")
    if a.write:
        from .io import atomic_write_json
        from .report import cpu_model

        old = kd.golden() if kd.GOLDEN.exists() else {}
        machine = f"{cpu_model()} ({' '.join(reproducible.cpu_flags())})"
        atomic_write_json(kd.GOLDEN, {**old, **mine, "machines": [machine]})  # the vector is this machine's alone
        print(f"wrote {kd.GOLDEN}")
        return 0
    ref = kd.golden()
    result = kd.compare(mine["ops"], ref)
    if a.json:
        print(json.dumps({"pinned": state.get("pinned"), **mine, **result}, indent=1))
    else:
        for k, v in mine["ops"].items():
            print(f"{k:45s} {v}  {'=' if v == ref['ops'].get(k) else 'DIFFERS from ' + str(ref['ops'].get(k))}")
        for k, v in mine.get("informational", {}).items():
            print(f"{k:45s} {v}  (informational; golden machine: {ref.get('informational', {}).get(k)})")
        for k, v in mine.get("ci_training", {}).items():
            same = v == ref["ci_training"][k]
            print(f"ci training {k:33s} {v}  {'=' if same else 'DIFFERS from ' + str(ref['ci_training'][k])}")
            result["differ"] += [] if same else [f"ci_training.{k}"]
        print(kd.verdict(result) + ("" if state.get("pinned") else " (and the pins are NOT in effect here)"))
    return 0 if not result["differ"] and not result["missing"] else 1


def _synth(a) -> int:
    from .synth import generate

    print(generate(a.out_dir, a.species, a.n_identities, a.image_size, a.seed))
    return 0


COMMANDS = {"study": _study, "status": _status, "data": _data, "train": _train, "evaluate": _evaluate, "embed": _embed,
            "export": _export, "compare": _compare, "register": _register, "recognize": _recognize,
            "synth": _synth, "kernel": _kernel, "digest": _digest}


def build_parser() -> argparse.ArgumentParser:
    from .export.registry import FORMATS  # torch-free: `petface --help` stays quick

    ap = argparse.ArgumentParser(prog="petface", description="petface-study: pet-face embedding study")
    sub = ap.add_subparsers(dest="command", required=True)

    def with_params(name, help):
        sp = sub.add_parser(name, help=help)
        sp.add_argument("params", help="params YAML file, e.g. params/demo.yaml")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set train.batch_size=64 --set models.mfn.epochs=3")
        return sp

    sp = with_params("study", "run the study's notebooks and write reports/<study>/index.html")
    sp.add_argument("--only", nargs="+", metavar="NAME", help="notebooks or task keys to run (and what they need)")
    sp.add_argument("--force", nargs="*", metavar="STAGE",
                    help="re-run these stages (train, eval, compare, export), notebooks or tasks, and what depends "
                         "on them, even when their inputs are unchanged; alone: everything")
    sp.add_argument("--dry-run", action="store_true", help="print what would run and why; run nothing")
    sp.add_argument("--wait", action="store_true", help="wait for another study running in the same folder")
    sp = with_params("status", "each task of the study: up to date, stale and why, or waiting; runs nothing")
    sp.add_argument("--only", nargs="+", metavar="NAME", help="notebooks or task keys (and what they need)")
    sp.add_argument("--json", action="store_true", help="print JSON (task, notebook, state, reasons, after, "
                                                         "missing_outputs) for scripts")
    with_params("data", "generate/scan and split the study's data; print its statistics")
    sp = with_params("train", "train models (also under torchrun --nproc_per_node=N for several GPUs)")
    sp.add_argument("--model", action="append", help="model name from the params (default: all)")
    sp.add_argument("--species", action="append", help="species (default: all in the params)")
    sp.add_argument("--resume", action="store_true", help="continue from <run>/last_checkpoint.pt")
    sp.add_argument("--force", action="store_true", help="train even when a finished run has these inputs")
    sp = with_params("evaluate", "run the seven benchmark categories on trained runs; writes metrics.json")
    sp.add_argument("--model", action="append", help="model name from the params (default: all)")
    sp.add_argument("--species", action="append", help="species (default: all in the params)")
    sp.add_argument("--force", action="store_true", help="evaluate even when the inputs match the last evaluation")
    sp = sub.add_parser("embed", help="embed a split of a trained run (cached by checkpoint, split and TTA)")
    sp.add_argument("run_dir", help="a training run directory (with config.json and pet_embedder.pt)")
    sp.add_argument("--split", default="test", choices=["train", "val", "test"])
    sp.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    sp.add_argument("--out", help="npz file (default: RUN_DIR/embeddings.npz)")
    sp = sub.add_parser("export", help="export a trained run to phone formats, each checked in its own runtime")
    sp.add_argument("run_dir", help="a training run directory (with config.json and pet_embedder.pt)")
    sp.add_argument("--formats", nargs="+", choices=list(FORMATS), help="default: all")
    sp.add_argument("--out", help="output folder (default: <output_dir>/exports/<model>-<species>)")
    sp.add_argument("--force", action="store_true", help="export even when the inputs match the last export")
    sp = sub.add_parser("compare", help="compare evaluated models NAME:EVAL_DIR ... (design §9.2), "
                                        "or two photos A B with --embedder")
    sp.add_argument("runs", nargs="+", metavar="NAME:EVAL_DIR | PHOTO")
    sp.add_argument("--out", default=".", help="folder for comparison.md and comparison.csv")
    sp.add_argument("--embedder", help="pet_embedder.onnx or pet_embedder.pt, for comparing two photos")
    sp.add_argument("--threshold", type=float, help="same-pet threshold (default: the model's recommended one)")
    sp.add_argument("--far", type=float, help="use the model's threshold for this false-accept rate, e.g. 1e-3")
    for name, help in (("register", "add a pet's photos to a gallery file"),
                       ("recognize", "recognise pets in photos against a gallery file")):
        sp = sub.add_parser(name, help=help)
        sp.add_argument("gallery", help="gallery .npz file")
        if name == "register":
            sp.add_argument("name", help="the pet's name")
        sp.add_argument("images", nargs="+")
        sp.add_argument("--embedder", required=True, help="pet_embedder.onnx or a run's pet_embedder.pt")
        sp.add_argument("--detector", default="none", choices=["none", "opencv-cat", "yolo"])
        if name == "recognize":
            sp.add_argument("--threshold", type=float, help="default: the model's recommended threshold")
            sp.add_argument("--far", type=float, help="use the model's threshold for this false-accept rate, e.g. 1e-3")
    sub.add_parser("kernel", help="install the project's Jupyter kernel (petface-study) into this environment")
    sp = sub.add_parser("digest", help="this machine's pinned kernel digests against the golden vector "
                                       "(exit 1 when they differ: its numbers will not match the documented ones)")
    sp.add_argument("--all", action="store_true", help="also the informational paths pinned runs do not use")
    sp.add_argument("--training", action="store_true", help="also the pinned CI training's losses and weights (~30 s)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument("--write", action="store_true", help="rewrite petlib/golden-kernels.json from this machine "
                                                         "(maintainers, after a deliberate kernel change)")
    sp = sub.add_parser("synth", help="write a synthetic pet-face data set")
    sp.add_argument("out_dir")
    sp.add_argument("--species", default="cat", choices=["cat", "dog"])
    sp.add_argument("--n-identities", type=int, default=200)
    sp.add_argument("--image-size", type=int, default=112)
    sp.add_argument("--seed", type=int, default=0)
    return ap


def main(argv: list[str] | None = None) -> int:
    from .data import DataError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RuntimeError as e:
        if (code := getattr(e, "exit_code", None)) is None:
            print(f"petface {args.command}: error: {e}", file=sys.stderr)
            return 2
        print(f"petface {args.command}: {e}", file=sys.stderr)
        return code
    except (ParamsError, DataError, FileNotFoundError, FileExistsError, ValueError, OSError) as e:
        print(f"petface {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"petface {args.command}: interrupted; finished artefacts are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

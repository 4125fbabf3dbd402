"""The `petface` command. Errors the user can fix are one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import sys

from .config import ParamsError, load_params


def _study(a) -> int:
    from .study import run_study

    p = load_params(a.params, a.set)
    return 1 if run_study(p, only=a.only, force=a.force) else 0


def _data(a) -> int:
    from .data import dataset_stats, prepare_species

    p = load_params(a.params, a.set)
    for s in p.data.species:
        d = prepare_species(p, s)
        print(f"{s}: {dataset_stats(d.index.labels)}; skipped {len(d.index.skipped)}; manifest {d.manifest}; "
              f"fingerprint {d.fingerprint}")
    return 0


def _train(a) -> int:
    from .train import summary, train_model

    p = load_params(a.params, a.set)
    models = a.model or [m.name for m in p.models]
    species = a.species or p.data.species
    for m in models:
        for s in species:
            r = train_model(p, m, s, resume=a.resume)
            if r.history["epochs"] and int(__import__("os").environ.get("RANK", "0")) == 0:
                print(f"{m}-{s}: {summary(r.history)}")
    return 0


def _synth(a) -> int:
    from .synth import generate

    print(generate(a.out_dir, a.species, a.n_identities, a.image_size, a.seed))
    return 0


COMMANDS = {"study": _study, "data": _data, "train": _train, "synth": _synth}


def build_parser() -> argparse.ArgumentParser:
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
    sp.add_argument("--force", action="store_true", help="re-run tasks whose inputs are unchanged")
    with_params("data", "generate/scan and split the study's data; print its statistics")
    sp = with_params("train", "train models (also under torchrun --nproc_per_node=N for several GPUs)")
    sp.add_argument("--model", action="append", help="model name from the params (default: all)")
    sp.add_argument("--species", action="append", help="species (default: all in the params)")
    sp.add_argument("--resume", action="store_true", help="continue from <run>/last_checkpoint.pt")
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
    except (ParamsError, DataError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
        print(f"petface {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"petface {args.command}: interrupted; finished artefacts are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

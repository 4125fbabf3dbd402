"""A prepared GPU smoke run (issue: performance suite): synthetic data at 224 px, MNv3 and MFN trained for a
fixed number of steps with the design's GPU configuration (§5.1) (AMP, channels_last, batch 96), then evaluated.
Prints img/s, peak GPU memory, the data-loader wait fraction and the benchmark timings.

Runs on the CPU too, for checking it before spending device time (`--smoke`: the CPU with tiny sizes):
  python benchmarks/gpu_smoke.py --smoke
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from petlib import evaluate, train
from petlib.config import params_from_dict
from petlib.data import prepare_species


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--identities", type=int, default=1500)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=96)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--smoke", action="store_true", help="the CPU, 40 identities at 64 px, 3 steps of 16, a small evaluation")
    a = ap.parse_args()
    evaluation = {"n_robustness": 300, "n_bootstrap": 50}
    if a.smoke:
        a.device, a.identities, a.image_size, a.steps, a.batch, a.workers = "cpu", 40, 64, 3, 16, 0
        evaluation = {"n_robustness": 20, "n_bootstrap": 5, "n_rank_pairs": 2000, "n_triplets": 500, "n_overfit": 100}
    out = Path(tempfile.mkdtemp(prefix="petface-gpu-smoke-"))
    p = params_from_dict({
        "name": "gpu-smoke", "output_dir": str(out), "reports_dir": str(out / "reports"),
        "data": {"source": "synth", "species": ["cat"], "synth_dir": str(out / "data"), "image_size": a.image_size,
                 "synth": {"n_identities": a.identities, "image_size": a.image_size}},
        "train": {"batch_size": a.batch, "device": a.device, "num_workers": a.workers, "warmup_epochs": 1,
                  "val_every": 2, "max_steps_per_epoch": a.steps, "amp": True, "channels_last": True},
        "models": [{"name": "mnv3", "backbone": "mobilenetv3_small_100", "lr": 2e-3, "backbone_lr_mult": 1.0, "epochs": 2},
                   {"name": "mfn", "backbone": "mobilefacenet", "lr": 2e-3, "backbone_lr_mult": 1.0, "epochs": 2}],
        "eval": evaluation}, where="gpu_smoke")
    t = time.time()
    prepare_species(p, "cat", progress=False)
    report = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "data_s": time.time() - t, "models": {}}
    for m in ("mnv3", "mfn"):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t = time.time()
        h = train.train_model(p, m, "cat", progress=False).history
        peak = torch.cuda.max_memory_allocated() / 2 ** 30 if torch.cuda.is_available() else None
        t_train = time.time() - t
        t = time.time()
        met = evaluate.evaluate_run(p, m, "cat", progress=False)
        report["models"][m] = {
            "train_s": t_train, "images_per_s": [e["images_per_s"] for e in h["epochs"]],
            "data_wait_frac": [e.get("data_wait_frac") for e in h["epochs"]], "gpu_peak_gib": peak,
            "val_accuracy": [e["val"]["accuracy"] for e in h["epochs"] if e["val"]],
            "eval_s": time.time() - t, "eval_timings_s": met["timings_s"],
            "recall@1": met["retrieval"]["recall@1"], "roc_auc": met["ranking"]["roc_auc"]}
        print(m, json.dumps(report["models"][m], default=float), flush=True)
    print(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()

"""A training run's folder: the one place that knows its layout (design §5.6).

Training writes a run folder; evaluation, export, inference and the CLI read one through `RunDir`.
Nothing here imports torch at module level, so the folder can be inspected cheaply.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from .io import load_torch

ARTEFACTS = ["config.json", "best_model.pt", "last_checkpoint.pt", "history.json", "pet_embedder.pt",
             "pet_embedder.onnx"]
# Keys of the deployment metadata whose values are text; every other value is JSON (numbers, lists, null).
DEPLOY_TEXT_KEYS = {"channel_order", "layout", "scale", "backbone", "data_fingerprint"}


def best_val_epoch(history: dict) -> dict | None:
    """The epoch entry with the best validation accuracy (design §5.4); the earliest one on a tie."""
    vals = [e for e in history["epochs"] if e["val"]]
    return max(vals, key=lambda e: e["val"]["accuracy"]) if vals else None


def summary(history: dict) -> dict:
    """Headline figures of a run: best val metrics next to the untrained model's."""
    import numpy as np

    best = best_val_epoch(history)
    return {"best_epoch": best["epoch"] if best else None,
            "val_accuracy": best["val"]["accuracy"] if best else None,
            "val_threshold": best["val"]["threshold"] if best else None,
            "val_far_thresholds": best["val"].get("far_thresholds") if best else None,
            "untrained_val_accuracy": (history.get("untrained_val") or {}).get("accuracy"),
            "images_per_s": float(np.median([e["images_per_s"] for e in history["epochs"]])),
            "train_time_s": float(sum(e["train_time_s"] for e in history["epochs"]))}


def metadata_as_text(meta: dict) -> dict[str, str]:
    """ONNX and CoreML keep strings only: text stays as it is, everything else becomes JSON."""
    return {k: v if k in DEPLOY_TEXT_KEYS and isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


def metadata_from_text(raw: dict) -> dict:
    """Inverse of `metadata_as_text`; keys this project did not write are decoded when they are JSON."""
    out = {}
    for k, v in raw.items():
        if k in DEPLOY_TEXT_KEYS or not isinstance(v, str):
            out[k] = v
            continue
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


class RunDir:
    """Read access to one run folder: `RunDir(path).config()`, `.params()`, `.history()`, `.summary()`,
    `.artefacts()`, `.load_embedder(device)`, `.deploy_metadata()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def _require(self, name: str, why: str) -> Path:
        p = self.path / name
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing; {why}")
        return p

    @cached_property
    def _config(self) -> dict:
        return json.loads(self._require("config.json", "give a training run directory").read_text())

    def config(self) -> dict:
        return self._config

    @property
    def model(self) -> str:
        return self._config["model"]

    @property
    def species(self) -> str:
        return self._config["species"]

    def params(self):
        """The study params the run was trained with (as validated `StudyParams`)."""
        from .config import params_from_dict, project_root

        return params_from_dict(self._config["params"], where=str(self.path / "config.json"),
                                base=project_root(self.path))

    def history(self) -> dict:
        return json.loads(self._require("history.json", "has this run trained an epoch?").read_text())

    def summary(self) -> dict:
        return summary(self.history())

    def artefacts(self) -> list[dict]:
        """The design §5.6 outputs with their sizes (missing ones listed as such)."""
        return [{"file": n, "bytes": (self.path / n).stat().st_size if (self.path / n).is_file() else None}
                for n in ARTEFACTS]

    def load_embedder(self, device="cpu"):
        """The deployable embedder, rebuilt from config.json and pet_embedder.pt (weights only)."""
        from .models import embedder_from_config

        weights = self._require("pet_embedder.pt", "has this run finished training?")
        emb = embedder_from_config(self._config["embedder"], load_torch(weights))
        return emb.to(device).eval()

    def class_centres(self):
        """The trained ArcFace class centres (num_classes, D), L2-normalised: PetFace's re-identification
        scores a photo by cosine with them. Row i is identity i of the run's training split."""
        import torch

        state = load_torch(self._require("best_model.pt", "has this run validated an epoch?"))["model"]
        return torch.nn.functional.normalize(state["arcface.weight"].float(), dim=1).numpy()

    def deploy_metadata(self) -> dict:
        """What an app needs to use the embedder, written into every exported format: preprocessing
        (design §7.3), embedding size, architecture, the validation thresholds (accuracy-maximising, and
        per false-accept rate: {"1e-2": t, "1e-3": t, "1e-4": t or null}) and the data fingerprint."""
        cfg = self._config
        hist = self.path / "history.json"
        s = summary(json.loads(hist.read_text())) if hist.is_file() else {}
        return {"input_size": cfg["image_size"], "channel_order": cfg["channel_order"], "layout": "NCHW",
                "mean": cfg["mean"], "std": cfg["std"], "scale": "1/255", "embedding_dim": cfg["embedding_dim"],
                "backbone": cfg["backbone"], "recommended_threshold": s.get("val_threshold"),
                "far_thresholds": s.get("val_far_thresholds"),
                "data_fingerprint": cfg["data_fingerprint"]}

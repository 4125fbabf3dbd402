"""Recognition pipeline (design §7): detect -> crop -> embed -> match against a gallery.

Galleries are safe to load: an `.npz` of float arrays (no pickle) plus a JSON header with a format
version and the embedder's fingerprint, so a gallery built by another model is refused. Files are
written atomically; a truncated or tampered gallery is one clear error and is left as it was.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import data
from .constants import far_key
from .run import RunDir, metadata_from_text

GALLERY_FORMAT = "petface-gallery/1"


class GalleryError(ValueError):
    """A gallery file cannot be used; the message says which file and why."""


# --------------------------------------------------------------------------- detectors
@dataclass
class Detection:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels
    score: float


class NoDetector:
    """The input already is a face crop: one detection covering the whole image."""
    name = "none"

    def detect(self, img: np.ndarray) -> list[Detection]:
        return [Detection((0, 0, img.shape[1], img.shape[0]), 1.0)]


class OpenCVCatDetector:
    """OpenCV's bundled frontal cat-face Haar cascade. Works on whole-cat photos; weak on tight
    close-ups and on dogs (it was trained on cat faces at a distance)."""
    name = "opencv-cat"

    def __init__(self, min_size: int = 48):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalcatface_extended.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"{path}: OpenCV's cat-face cascade could not be loaded (OpenCV 5 dropped it; "
                               f"this project pins opencv-python-headless < 5)")
        self.min_size = min_size

    def detect(self, img: np.ndarray) -> list[Detection]:
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        found = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3,
                                              minSize=(self.min_size, self.min_size))
        return [Detection((int(x), int(y), int(x + w), int(y + h)), 1.0) for x, y, w, h in found]


class YoloDetector:
    """An ultralytics YOLO model file supplied by the user (optional: `pip install ultralytics`)."""
    name = "yolo"

    def __init__(self, model_path: str | Path, conf: float = 0.25):
        try:
            from ultralytics import YOLO
        except ImportError:
            raise RuntimeError("detector 'yolo' needs the ultralytics package: pip install ultralytics") from None
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"{model_path}: YOLO model file not found")
        self.model, self.conf = YOLO(str(model_path)), conf

    def detect(self, img: np.ndarray) -> list[Detection]:
        res = self.model.predict(img, conf=self.conf, verbose=False)[0]
        return [Detection(tuple(int(v) for v in b.xyxy[0].tolist()), float(b.conf[0])) for b in res.boxes]


def make_detector(name: str, model_path: str | None = None):
    if name == "none":
        return NoDetector()
    if name == "opencv-cat":
        return OpenCVCatDetector()
    if name == "yolo":
        return YoloDetector(model_path or "")
    raise ValueError(f"unknown detector {name!r}; choose none, opencv-cat or yolo")


# --------------------------------------------------------------------------- embedders
def _as_rgb(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    if hasattr(image, "convert"):  # PIL image
        return np.asarray(image.convert("RGB"))
    return data.load_image(image)


def preprocess(img: np.ndarray, size: int, mean=data.IMAGENET_MEAN, std=data.IMAGENET_STD) -> np.ndarray:
    """Design §7.3: resize to size x size, float in [0, 1], ImageNet mean/std, RGB, NCHW."""
    x = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(2, 0, 1)[None]


class ONNXPetRecognition:
    """Deployment-side embedder: an ONNX file and onnxruntime, preprocessing read from the model's metadata."""

    def __init__(self, onnx_path: str | Path, image_size: int | None = None):
        import onnxruntime as ort

        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX model not found")
        self.sess = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        self.meta = metadata_from_text(self.sess.get_modelmeta().custom_metadata_map)
        self.image_size = int(image_size or self.meta.get("input_size", 224))
        self.mean = self.meta.get("mean", data.IMAGENET_MEAN)
        self.std = self.meta.get("std", data.IMAGENET_STD)
        t = self.meta.get("recommended_threshold")
        self.threshold = float(t) if isinstance(t, (int, float)) else None
        self.far_thresholds = self.meta.get("far_thresholds") or {}
        self.input = self.sess.get_inputs()[0].name
        self.fingerprint = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    def get_embedding(self, image) -> np.ndarray:
        x = preprocess(_as_rgb(image), self.image_size, self.mean, self.std)
        z = self.sess.run(None, {self.input: x})[0][0]
        return z / np.linalg.norm(z)

    def compare(self, a, b) -> float:
        return float(self.get_embedding(a) @ self.get_embedding(b))


class TorchEmbedder:
    """A run's `pet_embedder.pt` (+ config.json beside it) behind the same interface as the ONNX one."""

    def __init__(self, embedder_path: str | Path, image_size: int | None = None):
        import torch

        path = Path(embedder_path)
        run = RunDir(path.parent if path.is_file() else path)
        self.model = run.load_embedder()
        meta = run.deploy_metadata()
        self.image_size = int(image_size or meta["input_size"])
        self.mean, self.std, self.threshold = meta["mean"], meta["std"], meta["recommended_threshold"]
        self.far_thresholds = meta.get("far_thresholds") or {}
        self.fingerprint = hashlib.sha256(run.file("pet_embedder.pt").read_bytes()).hexdigest()[:16]
        self._torch = torch

    def get_embedding(self, image) -> np.ndarray:
        x = self._torch.from_numpy(preprocess(_as_rgb(image), self.image_size, self.mean, self.std))
        with self._torch.no_grad():
            return self.model(x)[0].numpy()


# --------------------------------------------------------------------------- the pipeline
class PetRecognitionPipeline:
    """Detect faces, embed them, and match against a gallery of registered pets.

    Each pet may have several photos; a face is matched against every photo and reports the best and
    the mean similarity per pet. Below the threshold a face is "unknown", never the nearest name.
    """

    def __init__(self, detector: str = "none", embedder_path: str | Path = "", image_size: int | None = None,
                 detector_path: str | None = None):
        path = Path(embedder_path)
        self.embedder = ONNXPetRecognition(path, image_size) if path.suffix == ".onnx" else TorchEmbedder(path, image_size)
        self.detector = make_detector(detector, detector_path)
        self.gallery: dict[str, list[np.ndarray]] = {}

    @property
    def default_threshold(self) -> float:
        return self.embedder.threshold if self.embedder.threshold is not None else 0.5

    def threshold_at_far(self, far: float) -> float:
        """The threshold at which at most `far` of the validation strangers' pairs were accepted (the
        model's metadata): "at most 1 in 1,000 strangers' pets" is `far=1e-3`."""
        key = far_key(far)
        t = self.embedder.far_thresholds.get(key)
        if t is None:
            have = sorted(k for k, v in self.embedder.far_thresholds.items() if v is not None)
            raise ValueError(f"the model's metadata has no threshold for FAR {key} (validation had too few "
                             f"negative pairs, or the model predates the map); it has {have or 'none'}")
        return float(t)

    def _faces(self, image) -> tuple[np.ndarray, list[Detection]]:
        img = _as_rgb(image)
        return img, self.detector.detect(img)

    def _crop(self, img, d: Detection) -> np.ndarray:
        x0, y0, x1, y1 = d.box
        return img[max(0, y0):y1, max(0, x0):x1]

    def register_pet(self, name: str, images: Sequence) -> int:
        """Add photos of a pet (largest detected face of each); returns how many were enrolled."""
        added = 0
        for image in images:
            img, dets = self._faces(image)
            if not dets:
                continue
            d = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
            self.gallery.setdefault(name, []).append(self.embedder.get_embedding(self._crop(img, d)))
            added += 1
        return added

    def recognize(self, image, threshold: float | None = None) -> list[dict]:
        """One result per detected face: identity (or 'unknown'), best and mean similarity, box.
        No face: an empty list, with the reason in `self.no_face_reason`."""
        t = self.default_threshold if threshold is None else threshold
        img, dets = self._faces(image)
        self.no_face_reason = None if dets else f"detector '{self.detector.name}' found no face"
        out = []
        for d in dets:
            z = self.embedder.get_embedding(self._crop(img, d))
            scores = {n: np.array([z @ g for g in gs]) for n, gs in self.gallery.items()}
            ranked = sorted(scores.items(), key=lambda kv: -kv[1].max())
            best_name, best = ranked[0] if ranked else (None, np.array([-1.0]))
            known = best.max() >= t
            out.append({"identity": best_name if known else "unknown", "nearest": best_name,
                        "similarity": float(best.max()), "mean_similarity": float(best.mean()), "box": d.box,
                        "threshold": t})
        return out

    def compare_faces(self, a, b, threshold: float | None = None) -> tuple[bool, float]:
        t = self.default_threshold if threshold is None else threshold
        s = float(self.embedder.get_embedding(_as_rgb(a)) @ self.embedder.get_embedding(_as_rgb(b)))
        return s >= t, s

    # ---------------------------------------------------------------- gallery files
    def save_gallery(self, path: str | Path) -> None:
        save_gallery(path, self.gallery, self.embedder.fingerprint)

    def load_gallery(self, path: str | Path) -> None:
        self.gallery = load_gallery(path, self.embedder.fingerprint)


def save_gallery(path: str | Path, gallery: dict[str, list[np.ndarray]], fingerprint: str) -> None:
    from .io import atomic_path

    names = sorted(gallery)
    header = {"format": GALLERY_FORMAT, "embedder_fingerprint": fingerprint, "pets": names,
              "counts": [len(gallery[n]) for n in names]}
    emb = np.concatenate([np.stack(gallery[n]) for n in names]).astype(np.float32) if names else np.zeros((0, 0), np.float32)
    header["sha256"] = hashlib.sha256(emb.tobytes()).hexdigest()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, header=np.array(json.dumps(header)), embeddings=emb)


def load_gallery(path: str | Path, fingerprint: str | None = None) -> dict[str, list[np.ndarray]]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            emb = z["embeddings"]
    except FileNotFoundError:
        raise GalleryError(f"{path}: gallery file not found") from None
    except Exception as e:
        raise GalleryError(f"{path}: not a readable gallery file ({type(e).__name__}: {e})") from None
    if header.get("format") != GALLERY_FORMAT:
        raise GalleryError(f"{path}: gallery format {header.get('format')!r}, expected {GALLERY_FORMAT!r}")
    if hashlib.sha256(emb.astype(np.float32).tobytes()).hexdigest() != header.get("sha256"):
        raise GalleryError(f"{path}: embeddings do not match the header's checksum (tampered or corrupt)")
    if fingerprint and header["embedder_fingerprint"] != fingerprint:
        raise GalleryError(f"{path}: built by embedder {header['embedder_fingerprint']}, this pipeline runs "
                           f"{fingerprint}; re-register the pets with this model")
    out, i = {}, 0
    for name, n in zip(header["pets"], header["counts"]):
        out[name] = list(emb[i:i + n])
        i += n
    return out


def gallery_demo(pipe: PetRecognitionPipeline, index, n_known: int = 6, n_unknown: int = 6, seed: int = 0) -> dict:
    """Register `n_known` pets of a split with all but one photo each, then probe with their held-out
    photos (known) and with photos of `n_unknown` other pets (never registered). Returns the rows."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(index.labels)
    multi = [l for l in np.unique(labels) if (labels == l).sum() >= 2]
    picks = rng.permutation(multi)
    known, unknown = picks[:n_known], picks[n_known:n_known + n_unknown]
    rows = []
    for l in known:
        paths = [index.paths[i] for i in np.flatnonzero(labels == l)]
        pipe.register_pet(index.identities[int(l)], paths[:-1])
    probes = [(index.paths[np.flatnonzero(labels == l)[-1]], index.identities[int(l)], True) for l in known]
    probes += [(index.paths[np.flatnonzero(labels == l)[0]], index.identities[int(l)], False) for l in unknown]
    for path, truth, is_known in probes:
        r = pipe.recognize(path)[0]
        expected = truth if is_known else "unknown"
        rows.append({"photo": Path(path).name, "true pet": truth, "registered": is_known, "answer": r["identity"],
                     "nearest": r["nearest"], "best sim": r["similarity"], "mean sim": r["mean_similarity"],
                     "correct": r["identity"] == expected, "path": str(path)})
    return {"rows": rows, "threshold": pipe.default_threshold}

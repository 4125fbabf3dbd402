"""Batched embedding extraction: device-auto, optional flip TTA, cached per checkpoint, split and TTA."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from . import data
from .io import atomic_path, file_sha256
from .kernels import at_least_two


class _Images(torch.utils.data.Dataset):
    def __init__(self, items: Sequence, image_size: int, prepare: Callable | None = None):
        self.items, self.prepare = list(items), prepare
        self.tf = data.eval_transforms(image_size)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        item = self.items[i]
        img = data.load_image(item) if isinstance(item, (str, Path)) else item
        if self.prepare is not None:
            img = self.prepare(img)
        return self.tf(image=img)["image"]


def preprocess_images(items: Sequence, image_size: int) -> np.ndarray:
    """(N, 3, S, S) float32 of image files or RGB arrays through the val/test transform (design §7.3)."""
    ds = _Images(items, image_size)
    return np.stack([ds[i].numpy() for i in range(len(ds))])


@torch.no_grad()
def embed_images(embedder: torch.nn.Module, items: Sequence, image_size: int, device=None, batch_size: int = 128,
                 tta: bool = False, num_workers: int = 0, channels_last: bool = False, amp_dtype=None,
                 prepare: Callable | None = None, progress: bool = False) -> np.ndarray:
    """(N, D) float32 L2-normalised embeddings of image files or RGB arrays with the val/test transform.

    `tta` averages the embeddings of the image and its horizontal flip (then re-normalises).
    `prepare` is applied to each decoded RGB image first (used for the robustness degradations).
    """
    from .progress import bar as tqdm

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dl = torch.utils.data.DataLoader(_Images(items, image_size, prepare), batch_size=batch_size,
                                     num_workers=num_workers, shuffle=False)
    was = embedder.training
    embedder.eval().to(device)
    out = []
    for x in tqdm(dl, desc="embed", disable=not progress or len(dl) < 4, mininterval=2.0, leave=False):
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            x, n = at_least_two(x)
            z = embedder(x).float()
            if tta:
                z = torch.nn.functional.normalize(z + embedder(torch.flip(x, dims=[3])).float(), dim=1)
        out.append(z[:n].cpu())
    embedder.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def cached_embeddings(cache: str | Path, key: str, checkpoint: str | Path, paths: Sequence[Path],
                      compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Embeddings stored under `key` in the `cache` npz, valid while the checkpoint's hash and the list
    of paths are unchanged; otherwise computed and stored (atomically, other keys kept)."""
    cache = Path(cache)
    stamp = {"checkpoint_sha256": file_sha256(checkpoint),
             "paths_sha256": hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()}
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {}
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(str(arrays.pop("__meta__")))
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            arrays, meta = {}, {}
    if meta.get(key) == stamp and key in arrays:
        return arrays[key]
    emb = compute()
    arrays[key] = emb
    meta[key] = stamp
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
    return emb


# --------------------------------------------------------------------------- robustness degradations (design §6.2 F)
def _blur(img):
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=3.5)))


def _noise(img, seed=0):
    rng = np.random.default_rng(seed)
    x = img.astype(np.float32) / 255 + rng.normal(0, 0.05, img.shape)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _jpeg(img):
    import io

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=30)
    return np.asarray(Image.open(buf).convert("RGB"))


def _bright(img):
    return np.clip(img.astype(np.float32) * 1.5, 0, 255).astype(np.uint8)


def _occlude(img):
    """A black rectangle over the centre covering 25% of the area (half the width, half the height)."""
    out = img.copy()
    h, w = img.shape[:2]
    out[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2] = 0
    return out


DEGRADATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gaussian_blur": _blur, "gaussian_noise": _noise, "jpeg_compression": _jpeg,
    "brightness": _bright, "partial_occlusion": _occlude}

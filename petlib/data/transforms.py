"""The design's train and eval transforms (design §3.4), the training dataset, and the cheap exact
re-seeding and batch normalisation that let the loader feed a GPU."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .decode import DEFAULT_MAX_PIXELS, decode_verified

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_transforms(image_size: int = 224, normalize: bool = True):
    """Design table 3.4, every row. Pixel sizes given for 224 px (dropout holes 16-48 px) scale with `image_size`."""
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    steps = [
        A.Resize(image_size, image_size),
        A.Rotate(limit=25, border_mode=0, p=0.5),
        A.HorizontalFlip(p=0.5),
        A.Affine(translate_percent=(-0.1, 0.1), scale=(0.85, 1.15), border_mode=0, p=0.3),
        A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1, p=0.5),
        A.ToGray(p=0.05),
        A.GaussianBlur(blur_limit=(3, 9), p=0.2),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.2),
        A.ImageCompression(quality_range=(70, 100), p=0.2),
        A.Downscale(scale_range=(0.4, 0.8), p=0.15),
        A.RandomShadow(p=0.1),
        A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(16 / 224, 48 / 224),
                        hole_width_range=(16 / 224, 48 / 224), p=0.3),
    ]
    if normalize:
        steps += [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), ToTensorV2()]
    return A.Compose(steps)


def eval_transforms(image_size: int = 224):
    """The design's val/test transform: resize and ImageNet normalisation (identical to the phone preprocessing, 7.3)."""
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    return A.Compose([A.Resize(image_size, image_size), A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
                      ToTensorV2()])


def reseed(transform, seed: int) -> None:
    """The state albumentations' `set_random_seed(seed)` gives a Compose and every transform in it, set in
    place: that method builds two new generators per transform (0.8 ms an image, a third of the
    pipeline at 112 px); this costs a fifth of it. A test checks equal outputs over many seeds."""
    from albumentations.core.composition import BaseCompose
    from albumentations.core.transforms_interface import BasicTransform

    state = np.random.PCG64(seed).state
    stack = [transform]
    while stack:
        t = stack.pop()
        t.seed = seed
        t.random_generator.bit_generator.state = state
        t.py_random.seed(seed)
        if isinstance(t, BaseCompose):
            stack.extend(c for c in t.transforms if isinstance(c, (BasicTransform, BaseCompose)))


@functools.cache
def _normalize_table() -> np.ndarray:
    """A.Normalize's output for every uint8 value of each channel, computed by A.Normalize itself."""
    import albumentations as A

    ramp = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)
    return A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)(image=ramp)["image"][:, 0, :].T.copy()


def normalize_batch(x):
    """uint8 (B, 3, H, W) to float32, equal bit for bit to A.Normalize on each image, on x's device.

    Training on a GPU, workers hand over uint8 (4x less to copy, no float work per image) and the GPU does
    one lookup per batch. On the CPU that lookup costs more than A.Normalize's per image, so CPU training
    normalises in the workers as before."""
    import torch

    table = torch.as_tensor(_normalize_table(), device=x.device)
    return table[torch.arange(3, device=x.device)[None, :, None, None], x.long()]


def preload(paths: Sequence[Path], image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False,
            workers: int = 2) -> list[np.ndarray]:
    """Every image decoded and resized to the training size once, uint8 HxWx3: what the first step of
    `train_transforms` (A.Resize) makes of it. That step then finds the size it wants and leaves the
    pixels as they are, so the augmentations see the same pixels as without the cache (a test checks)."""
    from concurrent.futures import ThreadPoolExecutor

    import albumentations as A

    from ..progress import bar as tqdm

    resize = A.Resize(image_size, image_size)
    with ThreadPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(lambda p: resize(image=decode_verified(p, max_pixels))["image"], paths),
                         total=len(paths), desc="cache the training images", disable=not progress, mininterval=2.0))


class FaceDataset:
    """Map-style dataset of (tensor, label): float32 from a normalising transform, uint8 CHW otherwise.

    With `seed` set, augmentation is seeded per (seed, epoch, index): the same sample gets the same
    augmentation whatever the number of workers, and a resumed run reproduces an uninterrupted one.
    Call `set_epoch` before each epoch, as with DistributedSampler. `cache`: the images `preload` made,
    one per path, used instead of decoding.
    """

    def __init__(self, paths: Sequence[Path], labels: np.ndarray, transform, seed: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, cache: list[np.ndarray] | None = None):
        if cache is not None and len(cache) != len(paths):
            raise ValueError(f"cache holds {len(cache)} images for {len(paths)} paths")
        self.cache = cache
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.max_pixels = max_pixels

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        img = self.cache[i] if self.cache is not None else decode_verified(self.paths[i], self.max_pixels)
        if self.seed is not None and hasattr(self.transform, "set_random_seed"):
            reseed(self.transform, (self.seed * 1_000_003 + self.epoch * 7_919 + i) % (2 ** 32))
        out = self.transform(image=img)["image"]
        if isinstance(out, np.ndarray):
            out = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))
        return out, int(self.labels[i])

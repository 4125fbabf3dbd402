"""Decoding any image a user brings to 8-bit RGB, with the checks a scan relies on, and the faster decoder
training uses for files already verified."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
DEFAULT_MAX_PIXELS = 64_000_000


class DataError(RuntimeError):
    """The data set cannot be used as given; the message names the file (and line, column) and what is wrong."""


class ImageDecodeError(ValueError):
    """One image cannot be used; the message names the file and the reason."""


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image to an RGB uint8 array, applying EXIF orientation.

    Grayscale, palette, RGBA/LA (composited on white), CMYK and 16-bit images become 8-bit RGB.
    Images above `max_pixels` are refused before decoding (decompression-bomb guard).
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageDecodeError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageDecodeError(f"{path}: {w}x{h} px ({w * h / 1e6:.0f} MP) is above the "
                                           f"{max_pixels / 1e6:.0f} MP limit (decompression-bomb guard)")
                im.load()
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"{path}: {e}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{path}: not an image (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"{path}: unreadable image ({e})") from None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_frame(buf: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from a JPEG's frame header, or None when `buf` is not a plain JPEG."""
    if buf[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(buf):
        if buf[i] != 0xFF:
            return None
        marker, seg = buf[i + 1], int.from_bytes(buf[i + 2:i + 4], "big")
        if marker in _SOF:
            return int.from_bytes(buf[i + 7:i + 9], "big"), int.from_bytes(buf[i + 5:i + 7], "big"), buf[i + 9]
        i += 2 + seg
    return None


def decode_verified(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """`load_image` for files the scan has already verified, twice as fast on JPEGs: OpenCV decodes grey
    and colour JPEGs (the same libjpeg-turbo as PIL, EXIF orientation applied alike; a test checks the
    pixels are equal), PIL does everything else and every check."""
    import cv2

    buf = np.fromfile(path, np.uint8)
    frame = _jpeg_frame(buf[:65536].tobytes())
    if frame and frame[2] in (1, 3) and frame[0] * frame[1] <= max_pixels:
        a = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if a is not None:
            return cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    return load_image(path, max_pixels)


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        g = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im)
        g = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()

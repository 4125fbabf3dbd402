"""Verified image lists: every candidate file is fully decoded once (in threads, with a progress bar) and
what is skipped is listed with its reason, so a bad file never reaches a DataLoader worker. Measured cost:
about 0.3 ms per 112 px JPEG and 1 ms per 224 px JPEG on one core. The verdicts are kept in a scan cache
(`outputs/<study>/scan/<species>.json`, keyed by relative path, size and modification time), so a re-run
decodes only new or changed files."""
from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .decode import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, DataError, ImageDecodeError, load_image
from .types import IdentityIndex, Listing


def _is_hidden(p: Path) -> bool:
    return p.name.startswith(".")


def _check(path: Path, max_pixels: int) -> tuple[str | None, str | None, str | None]:
    """(why unusable or None, SHA-1 of the bytes, pHash in hex): one decode serves the scan and the audit."""
    from .audit import phash

    try:
        rgb = load_image(path, max_pixels)
    except ImageDecodeError as e:
        return str(e).split(": ", 1)[-1], None, None
    return None, hashlib.sha1(path.read_bytes()).hexdigest(), format(phash(rgb), "016x")


SCAN_CACHE_VERSION = 2  # 2: entries hold the audit's hashes


def _read_scan_cache(path: Path | None, root: Path, max_pixels: int) -> dict:
    """{relative path: [size, mtime_ns, reason or None, sha1, phash]} of an earlier scan of the same tree, or {}."""
    import json

    if path is None or not path.is_file():
        return {}
    try:
        c = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a damaged cache costs one full scan, nothing else
    ok = isinstance(c, dict) and c.get("version") == SCAN_CACHE_VERSION and c.get("root") == str(root) \
        and c.get("max_pixels") == max_pixels and isinstance(c.get("files"), dict)
    return c["files"] if ok else {}


def _verify(candidates: list[tuple[str, Path]], root: Path, max_pixels: int, cache: Path | None,
            workers: int | None, progress: bool) -> list[tuple]:
    """(why unusable or None, sha1, phash) of each candidate. Files whose size and modification time
    match the scan cache keep its verdict; the others are decoded (in threads), and the cache is rewritten."""
    from ..io import atomic_write_json
    from ..progress import bar as tqdm

    known = _read_scan_cache(cache, root, max_pixels)
    stats, reasons, todo = [], [], []
    for i, (_, f) in enumerate(candidates):
        st = f.stat()
        stats.append((f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
        hit = known.get(stats[-1][0])
        if hit and hit[:2] == [st.st_size, st.st_mtime_ns]:
            reasons.append(tuple(hit[2:]))
        else:
            reasons.append((None, None, None))
            todo.append(i)
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        fresh = list(tqdm(pool.map(lambda i: _check(candidates[i][1], max_pixels), todo), total=len(todo),
                          desc=f"verify {root.name}", disable=not progress or len(todo) < 500, mininterval=1.0))
    for i, why in zip(todo, fresh):
        reasons[i] = why
    if cache is not None and (todo or len(known) != len(stats)):
        atomic_write_json(cache, {"version": SCAN_CACHE_VERSION, "root": str(root), "max_pixels": max_pixels,
                                  "files": {rel: [size, mt, *r] for (rel, size, mt), r in zip(stats, reasons)}})
    return reasons


def list_identity_folders(root: str | Path):
    """Candidates of a folder-per-identity tree (identity = folder name), and what is not a candidate."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data root does not exist or is not a folder")
    skipped: list[tuple[str, str]] = []
    candidates: list[tuple[str, Path]] = []
    for d in sorted(root.iterdir()):
        if _is_hidden(d):
            continue
        if not d.is_dir():
            skipped.append((str(d), "not an identity folder (a file at the top level)"))
            continue
        files = sorted(f for f in d.iterdir() if not _is_hidden(f) and f.is_file())
        images = [f for f in files if f.suffix.lower() in IMAGE_EXTENSIONS]
        skipped += [(str(f), "extension is not an image type") for f in files if f.suffix.lower() not in IMAGE_EXTENSIONS]
        if not images:
            skipped.append((str(d), "identity folder has no images"))
        candidates += [(d.name, f) for f in images]
    return Listing(root, candidates, None, skipped)


def index_candidates(root: Path, candidates: list[tuple[str, Path]], skipped: list[tuple[str, str]],
                     min_images: int = 2, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None,
                     progress: bool = True, cache: str | Path | None = None) -> IdentityIndex:
    """Verify (identity, file) candidates of any source and keep identities with `min_images` usable
    images; everything left out is in `skipped` with its reason."""
    skipped = list(skipped)
    verdicts = _verify(candidates, root, max_pixels, Path(cache) if cache else None, workers, progress)
    by_id: dict[str, list[Path]] = {}
    hashes = {}
    for (ident, f), (why, sha, ph) in zip(candidates, verdicts):
        if why:
            skipped.append((str(f), why))
        else:
            by_id.setdefault(ident, []).append(f)
            hashes[f.relative_to(root).as_posix()] = (sha, int(ph, 16))
    identities, paths, labels = [], [], []
    for ident in sorted(by_id):
        imgs = by_id[ident]
        if len(imgs) < min_images:
            skipped.append((str(root / ident), f"identity has {len(imgs)} usable image(s), below min_images={min_images}"))
            continue
        identities.append(ident)
        paths += imgs
        labels += [len(identities) - 1] * len(imgs)
    if not identities:
        raise DataError(f"{root}: no usable identity (need at least {min_images} readable images per identity; "
                        f"{len(skipped)} item(s) skipped)")
    return IdentityIndex(root, paths, np.asarray(labels, dtype=np.int64), identities, skipped, hashes)


def scan_identities(root: str | Path, min_images: int = 2, max_pixels: int = DEFAULT_MAX_PIXELS,
                    workers: int | None = None, progress: bool = True, cache: str | Path | None = None) -> IdentityIndex:
    """List identity folders under `root` and their decodable images, recording what was skipped and why.
    With `cache` (a JSON file), a re-scan decodes only files that are new or changed (size, mtime)."""
    listing = list_identity_folders(root)
    return index_candidates(listing.root, listing.candidates, listing.skipped, min_images, max_pixels, workers,
                            progress, cache)


def dataset_stats(labels: np.ndarray) -> dict:
    """The design's table 3.2 for one species."""
    counts = np.bincount(np.asarray(labels)) if len(labels) else np.zeros(0, int)
    counts = counts[counts > 0]
    return {
        "identities": int(len(counts)),
        "images": int(counts.sum()),
        "mean": float(counts.mean()) if len(counts) else math.nan,
        "median": float(np.median(counts)) if len(counts) else math.nan,
        "min": int(counts.min()) if len(counts) else 0,
        "max": int(counts.max()) if len(counts) else 0,
        "std": float(counts.std()) if len(counts) else math.nan,
    }


def skipped_summary(skipped: list[tuple[str, str]], first: int = 5) -> dict:
    reasons = Counter(r for _, r in skipped)
    return {"count": len(skipped), "by_reason": dict(reasons.most_common()), "first": skipped[:first]}

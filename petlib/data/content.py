"""What the stages' data fingerprints hash: every image's relative path, identity, split and content.

Content is the file's SHA-1, cached (a JSON file per study) by size, modification and status-change
time, so a second look at an unchanged tree reads no image: a photo replaced by another of the same size,
or copied over with its old mtime kept (`cp -p`, `touch -r`), still changes its ctime and is read again.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

CACHE_VERSION = 1
# {cache file: ((size, mtime_ns) of the file when read or written, its entries)}: a study's many
# fingerprint calls in one process read a large tree's cache once, not once each
_MEMO: dict[str, tuple[tuple[int, int], dict]] = {}


def _stamp(cache: Path) -> tuple[int, int] | None:
    try:
        st = cache.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _read(cache: Path | None) -> dict:
    if cache is None:
        return {}
    stamp, memo = _stamp(cache), _MEMO.get(str(cache))
    if memo and stamp is not None and memo[0] == stamp:
        return memo[1]
    try:
        c = json.loads(cache.read_text()) if stamp else {}
    except (OSError, ValueError):
        c = {}  # a damaged cache costs one read of every file, nothing else
    files = c.get("files", {}) if isinstance(c, dict) and c.get("version") == CACHE_VERSION else {}
    if stamp is not None:
        _MEMO[str(cache)] = (stamp, files)
    return files


def sha1s(paths: Sequence[Path], cache: Path | None = None) -> list[str]:
    """The SHA-1 of each file, from `cache` where its size, mtime and ctime are as recorded."""
    from ..io import atomic_write_json

    known = _read(cache)
    out, fresh = [], {}
    for p in paths:  # os.path, not Path.resolve: a study's status looks at every image of every split many times
        key, st = os.path.abspath(p), os.stat(p)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        hit = known.get(key)
        if hit and hit[:3] == stamp:
            out.append(hit[3])
        else:
            digest = hashlib.sha1(Path(p).read_bytes()).hexdigest()
            fresh[key] = [*stamp, digest]
            out.append(digest)
    if cache is not None and fresh:
        files = {**known, **fresh}
        atomic_write_json(cache, {"version": CACHE_VERSION, "files": files})
        _MEMO[str(cache)] = (_stamp(cache), files)
    return out


def fingerprint(parts: Sequence[tuple[str, object]], cache: Path | None = None) -> str:
    """16 hex digits over (split, IdentityIndex) parts: each image's relative path, identity name, split
    and SHA-1. Relabelling, moving a photo between identities or splits, or editing one changes it."""
    h = hashlib.sha256()
    for split, idx in parts:
        for p, label, digest in zip(idx.paths, idx.labels, sha1s(idx.paths, cache)):
            h.update(f"{Path(p).relative_to(idx.root).as_posix()}\t{idx.identities[int(label)]}\t{split}\t{digest}\n"
                     .encode())
    return h.hexdigest()[:16]

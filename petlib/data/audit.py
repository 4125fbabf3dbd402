"""The data audit, before anything trains: exact duplicate files (same bytes), near duplicates (a
perceptual hash within `NEAR_HAMMING` bits: the same photo resized, re-encoded or lightly edited), and
the identity pairs such duplicates link (likely one animal filed under two names).

The hashes come from the scan (`scan.py` decodes every file once anyway and keeps the hashes in
its cache), so the audit itself only compares: exact groups by dictionary, near pairs by a chunked
Hamming-distance pass over 64-bit pHashes, each candidate confirmed on its pixels. Near duplicates
within one identity are expected (bursts) and only counted. The audit reports; it never fails a study.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .types import IdentityIndex

# A near duplicate is a pHash (imagehash, 64 bits) within NEAR_HAMMING bits, confirmed by the pixels: the
# correlation of the two 32x32 grey thumbnails at least NEAR_CORRELATION. Re-encoding at JPEG quality
# 40-95 and resizing by 0.5-2x move the hash by at most 6 bits and keep the correlation above 0.96
# (tests/test_audit.py plants such copies). The hash alone is not enough on small smooth faces: among the
# demo set's 5.7M cross-identity pairs of cats, 40 fall within 6 bits, all with a correlation of 0.44-0.87.
NEAR_HAMMING = 6
NEAR_CORRELATION = 0.95
SAME_ANIMAL_SHARE = 0.5  # an identity pair sharing duplicates for at least this share of the smaller one's photos
POLICIES = ("report", "drop", "group")


def phash(rgb: np.ndarray) -> int:
    """The 64-bit perceptual hash of an RGB uint8 image (box-reduced first when large: same hash, less work)."""
    import imagehash
    from PIL import Image

    im = Image.fromarray(rgb)
    if (k := min(im.size) // 128) > 1:
        im = im.reduce(k)
    return int(str(imagehash.phash(im)), 16)


def near_pairs(hashes: np.ndarray, max_bits: int = NEAR_HAMMING) -> np.ndarray:
    """(i, j, distance) rows, i < j, of every pair of 64-bit hashes within `max_bits` bits (exact: all pairs
    are compared, in blocks of about 16M so that memory stays near 150 MB at any size)."""
    h = np.asarray(hashes, dtype=np.uint64)
    chunk = max(16, (1 << 24) // max(len(h), 1))
    out = []
    for a in range(0, len(h), chunk):
        block = h[a:a + chunk]
        d = np.bitwise_count(block[:, None] ^ h[None, a:])  # only j >= a: each pair once
        i, j = np.nonzero(d <= max_bits)
        keep = j > i
        out.append(np.stack([i[keep] + a, j[keep] + a, d[i[keep], j[keep]]], 1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 3), np.int64)


def duplicate_pairs(index: IdentityIndex, max_bits: int = NEAR_HAMMING) -> list[tuple[int, int, str, int]]:
    """(i, j, kind, bits) of every duplicate pair of the index's files: exact (same bytes) or near (pHash
    within max_bits), from the hashes the scan recorded."""
    rel = [p.relative_to(index.root).as_posix() for p in index.paths]
    sha = [index.hashes[r][0] for r in rel]
    ph = np.array([index.hashes[r][1] for r in rel], dtype=np.uint64)
    groups = defaultdict(list)
    for i, s in enumerate(sha):
        groups[s].append(i)
    exact = {(a, b) for g in groups.values() for k, a in enumerate(g) for b in g[k + 1:]}
    rows = [(a, b, "exact", int(np.bitwise_count(np.uint64(ph[a]) ^ np.uint64(ph[b])))) for a, b in sorted(exact)]
    thumbs: dict[int, np.ndarray] = {}
    for i, j, d in near_pairs(ph, max_bits):
        i, j = int(i), int(j)
        if (i, j) not in exact and correlation(_thumb(index.paths[i], thumbs, i), _thumb(index.paths[j], thumbs, j)) \
                >= NEAR_CORRELATION:
            rows.append((i, j, "near", int(d)))
    return rows


def thumbnail(path: Path) -> np.ndarray:
    """The 32x32 grey thumbnail (box filter) a near duplicate is confirmed on, centred and unit-normed."""
    from PIL import Image

    from .decode import load_image

    t = np.asarray(Image.fromarray(load_image(path)).convert("L").resize((32, 32), Image.Resampling.BOX), float).ravel()
    t -= t.mean()
    return t / (np.linalg.norm(t) or 1.0)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def _thumb(path: Path, memo: dict, i: int) -> np.ndarray:
    if i not in memo:
        memo[i] = thumbnail(path)
    return memo[i]


def links(index: IdentityIndex, pairs) -> dict[tuple[str, str], dict]:
    """Identity pairs joined by a duplicate: how many photos of each take part, and the verdict."""
    names = index.identities
    shared = defaultdict(lambda: (set(), set()))
    for i, j, _, _ in pairs:
        a, b = names[int(index.labels[i])], names[int(index.labels[j])]
        if a == b:
            continue
        (a, i), (b, j) = sorted([(a, i), (b, j)])
        shared[(a, b)][0].add(i)
        shared[(a, b)][1].add(j)
    counts = np.bincount(index.labels, minlength=len(names))
    out = {}
    for (a, b), (ia, ib) in sorted(shared.items()):
        na, nb = int(counts[names.index(a)]), int(counts[names.index(b)])
        share = min(len(ia), len(ib)) / min(na, nb)
        out[(a, b)] = {"identities": [a, b], "photos_linked": [len(ia), len(ib)], "photos": [na, nb],
                       "verdict": "likely the same animal" if share >= SAME_ANIMAL_SHARE else "shares photos"}
    return out


def components(identities: list[str], linked) -> dict[str, str]:
    """identity -> the first (sorted) identity of its group, the groups joined by `linked` pairs."""
    parent = {n: n for n in identities}

    def root(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n
    for a, b in linked:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {n: root(n) for n in identities}


def redundant_copies(index: IdentityIndex, pairs, policy: str) -> set[int]:
    """Files the policy leaves out: `group`, the second and later exact copies within one identity;
    `drop`, also the later file of every duplicate pair across identities; `report`, none."""
    if policy == "report":
        return set()
    out = set()
    for i, j, kind, _ in pairs:
        same = index.labels[i] == index.labels[j]
        if (kind == "exact" and same) or (policy == "drop" and not same):
            out.add(max(i, j))
    return out


def report(index: IdentityIndex, pairs, split_of: dict[Path, str] | None, policy: str, fixed: bool) -> dict:
    """The audit's JSON: counts per kind, every cross-identity finding by file and identity (with the
    splits they sit in), the linked identity pairs, and the leakage between splits."""
    rel = [p.relative_to(index.root).as_posix() for p in index.paths]
    ident = [index.identities[int(l)] for l in index.labels]
    split = [split_of.get(p) if split_of else None for p in index.paths]
    within = {"exact": 0, "near": 0}
    findings = []
    for i, j, kind, bits in pairs:
        if ident[i] == ident[j]:
            within[kind] += 1
        else:
            findings.append({"kind": kind, "files": [rel[i], rel[j]], "identities": [ident[i], ident[j]],
                             "splits": [split[i], split[j]], "hamming_bits": bits})
    leak = defaultdict(set)
    for i, j, _, _ in pairs:
        si, sj = split[i], split[j]
        if si and sj and si != sj:
            for a, b, k in ((si, sj, i), (sj, si, j)):
                leak[f"{a} photos with a duplicate in {b}"].add(rel[k])
    linked = links(index, pairs)
    return {"policy": policy, "splits_fixed_by_the_data_set": fixed, "near_hamming_bits": NEAR_HAMMING,
            "near_min_correlation": NEAR_CORRELATION,
            "images": len(rel), "identities": len(index.identities),
            "within_identity": within,
            "across_identities": {"exact": sum(f["kind"] == "exact" for f in findings),
                                  "near": sum(f["kind"] == "near" for f in findings)},
            "linked_identity_pairs": list(linked.values()),
            "leakage": {k: len(v) for k, v in sorted(leak.items())},
            "leaked_files": {k: sorted(v)[:50] for k, v in sorted(leak.items())},
            "findings": findings}


def train_photos_in_test(audit: dict | None) -> int:
    """How many test photos have a duplicate in the training split (what inflates re-identification)."""
    return int((audit or {}).get("leakage", {}).get("test photos with a duplicate in train", 0))


def summary_markdown(species: str, found: dict) -> str:
    """01_data's account of one species' audit: counts per kind, the linked identities, the leakage."""
    w, x = found["within_identity"], found["across_identities"]
    if found.get("error"):
        return f"**{species}**: {found['error']}; nothing was changed."
    lines = [f"**{species}** ({found['images']} photos of {found['identities']} identities; policy "
             f"`{found['policy']}`; near = pHash within {found['near_hamming_bits']} bits and thumbnails correlated "
             f"at {found['near_min_correlation']} or more):",
             f"- within one identity: {w['exact']} exact copies, {w['near']} near duplicates (bursts: expected)",
             f"- across identities: {x['exact']} exact copies, {x['near']} near duplicates"]
    pairs = found["linked_identity_pairs"]
    if pairs:
        lines.append(f"- {len(pairs)} identity pair(s) linked by duplicates:")
        lines += [f"  - {a} / {b}: {la} and {lb} of their {na} and {nb} photos; {p['verdict']}"
                  for p in pairs[:20] for (a, b), (la, lb), (na, nb) in [(p["identities"], p["photos_linked"], p["photos"])]]
    if found["leakage"]:
        lines.append("- across splits: " + "; ".join(f"{n} {k}" for k, n in found["leakage"].items()))
        if found["splits_fixed_by_the_data_set"]:
            lines.append("  (the data set fixes its split, so it is reported, not changed)")
    elif found["policy"] == "group" and not found["splits_fixed_by_the_data_set"]:
        lines.append("- across splits: none (linked identities share a split)")
    else:
        lines.append("- across splits: none")
    return "\n".join(lines)


def examples(found: dict, n: int = 6) -> list[dict]:
    """Up to `n` cross-identity findings to show, exact copies first."""
    return sorted(found["findings"], key=lambda f: (f["kind"] != "exact", f["hamming_bits"]))[:n]


def leakage_note(found: dict | None) -> str | None:
    """03_evaluate's warning when test photos duplicate training photos (they inflate retrieval and
    verification); None when the test split is clean or there is no audit."""
    n = train_photos_in_test(found)
    if not n:
        return None
    if not found["splits_fixed_by_the_data_set"]:
        return (f"**Leakage:** {n} test photo(s) have a duplicate in the training split (data audit, policy "
                f"`{found['policy']}`): retrieval, verification and open-set figures may be inflated by them.")
    return (f"**Leakage:** {n} test photo(s) have an exact or near duplicate in the training split (data audit, "
            f"`outputs/<study>/audit/`). Retrieval, verification and open-set figures on this test split may be "
            f"inflated by them; the data set fixes its split, so they were not moved.")

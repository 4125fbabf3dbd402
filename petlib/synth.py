"""The embedded default data set: procedurally drawn cat and dog faces, deterministic from a seed.

Identity lives in stable traits (head and ear shape, fur colour and pattern layout, eye colour, size
and spacing, nose shape and colour, markings). Identities come in look-alike families that share fur
colour and pattern type, so colour alone cannot tell them apart. Every image varies the nuisances a
phone camera sees: pose, lighting, background and clutter, blur, noise, JPEG quality, eye openness
and occasional occlusion. Images per identity follow the design's statistics (3 + a geometric count:
min 3, median 4, mean ~4.3, std ~1.6, tail to ~20).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

SPECIES_CODE = {"cat": 1, "dog": 2}

# Fur colour families (RGB) and pattern types. Families, not single colours: members of a look-alike
# family share one of these and differ only in finer traits.
FUR = [(235, 235, 230), (40, 38, 36), (205, 130, 60), (150, 150, 150), (120, 85, 55), (225, 200, 160),
       (90, 70, 60), (180, 110, 70), (60, 60, 70), (240, 215, 180)]
PATTERNS = ["none", "stripes", "patches", "spots", "mask"]
EYE = [(80, 160, 60), (200, 160, 40), (60, 120, 200), (140, 90, 40), (180, 120, 30), (100, 180, 170),
       (70, 50, 30)]
NOSE = [(230, 140, 150), (40, 30, 30), (130, 80, 60), (190, 110, 110)]


@dataclass
class Traits:
    species: str
    head_w: float
    head_h: float
    ear_size: float
    ear_spread: float
    ear_kind: int
    fur: tuple
    pattern: str
    pattern_col: tuple
    pattern_seed: int
    eye_col: tuple
    eye_size: float
    eye_spacing: float
    eye_height: float
    nose_kind: int
    nose_col: tuple
    nose_size: float
    muzzle: float
    blaze: float
    chin: bool
    spot: tuple | None


def _jitter(col, rng, amount):
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in col)


def identity_traits(species: str, index: int, seed: int, family: int) -> Traits:
    """Stable traits of one identity. Family-level draws come from (seed, family id), the rest from the identity."""
    fam = np.random.default_rng([seed, SPECIES_CODE[species], index // max(family, 1), 7])
    rng = np.random.default_rng([seed, SPECIES_CODE[species], index, 0])
    fur = _jitter(FUR[fam.integers(len(FUR))], rng, 6)
    pattern = PATTERNS[fam.integers(len(PATTERNS))]
    pattern_col = _jitter(FUR[fam.integers(len(FUR))], rng, 6)
    if sum(abs(a - b) for a, b in zip(fur, pattern_col)) < 120:
        pattern_col = tuple(int(c * 0.45) for c in fur) if sum(fur) > 300 else tuple(min(255, c + 110) for c in fur)
    dog = species == "dog"
    return Traits(
        species=species,
        head_w=float(rng.uniform(0.27, 0.34) if not dog else rng.uniform(0.25, 0.33)),
        head_h=float(rng.uniform(0.24, 0.30) if not dog else rng.uniform(0.27, 0.35)),
        ear_size=float(rng.uniform(0.11, 0.2)),
        ear_spread=float(rng.uniform(0.5, 0.85)),
        ear_kind=int(rng.integers(2)) if dog else int(rng.integers(2)),
        fur=fur, pattern=pattern, pattern_col=pattern_col, pattern_seed=int(rng.integers(2 ** 31)),
        eye_col=_jitter(EYE[rng.integers(len(EYE))], rng, 10),
        eye_size=float(rng.uniform(0.035, 0.06)),
        eye_spacing=float(rng.uniform(0.09, 0.15)),
        eye_height=float(rng.uniform(-0.08, -0.02)),
        nose_kind=int(rng.integers(2)),
        nose_col=NOSE[rng.integers(len(NOSE))],
        nose_size=float(rng.uniform(0.025, 0.05)),
        muzzle=float(rng.uniform(0.1, 0.16) if dog else rng.uniform(0.06, 0.1)),
        blaze=float(rng.uniform(0.02, 0.06)) if rng.random() < 0.35 else 0.0,
        chin=bool(rng.random() < 0.4),
        spot=(float(rng.uniform(-0.2, 0.2)), float(rng.uniform(-0.2, 0.05)), float(rng.uniform(0.02, 0.045)))
        if rng.random() < 0.4 else None,
    )


def images_per_identity(species: str, index: int, seed: int) -> int:
    rng = np.random.default_rng([seed, SPECIES_CODE[species], index, 2])
    return int(min(3 + rng.geometric(0.435) - 1, 22))


# --------------------------------------------------------------------------- drawing
def _pt(x, y, S):
    return (int(round(x * S * 16)), int(round(y * S * 16)))


def _ell(img, cx, cy, ax, ay, col, S, angle=0.0, thick=-1):
    cv2.ellipse(img, _pt(cx, cy, S), _pt(max(ax, 1e-3), max(ay, 1e-3), S), angle, 0, 360, col, thick,
                cv2.LINE_AA, 4)


def _poly(img, pts, col, S):
    cv2.fillPoly(img, [np.array([_pt(x, y, S) for x, y in pts], np.int32)], col, cv2.LINE_AA, 4)


def _draw_face(t: Traits, S: int, yaw: float, openness: float):
    """Face in canonical pose on a transparent canvas: returns (rgb uint8, alpha float32)."""
    face = np.zeros((S, S, 3), np.uint8)
    head = np.zeros((S, S), np.uint8)
    cx, cy = 0.5, 0.52
    squeeze = 1 - 0.25 * abs(yaw)
    hw, hh = t.head_w * squeeze, t.head_h
    fur = t.fur
    inner = tuple(min(255, int(c * 0.6 + 230 * 0.4)) for c in NOSE[0])
    # ears, behind the head
    for side in (-1, 1):
        ex = cx + side * hw * t.ear_spread
        ey = cy - hh * 0.75
        e = t.ear_size
        if t.species == "cat":
            tip = (ex + side * e * 0.35, ey - e * 1.25)
            base = [(ex - e * 0.6, ey + e * 0.3), tip, (ex + e * 0.6, ey + e * 0.3)]
            _poly(face, base, fur, S)
            _poly(head, base, 255, S)
            _poly(face, [(ex - e * 0.33, ey + e * 0.15), (tip[0], tip[1] + e * 0.35), (ex + e * 0.33, ey + e * 0.15)],
                  inner, S)
        elif t.ear_kind == 0:  # floppy ear hanging by the cheek
            ang = side * 20
            _ell(face, cx + side * hw * 0.95, cy - hh * 0.25, e * 0.55, e * 1.4, t.pattern_col, S, ang)
            _ell(head, cx + side * hw * 0.95, cy - hh * 0.25, e * 0.55, e * 1.4, 255, S, ang)
        else:  # upright rounded ear
            _ell(face, ex, ey - e * 0.4, e * 0.5, e * 1.0, fur, S, side * 15)
            _ell(head, ex, ey - e * 0.4, e * 0.5, e * 1.0, 255, S, side * 15)
            _ell(face, ex, ey - e * 0.3, e * 0.28, e * 0.65, inner, S, side * 15)
    _ell(face, cx, cy, hw, hh, fur, S)
    _ell(head, cx, cy, hw, hh, 255, S)
    # fur pattern, clipped to the head
    pat = np.zeros_like(face)
    pmask = np.zeros((S, S), np.uint8)
    prng = np.random.default_rng(t.pattern_seed)
    shift = yaw * 0.06
    if t.pattern == "stripes":
        for _ in range(int(prng.integers(3, 7))):
            x = cx + shift + prng.uniform(-hw, hw)
            ang = prng.uniform(-25, 25)
            _ell(pmask, x, cy - hh * 0.55, hw * 0.045, hh * prng.uniform(0.25, 0.5), 255, S, ang)
        for side in (-1, 1):
            for k in range(int(prng.integers(1, 4))):
                _ell(pmask, cx + shift + side * hw * 0.8, cy + k * 0.04 - 0.02, hw * 0.3, hh * 0.035, 255, S,
                     side * 10)
    elif t.pattern == "patches":
        for _ in range(int(prng.integers(1, 4))):
            _ell(pmask, cx + shift + prng.uniform(-hw, hw) * 0.8, cy + prng.uniform(-hh, hh) * 0.7,
                 hw * prng.uniform(0.25, 0.55), hh * prng.uniform(0.25, 0.5), 255, S, prng.uniform(0, 180))
    elif t.pattern == "spots":
        for _ in range(int(prng.integers(5, 12))):
            _ell(pmask, cx + shift + prng.uniform(-hw, hw) * 0.9, cy + prng.uniform(-hh, hh) * 0.9,
                 hw * 0.07, hw * 0.07, 255, S)
    elif t.pattern == "mask":
        side = 1 if prng.random() < 0.5 else -1
        _ell(pmask, cx + shift + side * t.eye_spacing, cy + t.eye_height, hw * prng.uniform(0.3, 0.5),
             hh * prng.uniform(0.25, 0.4), 255, S, prng.uniform(-30, 30))
        if prng.random() < 0.5:
            _ell(pmask, cx + shift - side * t.eye_spacing, cy + t.eye_height, hw * 0.3, hh * 0.25, 255, S)
    pat[:] = t.pattern_col
    m = (pmask.astype(np.float32) / 255 * (head.astype(np.float32) / 255))[..., None]
    face = (face * (1 - m) + pat * m).astype(np.uint8)
    white = (245, 242, 238)
    if t.blaze:
        _poly(face, [(cx + shift - t.blaze, cy - hh * 0.95), (cx + shift + t.blaze, cy - hh * 0.95),
                     (cx + shift + t.blaze * 1.6, cy + 0.02), (cx + shift - t.blaze * 1.6, cy + 0.02)], white, S)
    if t.chin:
        _ell(face, cx + shift, cy + hh * 0.7, hw * 0.4, hh * 0.28, white, S)
    if t.spot:
        _ell(face, cx + shift + t.spot[0], cy + t.spot[1], t.spot[2], t.spot[2] * 0.8, t.pattern_col, S)
    # muzzle
    mcol = tuple(min(255, int(c * 0.5 + 235 * 0.5)) for c in fur)
    if t.species == "dog":
        _ell(face, cx + shift * 1.5, cy + hh * 0.38, t.muzzle * squeeze, t.muzzle * 0.75, mcol, S)
    else:
        for side in (-1, 1):
            _ell(face, cx + shift * 1.5 + side * t.muzzle * 0.5, cy + hh * 0.35, t.muzzle * 0.55, t.muzzle * 0.42,
                 mcol, S)
    # eyes
    for side in (-1, 1):
        ex = cx + shift + side * t.eye_spacing * squeeze
        ey = cy + t.eye_height
        r = t.eye_size * (1 - 0.2 * max(0.0, side * yaw))
        _ell(face, ex, ey, r * 1.05, r * 0.8, (25, 25, 25), S)
        _ell(face, ex, ey, r * 0.9, r * 0.68, t.eye_col, S)
        if t.species == "cat":
            _ell(face, ex, ey, r * 0.18, r * 0.6, (10, 10, 10), S)
        else:
            _ell(face, ex, ey, r * 0.4, r * 0.4, (10, 10, 10), S)
        _ell(face, ex + r * 0.3, ey - r * 0.3, r * 0.12, r * 0.12, (250, 250, 250), S)
        if openness < 0.999:  # eyelid closes from the top
            lid = np.zeros((S, S), np.uint8)
            _ell(lid, ex, ey, r * 1.15, r * 0.9, 255, S)
            cut = int((ey - r * 0.9 + (1 - openness) * r * 1.8) * S)
            lid[max(cut, 0):] = 0
            face[lid > 0] = fur
    # nose and mouth
    nx, ny, ns = cx + shift * 1.6, cy + hh * 0.22, t.nose_size
    if t.nose_kind == 0:
        _poly(face, [(nx - ns, ny - ns * 0.5), (nx + ns, ny - ns * 0.5), (nx, ny + ns * 0.7)], t.nose_col, S)
    else:
        _ell(face, nx, ny, ns * 1.1, ns * 0.7, t.nose_col, S)
    lw = max(1, S // 110)
    for side in (-1, 1):
        cv2.ellipse(face, _pt(nx + side * ns * 0.7, ny + ns * 1.2, S), _pt(ns * 0.7, ns * 0.5, S), 0, 0, 180,
                    (30, 25, 25), lw, cv2.LINE_AA, 4)
    return face, head.astype(np.float32) / 255


def _background(rng, S):
    base = rng.uniform(30, 230, 3)
    low = rng.normal(0, 1, (6, 6, 3)).astype(np.float32)
    tex = cv2.resize(low, (S, S), interpolation=cv2.INTER_CUBIC) * rng.uniform(5, 30)
    fine = rng.normal(0, rng.uniform(0, 8), (S, S, 1)).astype(np.float32)
    bg = np.clip(base + tex + fine, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 5))):
        col = tuple(int(c) for c in rng.uniform(0, 255, 3))
        p = rng.uniform(0, 1, 4)
        if rng.random() < 0.5:
            cv2.rectangle(bg, _pt(p[0], p[1], S), _pt(p[2], p[3], S), col, -1, cv2.LINE_AA, 4)
        else:
            cv2.line(bg, _pt(p[0], p[1], S), _pt(p[2], p[3], S), col, int(rng.integers(1, max(2, S // 20))),
                     cv2.LINE_AA, 4)
    return bg


def render(t: Traits, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """One photo of identity `t` with fresh nuisances; returns RGB uint8 of shape (image_size, image_size, 3)."""
    S = image_size * 2  # draw at 2x and downsample: cheap anti-aliasing
    yaw = float(rng.uniform(-0.5, 0.5))
    openness = float(1.0 if rng.random() < 0.75 else rng.uniform(0.2, 1.0))
    face, alpha = _draw_face(t, S, yaw, openness)
    ang = rng.uniform(-20, 20)
    scale = rng.uniform(1.2, 1.45)  # aligned crops: the face fills most of the frame
    tx, ty = rng.uniform(-0.06, 0.06, 2) * S
    M = cv2.getRotationMatrix2D((S / 2, S / 2), ang, scale)
    M[:, 2] += (tx, ty)
    face = cv2.warpAffine(face, M, (S, S), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(alpha, M, (S, S), flags=cv2.INTER_LINEAR)[..., None]
    img = _background(rng, S).astype(np.float32) * (1 - alpha) + face.astype(np.float32) * alpha
    # lighting: brightness, colour temperature, directional shading
    temp = rng.uniform(-0.08, 0.08)
    img *= rng.uniform(0.7, 1.25) * np.array([1 + temp, 1.0, 1 - temp], np.float32)
    d = rng.normal(0, 1, 2)
    d /= np.linalg.norm(d) + 1e-9
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S - 0.5
    img *= (1 + rng.uniform(0, 0.35) * (xx * d[0] + yy * d[1]))[..., None]
    if rng.random() < 0.12:  # partial occlusion: a hand, a toy, a blanket edge
        col = rng.uniform(0, 255, 3)
        cx, cy = rng.uniform(0.25, 0.75, 2)
        w, h = rng.uniform(0.12, 0.3, 2)
        occ = np.zeros((S, S), np.uint8)
        if rng.random() < 0.5:
            cv2.rectangle(occ, _pt(cx - w / 2, cy - h / 2, S), _pt(cx + w / 2, cy + h / 2, S), 255, -1)
        else:
            _ell(occ, cx, cy, w / 2, h / 2, 255, S, rng.uniform(0, 180))
        img[occ > 0] = col
    img = cv2.resize(np.clip(img, 0, 255).astype(np.uint8), (image_size, image_size), interpolation=cv2.INTER_AREA)
    sigma = rng.uniform(0, 1.0) if rng.random() < 0.5 else 0.0
    if sigma > 0.2:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    noise = rng.uniform(0, 6)
    img = np.clip(img.astype(np.float32) + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    return img


# --------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class _Job:
    species: str
    start: int
    stop: int
    image_size: int
    seed: int
    family: int
    out: str


def identity_name(species: str, index: int) -> str:
    return f"{species}{index:06d}"


def _work(job: _Job) -> int:
    cv2.setNumThreads(1)
    n = 0
    for i in range(job.start, job.stop):
        t = identity_traits(job.species, i, job.seed, job.family)
        d = Path(job.out) / identity_name(job.species, i)
        d.mkdir(parents=True, exist_ok=True)
        for k in range(images_per_identity(job.species, i, job.seed)):
            rng = np.random.default_rng([job.seed, SPECIES_CODE[job.species], i, k, 1])
            img = render(t, job.image_size, rng)
            quality = int(rng.integers(50, 96))
            ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            (d / f"{k}_face0.jpg").write_bytes(buf.tobytes())
            n += 1
    return n


def code_version() -> str:
    """Digest of the code that draws the faces (this module and the petlib code it uses): the set is
    redrawn when that code changes, with no version number to keep by hand."""
    import hashlib

    from . import codegraph

    mods = sorted(codegraph.closure({"petlib.synth"}) - {"petlib.codegraph"})
    return hashlib.sha256(" ".join(f"{m}:{codegraph.code_digest(m)}" for m in mods).encode()).hexdigest()[:16]


def generate(out_dir: str | Path, species: str = "cat", n_identities: int = 200, image_size: int = 112,
             seed: int = 0, family: int = 4, workers: int | None = None, progress: bool = True) -> dict:
    """Write `<out_dir>/<identity>/<n>_face0.jpg`, deterministic from the arguments.

    Generation happens in a temp folder that replaces `out_dir` only when complete, and is skipped when
    `out_dir/.synth.json` already records the same arguments. Returns that record.
    """
    from .progress import bar as tqdm

    if species not in SPECIES_CODE:
        raise ValueError(f"synth.generate: species must be one of {sorted(SPECIES_CODE)}, got {species!r}")
    out_dir = Path(out_dir)
    record = {"code": code_version(), "species": species, "n_identities": n_identities, "image_size": image_size,
              "seed": seed, "family": family}
    marker = out_dir / ".synth.json"
    if marker.is_file():
        try:
            old = json.loads(marker.read_text())
        except json.JSONDecodeError:
            old = {}
        if {k: old.get(k) for k in record} == record:
            return old
    if out_dir.exists() and any(out_dir.iterdir()) and not marker.is_file():
        raise FileExistsError(f"{out_dir}: exists and was not written by synth.generate; refusing to overwrite")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        chunk = 25
        jobs = [_Job(species, s, min(s + chunk, n_identities), image_size, seed, family, str(tmp))
                for s in range(0, n_identities, chunk)]
        workers = workers or min(len(jobs), os.cpu_count() or 1)
        n_images = 0
        with tqdm(total=n_identities, desc=f"synth {species}", disable=not progress, mininterval=1.0) as bar:
            if workers > 1:
                with get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
                    for job, n in zip(jobs, pool.imap(_work, jobs)):
                        n_images += n
                        bar.update(job.stop - job.start)
            else:
                for job in jobs:
                    n_images += _work(job)
                    bar.update(job.stop - job.start)
        record["n_images"] = n_images
        (tmp / ".synth.json").write_text(json.dumps(record, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def describe_traits() -> str:
    """What makes identities differ, for reports and the README."""
    return ("Stable per identity: head width/height, ear size/spread/kind (cats: pointed; dogs: floppy or "
            "upright), fur colour and pattern (none, stripes, patches, spots, mask) with its own layout, eye "
            "colour/size/spacing/height, nose shape/colour/size, muzzle size, blaze, white chin, a single spot. "
            f"Look-alike families share fur colour and pattern type. {len(FUR)} fur colours x {len(PATTERNS)} patterns.")


def traits_dict(t: Traits) -> dict:
    return asdict(t)

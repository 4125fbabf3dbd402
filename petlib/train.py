"""ArcFace training (seed section 5): a short loop in the spirit of insightface's arcface_torch.

One function, `train_model`, used by the `02_train` notebook, `petface train` and `torchrun`:
AdamW with a backbone LR multiplier, per-iteration linear warm-up then cosine, ArcFace margin warm-up,
gradient clipping, validation on val-split pairs, atomic checkpoints, exact resume, AMP and
channels_last on CUDA, DistributedDataParallel when launched with torchrun (rank 0 writes and validates).
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler

from . import bench, data
from .config import StudyParams, params_to_dict
from .embed import embed_images
from .io import atomic_path, atomic_write_json
from .losses import arcface_loss
from .models import PetFaceEmbedder, PetFaceModel, create_embedder, embedder_from_config

ARTEFACTS = ["config.json", "best_model.pt", "last_checkpoint.pt", "history.json", "pet_embedder.pt",
             "pet_embedder.onnx"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is left as it was."""


# --------------------------------------------------------------------------- schedules
def lr_factor(step: int, total_steps: int, warmup_steps: int, eta_min_ratio: float) -> float:
    """Multiplier of a group's base LR at iteration `step` (0-based): linear warm-up from 0 to 1 over
    `warmup_steps` (reaching 1 at the end of warm-up), then cosine from 1 down to `eta_min_ratio`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return eta_min_ratio + (1 - eta_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def margin_at(step: int, total_steps: int, m: float, warmup_frac: float) -> float:
    """ArcFace margin: linear from 0 to m over the first `warmup_frac` of training, then m."""
    ramp = warmup_frac * total_steps
    return m if ramp <= 0 else m * min(1.0, step / ramp)


# --------------------------------------------------------------------------- data plumbing
class EpochSampler(Sampler[int]):
    """A permutation drawn from (seed, epoch), sharded across ranks: the order depends on nothing else,
    so a resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        per_rank = self.n // self.world
        return iter(order[self.rank * per_rank:(self.rank + 1) * per_rank].tolist())

    def __len__(self) -> int:
        return self.n // self.world


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- device and distribution
@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    amp_dtype: torch.dtype | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but CUDA is not available on this machine")
    return torch.device(name)


def setup_runtime(params: StudyParams) -> Runtime:
    """Single process, or DDP when torchrun set WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(params.train.device)
    rank = 0
    if world > 1:
        rank = int(os.environ["RANK"])
        if device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", rank))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    amp = None
    if params.train.amp and device.type == "cuda":
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return Runtime(device, rank, world, amp)


def teardown(rt: Runtime) -> None:
    """Leave the process group so that every rank exits cleanly.

    A barrier first makes sure no rank is still inside a collective; destroying the group afterwards
    is then safe (the gloo aborts seen at exit came from tearing down while a peer was mid-collective).
    """
    if rt.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


# --------------------------------------------------------------------------- evaluation helper
def verification(embedder, index: data.IdentityIndex, pairs: np.ndarray, image_size: int, device, **kw) -> dict:
    """Seed 5.4: embed the images the pairs use, score pairs by cosine, sweep the threshold."""
    used = np.unique(pairs[:, :2])
    emb = embed_images(embedder, [index.paths[i] for i in used], image_size, device, **kw)
    pos = {int(i): k for k, i in enumerate(used)}
    a = emb[[pos[int(i)] for i in pairs[:, 0]]]
    b = emb[[pos[int(i)] for i in pairs[:, 1]]]
    return bench.best_threshold((a * b).sum(1), pairs[:, 2])


# --------------------------------------------------------------------------- the loop
def build_optimizer(model: PetFaceModel, lr: float, backbone_mult: float, weight_decay: float):
    backbone = list(model.embedder.backbone.parameters())
    head = list(model.embedder.head.parameters()) + list(model.arcface.parameters())
    return torch.optim.AdamW([{"params": backbone, "lr": lr * backbone_mult, "name": "backbone"},
                              {"params": head, "lr": lr, "name": "head"}], weight_decay=weight_decay)


def _save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def run_config(params: StudyParams, model_name: str, species: str, num_classes: int, fingerprint: str) -> dict:
    m = params.model(model_name)
    t = params.train
    return {"model": model_name, "species": species, "backbone": m.backbone, "head": m.head,
            "pretrained": m.pretrained, "image_size": params.data.image_size, "embedding_dim": t.embedding_dim,
            "dropout": t.dropout, "num_classes": num_classes, "epochs": m.epochs, "batch_size": t.batch_size,
            "lr": m.lr, "backbone_lr_mult": m.backbone_lr_mult, "weight_decay": t.weight_decay,
            "warmup_epochs": t.warmup_epochs, "eta_min": t.eta_min, "arcface_s": t.arcface_s,
            "arcface_m": t.arcface_m, "margin_warmup_frac": t.margin_warmup_frac,
            "label_smoothing": t.label_smoothing, "grad_clip": t.grad_clip, "seed": params.seed,
            "mean": list(data.IMAGENET_MEAN), "std": list(data.IMAGENET_STD), "channel_order": "RGB",
            "data_fingerprint": fingerprint, "params": params_to_dict(params)}


@dataclass
class TrainResult:
    history: dict
    model: PetFaceModel
    out_dir: Path


def train_model(params: StudyParams, model_name: str, species: str, out_dir: str | Path | None = None,
                resume: bool = False, progress: bool = True, stop_after_epoch: int | None = None,
                log=print) -> TrainResult:
    """Train one (model, species) pair into `out_dir` (default `params.run_dir(...)`).

    Returns the history and this rank's trained model (in memory; rank 0 also wrote the artefacts).

    `stop_after_epoch` ends the run after that epoch as if it had been killed there (checkpoints
    written, no final export): what the resume test uses.
    """
    from tqdm import tqdm

    mp = params.model(model_name)
    tp = params.train
    out = Path(out_dir) if out_dir else params.run_dir(model_name, species)
    rt = setup_runtime(params)
    seed_everything(params.seed)
    if not params.split_manifest(species).is_file():
        data.prepare_species(params, species, progress=progress and rt.main)
    splits = data.load_splits(params, species)
    train_idx, val_idx = splits["train"], splits["val"]
    fingerprint = data.fingerprint(train_idx.root, train_idx.paths + val_idx.paths)
    size = params.data.image_size

    embedder = create_embedder(mp.backbone, size, tp.embedding_dim, mp.head, mp.pretrained, tp.dropout)
    model = PetFaceModel(embedder, len(train_idx.identities), s=tp.arcface_s, m=0.0).to(rt.device)
    if tp.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, mp.lr, mp.backbone_lr_mult, tp.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=rt.amp_dtype == torch.float16)

    ds = data.FaceDataset(train_idx.paths, train_idx.labels, data.train_transforms(size), seed=params.seed,
                          max_pixels=params.data.max_pixels)
    sampler = EpochSampler(len(ds), params.seed, rt.rank, rt.world)
    per_rank_batch = max(1, tp.batch_size // rt.world)
    loader = DataLoader(ds, batch_size=per_rank_batch, sampler=sampler, drop_last=True, num_workers=tp.num_workers,
                        pin_memory=tp.pin_memory and rt.device.type == "cuda", worker_init_fn=_worker_init)
    steps_per_epoch = len(loader) if not tp.max_steps_per_epoch else min(len(loader), tp.max_steps_per_epoch)
    if steps_per_epoch == 0:
        raise data.DataError(f"{species}: {len(ds)} training images are fewer than one batch of {per_rank_batch}")
    total = steps_per_epoch * mp.epochs
    warm = steps_per_epoch * tp.warmup_epochs
    ratios = [tp.eta_min / g["lr"] if g["lr"] else 0.0 for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, [lambda s, r=r: lr_factor(s, total, warm, r) for r in ratios])
    ddp_model = nn.parallel.DistributedDataParallel(model) if rt.world > 1 else model

    pairs = data.make_pairs(val_idx.labels, params.data.n_pairs, seed=params.seed)
    eval_kw = dict(device=rt.device, channels_last=tp.channels_last, amp_dtype=rt.amp_dtype,
                   num_workers=tp.num_workers)
    config = run_config(params, model_name, species, len(train_idx.identities), fingerprint)
    config["embedder"] = embedder.config
    history = {"untrained_val": None, "epochs": []}
    best, start_epoch = -1.0, 0
    ckpt_path = out / "last_checkpoint.pt"
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"{ckpt_path}: no checkpoint to resume from")
        try:
            ck = torch.load(ckpt_path, map_location=rt.device, weights_only=False)
        except Exception as e:
            raise RuntimeError(f"{ckpt_path}: cannot read checkpoint ({type(e).__name__}: {e})") from None
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        history, best, start_epoch = ck["history"], ck["best"], ck["epoch"] + 1
        _set_rng_state(ck["rng"])
        if rt.main:
            log(f"resumed {out} after epoch {ck['epoch'] + 1}")
    elif rt.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", config)
        history["untrained_val"] = verification(model.embedder, val_idx, pairs, size, **eval_kw)

    for epoch in range(start_epoch, mp.epochs):
        ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        model.train()
        t0, seen, loss_sum, waited = time.time(), 0, 0.0, 0.0
        t_wait = time.time()
        bar = tqdm(total=steps_per_epoch, desc=f"{model_name}-{species} epoch {epoch + 1}/{mp.epochs}",
                   disable=not (progress and rt.main), mininterval=2.0, leave=False)
        for step, (x, y) in enumerate(loader):
            if step >= steps_per_epoch:
                break
            waited += time.time() - t_wait
            gstep = epoch * steps_per_epoch + step
            model.arcface.m = margin_at(gstep, total, tp.arcface_m, tp.margin_warmup_frac)
            x = x.to(rt.device, non_blocking=True)
            y = y.to(rt.device, non_blocking=True)
            if tp.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(rt.device.type, dtype=rt.amp_dtype or torch.bfloat16, enabled=rt.amp_dtype is not None):
                logits = ddp_model(x, y)
            loss = arcface_loss(logits.float(), y, tp.label_smoothing)
            if not torch.isfinite(loss):
                bar.close()
                teardown(rt)
                raise TrainingDiverged(f"{model_name}-{species}: non-finite loss ({loss.item()}) at epoch {epoch + 1}, "
                                       f"step {step + 1}; {ckpt_path} is left as it was")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), tp.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            seen += x.shape[0]
            loss_sum += loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{seen * rt.world / (time.time() - t0):.0f}")
            t_wait = time.time()
        bar.close()
        elapsed = time.time() - t0
        entry = {"epoch": epoch + 1, "loss": loss_sum / steps_per_epoch,
                 "lr": {g["name"]: g["lr"] for g in opt.param_groups}, "margin": model.arcface.m,
                 "images_per_s": seen * rt.world / elapsed, "train_time_s": elapsed,
                 "data_wait_frac": waited / elapsed, "val": None}
        if rt.main and ((epoch + 1) % tp.val_every == 0 or epoch + 1 == mp.epochs):
            entry["val"] = verification(model.embedder, val_idx, pairs, size, **eval_kw)
        history["epochs"].append(entry)
        if rt.main:
            improved = entry["val"] is not None and entry["val"]["accuracy"] > best
            if improved:
                best = entry["val"]["accuracy"]
                _save({"model": model.state_dict(), "epoch": epoch, "val": entry["val"], "config": config},
                      out / "best_model.pt")
            _save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                   "scaler": scaler.state_dict(), "epoch": epoch, "history": history, "best": best,
                   "rng": _rng_state(), "config": config}, ckpt_path)
            atomic_write_json(out / "history.json", history)
            v = entry["val"]
            log(f"{model_name}-{species} epoch {epoch + 1}/{mp.epochs}: loss {entry['loss']:.4f}, "
                f"margin {entry['margin']:.3f}, {entry['images_per_s']:.0f} img/s"
                + (f", val acc {v['accuracy']:.4f} @ {v['threshold']:.2f}" if v else ""))
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < mp.epochs:
            teardown(rt)
            return TrainResult(history, model, out)

    if rt.main:
        finalize(out, config)
    teardown(rt)
    return TrainResult(history, model, out)


def finalize(out: Path, config: dict) -> None:
    """pet_embedder.pt (best model's embedder weights) and pet_embedder.onnx beside it."""
    from .export import export_onnx

    best = out / "best_model.pt"
    src = best if best.is_file() else out / "last_checkpoint.pt"
    state = torch.load(src, map_location="cpu", weights_only=False)["model"]
    emb_state = {k[len("embedder."):]: v for k, v in state.items() if k.startswith("embedder.")}
    _save(emb_state, out / "pet_embedder.pt")
    embedder = embedder_from_config(config["embedder"], emb_state)
    export_onnx(embedder, out / "pet_embedder.onnx", metadata=onnx_metadata(config, out))


def onnx_metadata(config: dict, out: Path) -> dict:
    hist = json.loads((out / "history.json").read_text())
    vals = [e["val"] for e in hist["epochs"] if e["val"]]
    best = max(vals, key=lambda v: v["accuracy"]) if vals else None
    return {"input_size": str(config["image_size"]), "channel_order": "RGB", "layout": "NCHW",
            "mean": json.dumps(config["mean"]), "std": json.dumps(config["std"]), "scale": "1/255",
            "embedding_dim": str(config["embedding_dim"]), "backbone": config["backbone"],
            "recommended_threshold": str(best["threshold"]) if best else "",
            "data_fingerprint": config["data_fingerprint"]}


def load_run_embedder(run_dir: str | Path, device="cpu") -> tuple[PetFaceEmbedder, dict]:
    """Rebuild the deployable embedder of a run from its config.json and pet_embedder.pt."""
    run_dir = Path(run_dir)
    cfg_path, weights = run_dir / "config.json", run_dir / "pet_embedder.pt"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing; has this run finished training?")
    config = json.loads(cfg_path.read_text())
    emb = embedder_from_config(config["embedder"], torch.load(weights, map_location="cpu", weights_only=True))
    return emb.to(device).eval(), config


def artefacts(run_dir: str | Path) -> list[dict]:
    """The seed's 5.6 outputs of a run with their sizes (missing ones listed as such)."""
    run_dir = Path(run_dir)
    return [{"file": n, "bytes": (run_dir / n).stat().st_size if (run_dir / n).is_file() else None}
            for n in ARTEFACTS]


def summary(history: dict) -> dict:
    """Headline figures of a finished run: best val metrics next to the untrained model's."""
    vals = [e for e in history["epochs"] if e["val"]]
    best = max(vals, key=lambda e: e["val"]["accuracy"]) if vals else None
    return {"best_epoch": best["epoch"] if best else None,
            "val_accuracy": best["val"]["accuracy"] if best else None,
            "val_threshold": best["val"]["threshold"] if best else None,
            "untrained_val_accuracy": (history.get("untrained_val") or {}).get("accuracy"),
            "images_per_s": float(np.median([e["images_per_s"] for e in history["epochs"]])),
            "train_time_s": float(sum(e["train_time_s"] for e in history["epochs"]))}

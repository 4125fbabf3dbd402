"""ArcFace training (design §5): a short loop in the spirit of insightface's arcface_torch.

`train_model` (used by the `02_train` notebook, `petface train` and `torchrun`) orchestrates: `build`
sets up data, model, optimiser and schedule; `start_or_resume` writes the run's config or restores a
checkpoint; `train_one_epoch` and `validate` do the work; `save_epoch` writes the checkpoints. AdamW
with a backbone LR multiplier, per-iteration linear warm-up then cosine, ArcFace margin warm-up,
gradient clipping, validation on val-split pairs, atomic checkpoints (at each epoch's end, every
`train.checkpoint_minutes` inside one, and on SIGTERM/SIGINT), exact resume from any of them, AMP and
channels_last on CUDA, DistributedDataParallel under torchrun (rank 0 writes and validates).
Training writes a run folder (`petlib.run`); it never imports the export package.
"""
from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Sampler

from . import data, kernels, metrics, reproducible, runtime, stages
from .config import StudyParams, params_to_dict, project_root, relative_paths
from .curves import Curves
from .embed import embed_images
from .checkpoints import Checkpoints, save_torch, stop_on_signals
from .io import atomic_write_json, load_torch
from .layout import Layout
from .losses import arcface_loss
from .models import PetFaceModel, create_embedder, embedder_from_config
from .run import RunDir


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is left as it was."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT: a checkpoint was written at the step boundary; the message says how to resume."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class ResumeMismatch(RuntimeError):
    """The checkpoint was written with other settings or data; resuming would mix two runs."""


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
    """ArcFace margin: linear from 0 to m over the first `warmup_frac` of training, then m (design §5.3)."""
    ramp = warmup_frac * total_steps
    return m if ramp <= 0 else m * min(1.0, step / ramp)


class EpochSampler(Sampler[int]):
    """A permutation drawn from (seed, epoch), sharded across ranks: the order depends on nothing else,
    so a resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.seed, self.rank, self.world = n, seed, rank, world
        self.epoch = 0
        self.skip = 0  # samples of this epoch already trained on (a mid-epoch resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        per_rank = self.n // self.world
        return iter(order[self.rank * per_rank:(self.rank + 1) * per_rank][self.skip:].tolist())

    def __len__(self) -> int:
        return self.n // self.world


def build_optimizer(model: PetFaceModel, lr: float, backbone_mult: float, weight_decay: float):
    backbone = list(model.embedder.backbone.parameters())
    head = list(model.embedder.head.parameters()) + list(model.arcface.parameters())
    return kernels.optimizer(torch.optim.AdamW, [{"params": backbone, "lr": lr * backbone_mult, "name": "backbone"},
                              {"params": head, "lr": lr, "name": "head"}], weight_decay=weight_decay)


def run_config(params: StudyParams, model_name: str, species: str, num_classes: int, fingerprint: str,
               repeat: int = 0) -> dict:
    """What `config.json` records: enough to rebuild the model and to know what it was trained on."""
    m = params.model(model_name)
    t = params.train
    return {"model": model_name, "species": species, "backbone": m.backbone, "head": m.head,
            "pretrained": m.pretrained, "image_size": params.image_size(model_name), "embedding_dim": t.embedding_dim,
            "dropout": t.dropout, "num_classes": num_classes, "epochs": m.epochs, "batch_size": t.batch_size,
            "lr": m.lr, "backbone_lr_mult": m.backbone_lr_mult, "weight_decay": t.weight_decay,
            "warmup_epochs": t.warmup_epochs, "eta_min": t.eta_min, "arcface_s": t.arcface_s,
            "arcface_m": t.arcface_m, "margin_warmup_frac": t.margin_warmup_frac, "partial_fc": t.partial_fc,
            "label_smoothing": t.label_smoothing, "grad_clip": t.grad_clip, "seed": params.train_seed(repeat), "repeat": repeat,
            "mean": list(data.IMAGENET_MEAN), "std": list(data.IMAGENET_STD), "channel_order": "RGB",
            "data_fingerprint": fingerprint,
            "params": params_to_dict(_portable(params))}


def _portable(params: StudyParams) -> StudyParams:
    """The params with paths inside the project relative to it (RunDir.params resolves them against the
    run's project), so the record reads the same after the checkout moves."""
    root = project_root(Layout(params).root)
    return relative_paths(params, root) if (root / "pyproject.toml").is_file() else params


# --------------------------------------------------------------------------- set-up
@dataclass
class Setup:
    """Everything one training run works with, built once by `build`."""
    name: str
    rt: runtime.Runtime
    model: PetFaceModel
    ddp_model: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    ds: data.FaceDataset
    sampler: EpochSampler
    loader: DataLoader
    steps_per_epoch: int
    total_steps: int
    epochs: int
    val_idx: data.IdentityIndex
    pairs: np.ndarray
    config: dict
    eval_kw: dict
    curves: Curves | None = None


def build(params: StudyParams, model_name: str, species: str, rt: runtime.Runtime, progress: bool,
          repeat: int = 0) -> Setup:
    """Data, model, optimiser, schedule and loader, in a fixed order (the order draws random numbers).
    Repeat r draws its initialisation, batch order and augmentation from seed + r; the split and the
    validation pairs are the study's."""
    mp, tp = params.model(model_name), params.train
    seed = params.train_seed(repeat)
    if not Layout(params).split_manifest(species).is_file():
        data.prepare_species(params, species, progress=progress and rt.main)
    splits = data.load_splits(params, species)
    train_idx, val_idx = splits["train"], splits["val"]
    fingerprint = data.splits_fingerprint(params, splits, ("train", "val"))
    size = params.image_size(model_name)

    embedder = create_embedder(mp.backbone, size, tp.embedding_dim, mp.head, mp.pretrained, tp.dropout)
    model = PetFaceModel(embedder, len(train_idx.identities), s=tp.arcface_s, m=0.0,
                         partial_fc=tp.partial_fc).to(rt.device)
    if tp.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, mp.lr, mp.backbone_lr_mult, tp.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=rt.amp_dtype == torch.float16)

    tf = data.train_transforms(size, normalize=rt.device.type != "cuda")
    cache = None
    if len(train_idx.paths) * size * size * 3 <= tp.cache_mb * 1e6:  # decoded and resized once, not every epoch
        cache = data.preload(train_idx.paths, size, params.data.max_pixels, progress=progress and rt.main)
    ds = data.FaceDataset(train_idx.paths, train_idx.labels, tf, seed=seed, max_pixels=params.data.max_pixels,
                          cache=cache)
    sampler = EpochSampler(len(ds), seed, rt.rank, rt.world)
    per_rank_batch = max(1, tp.batch_size // rt.world)
    loader = DataLoader(ds, batch_size=per_rank_batch, sampler=sampler, drop_last=True, num_workers=tp.num_workers,
                        pin_memory=tp.pin_memory and rt.device.type == "cuda", worker_init_fn=runtime.worker_init)
    steps = len(loader) if not tp.max_steps_per_epoch else min(len(loader), tp.max_steps_per_epoch)
    if steps == 0:
        raise data.DataError(f"{species}: {len(ds)} training images are fewer than one batch of {per_rank_batch}")
    total, warm = steps * mp.epochs, steps * tp.warmup_epochs
    ratios = [tp.eta_min / g["lr"] if g["lr"] else 0.0 for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [lambda s, r=r: lr_factor(s, total, warm, r) for r in ratios])
    ddp_model = nn.parallel.DistributedDataParallel(model) if rt.world > 1 else model

    pairs = metrics.make_pairs(val_idx.labels, params.data.n_pairs, seed=params.seed)
    eval_kw = dict(device=rt.device, channels_last=tp.channels_last, amp_dtype=rt.amp_dtype,
                   num_workers=tp.num_workers)
    config = run_config(params, model_name, species, len(train_idx.identities), fingerprint, repeat)
    config["embedder"] = embedder.config
    return Setup(f"{model_name}-{species}" + (f" (repeat {repeat})" if repeat else ""), rt, model, ddp_model, opt, sched,
                 scaler, ds, sampler, loader, steps, total, mp.epochs, val_idx, pairs, config, eval_kw)


def _config_diff(old: dict, new: dict) -> list[str]:
    old, new = json.loads(json.dumps(old, default=str)), json.loads(json.dumps(new, default=str))
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if k not in ("params", "embedder") and old.get(k) != new.get(k)]


def start_or_resume(s: Setup, out: Path, resume: bool, log) -> tuple[dict, float, int, dict | None]:
    """A new run writes config.json and validates the untrained model; a resumed one restores model,
    optimiser, schedule, scaler, history and RNG state. Returns (history, best val accuracy, first epoch,
    the interrupted epoch's progress or None)."""
    ckpt_path = out / "last_checkpoint.pt"
    if not resume:
        history = {"untrained_val": None, "epochs": []}
        if s.rt.main:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out / "config.json", s.config)
            history["untrained_val"] = validate(s)
        return history, -1.0, 0, None
    ck = load_torch(ckpt_path, map_location=s.rt.device)
    if diff := _config_diff(ck["config"], s.config):
        raise ResumeMismatch(f"{ckpt_path}: written with other settings or data, so resuming would mix two runs: "
                             f"{'; '.join(diff)}. Restore them, or train afresh without --resume")
    s.model.load_state_dict(ck["model"])
    s.opt.load_state_dict(ck["optimizer"])
    s.sched.load_state_dict(ck["scheduler"])
    s.scaler.load_state_dict(ck["scaler"])
    partial = ck.get("partial")
    if partial is None:
        runtime.set_rng_state(ck["rng"])
    if s.rt.main:
        log(f"resumed {out} " + (f"in epoch {ck['epoch'] + 1} at step {partial['step'] + 1}" if partial
                                 else f"after epoch {ck['epoch'] + 1}"))
    return ck["history"], ck["best"], ck["epoch"] + (0 if partial else 1), partial


# --------------------------------------------------------------------------- the loop
def validate(s: Setup) -> dict:
    """Design §5.4: embed the images the val pairs use, score the pairs by cosine, sweep the threshold;
    and the thresholds by false-accept rate over every impostor pair of those images."""
    used = np.unique(s.pairs[:, :2])
    emb = embed_images(s.model.embedder, [s.val_idx.paths[i] for i in used], s.config["image_size"], **s.eval_kw)
    pos = np.zeros(int(used.max()) + 1, np.int64)
    pos[used] = np.arange(len(used))
    scores = metrics.pair_scores(emb, pos[s.pairs[:, :2]])
    impostors = metrics.impostor_scores(emb, s.val_idx.labels[used])
    return {**metrics.best_threshold(scores, s.pairs[:, 2]), "far_thresholds": metrics.far_thresholds(impostors)}


def train_step(s: Setup, x: torch.Tensor, y: torch.Tensor, tp, epoch: int, step: int, out: Path) -> float:
    """One optimiser step on a batch (uint8 batches are normalised on the device first); returns the loss."""
    rt = s.rt
    s.model.arcface.m = margin_at(epoch * s.steps_per_epoch + step, s.total_steps, tp.arcface_m, tp.margin_warmup_frac)
    x = x.to(rt.device, non_blocking=True)
    if x.dtype == torch.uint8:
        x = data.normalize_batch(x)
    y = y.to(rt.device, non_blocking=True)
    if tp.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(rt.device.type, dtype=rt.amp_dtype or torch.bfloat16, enabled=rt.amp_dtype is not None):
        logits, target = s.ddp_model(x, y)
    loss = arcface_loss(logits.float(), target, tp.label_smoothing)
    if not torch.isfinite(loss):
        runtime.teardown(rt)
        raise TrainingDiverged(f"{s.name}: non-finite loss ({loss.item()}) at epoch {epoch + 1}, "
                               f"step {step + 1}; {out / 'last_checkpoint.pt'} is left as it was")
    s.opt.zero_grad(set_to_none=True)
    s.scaler.scale(loss).backward()
    s.scaler.unscale_(s.opt)
    nn.utils.clip_grad_norm_(s.model.parameters(), tp.grad_clip)
    s.scaler.step(s.opt)
    s.scaler.update()
    s.sched.step()
    return loss.item()


def train_one_epoch(s: Setup, epoch: int, tp, progress: bool, out: Path, start: dict | None = None,
                    on_step=None) -> dict:
    """One pass over the epoch's batches; returns the history entry (without validation).

    `start` resumes the epoch from a mid-epoch checkpoint's progress (next step, running sums, RNG state);
    `on_step(progress)` runs after every step but the last (mid-epoch checkpoints, signals)."""
    from .progress import bar as tqdm

    s.ds.set_epoch(epoch)
    s.sampler.set_epoch(epoch)
    first = start["step"] if start else 0
    s.sampler.skip = first * s.loader.batch_size
    s.model.train()
    rt = s.rt
    batches = iter(s.loader)
    if start:  # after the iterator's creation, which draws from torch's RNG in both runs
        runtime.set_rng_state(start["rng"])
    seen, loss_sum, waited = (start["seen"], start["loss_sum"], start["waited"]) if start else (0, 0.0, 0.0)
    t0 = time.time() - (start["elapsed"] if start else 0.0)
    t_wait = time.time()
    with tqdm(total=s.steps_per_epoch, initial=first, desc=f"{s.name} epoch {epoch + 1}/{s.epochs}",
              disable=not (progress and rt.main), mininterval=2.0, leave=False) as bar:
        for step, (x, y) in enumerate(batches, start=first):
            if step >= s.steps_per_epoch:
                break
            waited += time.time() - t_wait
            loss = train_step(s, x, y, tp, epoch, step, out)
            if s.curves:
                s.curves.step(epoch * s.steps_per_epoch + step + 1, loss, {g["name"]: g["lr"] for g in s.opt.param_groups},
                              s.model.arcface.m)
            seen += x.shape[0]
            loss_sum += loss
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{seen * rt.world / (time.time() - t0):.0f}")
            if on_step is not None and step + 1 < s.steps_per_epoch:
                on_step({"step": step + 1, "seen": seen, "loss_sum": loss_sum, "waited": waited,
                         "elapsed": time.time() - t0})
            t_wait = time.time()
    elapsed = time.time() - t0
    return {"epoch": epoch + 1, "loss": loss_sum / s.steps_per_epoch,
            "lr": {g["name"]: g["lr"] for g in s.opt.param_groups}, "margin": s.model.arcface.m,
            "images_per_s": seen * rt.world / elapsed, "train_time_s": elapsed,
            "data_wait_frac": waited / elapsed, "val": None}


def save_checkpoint(s: Setup, out: Path, epoch: int, history: dict, best: float, partial: dict | None = None) -> None:
    """last_checkpoint.pt: everything an exact resume needs, in types `weights_only` loading accepts.
    With `partial`, epoch `epoch` is under way (its progress and RNG state at the step boundary)."""
    ck = {"model": s.model.state_dict(), "optimizer": s.opt.state_dict(), "scheduler": s.sched.state_dict(),
          "scaler": s.scaler.state_dict(), "epoch": epoch, "history": history, "best": best,
          "rng": runtime.rng_state(), "config": s.config}
    if partial is not None:
        ck["partial"] = {**partial, "rng": ck["rng"]}
    save_torch(ck, out / "last_checkpoint.pt")


def save_epoch(s: Setup, out: Path, epoch: int, entry: dict, history: dict, best: float) -> float:
    """best_model.pt when validation improved, last_checkpoint.pt and history.json always (rank 0)."""
    if entry["val"] is not None and entry["val"]["accuracy"] > best:
        best = entry["val"]["accuracy"]
        save_torch({"model": s.model.state_dict(), "epoch": epoch, "val": entry["val"], "config": s.config},
              out / "best_model.pt")
    save_checkpoint(s, out, epoch, history, best)
    atomic_write_json(out / "history.json", history)
    return best


@dataclass
class TrainResult:
    history: dict
    model: PetFaceModel | None  # None when a finished run was reused
    out_dir: Path
    main: bool = True  # this process is rank 0 (the one that wrote the artefacts)


def train_model(params: StudyParams, model_name: str, species: str, out_dir: str | Path | None = None,
                resume: bool = False, progress: bool = True, stop_after_epoch: int | None = None,
                reuse: bool = False, repeat: int = 0, log=print) -> TrainResult:
    """Train one (model, species) pair into `out_dir` (default `Layout(params).run_dir(...)`).

    Returns the history and this rank's trained model (in memory; rank 0 also wrote the artefacts).
    `reuse`: when the run's stage stamp (`stages.train_check`) says it finished with these very inputs,
    return its history instead of training (wherever and however it was trained: `petface train`,
    torchrun, a study); when it started with them and stopped, resume from its last checkpoint.
    `stop_after_epoch` ends the run after that epoch as if it had been killed there (checkpoints
    written, no final export): what the resume test uses. `repeat` r trains with seed + r into its own
    run folder (`Layout(params).run_dir(model, species, r)`).
    """
    tp = params.train
    out = Path(out_dir) if out_dir else Layout(params).run_dir(model_name, species, repeat)
    check = stages.train_check(params, model_name, species, repeat)
    check.stamp = out / stages.STAMP
    if reuse and not resume and check.up_to_date() and RunDir(out).file("pet_embedder.pt").is_file():
        log(f"{model_name}-{species}: training up to date in {out} (same inputs); force it to train again")
        return TrainResult(RunDir(out).history(), None, out, True)
    if reuse and not resume and check.resumable() and (out / "last_checkpoint.pt").is_file():
        log(f"{out.name}: an earlier run with these inputs stopped; resuming from its last checkpoint")
        resume = True
    if resume and not (out / "last_checkpoint.pt").is_file():
        raise FileNotFoundError(f"{out / 'last_checkpoint.pt'}: no checkpoint to resume from (train without --resume)")
    rt = runtime.setup(tp.device, tp.amp)
    kernels = reproducible.apply(params.reproducible, rt.device)
    runtime.seed_everything(params.train_seed(repeat))
    s = build(params, model_name, species, rt, progress, repeat)
    check = stages.train_check(params, model_name, species, repeat)  # now that the splits exist
    check.stamp = out / stages.STAMP
    if rt.main:
        check.write("started", **_provenance(rt, kernels))
    history, best, start_epoch, partial = start_or_resume(s, out, resume, log)
    history["kernels"] = kernels
    s.curves = Curves(out, rt.main, resume_step=start_epoch * s.steps_per_epoch + (partial or {}).get("step", 0) + 1
                      if resume else None)
    ck = Checkpoints(tp.checkpoint_minutes)

    def on_step(epoch: int, progress_: dict) -> None:
        if rt.main and ck.due():
            save_checkpoint(s, out, epoch, history, best, progress_)
            ck.last = time.time()
        if ck.signum is not None:
            _interrupted(s, out, ck.signum, f"epoch {epoch + 1}, step {progress_['step']}", params, model_name, species)

    with stop_on_signals(ck):
        for epoch in range(start_epoch, s.epochs):
            entry = train_one_epoch(s, epoch, tp, progress, out, partial, lambda p, e=epoch: on_step(e, p))
            partial = None
            if rt.main and ((epoch + 1) % tp.val_every == 0 or epoch + 1 == s.epochs):
                entry["val"] = validate(s)
            history["epochs"].append(entry)
            if s.curves:
                s.curves.epoch((epoch + 1) * s.steps_per_epoch, entry)
            if rt.main:
                best = save_epoch(s, out, epoch, entry, history, best)
                ck.last = time.time()
                v = entry["val"]
                log(f"{s.name} epoch {epoch + 1}/{s.epochs}: loss {entry['loss']:.4f}, margin {entry['margin']:.3f}, "
                    f"{entry['images_per_s']:.0f} img/s" + (f", val acc {v['accuracy']:.4f} @ {v['threshold']:.2f}" if v else ""))
            if ck.signum is not None and epoch + 1 < s.epochs:
                _interrupted(s, out, ck.signum, f"the end of epoch {epoch + 1}", params, model_name, species)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < s.epochs:
                s.curves.close()
                runtime.teardown(rt)
                return TrainResult(history, s.model, out, rt.main)
    s.curves.close()
    if rt.main:
        finalize(out)
        check.write("finished", **_provenance(rt, kernels))
    runtime.teardown(rt)
    return TrainResult(history, s.model, out, rt.main)


def _provenance(rt: runtime.Runtime, kernels) -> dict:
    """How and where the run computed: recorded beside its inputs, never compared."""
    return {"device": str(rt.device), "processes": rt.world, "torch": torch.__version__, "kernels": kernels}


def _interrupted(s: Setup, out: Path, signum: int, where: str, params: StudyParams, model: str, species: str):
    s.curves.close()
    runtime.teardown(s.rt)
    raise TrainingInterrupted(f"{s.name}: {signal.Signals(signum).name} at {where}; checkpoint {out / 'last_checkpoint.pt'}"
                              f" written; resume with: petface train PARAMS --model {model} --species {species} --resume",
                              signum)


def finalize(out: Path) -> None:
    """pet_embedder.pt (the best model's embedder weights) and pet_embedder.onnx beside it (design §8.2)."""
    from .onnx_file import export_onnx

    run = RunDir(out)
    state = load_torch(out / "best_model.pt")["model"]
    emb_state = {k[len("embedder."):]: v for k, v in state.items() if k.startswith("embedder.")}
    save_torch(emb_state, out / "pet_embedder.pt")
    embedder = embedder_from_config(run.config()["embedder"], emb_state)
    export_onnx(embedder, out / "pet_embedder.onnx", metadata=run.deploy_metadata())


def train_repeats(params: StudyParams, model_name: str, species: str, **kw) -> list[TrainResult]:
    """Every training repeat of one (model, species) run (`params.repeats`), repeat 0 first."""
    return [train_model(params, model_name, species, repeat=r, **kw) for r in range(params.repeats(model_name, species))]


def repeat_summary(results: list[TrainResult]) -> dict:
    """Best validation figures per repeat, with the mean and sample standard deviation over repeats."""
    from .run import summary

    rows = [{"repeat": i, "run": r.out_dir.name, **summary(r.history)} for i, r in enumerate(results)]
    acc = np.array([r["val_accuracy"] for r in rows if r["val_accuracy"] is not None], dtype=float)
    return {"rows": rows, "val_accuracy_mean": float(acc.mean()) if len(acc) else None,
            "val_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else None, "n": int(len(acc))}


def headline(results: list[TrainResult]) -> dict:
    """The study index's figures for one run: repeat 0's validation next to the untrained model's, and
    the spread over seeds where there are repeats."""
    from .run import summary

    s, r = summary(results[0].history), repeat_summary(results)
    out = {"val accuracy": s["val_accuracy"], "untrained": s["untrained_val_accuracy"], "threshold": s["val_threshold"],
           "images/s": round(s["images_per_s"])}
    if r["n"] > 1:
        out[f"val acc over {r['n']} seeds"] = f"{r['val_accuracy_mean']:.4f} ± {r['val_accuracy_std']:.4f} sd"
    return out

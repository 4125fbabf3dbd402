"""Live training curves where practitioners look: TensorBoard event files in the run folder
(`tensorboard --logdir outputs/<study>/runs`). Per step: loss, learning rates, ArcFace margin; per epoch:
mean loss, images/s, data-wait fraction, validation accuracy and threshold. Written by rank 0 only; a
resumed run drops what the old files hold after the resume point (`purge_step`), so curves never fold
back on themselves. Nothing reads these files back: they are a view, history.json is the record."""
from __future__ import annotations

from pathlib import Path

PATTERN = "events.out.tfevents.*"


class Curves:
    def __init__(self, out: Path, enabled: bool, resume_step: int | None = None):
        self.writer = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        out.mkdir(parents=True, exist_ok=True)
        if resume_step is None:  # a fresh run: the old run's curves would mix with the new ones
            for f in out.glob(PATTERN):
                f.unlink()
        self.writer = SummaryWriter(str(out), purge_step=resume_step, flush_secs=10)

    def step(self, step: int, loss: float, lrs: dict[str, float], margin: float) -> None:
        if self.writer:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/margin", margin, step)
            for name, lr in lrs.items():
                self.writer.add_scalar(f"lr/{name}", lr, step)

    def epoch(self, step: int, entry: dict) -> None:
        """One history entry (`train.train_one_epoch`, with its validation when there was one)."""
        if not self.writer:
            return
        w = self.writer
        w.add_scalar("epoch/loss", entry["loss"], step)
        w.add_scalar("epoch/images_per_s", entry["images_per_s"], step)
        w.add_scalar("epoch/data_wait_frac", entry["data_wait_frac"], step)
        if entry.get("val"):
            w.add_scalar("val/accuracy", entry["val"]["accuracy"], step)
            w.add_scalar("val/threshold", entry["val"]["threshold"], step)
        w.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()

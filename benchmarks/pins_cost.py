"""What the reproducible-CPU pins cost: training-step throughput (img/s) of MNv3 and MFN with the pins
and without, side by side in one run, each setting in its own fresh process (the pins act at import).

  .venv/bin/python benchmarks/pins_cost.py [--size 64] [--steps 8] [--smoke]

Prints a table (median img/s of the timed steps, and the ratio pinned / unpinned).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from petlib import reproducible

CHILD = r"""
import json, sys
import torch
from petlib import losses, models, reproducible
from petlib.latency import timed
pinned, size, steps, batch = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
reproducible.apply(pinned, torch.device("cpu"))
out = {}
for backbone in ("mobilenetv3_small_100", "mobilefacenet"):
    torch.manual_seed(0)
    m = models.PetFaceModel(models.create_embedder(backbone, size), 640).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 640, (batch,))
    def step():
        loss = losses.arcface_loss(*m(x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    out[backbone] = batch / timed(step, steps, warmup=2)["median"]
print(json.dumps({"settings": reproducible.settings(), "img_s": out}))
"""


def run(pinned: bool, size: int, steps: int, batch: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in reproducible.ENV}
    if pinned:
        reproducible.pin_env(env)
    r = subprocess.run([sys.executable, "-c", CHILD, "1" if pinned else "0", str(size), str(steps), str(batch)],
                       capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--smoke", action="store_true", help="32 px, batch 4, 1 step: checks that it runs")
    a = ap.parse_args()
    if a.smoke:
        a.size, a.steps, a.batch = 32, 1, 4
    loose, pinned = run(False, a.size, a.steps, a.batch), run(True, a.size, a.steps, a.batch)
    print(f"| training step, batch {a.batch}, {a.size} px | unpinned img/s | pinned img/s | pinned / unpinned |")
    print("|---|---|---|---|")
    for b in loose["img_s"]:
        u, p = loose["img_s"][b], pinned["img_s"][b]
        print(f"| {b} | {u:.0f} | {p:.0f} | {p / u:.2f} |")
    print(f"unpinned: {loose['settings']}\npinned: {pinned['settings']}")


if __name__ == "__main__":
    main()

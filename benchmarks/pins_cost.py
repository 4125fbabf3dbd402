"""What the reproducible-CPU pins cost: training-step throughput (img/s) of MNv3 and MFN unpinned, pinned
with the linear layers on MKL (the pins before issue 31), and pinned as shipped (linear layers through
oneDNN, `petlib.kernels`), side by side in one run, each setting in its own fresh process (the pins act
at import).

  .venv/bin/python benchmarks/pins_cost.py [--size 64] [--steps 8] [--smoke]

Prints a table (median img/s of the timed steps, and the ratios to unpinned and to MKL linear layers).
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
from petlib import kernels, losses, models, reproducible
from petlib.latency import timed
pinned, size, steps, batch, route = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
reproducible.apply(pinned, torch.device("cpu"))
kernels.route(route)
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


def run(pinned: bool, size: int, steps: int, batch: int, route: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in reproducible.ENV}
    if pinned:
        reproducible.pin_env(env)
    r = subprocess.run([sys.executable, "-c", CHILD, *(str(int(v)) for v in (pinned, size, steps, batch, route))],
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
    loose = run(False, a.size, a.steps, a.batch, route=False)
    mkl = run(True, a.size, a.steps, a.batch, route=False)
    pinned = run(True, a.size, a.steps, a.batch, route=True)
    print(f"| training step, batch {a.batch}, {a.size} px | unpinned img/s | pinned, linear on MKL | "
          "pinned, linear on oneDNN (shipped) | shipped / unpinned | shipped / linear on MKL |")
    print("|---|---|---|---|---|---|")
    for b in loose["img_s"]:
        u, m, p = loose["img_s"][b], mkl["img_s"][b], pinned["img_s"][b]
        print(f"| {b} | {u:.0f} | {m:.0f} | {p:.0f} | {p / u:.2f} | {p / m:.2f} |")
    print(f"unpinned: {loose['settings']}\npinned: {pinned['settings']}")


if __name__ == "__main__":
    main()

"""Run by test_train.py under torchrun (2 CPU processes, gloo): each rank saves its final parameters.

BatchNorm running statistics are per-rank buffers (DDP broadcasts rank 0's at each forward), so only
parameters must agree exactly."""
import os
import sys

import torch

from petlib.config import load_params
from petlib.train import train_model

params, out = sys.argv[1], sys.argv[2]
result = train_model(load_params(params), "mnv3", "cat", out_dir=out, progress=False, log=lambda *_: None)
torch.save({k: v.detach() for k, v in result.model.named_parameters()}, os.path.join(out, f"rank{os.environ['RANK']}.pt"))

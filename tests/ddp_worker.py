"""Run by test_train.py under torchrun (2 CPU processes, gloo): each rank saves its final weights."""
import os
import sys

import torch

from petlib.config import load_params
from petlib.train import train_model

params, out = sys.argv[1], sys.argv[2]
result = train_model(load_params(params), "mnv3", "cat", out_dir=out, progress=False, log=lambda *_: None)
torch.save(result.model.state_dict(), os.path.join(out, f"rank{os.environ['RANK']}.pt"))

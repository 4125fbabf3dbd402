"""Same numbers whatever kernels the machine would pick: the CI training in fresh processes, pinned and
with an environment that asks for other kernels, must give bit-equal losses and weights."""
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

from petlib import reproducible

pytestmark = pytest.mark.slow

# What another machine (or a user's shell) might ask for: ATen's generic kernels, oneDNN at SSE4.1,
# MKL's automatic branch, one thread.
OTHER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "AUTO",
                 "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _train(folder, repo, env_extra: dict, *sets) -> dict:
    """`petface train` of params/ci.yaml in a fresh process; losses (exact reprs) and a weights hash."""
    env = {k: v for k, v in os.environ.items() if k not in reproducible.ENV}
    env.update(env_extra)
    args = [f"output_dir={folder}", f"reports_dir={folder}/reports", f"data.synth_dir={folder.parent}/data", *sets]
    r = subprocess.run([sys.executable, "-m", "petlib.cli", "train", str(repo / "params" / "ci.yaml"),
                        *[x for a in args for x in ("--set", a)]], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    run = folder / "ci" / "runs" / "mnv3-cat"
    hist = json.loads((run / "history.json").read_text())
    state = torch.load(run / "pet_embedder.pt", weights_only=True)
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    return {"losses": [repr(e["loss"]) for e in hist["epochs"]], "weights": digest, "kernels": hist["kernels"],
            "val": [repr(e["val"]["accuracy"]) for e in hist["epochs"] if e["val"]]}


@pytest.mark.timeout(900)
def test_pinned_training_is_bit_equal_whatever_kernels_the_environment_asks_for(tmp_path, repo):
    pinned = _train(tmp_path / "pinned", repo, {})
    other = _train(tmp_path / "other", repo, OTHER_KERNELS)
    assert pinned["kernels"]["pinned"] and other["kernels"]["pinned"]
    assert other["kernels"]["aten_capability"] == "AVX2" and other["kernels"]["torch_threads"] == reproducible.THREADS
    assert pinned["losses"] == other["losses"] and pinned["val"] == other["val"]
    assert pinned["weights"] == other["weights"]
    # The test can fail: without the pins, the same environment changes the numbers.
    loose = _train(tmp_path / "loose", repo, OTHER_KERNELS, "reproducible=false")
    assert not loose["kernels"]["reproducible"] and loose["kernels"]["aten_capability"] == "DEFAULT"
    assert loose["losses"] != pinned["losses"] or loose["weights"] != pinned["weights"]


def test_pin_env_sets_every_variable_and_reports_changes():
    env = {"ATEN_CPU_CAPABILITY": "avx512", "PATH": "/bin"}
    changed = reproducible.pin_env(env)
    assert {k: env[k] for k in reproducible.ENV} == reproducible.ENV and env["PATH"] == "/bin"
    assert changed["ATEN_CPU_CAPABILITY"] == ("avx512", "avx2") and changed["MKL_CBWR"] == (None, "COMPATIBLE")
    assert reproducible.pin_env(env) == {}


def test_gpu_runs_are_not_given_cpu_pins():
    assert reproducible.wants_cpu_pins("cpu") and not reproducible.wants_cpu_pins("cuda:0")

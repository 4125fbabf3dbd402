"""Same numbers whatever kernels the machine would pick: the CI training in fresh processes, pinned and
with an environment that asks for other kernels, must give bit-equal losses and weights, and both they and
the kernel digests must equal the golden vector (petlib/golden-kernels.json) recorded on another machine."""
import json
import os
import subprocess
import sys

import pytest

from petlib import kernel_digest, reproducible

pytestmark = pytest.mark.slow

# What another machine (or a user's shell) might ask for: ATen's generic kernels, oneDNN at SSE4.1,
# MKL's automatic branch, one thread.
OTHER_KERNELS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "AUTO",
                 "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in reproducible.ENV}
    return {**env, **extra}


@pytest.mark.timeout(900)
def test_pinned_training_is_bit_equal_whatever_kernels_the_environment_asks_for(tmp_path):
    pinned = kernel_digest.training_vector(tmp_path / "pinned", _env({}))
    other = kernel_digest.training_vector(tmp_path / "other", _env(OTHER_KERNELS))
    assert pinned["kernels"]["pinned"] and other["kernels"]["pinned"]
    assert other["kernels"]["aten_capability"] == "AVX2" and other["kernels"]["torch_threads"] == reproducible.THREADS
    assert pinned["losses"] == other["losses"] and pinned["val"] == other["val"]
    assert pinned["weights"] == other["weights"]
    # No matrix product of pinned training goes to MKL (its sgemm rounds by CPU vendor).
    assert pinned["mkl_gemm_calls"] == 0 and pinned["kernels"]["linear_layers"] == "oneDNN"
    # The golden vector: a machine whose kernels round differently from the recorded ones fails here.
    golden = kernel_digest.golden()["ci_training"]
    got = {k: pinned[k] for k in golden}
    assert got == golden, (f"the pinned CI training on this machine ({got}) differs from the golden vector "
                           f"({golden}): its numbers will not match the documented ones (docs/reproducibility.md)")
    # The test can fail: without the pins, the same environment changes the numbers and MKL computes.
    loose = kernel_digest.training_vector(tmp_path / "loose", _env(OTHER_KERNELS), "reproducible=false")
    assert not loose["kernels"]["reproducible"] and loose["kernels"]["aten_capability"] == "DEFAULT"
    assert loose["losses"] != pinned["losses"] or loose["weights"] != pinned["weights"]
    assert loose["mkl_gemm_calls"] > 0


def test_kernel_digests_match_the_golden_vector(tmp_path):
    """`petface digest` in a fresh process: every pinned op and both backbones as the golden machine."""
    r = subprocess.run([sys.executable, "-m", "petlib.cli", "digest", "--json"], capture_output=True, text=True,
                       env=_env(OTHER_KERNELS), timeout=600)
    out = json.loads(r.stdout)
    assert out["pinned"], out
    assert set(out["ops"]) == set(kernel_digest.golden()["ops"])
    assert not out["differ"], (f"this machine's kernels round differently from the golden vector's in {out['differ']}: "
                               "pinned numbers will not match the documented ones (docs/reproducibility.md)")
    assert r.returncode == 0


def test_compare_names_the_digests_that_differ():
    ref = {"ops": {"a": "1", "b": "2", "c": "3"}}
    result = kernel_digest.compare({"a": "1", "b": "9", "d": "4"}, ref)
    assert result == {"equal": ["a"], "differ": ["b"], "missing": ["d"]}
    assert "NOT" in kernel_digest.verdict(result) and "b, d" in kernel_digest.verdict(result)
    assert "reproduces" in kernel_digest.verdict(kernel_digest.compare({"a": "1"}, ref))


def test_pin_env_sets_every_variable_and_reports_changes():
    env = {"ATEN_CPU_CAPABILITY": "avx512", "PATH": "/bin"}
    changed = reproducible.pin_env(env)
    assert {k: env[k] for k in reproducible.ENV} == reproducible.ENV and env["PATH"] == "/bin"
    assert changed["ATEN_CPU_CAPABILITY"] == ("avx512", "avx2") and changed["MKL_CBWR"] == (None, "COMPATIBLE")
    assert reproducible.pin_env(env) == {}


def test_gpu_runs_are_not_given_cpu_pins():
    assert reproducible.wants_cpu_pins("cpu") and not reproducible.wants_cpu_pins("cuda:0")


def test_the_report_header_says_whether_this_machine_reproduces_the_golden_vector():
    from petlib import report

    pins = {k.lower(): v for k, v in reproducible.ENV.items()}
    kernels = {**pins, "aten_capability": "AVX2", "torch_threads": 2, "mkldnn_enabled": True, "linear_layers": "oneDNN"}
    differ = kernel_digest.verdict({"equal": ["a"], "differ": ["conv1x1"], "missing": []})
    env = {"params": {"reproducible": True}, "device": {"kernels": kernels, "cpu_flags": ["avx2"], "golden": differ}}
    line = report._kernels(env)
    assert line.startswith("pinned") and "does NOT reproduce the golden kernel vector: conv1x1" in line
    assert "linear layers through oneDNN (not MKL" in line
    env["device"]["kernels"] = {**kernels, "aten_capability": "DEFAULT"}
    assert report._kernels(env).startswith("NOT pinned") and "golden" not in report._kernels(env)

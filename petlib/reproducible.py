"""Same numbers on any x86-64 machine: the CPU code paths that decide rounding, pinned.

PyTorch, oneDNN and MKL each pick kernels for the CPU they find (AVX2, AVX-512, ...) and split
reductions by thread count; on this project's CI training those choices moved the losses (README,
"Reproducibility"). With `reproducible: true` (the default) a CPU run therefore uses: ATen's AVX2
kernels (`ATEN_CPU_CAPABILITY`), oneDNN capped at AVX2 (`ONEDNN_MAX_CPU_ISA`), MKL's "compatible"
code path (`MKL_CBWR`), a fixed number of threads, and no MKL at all for what is trained: MKL's sgemm
still rounds differently on Intel and AMD CPUs under those pins, so `kernels` sends linear layers to
oneDNN, whose convolutions gave the same digests on both (docs/reproducibility.md; the golden vector in
petlib/golden-kernels.json, checked by `petface digest`).

The variables are read when the libraries initialise, so they must be in the environment before torch
is imported: the study runner puts them into every notebook kernel's environment, the `petface`
command sets them before it imports torch, and `make` installs the project's Jupyter kernel with them.
`apply` then sets what can be set at run time and reports whether the pins are in effect.

This module imports no torch at import time.
"""
from __future__ import annotations

import os
import sys

THREADS = 2
ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": str(THREADS),
    "MKL_NUM_THREADS": str(THREADS),
}


def wants_cpu_pins(device: str) -> bool:
    """Whether a run with `train.device` = `device` computes on the CPU (torch-free: for the runner)."""
    if device == "cpu":
        return True
    if device.startswith("cuda"):
        return False
    return not os.path.exists("/dev/nvidiactl")


def pin_env(environ=os.environ) -> dict:
    """Put the pins into `environ` (default: this process, for what it starts and imports next).
    Returns the variables that changed, {name: (old, new)}."""
    changed = {k: (environ.get(k), v) for k, v in ENV.items() if environ.get(k) != v}
    environ.update(ENV)
    return changed


def cpu_flags() -> list[str]:
    """The CPU's SIMD flags that matter to kernel choice (from /proc/cpuinfo; empty elsewhere)."""
    wanted = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile")
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [w for w in wanted if w in flags]


def apply(enabled: bool, device) -> dict:
    """Make this process's computation reproducible as far as it can be from here, and say how.

    CPU: a fixed number of threads (set at run time); the environment pins must already be in place
    (`pinned` says whether they are). CUDA: cuDNN's deterministic algorithms (same numbers run to run on
    one GPU model and driver, not across devices)."""
    import torch

    from . import kernels

    kind = getattr(device, "type", str(device))
    state = {"reproducible": bool(enabled), "device": kind}
    kernels.route(enabled and kind == "cpu")
    if not enabled:
        return {**state, **settings()}
    if kind == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
        return {**state, **settings()}
    torch.set_num_threads(THREADS)
    s = settings()
    missing = [k for k, v in ENV.items() if os.environ.get(k) != v]
    pinned = not missing and s["aten_capability"] == "AVX2"
    if not pinned:
        why = (f"environment lacks {missing} (set them before torch is imported: run through `petface`, the "
               f"study runner or the petface-study kernel)" if missing else
               f"ATen runs {s['aten_capability']} kernels (this CPU has no AVX2, or torch was imported first)")
        print(f"warning: CPU kernels are not pinned: {why}; numbers may differ on other machines", file=sys.stderr)
    return {**state, "pinned": pinned, **s}


def settings() -> dict:
    """What decides rounding in this process now: ATen's kernel level, the pin variables, threads, oneDNN,
    and which library computes the linear layers (`kernels`)."""
    import torch

    from . import kernels

    return {"aten_capability": torch.backends.cpu.get_cpu_capability(),
            **{k.lower(): os.environ.get(k) for k in ENV},
            "torch_threads": torch.get_num_threads(), "mkldnn_enabled": torch.backends.mkldnn.enabled,
            "linear_layers": "oneDNN" if kernels.routed() else "BLAS"}

"""What every report opens with: params, git commit, package versions, device, seed, data fingerprint."""
from __future__ import annotations

import html
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import yaml

from .config import StudyParams, params_to_dict

PACKAGES = ["torch", "torchvision", "timm", "albumentations", "onnxruntime", "onnx", "numpy", "scikit-learn",
            "faiss-cpu", "opencv-python-headless", "papermill"]
REPO = Path(__file__).resolve().parent.parent


def git_state(repo: Path = REPO) -> dict:
    """Commit and dirty flag; 'unknown' outside a git checkout (e.g. an installed wheel)."""
    def run(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
    try:
        head = run("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": "unknown", "dirty": None}
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(params: StudyParams | None = None) -> dict:
    """The machine, and the kernel settings this process computes with (pinned first when the params ask)."""
    import torch

    from . import reproducible
    from .runtime import resolve_device

    kernels = (reproducible.apply(params.reproducible, resolve_device(params.train.device)) if params
               else reproducible.settings())
    info = {"cpu": cpu_model(), "cpu_flags": reproducible.cpu_flags(), "cpu_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "kernels": kernels}
    if kernels.get("pinned"):
        from . import kernel_digest as kd

        info["golden"] = kd.verdict(kd.compare(kd.compute(quick=True)["ops"]))
    if torch.cuda.is_available():
        info["gpu"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
    else:
        info["gpu"] = "none"
    return info


def environment(params: StudyParams, fingerprints: dict[str, str] | None = None) -> dict:
    return {"params": params_to_dict(params), "git": git_state(), "versions": versions(), "device": device_info(params),
            "seed": params.seed, "data_fingerprint": fingerprints or {}}


def header_html(env: dict, title: str) -> str:
    """An HTML block for the top of a notebook report."""
    g = env["git"]
    dirty = " (dirty: uncommitted changes)" if g.get("dirty") else ""
    dev = env["device"]
    gpu = dev["gpu"] if isinstance(dev["gpu"], str) else ", ".join(dev["gpu"])
    vers = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    fps = ", ".join(f"{k}: <code>{v}</code>" for k, v in env["data_fingerprint"].items()) or "n/a"
    params = html.escape(yaml.safe_dump(env["params"], sort_keys=False))
    return (f"<h2>{html.escape(title)}</h2><table>"
            f"<tr><th align=left>git commit</th><td><code>{g['commit']}</code>{dirty}</td></tr>"
            f"<tr><th align=left>seed</th><td>{env['seed']}</td></tr>"
            f"<tr><th align=left>data fingerprint</th><td>{fps}</td></tr>"
            f"<tr><th align=left>device</th><td>{html.escape(dev['cpu'])}, {dev['cpu_threads']} torch threads; "
            f"GPU: {html.escape(gpu)}</td></tr>"
            f"<tr><th align=left>CPU kernels</th><td>{html.escape(_kernels(env))}</td></tr>"
            f"<tr><th align=left>versions</th><td>{html.escape(vers)}</td></tr></table>"
            f"<details><summary>resolved params</summary><pre>{params}</pre></details>")


def _kernels(env: dict) -> str:
    """The CPU settings that decide rounding, and whether the study's pins are in effect."""
    from . import reproducible

    dev, k = env["device"], env["device"]["kernels"]
    pins = {name.lower(): value for name, value in reproducible.ENV.items()}
    pinned = all(k.get(n) == v for n, v in pins.items()) and k["aten_capability"] == "AVX2"
    state = ("pinned (reproducible: true): the documented numbers on any x86-64 CPU that reproduces the golden "
             f"kernel vector (petlib/golden-kernels.json; `petface digest` checks a machine in full): "
             f"{dev.get('golden', 'not checked')}" if pinned else
             "NOT pinned: numbers may differ on another machine" if env["params"].get("reproducible") else
             "not pinned (reproducible: false)")
    vals = ", ".join(f"{n}={k.get(n)}" for n in pins)
    return (f"{state}; ISA flags: {' '.join(dev['cpu_flags']) or 'unknown'}; ATen kernels {k['aten_capability']}; "
            f"{vals}; torch threads {k['torch_threads']}; oneDNN (mkldnn) {'on' if k['mkldnn_enabled'] else 'off'}; "
            f"linear layers through {k.get('linear_layers', 'BLAS')}"
            + (" (not MKL, whose rounding follows the CPU vendor)" if k.get("linear_layers") == "oneDNN" else ""))


def show_header(params: StudyParams, title: str, fingerprints: dict[str, str] | None = None) -> dict:
    """Display the report header in a notebook and return the environment record."""
    from IPython.display import HTML, display

    env = environment(params, fingerprints)
    display(HTML(header_html(env, title)))
    return env


def write_headline(path: str | Path | None, figures: dict) -> None:
    """Called by a notebook: the figures the study index shows for it (no-op when run by hand)."""
    if path:
        from .io import atomic_write_json
        atomic_write_json(path, figures)

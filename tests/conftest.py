import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def make_params():
    """params/ci.yaml written into `folder` with its outputs, reports and data there (or in `synth_dir`),
    top-level keys replaced by `top`, then loaded with `--set`-style `overrides`."""
    import yaml

    from petlib.config import load_params

    def make(folder: Path, *overrides: str, synth_dir: Path | None = None, **top):
        raw = yaml.safe_load((REPO / "params" / "ci.yaml").read_text())
        raw.update(output_dir=str(folder / "outputs"), reports_dir=str(folder / "reports"), **top)
        raw["data"]["synth_dir"] = str(synth_dir or folder / "data")
        f = folder / "p.yaml"
        f.write_text(yaml.safe_dump(raw))
        return load_params(f, list(overrides))
    return make


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """A small synthetic cat set shared by the data tests (generated once per session)."""
    from petlib import synth

    root = tmp_path_factory.mktemp("synth") / "cat"
    synth.generate(root, "cat", n_identities=30, image_size=64, seed=3, progress=False)
    return root


@pytest.fixture(scope="session")
def trained_ci(tmp_path_factory, make_params):
    """params/ci.yaml trained once (mnv3 on synthetic cats) in a temp folder, shared by later-stage tests."""
    from petlib import train

    p = make_params(tmp_path_factory.mktemp("trained"))
    train.train_model(p, "mnv3", "cat", progress=False, log=lambda *_: None)
    return p


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, repo) -> tuple[Path, list[str]]:
    """A small study run to the end by the runner (two models on the CI cats, ONNX export of one), its
    params (`studies.write_study`) at the folder's top with relative paths, and the runner's log lines
    (a heartbeat every 0.3 s, so each running notebook logs its progress)."""
    from petlib.config import load_params
    from petlib.study import run_study
    from studies import write_study

    folder, logs = tmp_path_factory.mktemp("study"), []
    assert run_study(load_params(write_study(folder, repo)), log=logs.append, heartbeat_s=0.3) == 0, logs
    return folder, logs


@pytest.fixture(scope="session")
def finished(finished_run) -> Path:
    """The shared finished study's folder. Tests copy it before changing it."""
    return finished_run[0]

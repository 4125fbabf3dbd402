import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """A small synthetic cat set shared by the data tests (generated once per session)."""
    from petlib import synth

    root = tmp_path_factory.mktemp("synth") / "cat"
    synth.generate(root, "cat", n_identities=30, image_size=64, seed=3, progress=False)
    return root


@pytest.fixture(scope="session")
def trained_ci(tmp_path_factory):
    """params/ci.yaml trained once (mnv3 on synthetic cats) in a temp folder, shared by later-stage tests."""
    import yaml

    from petlib import train
    from petlib.config import load_params

    tmp = tmp_path_factory.mktemp("trained")
    raw = yaml.safe_load((REPO / "params" / "ci.yaml").read_text())
    raw.update(output_dir=str(tmp / "outputs"), reports_dir=str(tmp / "reports"))
    raw["data"]["synth_dir"] = str(tmp / "data")
    f = tmp / "p.yaml"
    f.write_text(yaml.safe_dump(raw))
    p = load_params(f)
    train.train_model(p, "mnv3", "cat", progress=False, log=lambda *_: None)
    return p

import os
import sys
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

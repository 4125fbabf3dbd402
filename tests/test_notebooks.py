"""Notebooks are committed without outputs and with exactly one cell tagged `parameters`."""
import json

import pytest

from petlib.study import PLAN


def _notebooks(repo):
    return sorted((repo / "notebooks").glob("*.ipynb"))


def test_every_planned_notebook_exists(repo):
    names = {p.stem for p in _notebooks(repo)}
    assert set(PLAN) <= names


@pytest.mark.parametrize("name", sorted(PLAN))
def test_hygiene(repo, name):
    path = repo / "notebooks" / f"{name}.ipynb"
    if not path.exists():
        pytest.skip(f"{name} not part of this checkout")
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "outputs must be stripped"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    src = "".join(tagged[0]["source"])
    assert "params_path" in src and "headline_path" in src
    body = "".join("".join(c["source"]) for c in code)
    assert "def " not in body and "class " not in body, "logic belongs in petlib, not in notebook cells"

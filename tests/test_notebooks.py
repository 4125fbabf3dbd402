"""Notebooks are committed without outputs and with exactly one cell tagged `parameters`."""
import json

import pytest

from petlib.stage_table import PLAN


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


@pytest.mark.parametrize("name", sorted(PLAN))
def test_notebook_names_the_project_kernel_and_says_so_without_it(repo, name):
    """Opened from a JupyterLab of another environment, the first cell must say which kernel to pick."""
    import subprocess
    import sys

    nb = json.loads((repo / "notebooks" / f"{name}.ipynb").read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "petface-study"
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    first_line = code[1].splitlines()[0]
    assert first_line.startswith("from petlib import notebook  #") and "petface-study (.venv)" in first_line, \
        "where petlib itself is not importable (JupyterLab runs in notebooks/), the traceback shows this comment"
    # -S: no site-packages, i.e. a Python that sees the repository but not the project's environment
    r = subprocess.run([sys.executable, "-S", "-c", code[0] + "\n" + code[1]], capture_output=True, text=True,
                       cwd=repo)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError") and "petface-study (.venv)" in last and "make lab" in last, last

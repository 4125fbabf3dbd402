"""The small finished study several test files share (tests/conftest.py's `finished`): its params."""
from pathlib import Path

import yaml

ALL = ("01_data", "02_train", "03_evaluate", "04_compare", "05_export")


def write_study(folder: Path, repo: Path, notebooks=ALL, **changes) -> Path:
    """The study's params file in `folder`, its paths relative (to a project marker there), with changes
    (`models__b__epochs=2` sets model b's epochs)."""
    raw = yaml.safe_load((repo / "params" / "ci.yaml").read_text())
    raw["notebooks"] = list(notebooks)
    raw["models"] = [raw["models"][0], {**raw["models"][0], "name": "b", "lr": 2.0e-3, "epochs": 1}]
    raw["export"] = {"formats": ["onnx"], "runs": ["mnv3-cat"]}
    for dotted, value in changes.items():
        node, *path, last = [raw, *dotted.split("__")]
        for part in path:
            node = node[part] if not isinstance(node, list) else next(m for m in node if m["name"] == part)
        node[last] = value
    (folder / "pyproject.toml").write_text("# marks the project root the params' relative paths start from\n")
    f = folder / "params.yaml"
    f.write_text(yaml.safe_dump(raw))
    return f

"""pyproject.toml and environment.yml must name the same packages with the same pins."""
import tomllib

import yaml


def test_environment_yml_matches_pyproject(repo):
    deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((repo / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = [p for p in pip_section if not p.startswith("-e")]
    assert sorted(pins) == sorted(deps)
    assert "python=3.11" in env["dependencies"]
    assert any(p.startswith("-e .") for p in pip_section), "environment.yml must install the project itself"


def test_torch_pins(repo):
    deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps
    cv = next(d for d in deps if d.startswith("opencv-python-headless"))
    assert int(cv.split("==")[1].split(".")[0]) < 5, "OpenCV 5 dropped the Haar cascades"


def test_every_dependency_is_pinned(repo):
    deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
    assert all("==" in d for d in deps), [d for d in deps if "==" not in d]


def test_extras_are_pinned_and_export_extra_has_the_converters(repo):
    extras = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    loose = [d for deps in extras.values() for d in deps if "==" not in d]
    assert not loose, loose
    names = {d.split("==")[0] for d in extras["export"]}
    assert {"executorch", "coremltools", "litert-torch", "ai-edge-litert"} <= names
    env = yaml.safe_load((repo / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e .[dev,export]" in pip_section

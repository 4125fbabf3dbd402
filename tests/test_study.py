"""End to end: the runner executes 01_data with papermill on params/ci.yaml and renders HTML."""
import json
import re

import pytest

from petlib.config import load_params
from petlib.layout import Layout
from petlib.stage_table import plan
from petlib.study import run_study

pytestmark = pytest.mark.slow


def test_data_notebook_report(finished):
    """The shared finished study's 01_data report: its tables count what is on disk, and its header."""
    rep = finished / "reports" / "ci"
    page = (rep / "01_data.html").read_text()
    table = page[page.index('id="stats-table"'):]
    table = table[: table.index("</table>")]
    assert "Identities" in table and "Total images" in table
    cells = re.findall(r"<td[^>]*>\s*([0-9.]+)\s*</td>", table)
    n_ids, n_imgs = int(float(cells[0])), int(float(cells[1]))
    assert n_ids == 40
    assert n_imgs == sum(1 for _ in (finished / "outputs" / "data").rglob("*.jpg"))
    assert "git commit" in page and "data fingerprint" in page and "torch" in page
    # the runner gave the notebook kernel the CPU pins, and the header says so with the CPU's ISA flags
    assert "CPU kernels" in page and "pinned (reproducible: true)" in page and "ATen kernels AVX2" in page
    # ... that its linear layers avoid MKL, and whether this machine reproduces the golden kernel vector
    assert "linear layers through oneDNN" in page and "this machine reproduces the golden kernel vector" in page
    assert (finished / "outputs" / "ci" / "splits" / "cat.csv").is_file()
    index = (rep / "index.html").read_text()
    assert "01_data.html" in index and "ok" in index
    state = json.loads((rep / "state.json").read_text())
    assert state["01_data"]["status"] == "ok"


def test_a_running_notebook_logs_its_elapsed_time_and_progress(finished_run):
    """The runner's heartbeat (every 0.3 s in the shared study) carries the kernel's latest progress line."""
    logs = finished_run[1]
    assert any(re.match(r"\[2/7\] 02_train-mnv3-cat: \d+ s \| mnv3-cat epoch \d/2", line) for line in logs), logs
    assert logs[-1].startswith("study 'ci': 7/7 ok (7 run, 0 up to date)"), logs[-1]


@pytest.mark.timeout(600)
def test_failing_notebook_still_reported(make_params, tmp_path):
    p = make_params(tmp_path, notebooks=["01_data"])
    p.data.source, p.data.roots = "folders", {"cat": str(tmp_path / "no_such_root")}
    assert run_study(p, log=lambda *_: None) == 1
    rep = tmp_path / "reports" / "ci"
    page = (rep / "01_data.html").read_text()
    assert "no_such_root" in page and "DataError" in page
    index = (rep / "index.html").read_text()
    assert "failed" in index and "no_such_root" in index


def test_plan_expands_runs_and_only(repo):
    p = load_params(repo / "params" / "demo.yaml")
    keys = [t.key for t in plan(p)]
    assert keys[0] == "01_data"
    if "02_train" in p.notebooks:
        assert f"02_train-{p.models[0].name}-{p.data.species[0]}" in keys
        only = [t.key for t in plan(p, only=["02_train"])]
        assert "01_data" in only and not any(k.startswith("03") for k in only)
    with pytest.raises(ValueError, match="does not run"):
        plan(p, only=["99_nothing"])


def test_plan_follows_model_species_and_export_runs(repo, tmp_path):
    """A model restricted to some species gets runs only there; 05_export runs only for `export.runs`."""
    import yaml

    from petlib.config import params_from_dict

    raw = yaml.safe_load((repo / "params" / "demo.yaml").read_text())
    raw["models"] = [{"name": "a", "epochs": 1}, {"name": "b", "epochs": 1, "species": ["dog"]}]
    raw["data"]["species"] = ["cat", "dog"]
    raw["export"] = {"runs": ["b-dog"]}
    raw["train"].update(repeat_runs=[])
    p = params_from_dict(raw)
    assert p.runs() == [("a", "cat"), ("a", "dog"), ("b", "dog")]
    keys = [t.key for t in plan(p)]
    assert [k for k in keys if k.startswith("02_train")] == ["02_train-a-cat", "02_train-a-dog", "02_train-b-dog"]
    assert [k for k in keys if k.startswith("05_export")] == ["05_export-b-dog"]
    assert set(Layout(p).comparison_runs()) == {"a-cat", "a-dog", "b-dog"}
    assert p.pick_run() == ("a", "cat") and p.pick_run("b") == ("b", "dog") and p.pick_run(species="dog") == ("a", "dog")
    with pytest.raises(ValueError, match="no training run of model 'b' on species 'cat'"):
        p.pick_run("b", "cat")


def test_cli_rejects_a_model_the_params_lack(repo, capsys):
    from petlib.cli import main

    assert main(["train", str(repo / "params" / "ci.yaml"), "--model", "resnet"]) == 2
    err = capsys.readouterr().err
    assert "--model resnet" in err and len(err.strip().splitlines()) == 1

from pathlib import Path

import pytest
import yaml

from petlib.config import ParamsError, apply_overrides, load_params, params_from_dict, read_params
from petlib.layout import Layout


def test_shipped_params_load(repo):
    """Every params file is a study, or a base that others extend (its keys are still checked)."""
    files = sorted((repo / "params").glob("*.yaml"))
    assert {"demo.yaml", "ci.yaml"} <= {f.name for f in files}
    assert len(files) >= 6, "demo, ci and the design's four real-data configurations"
    bases = {(repo / yaml.safe_load(f.read_text()).get("extends", "")).resolve() for f in files} - {repo.resolve()}
    recipe = (repo / "params" / "design-recipe.yaml").resolve()
    assert bases == {recipe, (repo / "params" / "demo.yaml").resolve()}, "the real-data recipe, and the demo (study-full)"
    for f in files:
        if f.resolve() == recipe:
            read_params(f)
        else:
            load_params(f)


def test_the_design_configurations_state_only_what_differs(repo):
    recipe = read_params(repo / "params" / "design-recipe.yaml")
    for m, s in [("mnv3", "cat"), ("mfn", "cat"), ("mnv3", "dog"), ("mfn", "dog")]:
        f = repo / "params" / f"{m}-{s}.yaml"
        own = [line for line in f.read_text().splitlines() if line.strip() and not line.startswith("#")]
        assert len(own) <= 8, f"{f.name} repeats the recipe"
        p = load_params(f)
        assert p.runs() == [(m, s)] and p.data.roots == {s: str(Path(f"~/{s}_aligned").expanduser())}
        want = next(x for x in recipe["models"] if x["name"] == m)
        assert {k: getattr(p.models[0], k) for k in want if k != "pretrained"} == \
            {k: v for k, v in want.items() if k != "pretrained"}
        assert p.train.batch_size == recipe["train"]["batch_size"] == 96


def _write(path, obj):
    path.write_text(yaml.safe_dump(obj))
    return path


def test_extends_merges_mappings_replaces_lists_and_takes_models_by_name(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    _write(tmp_path / "base.yaml", {
        "name": "base", "data": {"n_pairs": 100, "species": ["cat", "dog"]},
        "train": {"batch_size": 8, "repeats": 2},
        "models": [{"name": "a", "epochs": 3, "lr": 0.1}, {"name": "b", "epochs": 4}]})
    (tmp_path / "sub").mkdir()
    child = _write(tmp_path / "sub" / "child.yaml", {
        "extends": "base.yaml", "name": "child", "data": {"species": ["dog"]}, "train": {"batch_size": 16},
        "models": [{"name": "b", "lr": 0.5}, {"name": "c"}]})
    p = load_params(child)
    assert p.name == "child" and p.data.n_pairs == 100 and p.data.species == ["dog"]
    assert p.train.batch_size == 16 and p.train.repeats == 2
    assert [(m.name, m.epochs, m.lr) for m in p.models] == [("b", 4, 0.5), ("c", 40, 5e-4)]
    assert load_params(child, ["train.batch_size=4"]).train.batch_size == 4


def test_extends_errors_name_the_file(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    base = _write(tmp_path / "base.yaml", {"train": {"batch_sise": 8}})
    child = _write(tmp_path / "child.yaml", {"extends": "base.yaml"})
    with pytest.raises(ParamsError) as e:
        load_params(child)
    assert str(base) in str(e.value) and "train.batch_sise" in str(e.value) and "batch_size" in str(e.value)
    _write(tmp_path / "child.yaml", {"extends": "nowhere.yaml"})
    with pytest.raises(ParamsError, match="nowhere.yaml, which does not exist"):
        load_params(child)
    _write(tmp_path / "a.yaml", {"extends": "b.yaml"})
    _write(tmp_path / "b.yaml", {"extends": "a.yaml"})
    with pytest.raises(ParamsError, match="loop"):
        load_params(tmp_path / "a.yaml")
    _write(tmp_path / "child.yaml", {"extends": ["base.yaml"]})
    with pytest.raises(ParamsError, match="'extends' must be a params file name"):
        load_params(child)


def test_unknown_key_names_key_and_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"name": "x", "data": {"n_pairz": 10}}))
    with pytest.raises(ParamsError) as e:
        load_params(f)
    assert "data.n_pairz" in str(e.value) and str(f) in str(e.value) and "n_pairs" in str(e.value)


def test_wrong_type_names_key(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"train": {"batch_size": "big"}}))
    with pytest.raises(ParamsError, match=r"train\.batch_size.*int"):
        load_params(f)
    f.write_text(yaml.safe_dump({"train": {"pin_memory": 1}}))
    with pytest.raises(ParamsError, match="pin_memory"):
        load_params(f)
    f.write_text(yaml.safe_dump({"models": [{"name": "a", "epochs": True}]}))
    with pytest.raises(ParamsError, match=r"models\[0\]\.epochs"):
        load_params(f)


def test_int_accepted_for_float():
    p = params_from_dict({"train": {"weight_decay": 0}})
    assert p.train.weight_decay == 0.0 and isinstance(p.train.weight_decay, float)


def test_invalid_values():
    with pytest.raises(ParamsError, match="split_ratios"):
        params_from_dict({"data": {"split_ratios": [0.5, 0.1, 0.1]}})
    with pytest.raises(ParamsError, match="roots"):
        params_from_dict({"data": {"source": "folders", "species": ["cat"]}})
    with pytest.raises(ParamsError, match="duplicate"):
        params_from_dict({"models": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(ParamsError, match=r"models\[a\]\.species names \['cow'\]"):
        params_from_dict({"models": [{"name": "a", "species": ["cow"]}]})
    with pytest.raises(ParamsError, match=r"export.runs names \['a-dog'\]"):
        params_from_dict({"models": [{"name": "a", "species": ["cat"]}], "export": {"runs": ["a-dog"]}})
    with pytest.raises(ParamsError, match=r"train.repeat_runs names \['b-cat'\]"):
        params_from_dict({"models": [{"name": "a"}], "train": {"repeat_runs": ["b-cat"]}})
    with pytest.raises(ParamsError, match=r"export.formats names \['gguf'\]"):
        params_from_dict({"export": {"formats": ["onnx", "gguf"]}})


def test_a_run_may_have_its_own_number_of_repeats():
    """Issue 34's seeds: three a run on cats, two on dogs, in one study."""
    p = params_from_dict({"data": {"species": ["cat", "dog"]}, "models": [{"name": "a"}, {"name": "b", "species": ["cat"]}],
                          "train": {"repeats": 3, "repeat_runs": ["a-cat", "b-cat"], "run_repeats": {"a-dog": 2, "b-cat": 4}}})
    assert [p.repeats(m, s) for m, s in (("a", "cat"), ("a", "dog"), ("b", "cat"))] == [3, 2, 4]
    with pytest.raises(ParamsError, match=r"train.run_repeats names \['b-dog'\]"):
        params_from_dict({"models": [{"name": "b", "species": ["cat"]}], "train": {"run_repeats": {"b-dog": 2}}})
    with pytest.raises(ParamsError, match="train.run_repeats must give each run at least 1"):
        params_from_dict({"models": [{"name": "a", "species": ["cat"]}], "train": {"run_repeats": {"a-cat": 0}}})


def test_overrides(repo):
    p = load_params(repo / "params" / "ci.yaml", ["train.batch_size=8", "models.mnv3.epochs=5", "data.species=[dog]"])
    assert p.train.batch_size == 8 and p.model("mnv3").epochs == 5 and p.data.species == ["dog"]
    with pytest.raises(ParamsError, match="batchsize"):
        load_params(repo / "params" / "ci.yaml", ["train.batchsize=8"])
    with pytest.raises(ParamsError, match="key=value"):
        apply_overrides({}, ["train.batch_size"])
    with pytest.raises(ParamsError, match="nosuch"):
        apply_overrides({"models": [{"name": "a"}]}, ["models.nosuch.epochs=1"])


def test_missing_and_broken_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    f = tmp_path / "bad.yaml"
    f.write_text("a: [1, 2")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(f)


def test_float_written_without_dot_is_accepted():
    p = params_from_dict({"models": [{"name": "a", "lr": "1e-3"}]})
    assert p.models[0].lr == 1e-3
    with pytest.raises(ParamsError, match="lr"):
        params_from_dict({"models": [{"name": "a", "lr": "fast"}]})


def _project(tmp_path, marker=True):
    proj = tmp_path / "proj"
    (proj / "params").mkdir(parents=True)
    (proj / "notebooks").mkdir()
    if marker:
        (proj / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (proj / "params" / "s.yaml").write_text(yaml.safe_dump({
        "output_dir": "outputs", "reports_dir": "reports",
        "data": {"source": "folders", "species": ["cat"], "roots": {"cat": "data/cat"},
                 "manifest": {"cat": "splits/cat.csv"}, "synth_dir": "outputs/data"},
        "models": [{"name": "m", "pretrained": "weights/w.safetensors"}, {"name": "h", "pretrained": "hub"}],
        "eval": {"compare": ["X:outputs/eval/x"]}}))
    return proj


def _paths(p):
    return [p.output_dir, p.reports_dir, p.data.synth_dir, p.data.roots["cat"], p.data.manifest["cat"],
            p.models[0].pretrained, p.models[1].pretrained, p.eval.compare[0]]


def test_relative_paths_mean_one_thing_from_any_working_directory(tmp_path, monkeypatch):
    proj = _project(tmp_path)
    seen = []
    for cwd, name in ((proj, "params/s.yaml"), (proj / "notebooks", "params/s.yaml"),
                      (proj / "notebooks", "../params/s.yaml"), (tmp_path, proj / "params" / "s.yaml")):
        monkeypatch.chdir(cwd)
        seen.append(_paths(load_params(name)))
    assert all(s == seen[0] for s in seen), seen
    assert seen[0] == [str(proj / "outputs"), str(proj / "reports"), str(proj / "outputs" / "data"),
                       str(proj / "data" / "cat"), str(proj / "splits" / "cat.csv"),
                       str(proj / "weights" / "w.safetensors"), "hub", f"X:{proj / 'outputs' / 'eval' / 'x'}"]


def test_without_a_project_paths_are_relative_to_the_params_file(tmp_path, monkeypatch):
    proj = _project(tmp_path, marker=False)
    monkeypatch.chdir(tmp_path)
    p = load_params(proj / "params" / "s.yaml")
    assert p.output_dir == str(proj / "params" / "outputs")


def test_home_and_absolute_paths_are_kept(tmp_path, monkeypatch):
    proj = _project(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    p = load_params(proj / "params" / "s.yaml", ["data.roots.cat=~/cat_aligned", f"output_dir={tmp_path / 'abs'}"])
    assert p.data.roots["cat"] == str(tmp_path / "home" / "cat_aligned")
    assert p.output_dir == str(tmp_path / "abs")


def test_repository_params_resolve_to_the_repository(repo, monkeypatch):
    monkeypatch.chdir(repo / "notebooks")
    p = load_params("params/demo.yaml")
    assert p.output_dir == str(repo / "outputs") and Layout(p).out("runs") == repo / "outputs" / "demo" / "runs"

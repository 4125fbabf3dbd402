"""The stages' declared inputs (petlib.stages, petlib.codegraph) and the runner's decisions built on them."""
import dataclasses

import pytest

from petlib import codegraph, stages
from petlib.config import StudyParams, load_params, relative_paths, resolve_paths
from petlib.stage_table import Task, forced_tasks, plan


def _code(stage: str) -> set[str]:
    return set(stages.code_inputs(stages.ENTRY[stage]))


def test_a_stage_counts_the_code_it_uses_and_only_that():
    train, ev, exp, cmp = _code("train"), _code("eval"), _code("export"), _code("compare")
    assert {"petlib/train.py", "petlib/models.py", "petlib/losses.py", "petlib/data/transforms.py",
            "petlib/metrics/verification.py"} <= train
    for drawing in ("petlib/plots.py", "petlib/eval_report.py", "petlib/report.py"):
        assert drawing not in train | ev | exp | cmp, f"{drawing} is drawing code: it never re-runs a stage"
    assert "petlib/compare.py" not in train | ev and "petlib/evaluate.py" not in train
    assert "petlib/export/pipeline.py" in exp and "petlib/export/pipeline.py" not in train | ev
    assert not {"petlib/data/scan.py", "petlib/data/prepare.py", "petlib/synth.py"} & train, \
        "the data modules reach training through the split fingerprints"
    assert {"petlib/data/read.py", "petlib/data/splits.py", "petlib/data/sources/synth.py"} <= train, \
        "what a stage runs of the data package (the manifest's reader, the source's root and families) is its code"
    assert "petlib/io.py" not in train and "petlib/config/params.py" not in train, "neutral modules"
    assert "petlib/data/audit.py" not in train | ev, "what only the data modules use reaches a stage through the data"


def test_uses_follow_package_reexports():
    """`from . import data` then `data.FaceDataset` uses data/transforms.py, not every module of data/."""
    used = codegraph.uses_in_source("from petlib import data\nx = data.FaceDataset\n"
                                    "from petlib.metrics import best_threshold\n")
    assert used == {"petlib.data.transforms", "petlib.metrics.verification"}


def test_the_code_digest_ignores_comments_docstrings_and_layout_but_not_code():
    base = codegraph.source_digest('def f(x):\n    """Why."""\n    return x + 1\n')
    assert codegraph.source_digest("# a comment\ndef f( x ):\n    return x+1  # same\n") == base
    assert codegraph.source_digest('def f(x):\n    """Another reason."""\n    return x + 1\n') == base
    assert codegraph.source_digest("def f(x):\n    return x + 2\n") != base
    assert codegraph.source_digest("def f(x):\n    return 'x + 1'\n") != base


def _leaf_keys(obj, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if f.name == "models":
            out += _leaf_keys(value[0], "model.")
        elif dataclasses.is_dataclass(value):
            out += _leaf_keys(value, key + ".")
        else:
            out.append(key)
    return out


def test_every_params_key_is_an_input_or_says_why_not():
    declared = {k for keys in stages.PARAMS.values() for k in keys}
    keys = _leaf_keys(StudyParams())
    missing = [k for k in keys if k not in declared and k not in stages.NOT_INPUTS]
    both = [k for k in keys if k in declared and k in stages.NOT_INPUTS]
    assert not missing, f"params keys no stage declares (add them to PARAMS or NOT_INPUTS): {missing}"
    assert not both, both
    assert not [k for k in declared | set(stages.NOT_INPUTS) if k not in keys], "declared keys that do not exist"


def test_path_params_are_never_inputs():
    marked = StudyParams()
    resolve_paths(marked, "/nowhere")
    paths = {k for k in _leaf_keys(marked) if "/nowhere" in str(stages.param_value(marked, k, "mnv3"))}
    declared = {k for keys in stages.PARAMS.values() for k in keys}
    assert paths == {"output_dir", "reports_dir", "data.synth_dir"} and not paths & declared


def test_relative_paths_round_trip(tmp_path):
    p = resolve_paths(StudyParams(), tmp_path)
    p.data.roots = {"cat": "/elsewhere/cats"}
    rel = relative_paths(p, tmp_path)
    assert rel.output_dir == "outputs" and rel.data.synth_dir == "outputs/data"
    assert rel.data.roots == {"cat": "/elsewhere/cats"}, "paths outside the project stay absolute"
    assert resolve_paths(rel, tmp_path).output_dir == p.output_dir and p.output_dir.startswith("/")


def test_diff_says_what_changed_in_words():
    old = {"params": {"eval.n_bootstrap": 200}, "files": {"checkpoint": "ab"}, "code": {"petlib/a.py": "1"}}
    new = {"params": {"eval.n_bootstrap": 21}, "files": {"checkpoint": "cd"}, "code": {"petlib/a.py": "2", "petlib/b.py": "3"}}
    assert stages.diff(old, new) == ["eval.n_bootstrap 200 -> 21", "checkpoint changed", "code petlib/a.py changed",
                                     "code petlib/b.py added"]
    assert stages.diff(new, new) == []


def test_a_check_reads_its_stamp(tmp_path):
    c = stages.Check("eval x", tmp_path / "stage.json", {"k": 1}, {"f": "a"}, {"petlib/x.py": "1"})
    assert c.reasons() == ["not run yet"] and not c.resumable()
    c.write("started")
    assert c.reasons() == ["did not finish"] and c.resumable()
    c.write()
    assert c.up_to_date() and not c.resumable()
    c.params["k"] = 2
    assert c.reasons() == ["k 1 -> 2"] and not c.resumable()


def test_force_names_a_stage_and_takes_what_depends_on_it(repo):
    p = load_params(repo / "params" / "demo.yaml")
    tasks = plan(p)
    hit = forced_tasks(tasks, ["eval"])
    assert {t for t in hit if t.startswith("03_evaluate")} == {t.key for t in tasks if t.notebook == "03_evaluate"}
    assert "04_compare" in hit and not any(t.startswith(("01", "02", "05")) for t in hit)
    one = forced_tasks(tasks, ["02_train-mfn-cat"])
    assert one == {"02_train-mfn-cat", "03_evaluate-mfn-cat", "04_compare", "06_inference"}
    assert forced_tasks(tasks, True) == {t.key for t in tasks} and forced_tasks(tasks, None) == set()
    with pytest.raises(ValueError, match="--force names"):
        forced_tasks(tasks, ["trian"])
    assert Task("x", "02_train", {}).stage == "train"


def test_the_converters_a_registry_names_by_string_are_the_export_stages_code():
    """`export/registry.py` names each format's functions as "module:function" strings: each named
    module is export code (an edit to export/onnx.py once left a finished study up to date)."""
    from petlib.export.registry import FORMATS

    named = {f"petlib/export/{s.split(':')[0]}.py" for f in FORMATS.values()
             for s in (f.convert, f.start, f.runner, f.spec_check, f.read_metadata) if s}
    assert {"petlib/export/onnx.py", "petlib/export/tflite.py", "petlib/export/coreml.py"} <= named
    assert named <= _code("export")
    assert not named & (_code("train") | _code("eval")), "training and evaluation never call a converter"


def test_the_report_helpers_of_an_export_re_render_and_never_re_export():
    from petlib.stage_table import notebook_code

    shown = set(stages.code_inputs(notebook_code("05_export")))
    assert {"petlib/export/pipeline.py", "petlib/export/summary.py"} <= shown
    assert "petlib/export/summary.py" not in _code("export")


def test_a_module_registering_at_import_joins_every_stage_that_reads_the_registry():
    """`metrics/efficiency.py` sets its rows' direction by `declare(...)` at import: the comparison reads
    those specs, so the module is comparison code even though nothing calls into it."""
    assert "petlib.metrics.efficiency" in codegraph.registrants()["petlib.metrics.spec"]
    assert "petlib/metrics/efficiency.py" in _code("compare")


def test_plain_imports_and_package_code_are_uses():
    assert codegraph.uses_in_source("import petlib.metrics.ranking as r\nr.rank_queries\n") == {"petlib.metrics.ranking"}
    assert "petlib.export.onnx" in codegraph.uses_in_source("import petlib.export.onnx\n")
    assert "petlib/export/__init__.py" not in _code("export"), "an __init__ that only re-exports is no code of its own"


def test_no_module_hides_a_use_behind_a_lazy_attribute():
    """A module-level `__getattr__` loads a module the code graph cannot see (05's report once could not
    see export/pipeline.py): none may exist."""
    import ast

    for name, path in codegraph.module_files().items():
        tree = ast.parse(path.read_text())
        assert not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body), name


def test_the_published_figures_are_an_input_of_the_comparison(make_params, tmp_path):
    check = stages.compare_check(make_params(tmp_path))
    assert check.files["published figures"] == stages.file_digest(codegraph.PETLIB / "published.yaml")
    assert check.files["claims"] == stages.file_digest(codegraph.PETLIB / "claims.yaml")

"""A finished study re-runs only what changed (issue 24's cases), says why, and survives being moved or
killed. One small study (two models on the CI cats, ONNX export of one: `finished`, shared with the
JupyterLab test, tests/conftest.py) is run once; each case starts from a copy of its folder, so the
cases are independent."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from petlib import codegraph
from petlib.config import load_params
from petlib.study import run_study
from studies import write_study

pytestmark = pytest.mark.slow


def _copy(finished: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "moved"
    shutil.copytree(finished, dest, symlinks=True)
    return dest


def _mtimes(folder: Path, pattern: str) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.glob(pattern)}


def _run(folder: Path, repo: Path, only=None, force=None, dry_run=False, **changes) -> list[str]:
    logs: list[str] = []
    assert run_study(load_params(write_study(folder, repo, **changes)), only=only, force=force, dry_run=dry_run,
                     log=logs.append) == 0, logs
    return logs


def _line(logs: list[str], key: str) -> str:
    return next(line for line in logs if line.startswith("[") and f"] {key}:" in line)


@pytest.mark.timeout(900)
def test_a_moved_study_is_up_to_date(finished, tmp_path, repo):
    """The whole folder (params, data, outputs, reports) moved elsewhere: nothing runs, nothing re-renders."""
    folder = _copy(finished, tmp_path)
    logs = _run(folder, repo)
    assert all(line.endswith(": up to date") for line in logs if line.startswith("[")), logs
    assert "(0 run, 7 up to date)" in logs[-1]


@pytest.mark.timeout(900)
def test_a_changed_bootstrap_count_evaluates_again_and_trains_nothing(finished, tmp_path, repo):
    folder = _copy(finished, tmp_path)
    runs = _mtimes(folder, "outputs/ci/runs/*/*")
    plan = _run(folder, repo, dry_run=True, eval__n_bootstrap=21)
    assert _line(plan, "03_evaluate-mnv3-cat").endswith("eval mnv3-cat: eval.n_bootstrap 20 -> 21")
    assert _line(plan, "02_train-b-cat").endswith("up to date")
    assert "(after 03_evaluate-mnv3-cat, 03_evaluate-b-cat, which runs first)" in _line(plan, "04_compare")
    assert "3 of 7 tasks would run" in plan[-1] and _mtimes(folder, "outputs/ci/runs/*/*") == runs, "a dry run runs nothing"
    logs = _run(folder, repo, only=["03_evaluate-mnv3-cat"], eval__n_bootstrap=21)
    assert "eval.n_bootstrap 20 -> 21; running" in _line(logs, "03_evaluate-mnv3-cat")
    assert _mtimes(folder, "outputs/ci/runs/*/*") == runs, "no training file was touched"
    assert json.loads((folder / "outputs/ci/eval/mnv3-cat/stage.json").read_text())["inputs"]["params"]["eval.n_bootstrap"] == 21


@pytest.mark.timeout(900)
def test_more_epochs_for_one_model_retrain_that_model_only(finished, tmp_path, repo):
    folder = _copy(finished, tmp_path)
    keep = _mtimes(folder, "outputs/ci/runs/mnv3-cat/*")
    plan = _run(folder, repo, dry_run=True, models__b__epochs=2)
    assert _line(plan, "02_train-b-cat").endswith("train b-cat: model.epochs 1 -> 2")
    assert _line(plan, "02_train-mnv3-cat").endswith("up to date") and _line(plan, "05_export-mnv3-cat").endswith("up to date")
    logs = _run(folder, repo, only=["02_train-b-cat"], models__b__epochs=2)
    assert "running" in _line(logs, "02_train-b-cat")
    assert len(json.loads((folder / "outputs/ci/runs/b-cat/history.json").read_text())["epochs"]) == 2
    assert _mtimes(folder, "outputs/ci/runs/mnv3-cat/*") == keep


@pytest.mark.timeout(900)
def test_export_formats_export_again_only(finished, tmp_path, repo):
    folder = _copy(finished, tmp_path)
    plan = _run(folder, repo, dry_run=True, export__formats=["onnx", "torchscript"])
    ran = [line for line in plan if line.startswith("[") and not line.endswith("up to date")]
    assert ran == [_line(plan, "05_export-mnv3-cat")], plan
    assert 'export.formats ["onnx"] -> ["onnx", "torchscript"]' in ran[0]


@pytest.mark.timeout(900)
def test_a_plotting_change_re_renders_from_the_numbers_on_disk(finished, tmp_path, repo, monkeypatch):
    """A changed plots.py (its digest, as the runner sees it) re-renders the reports that draw; no stage
    runs: the stamps and metrics stay as they were, the figures are drawn again."""
    folder = _copy(finished, tmp_path)
    stamps = _mtimes(folder, "outputs/ci/*/*/stage.json") | _mtimes(folder, "outputs/ci/compare/stage.json")
    real = codegraph.code_digest
    monkeypatch.setattr(codegraph, "code_digest", lambda m: "changed" if m == "petlib.plots" else real(m))
    png = folder / "outputs/ci/eval/mnv3-cat/roc_curve.png"
    before = png.stat().st_mtime_ns
    logs = _run(folder, repo, only=["03_evaluate-mnv3-cat"])
    for key in ("01_data", "02_train-mnv3-cat", "03_evaluate-mnv3-cat"):
        assert "code petlib/plots.py changed" in _line(logs, key), logs
    assert "re-render" in _line(logs, "03_evaluate-mnv3-cat") and "rendering" in _line(logs, "03_evaluate-mnv3-cat")
    assert _mtimes(folder, "outputs/ci/*/*/stage.json") | _mtimes(folder, "outputs/ci/compare/stage.json") == stamps
    assert png.stat().st_mtime_ns > before, "the figure was drawn again"


@pytest.mark.timeout(900)
def test_force_re_runs_a_stage_with_unchanged_inputs(finished, tmp_path, repo):
    folder = _copy(finished, tmp_path)
    plan = _run(folder, repo, dry_run=True, force=["eval"])
    assert _line(plan, "03_evaluate-b-cat").endswith(": forced") and ": forced" in _line(plan, "04_compare")
    assert _line(plan, "02_train-b-cat").endswith("up to date")


@pytest.mark.timeout(900)
def test_a_killed_study_leaves_finished_work_and_the_next_run_continues(finished, tmp_path, repo):
    """Both trainings made stale (fewer steps an epoch), and the study killed (SIGKILL, notebook kernels
    included) as soon as the first of them finished again: that run is kept and used, nothing half-written
    is read, and the next study trains the other and completes."""
    folder = _copy(finished, tmp_path)
    short, change = ("01_data", "02_train"), {"train__max_steps_per_epoch": 2}
    write_study(folder, repo, notebooks=short, **change)
    stamp = folder / "outputs/ci/runs/mnv3-cat/stage.json"
    before = stamp.stat().st_mtime_ns
    proc = subprocess.Popen([sys.executable, "-m", "petlib.cli", "study", str(folder / "params.yaml")],
                            cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if stamp.stat().st_mtime_ns != before:
            s = json.loads(stamp.read_text())
            if s["state"] == "finished":
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the study ended before it could be killed"
    doomed = _descendants(proc.pid)  # the notebook kernel too, wherever its session is
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    for f in (folder / "outputs").rglob("*.json"):
        json.loads(f.read_text())  # every JSON artefact is whole
    kept = _mtimes(folder, "outputs/ci/runs/mnv3-cat/*")
    logs = _run(folder, repo, notebooks=short, **change)
    line = _line(logs, "02_train-mnv3-cat")
    assert not line.endswith("running ..."), f"the finished training was redone (a re-render is fine): {line}"
    assert _line(logs, "02_train-b-cat").endswith("running ..."), logs  # the other training runs now
    assert _mtimes(folder, "outputs/ci/runs/mnv3-cat/*") == kept
    assert json.loads((folder / "outputs/ci/runs/b-cat/stage.json").read_text())["state"] == "finished"
    assert "3/3 ok" in logs[-1]


def _descendants(pid: int) -> list[int]:
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parent.items() if p in frontier]
        out += kids
        frontier = kids
    return out


# ---- issue 32's end-to-end cases: each edit makes stale what it changes, seen by `petface status`
def _status(folder: Path, repo: Path, **changes) -> dict:
    from petlib.status import study_status

    return {s.task: s for s in study_status(load_params(write_study(folder, repo, **changes)))}


def _stale(st: dict) -> set[str]:
    return {k for k, s in st.items() if s.state == "stale"}


TRAININGS = {"02_train-mnv3-cat", "02_train-b-cat"}
EVALS = {"03_evaluate-mnv3-cat", "03_evaluate-b-cat"}


def _edited(monkeypatch, module: str) -> None:
    real = codegraph.code_digest
    monkeypatch.setattr(codegraph, "code_digest", lambda m: "edited" if m == module else real(m))


@pytest.mark.timeout(900)
def test_an_augmentation_change_re_runs_every_training(finished, tmp_path, repo, monkeypatch):
    folder = _copy(finished, tmp_path)
    _edited(monkeypatch, "petlib.data.transforms")
    st = _status(folder, repo)
    assert TRAININGS <= _stale(st) and "code petlib/data/transforms.py changed" in "; ".join(st["02_train-b-cat"].reasons)


@pytest.mark.timeout(900)
def test_a_tta_change_re_runs_every_evaluation_and_no_training(finished, tmp_path, repo):
    st = _status(_copy(finished, tmp_path), repo, eval__tta=True)
    assert _stale(st) == EVALS, st
    assert st["04_compare"].state == "after"


@pytest.mark.timeout(900)
def test_a_converter_change_re_runs_the_export_only(finished, tmp_path, repo, monkeypatch):
    _edited(monkeypatch, "petlib.export.onnx")
    st = _status(_copy(finished, tmp_path), repo)
    assert _stale(st) == {"05_export-mnv3-cat"} and "code petlib/export/onnx.py changed" in st["05_export-mnv3-cat"].reasons[0]


def _train_rows(folder: Path, repo: Path) -> list[tuple[Path, str]]:
    from petlib import data

    train = data.load_splits(load_params(write_study(folder, repo)), "cat")["train"]
    return [(p, train.identities[int(label)]) for p, label in zip(train.paths, train.labels)]


@pytest.mark.timeout(900)
def test_two_photos_of_equal_size_swapped_between_identities_re_run_the_trainings(finished, tmp_path, repo):
    folder = _copy(finished, tmp_path)
    by_size: dict[int, tuple[Path, str]] = {}
    pair = None
    for p, ident in _train_rows(folder, repo):
        other = by_size.setdefault(p.stat().st_size, (p, ident))
        if other[1] != ident:
            pair = (other[0], p)
            break
    assert pair, "the CI cats hold two training photos of equal size (the data is seeded)"
    a, b = pair
    times = [(q.stat().st_atime_ns, q.stat().st_mtime_ns) for q in pair]
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    for q, t in zip(pair, times):
        os.utime(q, ns=t)  # as `cp -p` would: sizes and mtimes as before
    st = _status(folder, repo)
    assert TRAININGS <= _stale(st) and "train+val split changed" in "; ".join(st["02_train-mnv3-cat"].reasons)
    assert st["01_data"].state == "stale", "01_data sees its images changed"


@pytest.mark.timeout(900)
def test_a_relabelled_manifest_re_runs_the_trainings(finished, tmp_path, repo):
    folder = _copy(finished, tmp_path)
    manifest = folder / "outputs/ci/splits/cat.csv"
    lines = manifest.read_text().splitlines()
    header = lines[0].split(",")
    col, split = header.index("identity"), header.index("split")
    train = [i for i, line in enumerate(lines[1:], 1) if line.split(",")[split] == "train"]
    a, b = train[0], next(i for i in train if lines[i].split(",")[col] != lines[train[0]].split(",")[col])
    ra, rb = lines[a].split(","), lines[b].split(",")
    ra[col], rb[col] = rb[col], ra[col]
    lines[a], lines[b] = ",".join(ra), ",".join(rb)
    manifest.write_text("\n".join(lines) + "\n")
    assert TRAININGS <= _stale(_status(folder, repo))


@pytest.mark.timeout(900)
def test_a_face_drawing_change_regenerates_the_set_and_everything_after_it(finished, tmp_path, repo, monkeypatch):
    _edited(monkeypatch, "petlib.synth")
    st = _status(_copy(finished, tmp_path), repo)
    assert st["01_data"].state == "stale" and "code petlib/synth.py changed" in st["01_data"].reasons
    assert all(s.state in ("stale", "after") for k, s in st.items() if k != "01_data"), st


@pytest.mark.timeout(900)
def test_a_library_upgrade_re_runs_what_computes_with_it_unless_versions_are_provenance(finished, tmp_path, repo,
                                                                                         monkeypatch):
    from petlib import stages

    folder = _copy(finished, tmp_path)
    real = stages._version
    monkeypatch.setattr(stages, "_version", lambda d: "99.0" if d == "onnxruntime" else real(d))
    st = _status(folder, repo)
    assert _stale(st) == {"05_export-mnv3-cat"} and 'onnxruntime "' in st["05_export-mnv3-cat"].reasons[0]
    assert not _stale(_status(folder, repo, library_versions="provenance"))


@pytest.mark.timeout(900)
def test_an_output_edited_or_deleted_by_hand_makes_its_stage_stale(finished, tmp_path, repo):
    folder = _copy(finished, tmp_path)
    metrics = folder / "outputs/ci/eval/mnv3-cat/metrics.json"
    metrics.write_text(metrics.read_text().replace('"tta"', '"tta" ', 1))
    (folder / "outputs/ci/runs/b-cat/history.json").unlink()
    st = _status(folder, repo)
    assert "output metrics.json edited" in st["03_evaluate-mnv3-cat"].reasons[0]
    assert st["02_train-b-cat"].missing_outputs == ["history.json"]
    r = subprocess.run([sys.executable, "-m", "petlib.cli", "status", str(folder / "params.yaml"), "--json"],
                       cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    by_task = {t["task"]: t for t in json.loads(r.stdout)}
    assert by_task["02_train-b-cat"]["state"] == "stale" and by_task["01_data"]["state"] == "up to date"

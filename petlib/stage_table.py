"""The study's stage table and the one rule that decides what runs: each notebook's expansion (once, or
once per training run), what it needs and the stage it brings up to date (`PLAN`; each stage's params,
files, code, software and outputs are declared in `petlib.stages`), and `why_run`, which says for a task
whether it is up to date, must re-render, or must run its stage, and why. The runner (`petlib.study`)
and `petface status` (`petlib.status`) both ask it."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from . import codegraph, stages
from .config import StudyParams
from .layout import Layout

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# notebook -> how it expands: "study" (once) or "run" (once per training run; 05_export only for the
# runs in `export.runs`), what it needs, and the stage it runs (`petlib.stages`; None: a report only).
PLAN = {
    "01_data": ("study", [], "data"),
    "02_train": ("run", ["01_data"], "train"),
    "03_evaluate": ("run", ["02_train"], "eval"),
    "04_compare": ("study", ["03_evaluate"], "compare"),
    "05_export": ("run", ["02_train"], "export"),
    "06_inference": ("study", ["02_train"], None),
}
FORCEABLE = {"train", "eval", "compare", "export"}  # the notebooks with a `force` parameter


@dataclass
class Task:
    key: str
    notebook: str
    parameters: dict
    deps: list[str] = field(default_factory=list)

    @property
    def stage(self) -> str | None:
        return PLAN[self.notebook][2]


def plan(params: StudyParams, only: list[str] | None = None) -> list[Task]:
    """Tasks in execution order. `only` keeps the named notebooks (or task keys) and what they need."""
    unknown = [n for n in params.notebooks if n not in PLAN]
    if unknown:
        raise ValueError(f"params 'notebooks' names unknown notebooks {unknown}; known: {list(PLAN)}")
    tasks: list[Task] = []
    for nb in params.notebooks:
        kind, needs, _ = PLAN[nb]
        if kind == "study":
            deps = [t.key for t in tasks if t.notebook in needs]
            tasks.append(Task(nb, nb, {}, deps))
        else:
            for m, s in params.runs():
                if nb == "05_export" and not params.exports(m, s):
                    continue
                suffix = f"{m}-{s}"
                deps = [t.key for t in tasks if t.notebook in needs and
                        (t.key == t.notebook or t.key.endswith("-" + suffix))]
                tasks.append(Task(f"{nb}-{suffix}", nb, {"model": m, "species": s}, deps))
    if only:
        wanted = {t.key for t in tasks if t.notebook in only or t.key in only}
        missing = [o for o in only if not any(t.notebook == o or t.key == o for t in tasks)]
        if missing:
            raise ValueError(f"--only names {missing}, which this study does not run; tasks: "
                             f"{[t.key for t in tasks]}")
        by_key = {t.key: t for t in tasks}
        stack = list(wanted)
        while stack:
            for d in by_key[stack.pop()].deps:
                if d not in wanted:
                    wanted.add(d)
                    stack.append(d)
        tasks = [t for t in tasks if t.key in wanted]
    return tasks


def stage_checks(task: Task, params: StudyParams) -> list[stages.Check]:
    """The stage stamps a task's notebook brings up to date (one per training repeat for 02_train)."""
    m, sp = task.parameters.get("model"), task.parameters.get("species")
    if task.stage == "train":
        return [stages.train_check(params, m, sp, r) for r in range(params.repeats(m, sp))]
    if task.stage == "eval":
        return [stages.eval_check(params, m, sp)]
    if task.stage == "export":
        return [stages.export_check(params, m, sp)]
    if task.stage == "compare":
        return [stages.compare_check(params)]
    return []


def notebook_code(notebook: str) -> set[str]:
    """The petlib modules a notebook's cells use."""
    import nbformat

    nb = nbformat.read(str(NOTEBOOKS / f"{notebook}.ipynb"), as_version=4)
    return codegraph.uses_in_source("\n".join(c.source for c in nb.cells if c.cell_type == "code"))


def report_inputs(task: Task, params: StudyParams, checks: list[stages.Check]) -> dict:
    """A report's own inputs: its notebook, the code its cells use, the stages it shows (by their
    inputs' digest), and for 01_data the data itself."""
    leave_out = stages.NEUTRAL if task.stage == "data" else stages.NEUTRAL | stages.DATA_MODULES
    inputs = {"params": {"notebook parameters": task.parameters}, "files": {
        "notebook": hashlib.sha256((NOTEBOOKS / f"{task.notebook}.ipynb").read_bytes()).hexdigest()[:16],
        **{c.stage: c.digest() for c in checks}}, "code": stages.code_inputs(notebook_code(task.notebook), leave_out)}
    if task.parameters.get("species"):  # 03 warns of the audit's leakage
        inputs["files"]["audit"] = stages.file_digest(Layout(params).audit_file(task.parameters["species"]))
    if task.stage == "data":
        d = stages.data_inputs(params)
        inputs["params"].update(d["params"])
        inputs["files"].update(d["files"])
        if "software" in d:
            inputs["software"] = d["software"]
    if task.notebook == "05_export":  # its model card reads the evaluation: a new one re-renders the card
        m, sp = task.parameters["model"], task.parameters["species"]
        inputs["files"]["metrics"] = stages.file_digest(Layout(params).eval_dir(m, sp) / "metrics.json")
    if task.notebook == "06_inference":
        m, sp = params.pick_run()
        inputs["params"]["seed"] = params.seed
        inputs["files"]["embedder"] = stages.file_digest(Layout(params).run_dir(m, sp) / "pet_embedder.onnx")
    return inputs


def forced_tasks(tasks: list[Task], force: bool | list[str] | None) -> set[str]:
    """Task keys to re-run whatever their inputs: `force` True (all), or names of stages (train), notebooks
    (02_train) or tasks (02_train-mnv3-cat), with every task that depends on them."""
    if not force:
        return set()
    if force is True:
        return {t.key for t in tasks}
    names = set(force)
    hit = {t.key for t in tasks if t.stage in names or t.notebook in names or t.key in names}
    unknown = [n for n in names if not any(t.stage == n or t.notebook == n or t.key == n for t in tasks)]
    if unknown:
        raise ValueError(f"--force names {unknown}, which this study does not run; stages "
                         f"{sorted({t.stage for t in tasks if t.stage})}, tasks {[t.key for t in tasks]}")
    for t in tasks:  # tasks come in dependency order
        if any(d in hit for d in t.deps):
            hit.add(t.key)
    return hit


def why_run(task: Task, params: StudyParams, state: dict, report_dir: Path, forced: bool) -> tuple[list[str], bool]:
    """(reasons to run the task, whether its stage itself must run); no reasons: up to date."""
    checks = stage_checks(task, params)
    stage_why = [f"{c.stage}: {', '.join(why)}" for c in checks if (why := c.reasons())]
    if forced:
        return ["forced"], True
    if stage_why:
        return stage_why, True
    old = state.get(task.key, {})
    if old.get("status") != "ok" or not (report_dir / (old.get("html") or "-")).is_file():
        return ["no report yet" if not old else f"last run {old.get('status', 'unknown')}"], task.stage == "data"
    changed = stages.diff(old.get("inputs", {}), report_inputs(task, params, checks))
    if task.stage == "data" and _may_change_data(changed):  # then 01_data runs alone: later tasks read its splits
        return changed, True
    return ([f"re-render: {', '.join(changed)}"] if changed else []), False


def _may_change_data(changed: list[str]) -> bool:
    """Whether 01_data's changed inputs can change the data it writes (anything but drawing code)."""
    data_code = {f"code {codegraph.relpath(m)}" for m in stages.DATA_MODULES}
    return any(not r.startswith("code ") or r.rsplit(" ", 1)[0] in data_code for r in changed)


def read_state(report_dir: Path) -> dict:
    path = report_dir / "state.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}

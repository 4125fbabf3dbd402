"""The study runner: executes the notebooks with papermill, renders HTML reports, writes the index.

Each notebook runs in a fresh kernel of *this* interpreter (a kernelspec pointing at `sys.executable`
is put first on JUPYTER_PATH), so a user-level `python3` kernel can never run the study by mistake.
A task is skipped when its cache key (notebook source, resolved params, petlib source, its own
parameters and the keys of the tasks it depends on) matches the last successful run, unless forced.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import progress, reproducible
from .config import StudyParams, dump_params, params_to_dict
from .io import atomic_write_json, atomic_write_text
from .layout import Layout
from .lock import StudyLock

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
KERNEL_NAME = "petface-study"

# notebook -> how it expands: "study" (once) or "run" (once per training run; 05_export only for the
# runs in `export.runs`), what it needs, and
# notebook parameters the runner sets (the runner re-trains when it runs 02_train; a person who opens
# the notebook after a study sees the finished run instead).
PLAN = {
    "01_data": ("study", [], {}),
    "02_train": ("run", ["01_data"], {"retrain": True}),
    "03_evaluate": ("run", ["02_train"], {}),
    "04_compare": ("study", ["03_evaluate"], {}),
    "05_export": ("run", ["02_train"], {}),
    "06_inference": ("study", ["02_train"], {}),
}


@dataclass
class Task:
    key: str
    notebook: str
    parameters: dict
    deps: list[str] = field(default_factory=list)


def plan(params: StudyParams, only: list[str] | None = None) -> list[Task]:
    """Tasks in execution order. `only` keeps the named notebooks (or task keys) and what they need."""
    unknown = [n for n in params.notebooks if n not in PLAN]
    if unknown:
        raise ValueError(f"params 'notebooks' names unknown notebooks {unknown}; known: {list(PLAN)}")
    tasks: list[Task] = []
    for nb in params.notebooks:
        kind, needs, fixed = PLAN[nb]
        if kind == "study":
            deps = [t.key for t in tasks if t.notebook in needs]
            tasks.append(Task(nb, nb, dict(fixed), deps))
        else:
            for m, s in params.runs():
                if nb == "05_export" and not params.exports(m, s):
                    continue
                suffix = f"{m}-{s}"
                deps = [t.key for t in tasks if t.notebook in needs and
                        (t.key == t.notebook or t.key.endswith("-" + suffix))]
                tasks.append(Task(f"{nb}-{suffix}", nb, {"model": m, "species": s, **fixed}, deps))
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


def _source_hash() -> str:
    h = hashlib.sha256()
    for p in sorted((REPO / "petlib").rglob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()


def _task_key(task: Task, params_text: str, dep_keys: list[str], src: str) -> str:
    h = hashlib.sha256()
    h.update((NOTEBOOKS / f"{task.notebook}.ipynb").read_bytes())
    h.update(params_text.encode())
    h.update(json.dumps(task.parameters, sort_keys=True).encode())
    h.update(src.encode())
    for k in dep_keys:
        h.update(k.encode())
    return h.hexdigest()[:20]


def write_kernelspec(folder: Path, env: dict | None = None) -> Path:
    """kernels/petface-study/kernel.json under `folder`: this very interpreter, with `env` set."""
    spec = Path(folder) / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec / "kernel.json", json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "petface-study (.venv)", "language": "python", "env": env or {}}, indent=1))
    return spec


def kernel_dir() -> str:
    """A JUPYTER_PATH entry holding the project's kernelspec; the kernels inherit the runner's environment."""
    d = Path(tempfile.mkdtemp(prefix="petface-kernel-"))
    write_kernelspec(d)
    return str(d)


def install_kernel() -> Path:
    """The project's kernel in this environment (`make` runs it), with the CPU pins of `reproducible:
    true`, so a notebook opened in JupyterLab computes like the study runner."""
    return write_kernelspec(Path(sys.prefix) / "share" / "jupyter", env=dict(reproducible.ENV))


def shown_text(stream: str) -> str:
    """What a terminal shows of a stream: each line as its last carriage return left it (progress bars
    redraw with \r, and a finished bar may clear itself to spaces)."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in stream.split("\n"))


def drop_blank_streams(nb) -> None:
    """Remove the stream outputs that show nothing (a progress bar that cleared itself): in HTML each is
    an empty red box under its cell."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if not (o.output_type == "stream" and not shown_text(o.text).strip())]


def render_html(ipynb: Path, out_html: Path) -> None:
    """Self-contained HTML (figures are inline PNG) that opens from disk without a server."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    nb, _ = CoalesceStreamsPreprocessor().preprocess(nbformat.read(str(ipynb), as_version=4), {})  # one per bar
    drop_blank_streams(nb)
    exporter = HTMLExporter(template_name="lab")
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(nb)
    atomic_write_text(out_html, body)


def _first_error_line(exc: BaseException) -> str:
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    return f"{name}: {value}".strip().splitlines()[0][:300]


class _Watch(threading.Thread):
    """While a notebook runs: every `every` seconds, its elapsed time and the latest line of its progress
    bars (epoch, step, images/s), so that a five-minute training step never looks hung."""

    def __init__(self, side: Path, prefix: str, log, every: float):
        super().__init__(daemon=True)
        self.side, self.prefix, self.log, self.every = side, prefix, log, every
        self.done, self.t0 = threading.Event(), time.time()

    def run(self) -> None:
        while not self.done.wait(self.every):
            line = progress.latest(self.side)
            self.log(f"{self.prefix}: {time.time() - self.t0:.0f} s" + (f" | {line}" if line else ""))


def execute(task: Task, params_file: Path, report_dir: Path, log=print, prefix: str = "",
            heartbeat_s: float = 10.0) -> dict:
    """Run one notebook into `report_dir`; always leaves an HTML, showing the error if it failed."""
    import papermill as pm

    out_nb = report_dir / f"{task.key}.ipynb"
    out_html = report_dir / f"{task.key}.html"
    headline = report_dir / f"{task.key}.headline.json"
    headline.unlink(missing_ok=True)
    parameters = {"params_path": str(params_file.resolve()), "headline_path": str(headline.resolve()),
                  **task.parameters}
    t0 = time.time()
    status, error = "ok", None
    side = report_dir / f".{task.key}.progress"
    side.unlink(missing_ok=True)
    os.environ[progress.ENV] = str(side)  # the kernel inherits it
    watch = _Watch(side, prefix or task.key, log, heartbeat_s)
    watch.start()
    try:
        pm.execute_notebook(str(NOTEBOOKS / f"{task.notebook}.ipynb"), str(out_nb), parameters=parameters,
                            kernel_name=KERNEL_NAME, cwd=str(REPO), progress_bar=False, log_output=False)
    except Exception as e:  # papermill has written the failing notebook; report it and go on
        status, error = "failed", _first_error_line(e)
    finally:
        watch.done.set()
        watch.join()
        os.environ.pop(progress.ENV, None)
        side.unlink(missing_ok=True)
    duration = time.time() - t0
    if out_nb.is_file():
        try:
            render_html(out_nb, out_html)
        except Exception as e:
            status, error = "failed", f"HTML rendering failed: {_first_error_line(e)}"
    else:
        atomic_write_text(out_html, f"<h1>{task.key} failed before running</h1><pre>{html.escape(error or '')}</pre>")
    figures = json.loads(headline.read_text()) if headline.is_file() else {}
    return {"status": status, "error": error, "duration_s": round(duration, 1), "headline": figures,
            "html": out_html.name}


def run_study(params: StudyParams, only: list[str] | None = None, force: bool = False, log=print,
              heartbeat_s: float = 10.0, wait: bool = False) -> int:
    """Run the study's notebooks, holding its output folder (`lock.StudyLock`: a second study there
    refuses, or waits with `wait`); returns the number of failed tasks (0 on success). While one runs,
    its elapsed time and progress are logged every `heartbeat_s` seconds."""
    with StudyLock(Layout(params).out(".lock"), wait=wait, log=log):
        return _run_study(params, only, force, log, heartbeat_s)


def _run_study(params: StudyParams, only, force: bool, log, heartbeat_s: float) -> int:
    report_dir = Layout(params).reports()
    report_dir.mkdir(parents=True, exist_ok=True)
    params_file = report_dir / "params.yaml"
    keyed = {k: v for k, v in params_to_dict(params).items() if k != "notebooks"}  # the plan is not an input
    params_text = yaml.safe_dump(keyed, sort_keys=False)
    dump_params(params, params_file)
    state_path = report_dir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    tasks = plan(params, only)
    src = _source_hash()
    if params.reproducible and reproducible.wants_cpu_pins(params.train.device):
        reproducible.pin_env()  # every notebook kernel inherits the CPU pins
    os.environ["JUPYTER_PATH"] = os.pathsep.join([kernel_dir(), os.environ.get("JUPYTER_PATH", "")]).strip(os.pathsep)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    keys: dict[str, str] = {}
    failed = 0
    t_study = time.time()
    for i, task in enumerate(tasks, 1):
        keys[task.key] = _task_key(task, params_text, [keys.get(d, "") for d in task.deps], src)
        prefix = f"[{i}/{len(tasks)}] {task.key}"
        bad_deps = [d for d in task.deps if state.get(d, {}).get("status") != "ok"]
        if bad_deps:
            state[task.key] = {"status": "skipped", "error": f"depends on {', '.join(bad_deps)}, which did not succeed",
                               "duration_s": 0, "headline": {}, "html": None, "key": keys[task.key]}
            log(f"{prefix}: skipped ({state[task.key]['error']})")
            failed += 1
            continue
        old = state.get(task.key, {})
        if (not force and old.get("status") == "ok" and old.get("key") == keys[task.key]
                and (report_dir / (old.get("html") or "")).is_file()):
            log(f"{prefix}: up to date, skipped (use --force to re-run)")
            continue
        log(f"{prefix}: running ...")
        try:
            result = execute(task, params_file, report_dir, log, prefix, heartbeat_s)
        except Exception as e:
            traceback.print_exc()
            result = {"status": "failed", "error": _first_error_line(e), "duration_s": 0, "headline": {}, "html": None}
        result["key"] = keys[task.key]
        state[task.key] = result
        atomic_write_json(state_path, state)
        msg = f"{prefix}: {result['status']} in {result['duration_s']:.0f} s"
        log(msg + (f" - {result['error']}" if result["error"] else ""))
        failed += result["status"] != "ok"
        write_index(params, tasks, state, report_dir)
    atomic_write_json(state_path, state)
    index = write_index(params, tasks, state, report_dir)
    log(f"study '{params.name}': {len(tasks) - failed}/{len(tasks)} ok in {time.time() - t_study:.0f} s; "
        f"index: {index}")
    return failed


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def write_index(params: StudyParams, tasks: list[Task], state: dict, report_dir: Path) -> Path:
    rows = []
    for t in tasks:
        s = state.get(t.key, {"status": "pending", "headline": {}, "duration_s": 0})
        colour = {"ok": "#1a7f37", "failed": "#cf222e", "skipped": "#9a6700"}.get(s["status"], "#57606a")
        link = f"<a href='{s['html']}'>{t.key}</a>" if s.get("html") else t.key
        figs = "<br>".join(f"{html.escape(k)}: {_fmt(v)}" for k, v in (s.get("headline") or {}).items())
        err = f"<br><small>{html.escape(s['error'])}</small>" if s.get("error") else ""
        rows.append(f"<tr><td>{link}</td><td style='color:{colour}'><b>{s['status']}</b>{err}</td>"
                    f"<td align=right>{s.get('duration_s', 0):.0f} s</td><td>{figs}</td></tr>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(params.name)} study</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:6px;"
            "vertical-align:top}table{border-collapse:collapse}</style></head><body>"
            f"<h1>petface-study: {html.escape(params.name)}</h1><p>Resolved params: "
            f"<a href='params.yaml'>params.yaml</a>. Generated {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>"
            "<table><tr><th>notebook</th><th>status</th><th>duration</th><th>headline figures</th></tr>"
            + "".join(rows) + "</table></body></html>")
    path = report_dir / "index.html"
    atomic_write_text(path, page)
    return path


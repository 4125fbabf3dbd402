"""The study runner: executes the notebooks with papermill, renders HTML reports, writes the index.

Each notebook runs in a fresh kernel of *this* interpreter (a kernelspec pointing at `sys.executable`
is put first on JUPYTER_PATH), so a user-level `python3` kernel can never run the study by mistake.
Every task says before it runs whether it is up to date or what changed. A task runs when its stage
(training, evaluation, export, comparison: `petlib.stages`) is not up to date, or when its report's own
inputs changed (the notebook, the code its cells use, the stage it shows); a task that runs only to
re-render finds its stage up to date inside the notebook and draws from the files on disk.
"""
from __future__ import annotations

import html
import json
import os
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from . import progress, reproducible
from .config import StudyParams, dump_params
from .index_page import write_index
from .io import atomic_write_json, atomic_write_text
from .layout import Layout
from .lock import StudyLock
from .stage_table import (FORCEABLE, NOTEBOOKS, Task, forced_tasks, plan, read_state, report_inputs,
                          stage_checks, why_run)
from .status import lines, study_status

REPO = NOTEBOOKS.parent
KERNEL_NAME = "petface-study"

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
        # The kernel is stopped at once after its last cell: every artefact is already written (temp file +
        # rename), and a graceful shutdown waited ~2.5 s per report for torch's interpreter teardown.
        pm.execute_notebook(str(NOTEBOOKS / f"{task.notebook}.ipynb"), str(out_nb), parameters=parameters,
                            kernel_name=KERNEL_NAME, cwd=str(REPO), progress_bar=False, log_output=False,
                            shutdown_kernel="immediate")
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


def run_study(params: StudyParams, only: list[str] | None = None, force: bool | list[str] | None = None, log=print,
              heartbeat_s: float = 10.0, wait: bool = False, dry_run: bool = False) -> int:
    """Run the study's notebooks, holding its output folder (`lock.StudyLock`: a second study there
    refuses, or waits with `wait`); returns the number of failed tasks (0 on success). Each task first
    says whether it is up to date or what changed; `dry_run` says only that. `force`: True re-runs
    everything, a list names stages, notebooks or tasks to re-run with what depends on them. While a
    notebook runs, its elapsed time and progress are logged every `heartbeat_s` seconds."""
    if dry_run:
        for line in lines(study_status(params, only, force)):
            log(line)
        return 0
    with StudyLock(Layout(params).out(".lock"), wait=wait, log=log):
        return _run_study(params, only, force, log, heartbeat_s)


RENDER_WORKERS = 2  # re-renders (stages up to date: nothing is trained or timed) run this many at a time


def _run_study(params: StudyParams, only, force, log, heartbeat_s: float) -> int:
    report_dir = Layout(params).reports()
    report_dir.mkdir(parents=True, exist_ok=True)
    params_file = report_dir / "params.yaml"
    dump_params(params, params_file)
    tasks = plan(params, only)
    forced = forced_tasks(tasks, force)
    if params.reproducible and reproducible.wants_cpu_pins(params.train.device):
        reproducible.pin_env()  # every notebook kernel inherits the CPU pins
    os.environ["JUPYTER_PATH"] = os.pathsep.join([kernel_dir(), os.environ.get("JUPYTER_PATH", "")]).strip(os.pathsep)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    run = _Runner(params, tasks, report_dir, params_file, read_state(report_dir), log, heartbeat_s)
    t_study = time.time()
    with run.pool:
        for i, task in enumerate(tasks, 1):
            run.step(task, f"[{i}/{len(tasks)}] {task.key}", task.key in forced)
        run.drain()
    atomic_write_json(report_dir / "state.json", run.state)
    index = write_index(params, tasks, run.state, report_dir)
    log(f"study '{params.name}': {len(tasks) - run.failed}/{len(tasks)} ok ({run.ran} run, "
        f"{len(tasks) - run.ran - run.failed} up to date) in {time.time() - t_study:.0f} s; index: {index}")
    return run.failed


class _Runner:
    """One pass over the tasks. A task whose stage must run runs alone (training and timings never share
    the CPU); a task that only re-renders goes to a pool of `RENDER_WORKERS` processes."""

    def __init__(self, params, tasks, report_dir, params_file, state, log, heartbeat_s):
        self.params, self.tasks, self.report_dir, self.params_file = params, tasks, report_dir, params_file
        self.state, self.log, self.heartbeat_s = state, log, heartbeat_s
        self.failed = self.ran = 0
        self.pending: dict = {}
        self.pool = _RenderWorkers(log)

    def step(self, task: Task, prefix: str, forced: bool) -> None:
        bad_deps = [d for d in task.deps if self.state.get(d, {}).get("status") != "ok" and d not in self.pending]
        if bad_deps:
            self.state[task.key] = {"status": "skipped", "duration_s": 0, "headline": {}, "html": None,
                                    "error": f"depends on {', '.join(bad_deps)}, which did not succeed"}
            self.log(f"{prefix}: skipped ({self.state[task.key]['error']})")
            self.failed += 1
            return
        reasons, stage_runs = why_run(task, self.params, self.state, self.report_dir, forced)
        if not reasons:
            self.log(f"{prefix}: up to date")
            return
        self.ran += 1
        if not stage_runs:
            self.log(f"{prefix}: {'; '.join(reasons)}; rendering ...")
            self.pending[task.key] = (task, prefix, reasons, self.pool.submit(
                task, self.params_file, self.report_dir, prefix, self.heartbeat_s))
            return
        self.drain()  # nothing else runs while a stage trains, evaluates or times
        self.log(f"{prefix}: {'; '.join(reasons)}; running ...")
        run_task = Task(task.key, task.notebook, {**task.parameters, **({"force": True} if forced and
                                                                      task.stage in FORCEABLE else {})}, task.deps)
        try:
            result = execute(run_task, self.params_file, self.report_dir, self.log, prefix, self.heartbeat_s)
        except Exception as e:
            traceback.print_exc()
            result = {"status": "failed", "error": _first_error_line(e), "duration_s": 0, "headline": {}, "html": None}
        self.finish(task, prefix, reasons, result)

    def drain(self) -> None:
        for task, prefix, reasons, future in list(self.pending.values()):
            try:
                result = future.result()
            except Exception as e:
                result = {"status": "failed", "error": _first_error_line(e), "duration_s": 0, "headline": {}, "html": None}
            self.finish(task, prefix, reasons, result)
        self.pending.clear()

    def finish(self, task: Task, prefix: str, reasons: list[str], result: dict) -> None:
        result["why"] = "; ".join(reasons)
        if result["status"] == "ok":
            result["inputs"] = report_inputs(task, self.params, stage_checks(task, self.params))
        self.state[task.key] = result
        atomic_write_json(self.report_dir / "state.json", self.state)
        self.log(f"{prefix}: {result['status']} in {result['duration_s']:.0f} s" +
                 (f" - {result['error']}" if result["error"] else ""))
        self.failed += result["status"] != "ok"
        write_index(self.params, self.tasks, self.state, self.report_dir)


RESULT = "petface-render-result "


class _RenderWorkers:
    """`RENDER_WORKERS` long-lived processes (`python -m petlib.study`), each rendering one task at a time
    in an environment of its own (the progress file its kernel writes), so that the imports of papermill
    and nbconvert are paid once per worker, not once per report. Their lines are passed on to `log`."""

    def __init__(self, log, n: int = RENDER_WORKERS):
        import queue

        self.log, self.n, self.jobs, self.threads = log, n, queue.Queue(), []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for _ in self.threads:
            self.jobs.put(None)
        for t in self.threads:
            t.join()

    def submit(self, task: Task, params_file: Path, report_dir: Path, prefix: str, heartbeat_s: float):
        from concurrent.futures import Future

        if not self.threads:
            self.threads = [threading.Thread(target=self._serve, daemon=True) for _ in range(self.n)]
            for t in self.threads:
                t.start()
        future = Future()
        self.jobs.put(({"key": task.key, "notebook": task.notebook, "parameters": task.parameters,
                        "params_file": str(params_file), "report_dir": str(report_dir), "prefix": prefix,
                        "heartbeat_s": heartbeat_s}, future))
        return future

    def _serve(self) -> None:
        import subprocess

        proc = None
        while (item := self.jobs.get()) is not None:
            job, future = item
            if proc is None or proc.poll() is not None:
                proc = subprocess.Popen([sys.executable, "-m", "petlib.study"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            for line in proc.stdout:
                if line.startswith(RESULT):
                    future.set_result(json.loads(line[len(RESULT):]))
                    break
                self.log(line.rstrip("\n"))
            else:
                future.set_exception(RuntimeError(f"the render process of {job['key']} exited with {proc.wait()}"))
        if proc is not None and proc.poll() is None:
            proc.stdin.close()
            proc.wait()


def _render_worker() -> None:
    """A render worker's loop: one job (JSON) per line on stdin, its result on stdout after RESULT."""
    for line in sys.stdin:
        job = json.loads(line)
        task = Task(job["key"], job["notebook"], job["parameters"])
        r = execute(task, Path(job["params_file"]), Path(job["report_dir"]), lambda text: print(text, flush=True),
                    job["prefix"], job["heartbeat_s"])
        print(RESULT + json.dumps(r), flush=True)


if __name__ == "__main__":
    _render_worker()

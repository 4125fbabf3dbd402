"""`petface status` (as `dvc status`): each task of a study up to date, stale with its reasons, to
re-render, or waiting on a task that runs first, computed from the stamps and the inputs as they are now,
running nothing. `petface study --dry-run` prints the same."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .config import StudyParams
from .layout import Layout
from .stage_table import forced_tasks, plan, read_state, stage_checks, why_run


@dataclass
class TaskStatus:
    task: str
    notebook: str
    state: str  # "up to date", "stale" (its stage runs), "re-render" (its report only), "after" (a dependency runs)
    reasons: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    missing_outputs: list[str] = field(default_factory=list)


def study_status(params: StudyParams, only: list[str] | None = None, force=None) -> list[TaskStatus]:
    report_dir = Layout(params).reports()
    state = read_state(report_dir)
    tasks = plan(params, only)
    forced, will, out = forced_tasks(tasks, force), set(), []
    for task in tasks:
        reasons, stage_runs = why_run(task, params, state, report_dir, task.key in forced)
        after = [d for d in task.deps if d in will]
        if reasons or after:
            will.add(task.key)
        kind = ("stale" if stage_runs else "re-render") if reasons else ("after" if after else "up to date")
        missing = [o for c in stage_checks(task, params) for o in c.missing_outputs()] if reasons else []
        out.append(TaskStatus(task.key, task.notebook, kind, reasons, after, missing))
    return out


def lines(statuses: list[TaskStatus]) -> list[str]:
    """What `--dry-run` and `petface status` print: one line a task and a summary."""
    out = []
    for i, s in enumerate(statuses, 1):
        what = "; ".join(s.reasons) if s.reasons else "up to date"
        out.append(f"[{i}/{len(statuses)}] {s.task}: {what}" +
                   (f" (after {', '.join(s.after)}, which runs first)" if s.after else ""))
    n = sum(s.state != "up to date" for s in statuses)
    out.append(f"dry run: {n} of {len(statuses)} tasks would run; nothing was run")
    return out


def as_json(statuses: list[TaskStatus]) -> list[dict]:
    return [asdict(s) for s in statuses]

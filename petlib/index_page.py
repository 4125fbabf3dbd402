"""The study's index page: every task's status, headline figures and why it ran, and the stage graph
(what each task needs), written after every task."""
from __future__ import annotations

import html
import time
from pathlib import Path

from .config import StudyParams
from .io import atomic_write_text


def _graph(tasks) -> str:
    """The stage graph as a table: each task, the stage it brings up to date, and the tasks it needs."""
    rows = "".join(f"<tr><td>{html.escape(t.key)}</td><td>{html.escape(t.stage or 'report only')}</td>"
                   f"<td>{html.escape(', '.join(t.deps) or '-')}</td></tr>" for t in tasks)
    return ("<h2>Stage graph</h2><p>Each task runs after the tasks it needs; <code>petface status PARAMS</code> "
            "says which are stale and why.</p><table><tr><th>task</th><th>stage</th><th>needs</th></tr>"
            + rows + "</table>")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def write_index(params: StudyParams, tasks: list, state: dict, report_dir: Path) -> Path:
    rows = []
    for t in tasks:
        s = state.get(t.key, {"status": "pending", "headline": {}, "duration_s": 0})
        colour = {"ok": "#1a7f37", "failed": "#cf222e", "skipped": "#9a6700"}.get(s["status"], "#57606a")
        link = f"<a href='{s['html']}'>{t.key}</a>" if s.get("html") else t.key
        figs = "<br>".join(f"{html.escape(k)}: {_fmt(v)}" for k, v in (s.get("headline") or {}).items())
        err = f"<br><small>{html.escape(s['error'])}</small>" if s.get("error") else ""
        err += f"<br><small>ran: {html.escape(s['why'])}</small>" if s.get("why") else ""
        rows.append(f"<tr><td>{link}</td><td style='color:{colour}'><b>{s['status']}</b>{err}</td>"
                    f"<td align=right>{s.get('duration_s', 0):.0f} s</td><td>{figs}</td></tr>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(params.name)} study</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:6px;"
            "vertical-align:top}table{border-collapse:collapse}</style></head><body>"
            f"<h1>petface-study: {html.escape(params.name)}</h1><p>Resolved params: "
            f"<a href='params.yaml'>params.yaml</a>. Generated {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>"
            "<table><tr><th>notebook</th><th>status</th><th>duration</th><th>headline figures</th></tr>"
            + "".join(rows) + "</table>" + _graph(tasks) + "</body></html>")
    path = report_dir / "index.html"
    atomic_write_text(path, page)
    return path

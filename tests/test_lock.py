"""One study per output folder at a time (issue 24 §4): the lock refuses a second study with one line
naming the holder, waits with --wait, takes over a lock whose process is gone, and is released."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from petlib.lock import StudyLock, StudyLocked


def test_a_second_study_refuses_naming_the_holder(tmp_path):
    path = tmp_path / "study" / ".lock"
    with StudyLock(path, log=lambda m: None):
        held = json.loads(path.read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        with pytest.raises(StudyLocked) as e:
            with StudyLock(path, log=lambda m: None):
                pass
        msg = str(e.value)
        assert "another study is running" in msg and f"pid {os.getpid()}" in msg and "--wait" in msg
        assert "\n" not in msg
    assert not path.exists(), "released on exit"


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"}))
    said = []
    with StudyLock(path, log=said.append):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert any("taking over" in s and str(dead.pid) in s for s in said)


def test_a_lock_from_another_host_is_not_taken(tmp_path):
    path = tmp_path / ".lock"
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "earlier"}))
    with pytest.raises(StudyLocked, match="on elsewhere"):
        with StudyLock(path, log=lambda m: None):
            pass


def test_wait_takes_the_lock_when_the_holder_finishes(tmp_path):
    path = tmp_path / ".lock"
    first = StudyLock(path, log=lambda m: None)
    first.__enter__()
    threading.Timer(0.5, first.__exit__, (None, None, None)).start()
    t = time.time()
    waits = []
    with StudyLock(path, wait=True, poll_s=0.1, log=waits.append):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert time.time() - t >= 0.4 and waits and "waiting for the study of pid" in waits[0]


def test_the_cli_refuses_a_second_study_in_one_line(repo, tmp_path):
    from petlib.config import load_params
    from petlib.layout import Layout

    pfile = repo / "params" / "ci.yaml"
    p = load_params(pfile, [f"output_dir={tmp_path}", f"reports_dir={tmp_path / 'reports'}"])
    lock = Layout(p).out(".lock")
    with StudyLock(lock, log=lambda m: None):
        r = subprocess.run([sys.executable, "-m", "petlib.cli", "study", str(pfile), "--set", f"output_dir={tmp_path}",
                            "--set", f"reports_dir={tmp_path / 'reports'}"], capture_output=True, text=True,
                           timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "another study is running" in r.stderr and not (tmp_path / "reports" / "ci" / "state.json").exists()

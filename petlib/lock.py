"""One study per output folder at a time: a lock file holding the holder's PID, host and start time.

A second study on the same folder refuses with one line naming the holder (or waits for it); a lock
whose process is gone (same host, PID not alive) is recognised as stale and taken over."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path


class StudyLocked(RuntimeError):
    """Another study holds the folder; the message names it."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written, or damaged: treated as held


class StudyLock:
    """`with StudyLock(folder / ".lock"):` holds the folder for the block's duration."""

    def __init__(self, path: str | Path, wait: bool = False, poll_s: float = 2.0, log=print):
        self.path, self.wait, self.poll_s, self.log = Path(path), wait, poll_s, log
        self.mine = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def _try(self) -> dict | None:
        """Take the lock; None when taken, else the holder's record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(self.path)
            if holder is None:
                return self._try()
            if holder.get("host") == self.mine["host"] and isinstance(holder.get("pid"), int) \
                    and not _alive(holder["pid"]):
                self.log(f"{self.path}: taking over the lock of pid {holder['pid']}, which is gone "
                         f"(started {holder.get('started')})")
                self.path.unlink(missing_ok=True)
                return self._try()
            return holder
        with os.fdopen(fd, "w") as f:
            json.dump(self.mine, f)
        return None

    def __enter__(self) -> StudyLock:
        while (holder := self._try()) is not None:
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}" if holder
                   else "a process writing it now")
            if not self.wait:
                raise StudyLocked(f"{self.path.parent}: another study is running in this folder ({who}); "
                                  f"wait for it, or run with --wait (a lock left by a dead process on this "
                                  f"host is taken over; from another host, delete {self.path} if it is gone)")
            self.log(f"{self.path.parent}: waiting for the study of {who}")
            time.sleep(self.poll_s)
        return self

    def __exit__(self, *exc) -> None:
        if _holder(self.path) == self.mine:
            self.path.unlink(missing_ok=True)

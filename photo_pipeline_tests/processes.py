"""Stopping what a test started, children included.

A daemon, `photo-pipeline ui` or `serve` starts code servers and run workers of its own; a
SIGTERM to the leader's process group is not always enough (a code server outlived its daemon
by minutes in a four-worker run and kept its CPU and connections), so whatever is left of the
tree once the grace is over gets SIGKILL by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def _stat_fields(stat: Path) -> list[str] | None:
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None  # ended while we looked


def _alive(pid: int) -> bool:
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return fields is not None and fields[0] != "Z"


def process_tree(root_pid: int) -> set[int]:
    """Live (not zombie) pids in `root_pid`'s session or descended from it."""
    parents: dict[int, int] = {}
    sessions: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is None or fields[0] == "Z":
            continue
        pid = int(stat.parent.name)
        parents[pid], sessions[pid] = int(fields[1]), int(fields[3])
    tree = {pid for pid, session in sessions.items() if session == root_pid}
    if root_pid in parents:
        tree.add(root_pid)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


def stop_process_tree(process: subprocess.Popen[bytes], grace_seconds: float = 30) -> None:
    """SIGTERM to the process group of a process started with start_new_session, then SIGKILL
    to every pid of its tree still alive after `grace_seconds` (or once the leader has ended)."""
    tree = process_tree(process.pid)
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and (process.poll() is None or any(map(_alive, tree))):
        tree |= process_tree(process.pid)
        time.sleep(0.2)
    for pid in tree | process_tree(process.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=30)

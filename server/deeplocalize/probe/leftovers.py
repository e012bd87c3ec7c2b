"""Processes a training script starts, found and stopped however they detach.

Stdlib only: it runs inside the user's interpreter (the training process and the fork
server), and the parent imports it for the same /proc reading. A training process makes
itself a *child subreaper*: whatever its script starts (children, grandchildren that
double-fork into a new session, a forked copy of the training process) stays below it in
the process tree while it lives, so "everything below me" is the whole job, and the job
can stop it before it exits. Linux only; elsewhere every call is a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_PR_SET_CHILD_SUBREAPER = 36
# What `ps`, `top` and psutil's name() show for our processes (the command line stays the
# interpreter's): a training process, one waiting for its job, and the fork server.
TRAINING_NAME = "dl-training"
SPARE_NAME = "dl-spare"
FORKSERVER_NAME = "dl-forkserver"
# Set in the job's environment: every program it starts inherits it, even one that escaped
# the tree (a daemon re-parented to init), so the parent can still find it by its environment.
JOB_MARKER = "DEEPLOCALIZE_JOB"


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_name(name: str) -> bool:
    """The process' name (at most 15 bytes) as process listings show it."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphans of this process' descendants are re-parented to it instead of init."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent() -> bool:
    """SIGKILL this process when the thread that forked it exits (the fork server dies)."""
    return _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, process group, session) of every process, read from /proc."""
    table: dict[int, tuple[int, int, int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command (field 2) may contain spaces and parentheses: the fields follow the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        try:
            if fields[0] == b"Z":  # a zombie is already dead: only its reaping is left
                continue
            table[int(name)] = (int(fields[1]), int(fields[2]), int(fields[3]))
        except (IndexError, ValueError):
            continue
    return table


def descendants(pid: int, table: dict[int, tuple[int, int, int]] | None = None) -> list[int]:
    """Every live process below `pid`, parents before their children."""
    table = proc_table() if table is None else table
    children: dict[int, list[int]] = {}
    for p, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(p)
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _cmdline(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [p.decode("utf-8", "replace") for p in fh.read().split(b"\0") if p]
    except OSError:
        return None


def command(pid: int) -> str:
    """The command line of `pid` as the user would read it, shortened; a copy of the calling
    process (forked, never exec'd) is named as such."""
    parts = _cmdline(pid)
    if parts is None:
        return f"pid {pid}"
    if parts == _cmdline("self"):
        return f"a forked copy of the training process (pid {pid})"
    if parts and os.path.basename(parts[0]).startswith("python") and len(parts) > 1:
        parts[0] = os.path.basename(parts[0])
    text = " ".join(parts) or f"pid {pid}"
    return text if len(text) <= 120 else text[:117] + "..."


def has_marker(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return f"{JOB_MARKER}={marker}".encode() in fh.read().split(b"\0")
    except OSError:
        return False


def stop(pids: list[int], below: int | None = None) -> list[int]:
    """Freeze, then kill: a stopped process cannot start another one between our look at
    the tree and the kill. `below`: also catch whatever appeared under that process
    meanwhile. Returns the pids that were signalled."""
    frozen: list[int] = []
    todo = list(pids)
    for _ in range(5):
        for pid in todo:
            try:
                os.kill(pid, signal.SIGSTOP)
                frozen.append(pid)
            except OSError:
                pass
        if below is None:
            break
        todo = [p for p in descendants(below) if p not in frozen]
        if not todo:
            break
    for pid in frozen:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return frozen


def end_multiprocessing(timeout: float) -> None:
    """What Python's exit does for `multiprocessing` (finalize pools, terminate daemonic
    children, join the others), bounded: the training process ends with os._exit, which
    skips it, and a child that never ends must not hold the analysis."""
    util = sys.modules.get("multiprocessing.util")
    exit_function = getattr(util, "_exit_function", None)
    if exit_function is None:
        return

    def run() -> None:
        try:
            exit_function()
        except Exception:  # noqa: BLE001 - a half-torn-down pool: the kill that follows still applies
            pass

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)


def stop_descendants(grace: float = 3.0) -> list[dict]:
    """Called by the training process once its script has ended: whatever the script left
    running (and Python's own exit would not have ended) is stopped and reaped. Returns
    what was left, for the report, with the user's line that started it where known."""
    end_multiprocessing(grace)
    me = os.getpid()
    table = proc_table()
    left = descendants(me, table)
    found = []
    for pid in left:
        if _cmdline(pid) is None or _ends_with_python(cmd := command(pid)):
            continue
        entry: dict = {"pid": pid, "command": cmd}
        spawned = sys.modules.get("deeplocalize.probe.spawns")
        site = spawned.site_of(pid, table) if spawned is not None else None
        if site:
            entry["site"] = site
        found.append(entry)
    if left:
        stop(left, below=me)
        reap(time.monotonic() + 2.0)
    return found


# Helpers of multiprocessing that end by themselves when Python exits (their pipe closes).
_PYTHON_EXIT_ENDS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _ends_with_python(cmd: str) -> bool:
    return any(name in cmd for name in _PYTHON_EXIT_ENDS)


def reap(deadline: float) -> None:
    """Collect dead children (and orphans re-parented to this subreaper) until none is left."""
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)

"""Every process of one training job, tracked while it runs and stopped at its end.

The training process keeps its script's processes below it (it is a child subreaper,
see probe/leftovers.py) and stops them when the script ends. This is the parent's side,
for when the training process cannot: it was killed (budget, cancel, an early stop), or
died. A process belongs to the job when it is below the training process now, was seen
below it earlier (the budget watcher looks every quarter second), shares its session or
process group, or carries the job's mark in its environment (a daemon that escaped the
tree still inherited it).
"""

from __future__ import annotations

import os
import signal
import uuid

import psutil

from .probe import leftovers


class JobTree:
    def __init__(self, pid: int, marker: str) -> None:
        self.pid = pid
        self.marker = marker
        self.created = _created(pid)
        self._seen: dict[int, float] = {}  # pid -> create time (a reused pid is another process)

    @staticmethod
    def new_marker() -> str:
        return uuid.uuid4().hex

    def watch(self) -> None:
        """Remember what is below the training process now."""
        try:
            for proc in psutil.Process(self.pid).children(recursive=True):
                try:
                    self._seen.setdefault(proc.pid, proc.create_time())
                except psutil.Error:
                    pass
        except psutil.Error:
            pass

    def _root_is_ours(self, table: dict) -> bool:
        """The training process' pid still names it (or no live process): once it has ended, the
        pid may be given to another process, whose group and session are not the job's."""
        return self.pid not in table or _created(self.pid) == self.created

    def members(self) -> list[int]:
        """The job's live processes other than the training process itself."""
        table = leftovers.proc_table()
        found: set[int] = set()
        if self._root_is_ours(table):
            found |= set(leftovers.descendants(self.pid, table))
            found |= {p for p, (_, pgrp, sid) in table.items() if self.pid in (pgrp, sid)}
        for pid, created in self._seen.items():
            if pid in table and _created(pid) == created:
                found.add(pid)
        found |= {p for p in table if p not in found and leftovers.has_marker(p, self.marker)}
        found.discard(self.pid)
        found.discard(os.getpid())
        return sorted(found)

    def stop(self) -> list[str]:
        """Stop the training process and all the job's processes; returns the commands of
        those (other than the training process) that were still running."""
        others = self.members()
        described = [leftovers.command(p) for p in others]
        table = leftovers.proc_table()
        root = [self.pid] if self.pid in table and self._root_is_ours(table) else []
        if root:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        leftovers.stop([*root, *others], below=root[0] if root else None)
        return described


def _created(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and everything below it."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / (1024 * 1024)

"""Which line of the user's code started each process the script starts.

`subprocess.Popen` (and everything built on it: `run`, `check_output`) and `os.fork`
(and what forks through it: `multiprocessing`) are wrapped to remember the user's call
site of each child. When the script leaves processes running, the report then names the
line that started them (see leftovers.stop_descendants).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from .sites import user_call_chain

SITES: dict[int, list[dict[str, Any]]] = {}  # child pid -> user call chain (innermost first)


def install() -> None:
    real_fork = os.fork
    real_popen_init = subprocess.Popen.__init__

    def fork() -> int:
        chain = user_call_chain(limit=4)
        pid = real_fork()
        if pid > 0 and chain:
            SITES[pid] = chain
        return pid

    def popen_init(self: subprocess.Popen, *args: Any, **kwargs: Any) -> None:
        real_popen_init(self, *args, **kwargs)
        chain = user_call_chain(skip_self=self, limit=4)
        if chain and getattr(self, "pid", None):
            SITES[self.pid] = chain

    os.fork = fork
    subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]


def site_of(pid: int, table: dict[int, tuple[int, int, int]]) -> list[dict[str, Any]] | None:
    """The call site that started `pid`, or the nearest ancestor the script started. A process
    whose ancestors are gone (a daemon that double-forked, re-parented to the training process)
    came from a process the script started that has ended since: the latest such one."""
    seen = set()
    while pid not in SITES and pid in table and pid not in seen:
        seen.add(pid)
        pid = table[pid][0]
    if pid in SITES:
        return SITES[pid]
    ended = [p for p in SITES if p not in table]
    return SITES[ended[-1]] if ended else None

"""How a training process is started from a fresh interpreter (stdlib only, on purpose).

Three paths start one: an analysis' worker when no fork server can serve it (runner.py), a live
run (live.py) and the live run's head start, which the `deeplocalize` command makes before it has
imported anything but the standard library (launch.py). They share the child's command line and,
for the two live ones, the process itself (`Started`): a live run's child writes to the terminal,
owns its process group (Ctrl-C reaches it once, from the command) and waits for its job on a pipe.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .probe.channel import widen_pipe  # stdlib only

CHILD = Path(__file__).resolve().parent / "probe" / "child.py"


def child_command(python: str, events_fd: int, control_fd: int) -> list[str]:
    """The training process' command line: the probe's child script run by the user's interpreter
    (nothing of ours needs installing there), its events and control pipes."""
    return [python, "-u", str(CHILD), "--events-fd", str(events_fd), "--control-fd", str(control_fd)]


@dataclass
class Started:
    """A live run's training process, started before it has a job."""

    popen: subprocess.Popen
    events: int  # the read end of its events pipe
    control: int  # the write end of its control pipe
    python: str
    extra_env: dict[str, str]
    adopted: bool = False  # a run took it over (and closes its pipes)
    discarded: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def wait(self) -> int:
        return await asyncio.get_running_loop().run_in_executor(None, self.popen.wait)

    def serves(self, python: str, extra_env: dict[str, str]) -> bool:
        return not self.discarded and self.popen.poll() is None and python == self.python and extra_env == self.extra_env

    def discard(self) -> None:
        """Stop it (it has no job yet: nothing of the user's has run in it) and close its pipes;
        once (a closed descriptor's number may be reused)."""
        if self.discarded or self.adopted:
            return
        self.discarded = True
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()
        for fd in (self.events, self.control):
            try:
                os.close(fd)
            except OSError:
                pass


def start(python: str, extra_env: dict[str, str]) -> Started:
    """A live run's training process, started now (OSError: the interpreter cannot be run)."""
    ev_r, ev_w = os.pipe()
    widen_pipe(ev_r)
    ct_r, ct_w = os.pipe()
    try:
        popen = subprocess.Popen(child_command(python, ev_w, ct_r), pass_fds=(ev_w, ct_r), start_new_session=True,
                                 env={**os.environ, **extra_env} if extra_env else None)
    except OSError:
        for fd in (ev_r, ct_w):
            os.close(fd)
        raise
    finally:
        os.close(ev_w)
        os.close(ct_r)
    return Started(popen, ev_r, ct_w, python, dict(extra_env))

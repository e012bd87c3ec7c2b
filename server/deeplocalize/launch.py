"""The `deeplocalize` command's first moments (stdlib only, on purpose).

`deeplocalize run train.py` is measured against `python train.py`: whatever the command does
before the script's process starts is added to the user's run. Importing the command itself
(the engine, the detectors, numpy, rich, astroid) takes a quarter of a second, and the training
process then spends seconds importing TensorFlow. So `run` starts the training process first,
from the interpreter and environment its flags name, and imports the rest while that process
imports TensorFlow; the process waits for its job on a pipe, as every training process does
(probe/child.py). If the fully parsed options turn out to want another interpreter or
environment (a flag this quick reading did not understand), the early process is stopped and
the run starts its own: the head start is only ever a saving, never a difference.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .probe.channel import widen_pipe  # stdlib only

CHILD = Path(__file__).resolve().parent / "probe" / "child.py"  # runner.CHILD, without importing the runner


@dataclass
class HeadStart:
    """A training process started before the command knew its whole job."""

    popen: subprocess.Popen
    events: int  # the read end of its events pipe
    control: int  # the write end of its control pipe
    python: str
    extra_env: dict[str, str]
    adopted: bool = False  # the run took it over (and closes its pipes)

    def serves(self, python: str, extra_env: dict[str, str]) -> bool:
        return self.popen.poll() is None and python == self.python and extra_env == self.extra_env

    def discard(self) -> None:
        """Stop it (it has no job yet: nothing of the user's has run in it) and close its pipes."""
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


def start(python: str, extra_env: dict[str, str]) -> HeadStart | None:
    """The training process of a live run, started now; None if it cannot be (the run then
    starts one itself and says why)."""
    ev_r, ev_w = os.pipe()
    widen_pipe(ev_r)
    ct_r, ct_w = os.pipe()
    try:
        popen = subprocess.Popen(
            [python, "-u", str(CHILD), "--events-fd", str(ev_w), "--control-fd", str(ct_r), "--fresh-runtime"],
            pass_fds=(ev_w, ct_r), start_new_session=True,  # its own group: Ctrl-C reaches it once, from the command
            env={**os.environ, **extra_env} if extra_env else None)
    except OSError:
        for fd in (ev_r, ev_w, ct_r, ct_w):
            os.close(fd)
        return None
    os.close(ev_w)
    os.close(ct_r)
    return HeadStart(popen, ev_r, ct_w, python, dict(extra_env))


def quick_options(args: list[str]) -> tuple[str, dict[str, str]] | None:
    """`--python` and `--env` of `run [options] script ...`, read before argparse is imported;
    None for anything but a run (or its help)."""
    if not args or args[0] != "run":
        return None
    python, env = sys.executable, {}
    rest = args[1:]
    i = 0
    while i < len(rest) and rest[i].startswith("-"):
        flag, _, inline = rest[i].partition("=")
        if flag in ("-h", "--help"):
            return None
        value = inline if inline else (rest[i + 1] if i + 1 < len(rest) else "")
        step = 1 if inline or flag not in ("--python", "--env") else 2
        if flag == "--python":
            python = value
        elif flag == "--env" and "=" in value:
            key, _, val = value.partition("=")
            env[key] = val
        i += step
    return python, env


def entry() -> None:
    """The `deeplocalize` command."""
    quick = quick_options(sys.argv[1:])
    early = start(*quick) if quick is not None else None
    from .cli import entry as command

    command(early)


if __name__ == "__main__":
    entry()

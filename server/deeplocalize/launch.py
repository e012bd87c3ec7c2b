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

import sys

from .training_process import Started, start


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
    early: Started | None = None
    if quick is not None:
        try:
            early = start(*quick)
        except OSError:
            pass  # the run starts its own and says why
    from .cli import entry as command

    command(early)


if __name__ == "__main__":
    entry()

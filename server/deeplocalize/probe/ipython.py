"""What a notebook's code may expect from IPython when it runs as a script here.

A notebook saved as `.ipynb` has its magics turned into Python by the engine; a notebook
shown to a language server as one virtual document (jupyterlab-lsp's `.virtual_documents/
name.ipynb`) has them as `get_ipython().run_line_magic(...)` calls. Both run with these
names in their globals: `display()` prints, the magics that matter for training take
effect, and no shell command ever runs. Stdlib only (this runs in the training process).
"""

from __future__ import annotations

import os
import sys
from typing import Any

# Cell magics whose body is Python that runs as is.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})


def display(*objects: Any, **kwargs: Any) -> None:
    print(*objects)


class Shell:
    """The part of IPython's InteractiveShell that notebook code calls."""

    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1) -> Any:
        if name == "env" and line.strip():
            key, _, value = line.strip().partition("=") if "=" in line else line.strip().partition(" ")
            os.environ[key.strip()] = value.strip()
        elif name == "cd" and line.strip():
            os.chdir(os.path.expanduser(line.strip().strip("\"'")))
        return None

    def run_cell_magic(self, name: str, line: str, cell: str) -> Any:
        if name in PYTHON_CELL_MAGICS:
            exec(compile(cell, "<cell>", "exec"), sys._getframe(1).f_globals)  # noqa: S102 - the user's own cell
        elif name == "writefile" and line.strip():
            parts = line.split()
            with open(parts[-1].strip("\"'"), "a" if "-a" in parts or "--append" in parts else "w") as fh:
                fh.write(cell)
        return None

    def system(self, cmd: str) -> None:  # `!cmd`: never run
        return None

    def getoutput(self, cmd: str, split: bool = True) -> list[str]:  # `x = !cmd`
        return []


_SHELL = Shell()


def namespace() -> dict[str, Any]:
    return {"display": display, "get_ipython": lambda: _SHELL}

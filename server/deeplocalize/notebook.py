"""Jupyter notebooks as the scripts they run.

A notebook's code cells, in order, run as one program: that is what "Run All" does in a
kernel. The engine analyzes that program like any script and only the places change:
each script line belongs to one cell, so a finding is reported at the notebook, the
cell and the line in that cell. IPython syntax is turned into Python line for line (a
magic becomes `pass` or its effect, a shell escape never runs), so the script's lines
and the cells' lines stay in step. IPython's builtins (`display`) come from the probe
(probe/ipython.py), which gives them to any `.ipynb` it runs.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

from .findings import Position, SourceRange
from .probe.ipython import PYTHON_CELL_MAGICS  # stdlib only: the same list the training process runs

SUFFIX = ".ipynb"
# Calls that train: the last cell making one (or calling a function a training cell defines)
# is the last one run; the cells after it (evaluation, plots) do not change the diagnosis, so
# the script ends there (one line between the cells). They stay in the script, so that a fix
# sees them: scaling the inputs also scales what a later cell evaluates.
STOP = "raise SystemExit(0)  # the cells below do not train: not run by DeepLocalize"
_TRAINING_CALLS = frozenset({"fit", "fit_generator", "train_on_batch"})
# Cell magics whose body is Python and runs as is.
_ASSIGNED_ESCAPE = re.compile(r"^(\s*)([\w.\[\], ]+?\s*=\s*)[!%].*$")


class NotebookUnreadable(Exception):
    """Not a notebook at all (corrupt JSON, another format): an error at `line`/`column` of the file."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line, self.column = line, column


class NothingToRun(Exception):
    """A valid notebook with nothing DeepLocalize can run: no code cells, another kernel language."""


@dataclass(frozen=True)
class CellSpan:
    index: int  # 1-based among all the notebook's cells (markdown included), as editors number them
    first_line: int  # the script line of the cell's first line
    lines: int
    text: str  # the cell's source as saved


@dataclass(frozen=True)
class Notebook:
    path: str
    script: str
    cells: tuple[CellSpan, ...]  # the code cells, in order
    runs: int  # how many of them run (up to the last that trains)

    def cell_of(self, script_line: int) -> CellSpan | None:
        for cell in self.cells:
            if cell.first_line <= script_line < cell.first_line + cell.lines:
                return cell
        return None

    def to_cell(self, r: SourceRange) -> SourceRange:
        """A script range as the same text in its cell (`cell` set); the stop line between cells
        maps into the cell before it."""
        if r.file != self.path:
            return r
        before = [c for c in self.cells if c.first_line <= r.start.line]
        cell = self.cell_of(r.start.line) or (before[-1] if before else self.cells[0])
        top, last = cell.first_line, cell.first_line + cell.lines - 1
        start = Position(min(max(r.start.line, top), last) - top + 1, r.start.column)
        end = Position(min(max(r.end.line, top), last) - top + 1, r.end.column)
        if r.end.line > last:  # a range never spills into the next cell: it ends with this one
            end = Position(cell.lines, len(cell.text.splitlines()[-1]) + 1 if cell.text.splitlines() else 1)
        return replace(r, start=start, end=end, cell=cell.index)

    def to_script(self, cell_index: int, line: int) -> int | None:
        """The script line of `line` (1-based) in the cell at `cell_index`; None if that is no code cell's line."""
        for cell in self.cells:
            if cell.index == cell_index and 1 <= line <= cell.lines:
                return cell.first_line + line - 1
        return None


def cell_places(path: str) -> Callable[[SourceRange], SourceRange]:
    """Ranges of the script `path` runs as the user reads them: in a notebook, in its cells (the
    saved one: for findings streamed before their report exists); elsewhere unchanged."""
    if is_notebook(path):
        try:
            return load_notebook(path).to_cell
        except (NotebookUnreadable, NothingToRun):
            pass
    return lambda r: r


def is_notebook(path: str) -> bool:
    """A `.ipynb` file as Jupyter saves it (JSON). A language client's virtual document of a
    notebook (jupyterlab-lsp's `.virtual_documents/name.ipynb`, Python text) is a script."""
    if not path.lower().endswith(SUFFIX):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(256).lstrip()
    except OSError:
        return True  # unreadable: reported as a notebook that cannot be read
    return not head or head.startswith(b"{")


def load_notebook(path: str) -> Notebook:
    """The notebook at `path` as a script; raises NotebookUnreadable or NothingToRun."""
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise NotebookUnreadable(f"cannot read {path}: {exc.strerror}") from exc
    return _load(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int, size: int) -> Notebook:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return from_json(fh.read(), path)


def from_json(text: str, path: str) -> Notebook:
    import nbformat  # the engine's side only: the training interpreter never needs it

    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookUnreadable(f"not a Jupyter notebook: the file is not valid JSON ({exc.msg})", exc.lineno, exc.colno) from exc
    if not isinstance(doc, dict) or "nbformat" not in doc or not isinstance(doc.get("cells", doc.get("worksheets")), list):
        raise NotebookUnreadable("not a Jupyter notebook: JSON without the notebook format's `nbformat` version and `cells` list")
    try:
        nb = nbformat.reads(text, as_version=4, capture_validation_error={})
    except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds for "not a notebook"
        raise NotebookUnreadable(f"not a Jupyter notebook ({type(exc).__name__}: {exc})") from exc
    language = _language(nb.get("metadata", {}))
    if language and language.lower() != "python":
        raise NothingToRun(f"the notebook's kernel language is {language}, not Python; nothing was run")
    code = [(i, c) for i, c in enumerate(nb.get("cells", []), 1) if c.get("cell_type") == "code"]
    if not code or not any(str(c.get("source", "")).strip() for _, c in code):
        raise NothingToRun("the notebook has no code cells; nothing was run")
    return _as_script(path, [(i, str(c.get("source", ""))) for i, c in code])


def _language(metadata: dict) -> str:
    name = (metadata.get("kernelspec") or {}).get("language") or (metadata.get("language_info") or {}).get("name") or ""
    return str(name).strip()


def _as_script(path: str, code: list[tuple[int, str]]) -> Notebook:
    converted = [(i, source, to_python(source)) for i, source in code]
    runs = _last_training_cell(converted)
    lines: list[str] = []
    cells = []
    for n, (i, source, python) in enumerate(converted):
        if n == runs:
            lines.append(STOP)
        cells.append(CellSpan(i, len(lines) + 1, len(python), source))
        lines += python
    return Notebook(path, "\n".join(lines) + "\n", tuple(cells), runs)


def _last_training_cell(converted: list[tuple[int, str, list[str]]]) -> int:
    """How many code cells to run: up to the last one that trains, directly or through a
    function a training cell defines; all of them when none does (the run will say so)."""
    trainers: set[str] = set()
    last = 0
    for n, (_, _, python) in enumerate(converted, 1):
        try:
            tree = ast.parse("\n".join(python))
        except SyntaxError:
            return len(converted)  # the run reports the syntax error where it is
        calls = [node.func for node in ast.walk(tree) if isinstance(node, ast.Call)]
        called = {f.attr for f in calls if isinstance(f, ast.Attribute)} | {f.id for f in calls if isinstance(f, ast.Name)}
        if called & (_TRAINING_CALLS | trainers):
            last = n
            trainers |= {d.name for d in ast.walk(tree) if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return last or len(converted)


def to_python(source: str) -> list[str]:
    """A cell's lines as Python, one for one: IPython magics and shell escapes become what
    matters of them for training (`%env`, `%cd`, `%%writefile`) or `pass`; nothing is run in a shell."""
    lines = source.splitlines() or [""]
    head = lines[0].strip()
    if head.startswith("%%"):
        name, _, arg = head[2:].partition(" ")
        if name in PYTHON_CELL_MAGICS:
            return ["# " + lines[0]] + [_line(l) for l in lines[1:]]
        if name == "writefile":
            return [_writefile(arg, lines[1:])] + ["# " + l for l in lines[1:]]
        return ["# " + l for l in lines]  # %%bash, %%html, ...: not Python, not run
    return [_line(l) for l in lines]


def _line(line: str) -> str:
    stripped = line.lstrip()
    indent = line[: len(line) - len(stripped)]
    if not stripped.startswith(("%", "!")):
        m = _ASSIGNED_ESCAPE.match(line)
        return f"{m.group(1)}{m.group(2)}[]  # {stripped}" if m else line
    magic, _, arg = stripped.lstrip("%").partition(" ")
    if stripped.startswith("%") and magic == "env" and arg.strip():
        key, _, value = arg.strip().partition("=") if "=" in arg else arg.strip().partition(" ")
        return f"{indent}__import__('os').environ[{key.strip()!r}] = {value.strip()!r}  # {stripped}"
    if stripped.startswith("%") and magic == "cd" and arg.strip():
        return f"{indent}__import__('os').chdir(__import__('os').path.expanduser({arg.strip().strip(chr(34) + chr(39))!r}))  # {stripped}"
    return f"{indent}pass  # {stripped}"


def _writefile(arg: str, body: list[str]) -> str:
    parts = arg.split()
    append = "-a" in parts or "--append" in parts
    name = next((p for p in parts if not p.startswith("-")), "")
    text = "\n".join(body) + "\n"
    return f"open({name.strip(chr(34) + chr(39))!r}, {'a' if append else 'w'!r}).write({text!r})  # %%writefile {arg}"

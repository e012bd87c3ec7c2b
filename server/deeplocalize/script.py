"""What kind of script this is, decided once, up front.

The CLI, the language server, the engine, the runner and the verification experiments
all need to know the same things about a file before anything runs: the text that will
run (a notebook's code cells as one script), whether it parses, whether it uses Keras at
all, which strategy it trains under, whether it configures the TensorFlow runtime (it then
needs a process whose runtime no operation has touched) and whether it is a multi-worker
script. A `Script` holds the answers and is passed down; no stage parses the text again.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from .findings import Position, SourceRange
from .notebook import Notebook, NotebookUnreadable, NothingToRun, is_notebook, load_notebook
from .strategies import unsupported_strategy
from .vocab import KERAS_MODULES

# The strategy whose workers `--workers N` starts (cluster.py); any other script runs as one process.
_MULTI_WORKER = re.compile(r"\bMultiWorkerMirroredStrategy\s*\(")


@dataclass(frozen=True)
class SyntaxProblem:
    range: SourceRange
    message: str


@dataclass(frozen=True)
class Script:
    path: str  # absolute
    text: str  # what runs: the file's text, the editor's saved text, a fixed copy, a notebook's code cells
    from_file: bool  # `text` is the file's own content, run by path as `python path` would
    notebook: Notebook | None = None
    notebook_problem: NotebookUnreadable | NothingToRun | None = None  # nothing runs
    syntax: SyntaxProblem | None = None  # nothing runs
    keras: bool = True
    unsupported_strategy: tuple[str, SourceRange] | None = None  # nothing runs
    multi_worker: bool = False  # trained by `--workers N` processes together

    @property
    def source(self) -> str | None:
        """The text the training process runs in place of the file's, or None to run the file."""
        return None if self.from_file else self.text

    def edited(self, text: str) -> "Script":
        """This script with other text (a fix applied): same file, notebook and cell map."""
        return replace(self, text=text, from_file=False, multi_worker=_is_multi_worker(text))


def describe(path: str, text: str | None = None) -> Script:
    """`text`, when given, runs in place of the file's content (the editor's saved text, a
    fixed copy). Raises FileNotFoundError when the file cannot be read."""
    path = os.path.abspath(path)
    if is_notebook(path):
        try:
            notebook = load_notebook(path)
        except (NotebookUnreadable, NothingToRun) as exc:
            return Script(path, text or "", False, notebook_problem=exc, keras=False)
        return _described(path, text if text is not None else notebook.script, False, notebook)
    if text is not None:
        return _described(path, text, False, None)
    try:
        content = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FileNotFoundError(f"cannot read {path}: {exc.strerror}") from exc
    return _described(path, content, True, None)


def _described(path: str, text: str, from_file: bool, notebook: Notebook | None) -> Script:
    bad = syntax_problem(text, path)
    if bad is not None:
        return Script(path, text, from_file, notebook, syntax=bad, keras=False)
    keras = uses_keras(text, path)
    return Script(path, text, from_file, notebook, keras=keras, unsupported_strategy=unsupported_strategy(text, path) if keras else None,
                  multi_worker=_is_multi_worker(text))


def _is_multi_worker(text: str) -> bool:
    return bool(_MULTI_WORKER.search(text))


def syntax_problem(text: str, path: str) -> SyntaxProblem | None:
    try:
        compile(text, path, "exec")
    except SyntaxError as exc:
        line = exc.lineno or 1
        col = exc.offset or 1
        end_line = exc.end_lineno or line
        end_col = exc.end_offset if exc.end_offset and (end_line > line or exc.end_offset > col) else col + 1
        return SyntaxProblem(SourceRange(path, Position(line, col), Position(end_line, end_col)), f"SyntaxError: {exc.msg}")
    except ValueError as exc:  # NUL bytes in the text
        return SyntaxProblem(SourceRange(path, Position(1, 1), Position(1, 2)), f"SyntaxError: {exc}")
    return None


def uses_keras(text: str, path: str, depth: int = 0) -> bool:
    """Whether the script (or a local module it imports) imports Keras/TensorFlow."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    local: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for n in names:
            if n.split(".")[0] in KERAS_MODULES:
                return True
            local.append(n.split(".")[0])
    if depth < 2:
        base = Path(path).resolve().parent
        for mod in dict.fromkeys(local):
            candidate = base / f"{mod}.py"
            if candidate.is_file():
                try:
                    if uses_keras(candidate.read_text(encoding="utf-8", errors="replace"), str(candidate), depth + 1):
                        return True
                except OSError:
                    continue
    return False

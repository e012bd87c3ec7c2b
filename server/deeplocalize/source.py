"""Source text as the locator and the fix builders see it: parsed once per
file version, with ranges in characters (runtime frames give UTF-8 byte columns)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache

import astroid
from astroid import nodes
from astroid.builder import AstroidBuilder

from .findings import Position, SourceRange, TextEdit
from .notebook import NotebookUnreadable, NothingToRun, is_notebook, load_notebook
from .trace import Frame


@dataclass
class Source:
    path: str
    text: str
    lines: list[str]
    module: nodes.Module | None


class _LocalBuilder(AstroidBuilder):
    """Builds the user's module without looking into the modules it imports. astroid, as it builds
    a module, infers the class of every `self.x = ...` target and runs its plugins' class checks
    (enum, dataclass, attrs), which infer each class's bases: for a `keras.Model` subclass that
    means parsing Keras' own sources, 3-4 s of the analysis after the training ends. Nothing the
    locator reads needs them: it looks names up in scopes and infers calls to the user's own
    functions, and what inference imports later is built as usual."""

    def __init__(self) -> None:
        super().__init__(astroid.MANAGER, apply_transforms=False)

    def delayed_assattr(self, node: nodes.AssignAttr) -> None:
        pass


def parse(text: str, path: str) -> nodes.Module:
    return _LocalBuilder().string_build(text, modname="", path=path)


@lru_cache(maxsize=64)
def _load(path: str, mtime: float, size: int) -> Source:
    if is_notebook(path):  # what ran: the code cells as one script (frames point into it)
        try:
            text = load_notebook(path).script
        except (NotebookUnreadable, NothingToRun):
            text = ""
    else:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    try:
        module = parse(text, path)
    except Exception:  # noqa: BLE001 - a file astroid cannot parse still gets line ranges
        module = None
    return Source(path, text, text.splitlines(), module)


_IN_MEMORY: dict[str, Source] = {}


def register_text(path: str, text: str) -> None:
    """User code that exists only in a process' memory (a notebook kernel's cells, which frames
    name by a file that was never written): read from here instead of the disk."""
    try:
        module = parse(text, path)
    except Exception:  # noqa: BLE001 - still gets line ranges
        module = None
    _IN_MEMORY[os.path.abspath(path)] = Source(os.path.abspath(path), text, text.splitlines(), module)


def load_source(path: str) -> Source | None:
    try:
        st = os.stat(path)
    except OSError:
        return _IN_MEMORY.get(os.path.abspath(path))
    return _load(os.path.abspath(path), st.st_mtime, st.st_size)


def col_from_bytes(line_text: str, byte_col: int | None) -> int:
    """co_positions columns are UTF-8 byte offsets; ranges are in characters."""
    if byte_col is None:
        return 0
    return len(line_text.encode("utf-8")[:byte_col].decode("utf-8", "replace"))


def node_range(src: Source, node: nodes.NodeNG) -> SourceRange:
    return SourceRange(src.path, Position(node.lineno, node.col_offset + 1), Position(node.end_lineno or node.lineno, (node.end_col_offset or node.col_offset) + 1))


def line_range(src: Source | None, path: str, line: int) -> SourceRange:
    text = src.lines[line - 1] if src and 0 < line <= len(src.lines) else ""
    start = len(text) - len(text.lstrip())
    return SourceRange(path, Position(line, start + 1), Position(line, max(len(text.rstrip()), start) + 1))


def frame_range(frame: Frame) -> SourceRange:
    src = load_source(frame.file)
    if src is None or frame.col is None or frame.end_line is None:
        return line_range(src, frame.file, frame.line)
    sc = col_from_bytes(src.lines[frame.line - 1], frame.col) if frame.line <= len(src.lines) else 0
    ec = col_from_bytes(src.lines[frame.end_line - 1], frame.end_col) if frame.end_line <= len(src.lines) else sc
    return SourceRange(frame.file, Position(frame.line, sc + 1), Position(frame.end_line, ec + 1))


def call_at(src: Source, frame: Frame) -> nodes.Call | None:
    """The Call node a runtime frame is executing: same start, and same end when known
    (`Dense(8)(x)` starts two calls at one column; the constructor is the inner one)."""
    if src.module is None or not 0 < frame.line <= len(src.lines):
        return None
    col = col_from_bytes(src.lines[frame.line - 1], frame.col) if frame.col is not None else None
    calls = list(src.module.nodes_of_class(nodes.Call))
    starts = [c for c in calls if c.lineno == frame.line and (col is None or c.col_offset == col)]
    if starts and frame.end_col is not None and frame.end_line is not None and frame.end_line <= len(src.lines):
        end = col_from_bytes(src.lines[frame.end_line - 1], frame.end_col)
        exact = [c for c in starts if c.end_lineno == frame.end_line and c.end_col_offset == end]
        if exact:
            return exact[0]
    if starts:
        return min(starts, key=lambda c: ((c.end_lineno or 0) - c.lineno, (c.end_col_offset or 0) - c.col_offset))
    spanning = [c for c in calls if c.lineno <= frame.line <= (c.end_lineno or c.lineno)]
    return min(spanning, key=lambda c: (c.end_lineno or 0) - c.lineno) if spanning else None


def arg_node(call: nodes.Call, name: str | None, position: int | None) -> nodes.NodeNG | None:
    for kw in call.keywords or []:
        if kw.arg == name:
            return kw.value
    if position is not None and position < len(call.args) and not isinstance(call.args[position], nodes.Starred):
        return call.args[position]
    return None


def call_name(call: nodes.Call) -> str:
    return call.func.attrname if isinstance(call.func, nodes.Attribute) else getattr(call.func, "name", "")


def text_of(src: Source, node: nodes.NodeNG) -> str:
    lines = src.lines[node.lineno - 1 : (node.end_lineno or node.lineno)]
    if not lines:
        return ""
    if len(lines) == 1:
        return lines[0][node.col_offset : node.end_col_offset]
    return "\n".join([lines[0][node.col_offset :], *lines[1:-1], lines[-1][: node.end_col_offset]])


def match_quotes(old: str, new: str) -> str:
    if old[:1] == "'" and new[:1] == '"' and new.endswith('"') and "'" not in new[1:-1]:
        return "'" + new[1:-1] + "'"
    return new


def insert_kwarg(src: Source, call: nodes.Call, name: str, value: str) -> TextEdit:
    end_line = call.end_lineno or call.lineno
    text = src.lines[end_line - 1]
    close = (call.end_col_offset or len(text)) - 1  # the ')' of the call
    before = text[:close].rstrip()
    has_args = bool(call.args or call.keywords)
    sep = "" if not has_args or before.endswith(",") else ", "
    if before.endswith(",") and has_args:
        sep = " "
    pos = Position(end_line, close + 1)
    return TextEdit(SourceRange(src.path, pos, pos), f"{sep}{name}={value}")


def keras_prefix(src: Source) -> str:
    """How this file spells the keras namespace ('keras.', 'tf.keras.', ...)."""
    text = src.text
    if re.search(r"^\s*(import keras\b|from tensorflow import keras\b)", text, re.M):
        return "keras."
    m = re.search(r"^\s*import tensorflow as (\w+)", text, re.M)
    if m:
        return f"{m.group(1)}.keras."
    return "keras."

"""Applying text edits to source text (what an editor does with a quick fix)."""

from __future__ import annotations

from .findings import Fix, TextEdit


def _offset(lines: list[str], line: int, column: int) -> int:
    """Character offset of a 1-based (line, column) in text split with keepends."""
    line = max(1, min(line, len(lines) + 1))
    return sum(len(l) for l in lines[: line - 1]) + column - 1


def apply_edits(text: str, edits: list[TextEdit]) -> str:
    """Apply non-overlapping edits, last first so earlier offsets stay valid. Inserts at
    the same position appear in the order given (as the LSP specifies for a client)."""
    lines = text.splitlines(keepends=True)
    spans = sorted(
        ((_offset(lines, e.range.start.line, e.range.start.column), _offset(lines, e.range.end.line, e.range.end.column), i, e.new_text)
         for i, e in enumerate(edits)),
        reverse=True,
    )
    for start, end, _, new in spans:
        text = text[:start] + new + text[end:]
    return text


def apply_fix(text: str, fix: Fix) -> str:
    return apply_edits(text, fix.edits)

"""The code lens on the analyzed `fit(...)` line: analyze / training… (cancel), the last
outcome, and the training report for clients that can show it."""

from __future__ import annotations

import re

from lsprotocol import types as lsp

from ...findings import Position, SourceRange
from ..documents import DocState
from ..language_server import DeepLocalizeServer
from ..cells import view
from .commands import COMMAND_ANALYZE, COMMAND_CANCEL, COMMAND_SHOW_REPORT

_FIT_RE = re.compile(r"\.fit\s*\(")


def _fit_line(ls: DeepLocalizeServer, state: DocState | None, uri: str) -> int | None:
    """The 0-based line of the analyzed `fit(...)` call in this document, else of the first one written."""
    report = state.report if state is not None else None
    if state is not None and report is not None and report.trace and report.trace.fit and report.trace.fit.site:
        site = report.trace.fit.site[-1]
        where, rng = ls.publisher.place(state, report)(SourceRange(site.file, Position(site.line, 1), Position(site.line, 1)))
        if where == uri:
            return rng.start.line
    for i, l in enumerate(ls.workspace.get_text_document(uri).source.splitlines()):
        if _FIT_RE.search(l) and not l.lstrip().startswith("#"):
            return i
    return None


def register(server: DeepLocalizeServer) -> None:
    @server.feature(lsp.TEXT_DOCUMENT_CODE_LENS)
    def on_code_lens(ls: DeepLocalizeServer, params: lsp.CodeLensParams) -> list[lsp.CodeLens]:
        uri = params.text_document.uri
        doc_uri = view(ls.workspace, uri).owner_uri  # a notebook's lens sits in its fit cell
        state = ls.documents.get(doc_uri)
        line = _fit_line(ls, state, uri)
        if line is None:
            return []
        rng = lsp.Range(start=lsp.Position(line=line, character=0), end=lsp.Position(line=line, character=0))

        def lens(title: str, command: str) -> lsp.CodeLens:
            return lsp.CodeLens(range=rng, command=lsp.Command(title=title, command=command, arguments=[doc_uri]))

        running = state is not None and state.run.running
        lenses = [lens("$(sync~spin) DeepLocalize: training… (cancel)", COMMAND_CANCEL) if running else lens("▶ DeepLocalize: analyze", COMMAND_ANALYZE)]
        if state and state.last_outcome:
            lenses.append(lens(f"last run: {state.last_outcome}", COMMAND_ANALYZE))
        # Only a client that has the report command gets its lens (the VS Code extension says so).
        if state and state.report is not None and state.report.status != "running" and not running and ls.init_options.get("showReport"):
            lenses.append(lens("$(graph) training report", COMMAND_SHOW_REPORT))
        return lenses

"""Everything the server tells the client about a document: its diagnostics (placed in the
file or in a notebook's cells), its run status, the code lenses to redraw, messages."""

from __future__ import annotations

import os
from typing import Any, Callable

from lsprotocol import types as lsp

from ..notebook import is_notebook
from ..report import FileReport
from ..vocab import RunPhase
from . import cells
from .convert import Place, file_place, to_diagnostic
from .documents import DocState
from .host import Editor

RUN_STATUS = "deeplocalize/runStatus"


class Publisher:
    """`analysis_on(uri)`: every document's analysis diagnostics placed in `uri`; the diagnostics of
    training runs (training_runs.py) are published with them, one list per document."""

    def __init__(self, server: Editor, analysis_on: Callable[[str], list[lsp.Diagnostic]] | None = None) -> None:
        self.server = server
        self.analysis_on = analysis_on or (lambda uri: [])
        self.training: dict[str, list[lsp.Diagnostic]] = {}

    def place(self, state: DocState, report: FileReport | None) -> Place:
        return cells.placer(self.server.workspace, state.uri, report) if is_notebook(state.path) else file_place

    def publish(self, state: DocState, report: FileReport | None, run_id: str) -> None:
        """The report's diagnostics, by the document each lands in; documents that had some and
        have none now are cleared."""
        if report is state.report:
            state.reindex()
        by_uri: dict[str, list[lsp.Diagnostic]] = {}
        if report is not None:
            place = self.place(state, report)
            for lf in report.findings:
                by_uri.setdefault(place(lf.range)[0], []).append(to_diagnostic(lf, report.trace, run_id, place))
        by_uri.setdefault(state.uri, [])
        for uri in state.published - set(by_uri):
            by_uri[uri] = []
        state.diagnostics = by_uri
        state.published = {u for u, d in by_uri.items() if d}
        for uri, diags in by_uri.items():
            self._send(uri, diags + self.training.get(uri, []))

    def clear(self, state: DocState) -> None:
        for uri in state.published | {state.uri}:
            self._send(uri, self.training.get(uri, []))
        state.published = set()
        state.diagnostics = {}

    def publish_training(self, uri: str, diagnostics: list[lsp.Diagnostic]) -> None:
        """A training run's diagnostics of a document, beside what the analyses put there."""
        if diagnostics:
            self.training[uri] = diagnostics
        else:
            self.training.pop(uri, None)
        self._send(uri, self.analysis_on(uri) + diagnostics)

    def _send(self, uri: str, diagnostics: list[lsp.Diagnostic]) -> None:
        self.server.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics))

    def notify(self, method: str, params: dict[str, Any]) -> None:
        if self.server.shutting_down:
            return
        try:
            self.server.protocol.notify(method, params)
        except Exception:  # noqa: BLE001
            pass

    def status(self, state: DocState, phase: RunPhase, outcome: str = "", **details: Any) -> None:
        """Custom notification `deeplocalize/runStatus` for clients that show run state (the VS Code
        status bar) and for tests: `details` say more about the phase (see docs in the README)."""
        self.notify(RUN_STATUS, {"uri": state.uri, "phase": phase, "outcome": outcome, "file": os.path.basename(state.path), **details})

    def show(self, message: str, kind: lsp.MessageType) -> None:
        try:
            self.server.window_show_message(lsp.ShowMessageParams(type=kind, message=message))
        except Exception:  # noqa: BLE001
            pass

    def refresh_lenses(self) -> None:
        caps = self.server.client_capabilities
        if caps and caps.workspace and caps.workspace.code_lens and caps.workspace.code_lens.refresh_support:
            try:
                self.server.workspace_code_lens_refresh(None)
            except Exception:  # noqa: BLE001
                pass

"""Hover: what the analysis knows of the line (its finding's verification, the layers built
there with their last statistics), from the reports that speak of the file."""

from __future__ import annotations

from lsprotocol import types as lsp

from ..language_server import DeepLocalizeServer
from ..markdown import layer_markdown, layers_at, verification_markdown
from ..cells import view


def register(server: DeepLocalizeServer) -> None:
    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    def on_hover(ls: DeepLocalizeServer, params: lsp.HoverParams) -> lsp.Hover | None:
        where = view(ls.workspace, params.text_document.uri).script_position(ls.workspace, params.position.line + 1)
        if where is None:
            return None
        path, line = where
        for state in ls.documents.reporting_on(path):
            report = state.report
            assert report is not None
            parts = [md for lf in report.findings
                     if lf.range.file == path and lf.range.start.line <= line <= lf.range.end.line and (md := verification_markdown(lf))]
            trace = report.trace
            if trace is not None and trace.layers:
                parts += [layer_markdown(trace, l) for l in layers_at(trace, path, line)[:3]]
            if parts:
                return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value="\n\n---\n\n".join(parts)))
        return None

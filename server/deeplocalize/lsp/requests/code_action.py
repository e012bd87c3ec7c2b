"""Quick fixes: the fixes carried by our diagnostics, offered only while the buffer is the
text that was analyzed (else their edits would land in the wrong place)."""

from __future__ import annotations

from lsprotocol import types as lsp

from ..convert import SOURCE, code_actions, overlaps
from ..training_runs import SOURCE as TRAINING_SOURCE
from ..language_server import DeepLocalizeServer
from ..cells import view


def register(server: DeepLocalizeServer) -> None:
    @server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
    def on_code_action(ls: DeepLocalizeServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        uri = params.text_document.uri
        ours = [d for d in params.context.diagnostics if d.source in (SOURCE, TRAINING_SOURCE) and isinstance(d.data, dict)]
        if not ours:  # clients that do not echo diagnostics back: use the published ones
            published = ls.documents.published_on(uri) + ls.publisher.training.get(uri, [])
            ours = [d for d in published if overlaps(d.range, params.range)]
        if not view(ls.workspace, uri).is_saved(ls.workspace):
            return []

        def version(u: str) -> int | None:
            doc = ls.workspace.text_documents.get(u)
            return doc.version if doc is not None else None

        return [action for d in ours for action in code_actions(d, version)]

"""The DeepLocalize language server (pygls 2): built here, its features registered.

Each document has one run (lsp/runs.py: debounce, cancel-previous, reuse), the publisher
says everything the client sees (lsp/publisher.py), and each request lives in its own
module under lsp/requests/, reading the documents' reports by file (lsp/documents.py).
Cells of a notebook reach their notebook's analysis through one adapter (cells.view)."""

from __future__ import annotations

from .language_server import DeepLocalizeServer
from .logs import attach
from .requests import code_action, code_lens, commands, hover, lifecycle, report, sync


def build() -> DeepLocalizeServer:
    server = DeepLocalizeServer()
    attach(server)
    for feature in (lifecycle, sync, commands, report, code_action, hover, code_lens):
        feature.register(server)
    return server


server = build()

"""Documents and notebooks opened, saved and closed: the runs they start or stop."""

from __future__ import annotations

from lsprotocol import types as lsp

from pygls.uris import to_fs_path

from ..language_server import DeepLocalizeServer


async def _opened(ls: DeepLocalizeServer, uri: str) -> None:
    settings = await ls.settings(uri)
    if uri.endswith((".py", ".pyw")):
        path = to_fs_path(uri)
        if path:
            ls.training_runs.watch(uri, path, settings.runs_folder)
            ls.watch_training_runs()
    if settings.run == "onOpenAndSave":
        ls.documents.ensure(uri).run.schedule("opened")


async def _saved(ls: DeepLocalizeServer, uri: str) -> None:
    settings = await ls.settings(uri)
    if settings.run in ("onSave", "onOpenAndSave"):
        ls.documents.ensure(uri).run.schedule("saved")


def _closed(ls: DeepLocalizeServer, uri: str) -> None:
    ls.training_runs.unwatch(uri)
    state = ls.documents.pop(uri)
    if state is None:
        return
    state.run.cancel()
    ls.publisher.clear(state)


def register(server: DeepLocalizeServer) -> None:
    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    async def on_open(ls: DeepLocalizeServer, params: lsp.DidOpenTextDocumentParams) -> None:
        if ls.is_python(params.text_document.uri):
            await _opened(ls, params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    async def on_save(ls: DeepLocalizeServer, params: lsp.DidSaveTextDocumentParams) -> None:
        if ls.is_python(params.text_document.uri):
            await _saved(ls, params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def on_close(ls: DeepLocalizeServer, params: lsp.DidCloseTextDocumentParams) -> None:
        _closed(ls, params.text_document.uri)

    @server.feature(lsp.NOTEBOOK_DOCUMENT_DID_OPEN)
    async def on_notebook_open(ls: DeepLocalizeServer, params: lsp.DidOpenNotebookDocumentParams) -> None:
        await _opened(ls, params.notebook_document.uri)

    @server.feature(lsp.NOTEBOOK_DOCUMENT_DID_SAVE)
    async def on_notebook_save(ls: DeepLocalizeServer, params: lsp.DidSaveNotebookDocumentParams) -> None:
        await _saved(ls, params.notebook_document.uri)

    @server.feature(lsp.NOTEBOOK_DOCUMENT_DID_CLOSE)
    def on_notebook_close(ls: DeepLocalizeServer, params: lsp.DidCloseNotebookDocumentParams) -> None:
        _closed(ls, params.notebook_document.uri)

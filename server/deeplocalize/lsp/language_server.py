"""The server object the requests share: the analyzed documents, the engine session, the one
training slot, the user's settings and the publisher. Requests only start or stop a
document's run (see runs.py) or read the documents' reports."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from .. import __version__
from ..runner import kill_all
from ..session import EngineSession
from . import cells
from .documents import Documents
from .logs import log
from .publisher import Publisher
from .runs import DocumentRun
from .training_runs import NOTIFICATION as TRAINING_RUN_NOTIFICATION, POLL_S as TRAINING_RUN_POLL_S, TrainingRuns
from ..settings import Settings


class DeepLocalizeServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("deeplocalize", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Full, notebook_document_sync=cells.SYNC)
        self.session = EngineSession()
        self.documents = Documents(lambda state: DocumentRun(self, state))
        self.publisher = Publisher(self, self.documents.published_on)
        self.training_runs = TrainingRuns(self._text_of, self.publisher.publish_training,
                                          lambda params: self.publisher.notify(TRAINING_RUN_NOTIFICATION, params))
        self._watching: asyncio.Task | None = None
        self.gate = asyncio.Semaphore(1)  # one training at a time on a 2-core machine
        self.report_lock = asyncio.Lock()
        self.init_options: dict[str, Any] = {}
        self.settings_cache: Settings = Settings()  # the last settings read
        self.settings_read = False
        self.shutting_down = False
        self.stop_event = threading.Event()  # ends the IO loop (server.py); set by an `exit` notification too

    def shutdown(self) -> None:
        self.stop_event.set()
        super().shutdown()

    def _text_of(self, uri: str) -> str | None:
        doc = self.workspace.text_documents.get(uri)
        return doc.source if doc is not None else None

    def watch_training_runs(self) -> None:
        """Look at the open scripts' run folders from now on, every second."""
        if self._watching is None or self._watching.done():
            self._watching = asyncio.ensure_future(self._watch_training_runs())

    async def _watch_training_runs(self) -> None:
        while not self.shutting_down:
            self.training_runs.refresh_all()
            await asyncio.sleep(TRAINING_RUN_POLL_S)

    def trusted(self) -> bool:
        return self.init_options.get("workspaceTrusted", True) is not False

    async def settings(self, uri: str) -> Settings:
        """The user's settings for a document, asked of the client when it can answer: they can
        change at any time, so every run asks."""
        fallback = self.init_options.get("interpreter") or None
        caps = self.client_capabilities
        found = self.settings_cache
        if caps and caps.workspace and caps.workspace.configuration:
            try:
                result = await asyncio.wait_for(asyncio.shield(self.workspace_configuration_async(
                    lsp.ConfigurationParams(items=[lsp.ConfigurationItem(scope_uri=uri, section="deeplocalize")]))), 5)
                found = Settings.from_json(result[0] if result else None, fallback)
            except Exception as exc:  # noqa: BLE001
                log.warning(f"deeplocalize: could not read settings ({type(exc).__name__}); using the last known ones")
        else:
            found = Settings.from_json(self.init_options.get("settings"), fallback)
        if found != self.settings_cache or not self.settings_read:
            self._settings_changed(found)
        return found

    def _settings_changed(self, settings: Settings) -> None:
        """New settings: the engine session keeps as many spare processes as they ask for, from now on."""
        self.settings_cache, self.settings_read = settings, True
        self.session.keep_spares(settings.warm_worker, settings.max_warm_workers)

    def workspace_folder_of(self, path: str) -> str | None:
        """Scripts run from their workspace folder (as a terminal in the editor would); else their own folder."""
        best = None
        for folder in self.workspace.folders.values():
            root = to_fs_path(folder.uri)
            if root and os.path.abspath(path).startswith(os.path.abspath(root) + os.sep) and (best is None or len(root) > len(best)):
                best = root
        return best

    def is_python(self, uri: str) -> bool:
        if uri.endswith((".py", ".pyw")):
            return True
        # A language client's virtual document of a notebook (jupyterlab-lsp): Python text under a .ipynb name.
        doc = self.workspace.text_documents.get(uri)
        return cells.is_notebook_uri(uri) and doc is not None and doc.language_id == "python"

    async def close(self) -> None:
        """Cancel every run and wait for its process tree to be gone."""
        self.shutting_down = True
        if self._watching is not None:
            self._watching.cancel()
        tasks = []
        for state in self.documents:
            task = state.run.task
            if state.run.cancel() and task is not None and not task.done():
                tasks.append(task)
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await self.session.close()
        kill_all()

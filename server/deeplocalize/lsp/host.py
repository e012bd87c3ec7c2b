"""What the upper floor's parts ask of the language server, typed below them.

`language_server.DeepLocalizeServer` builds the publisher, the progress and the runs and hands
itself to them; they see it through these protocols, so that none of them refers back to the
module that builds it (not even for its types)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

from lsprotocol import types as lsp

if TYPE_CHECKING:  # the types only; neither imports this package's upper modules
    from pygls.workspace import Workspace

    from ..session import EngineSession
    from ..settings import Settings


class Editor(Protocol):
    """The editor as pygls reaches it: what the publisher and the progress tell the client."""

    shutting_down: bool

    @property
    def client_capabilities(self) -> lsp.ClientCapabilities: ...

    @property
    def workspace(self) -> "Workspace": ...

    @property
    def protocol(self) -> Any: ...

    @property
    def work_done_progress(self) -> Any: ...

    def text_document_publish_diagnostics(self, params: lsp.PublishDiagnosticsParams) -> None: ...

    def window_show_message(self, params: lsp.ShowMessageParams) -> None: ...

    def workspace_code_lens_refresh(self, params: None) -> Any: ...


class Host(Editor, Protocol):
    """The server as a document's run uses it: the engine session, the one training slot, the
    user's settings and trust, and the publisher (typed by its own module, below the runs)."""

    session: "EngineSession"
    settings_cache: "Settings"
    gate: asyncio.Semaphore
    publisher: Any  # publisher.Publisher

    def trusted(self) -> bool: ...

    async def settings(self, uri: str) -> "Settings": ...

    def workspace_folder_of(self, path: str) -> str | None: ...

"""initialize / initialized / settings changed / shutdown / exit."""

from __future__ import annotations

import sys
from typing import Any

from lsprotocol import types as lsp

from ... import __version__
from ...runner import kill_all
from ..language_server import DeepLocalizeServer
from ..logs import log


def register(server: DeepLocalizeServer) -> None:
    @server.feature(lsp.INITIALIZE)
    def on_initialize(ls: DeepLocalizeServer, params: lsp.InitializeParams) -> None:
        ls.init_options = params.initialization_options if isinstance(params.initialization_options, dict) else {}

    @server.feature(lsp.INITIALIZED)
    async def on_initialized(ls: DeepLocalizeServer, params: lsp.InitializedParams) -> None:
        settings = await ls.settings("")
        log.info(f"deeplocalize {__version__}: server on Python {sys.version.split()[0]}; training interpreter {settings.run_options().python}"
                 + ("" if ls.trusted() else " (workspace not trusted: no user code will run)"))
        if settings.warm_worker and ls.trusted():
            ls.session.prewarm_soon(settings.run_options())

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def on_config(ls: DeepLocalizeServer, params: lsp.DidChangeConfigurationParams) -> None:
        await ls.settings("")  # takes effect at the next run
        log.info("deeplocalize: settings changed; they apply from the next run")

    @server.feature(lsp.SHUTDOWN)
    async def on_shutdown(ls: DeepLocalizeServer, *args: Any) -> None:
        await ls.close()

    @server.feature(lsp.EXIT)
    def on_exit(ls: DeepLocalizeServer, *args: Any) -> None:
        ls.shutting_down = True
        kill_all()

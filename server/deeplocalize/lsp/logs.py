"""The server's log is Python `logging`, shown in the client's log (window/logMessage):
any module can log to the user through `logging.getLogger("deeplocalize...")`, and the
level becomes the message type the editor shows."""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types as lsp

log = logging.getLogger("deeplocalize.lsp")

_TYPES = ((logging.ERROR, lsp.MessageType.Error), (logging.WARNING, lsp.MessageType.Warning), (logging.INFO, lsp.MessageType.Info))


class ClientLogHandler(logging.Handler):
    """Sends each record to the client; nothing once the server shuts down or the client is gone."""

    def __init__(self, server: Any) -> None:
        super().__init__(logging.INFO)
        self.server = server

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self.server, "shutting_down", False):
            return
        kind = next((t for level, t in _TYPES if record.levelno >= level), lsp.MessageType.Log)
        try:
            self.server.window_log_message(lsp.LogMessageParams(type=kind, message=self.format(record)))
        except Exception:  # noqa: BLE001 - a vanished client must not kill a run
            pass


def attach(server: Any) -> None:
    """Route the package's loggers to this server's client (once)."""
    root = logging.getLogger("deeplocalize")
    if not any(isinstance(h, ClientLogHandler) for h in root.handlers):
        root.addHandler(ClientLogHandler(server))
    root.setLevel(logging.INFO)
    root.propagate = False  # the client shows it; stderr would show it twice

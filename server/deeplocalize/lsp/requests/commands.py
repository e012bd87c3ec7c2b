"""`deeplocalize.analyze` and `deeplocalize.cancel`, for a document or a notebook cell."""

from __future__ import annotations

from typing import Any

from ..language_server import DeepLocalizeServer
from ..cells import view

COMMAND_ANALYZE = "deeplocalize.analyze"
COMMAND_CANCEL = "deeplocalize.cancel"
COMMAND_SHOW_REPORT = "deeplocalize.showReport"  # the client's command (VS Code: a webview panel of the report request)


def target_uri(ls: DeepLocalizeServer, args: tuple) -> str | None:
    """The document a command is about (a URI, or `{uri}`/`{external}`); a cell stands for its notebook."""
    if not args:
        return None
    a = args[0]
    if isinstance(a, dict):
        a = a.get("uri") or a.get("external")
    if not isinstance(a, str):
        return None
    return view(ls.workspace, a).owner_uri


def register(server: DeepLocalizeServer) -> None:
    @server.command(COMMAND_ANALYZE)
    def cmd_analyze(ls: DeepLocalizeServer, *args: Any) -> bool:
        uri = target_uri(ls, args)
        if uri is None:
            return False
        ls.documents.ensure(uri).run.schedule("requested", delay=0)
        return True

    @server.command(COMMAND_CANCEL)
    def cmd_cancel(ls: DeepLocalizeServer, *args: Any) -> bool:
        uri = target_uri(ls, args)
        state = ls.documents.get(uri) if uri else None
        return state.run.cancel() if state is not None else False

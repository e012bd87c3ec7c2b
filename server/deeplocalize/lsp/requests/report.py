"""`deeplocalize/report`: the training report (report_html) of a document's last analysis,
drawn from what that run recorded: no second analysis."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ..language_server import DeepLocalizeServer
from .commands import target_uri

REPORT_REQUEST = "deeplocalize/report"


def register(server: DeepLocalizeServer) -> None:
    @server.feature(REPORT_REQUEST)
    async def on_report(ls: DeepLocalizeServer, params: Any) -> dict[str, Any]:
        """`{uri}` -> `{html, file, run}`, or `{html: null, message}`."""
        given = params.get("uri") if isinstance(params, dict) else getattr(params, "uri", None)  # pygls: a namedtuple
        uri = target_uri(ls, (given,))
        state = ls.documents.get(uri) if uri else None
        if state is None or state.report is None or state.report.status == "running":
            return {"html": None, "message": "No finished analysis of this file yet: save it (or run 'DeepLocalize: Analyze Current File') first."}
        try:
            from ...report_html import render
        except ImportError as exc:
            return {"html": None, "message": f"The training report needs matplotlib in the server's interpreter ({exc})."}
        report = state.report
        async with ls.report_lock:  # matplotlib draws one figure at a time; off the event loop
            page = await asyncio.to_thread(render, [report])
        return {"html": page, "file": os.path.basename(state.path), "run": state.report_run}

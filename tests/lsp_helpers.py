"""A real LSP client for the language-server tests: helpers to open, save and wait, and
the server's own status reports (`deeplocalize/runStatus`). The `client` fixture (conftest)
starts the real server over stdio with pytest-lsp."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

import psutil
from lsprotocol import types as lsp
from pygls.uris import from_fs_path
from pytest_lsp import LanguageClient

from conftest import TRAINING_NAME


async def start_session(lsp_client: LanguageClient, settings: dict) -> None:
    """Initialize as VS Code does, recording the server's run statuses."""
    from pytest_lsp import client_capabilities

    lsp_client.lens_titles = {}  # uri -> titles of its lenses, re-requested at each refresh as VS Code does

    async def _fetch_lenses() -> None:
        for uri in list(lsp_client.lens_titles):
            lenses = await lsp_client.text_document_code_lens_async(lsp.CodeLensParams(text_document=lsp.TextDocumentIdentifier(uri=uri)))
            lsp_client.lens_titles[uri] = [lens.command.title for lens in lenses if lens.command]

    @lsp_client.feature(lsp.WORKSPACE_CODE_LENS_REFRESH)
    def _refresh(params: None) -> None:
        if lsp_client.lens_titles:
            asyncio.ensure_future(_fetch_lenses())
        return None

    lsp_client.run_status = []

    @lsp_client.feature("deeplocalize/runStatus")
    def _run_status(params) -> None:  # what the server says it is doing, as the VS Code status bar sees it
        lsp_client.run_status.append(params._asdict())  # pygls gives unknown notifications' params as a namedtuple

    lsp_client.set_configuration(settings, section="deeplocalize")
    await lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), initialization_options={"interpreter": sys.executable}))


async def until(predicate, timeout: float = 150.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def logs(client: LanguageClient) -> list[str]:
    return [m.message for m in client.log_messages]


def statuses(client: LanguageClient, name: str | None = None, phase: str | None = None) -> list[dict]:
    """The server's `deeplocalize/runStatus` notifications, optionally for one file and phase."""
    return [s for s in client.run_status if (name is None or s["file"] == name) and (phase is None or s["phase"] == phase)]


def finished(client: LanguageClient, name: str, count: int = 1) -> bool:
    return sum(bool(s.get("status")) for s in statuses(client, name, "done")) >= count


def training_pids(client: LanguageClient) -> list[int]:
    return [s["pid"] for s in statuses(client, phase="running") if s.get("pid")]


def child_processes(client: LanguageClient) -> list[psutil.Process]:
    try:
        kids = psutil.Process(client._server.pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for p in kids:
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.name() == TRAINING_NAME:
                out.append(p)
        except psutil.Error:
            pass
    return out


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def open_copy(client: LanguageClient, tmp_path: Path, source: Path) -> tuple[str, Path]:
    path = tmp_path / source.name
    shutil.copy(source, path)
    uri = from_fs_path(str(path))
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(
        text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=path.read_text())))
    return uri, path


def save(client: LanguageClient, uri: str) -> None:
    client.text_document_did_save(lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri)))


def apply(text: str, edits: list[lsp.TextEdit]) -> str:
    lines = text.splitlines(keepends=True)
    offset = lambda p: sum(len(l) for l in lines[: p.line]) + p.character  # noqa: E731
    for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        text = text[: offset(e.range.start)] + e.new_text + text[offset(e.range.end):]
    return text



"""A real LSP client for the language-server tests: helpers to open, save and wait, and
the server's own status reports (`deeplocalize/runStatus`). The `client` fixture (conftest)
starts the real server over stdio with pytest-lsp."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
import psutil
from lsprotocol import types as lsp
from pygls.uris import from_fs_path
from pytest_lsp import LanguageClient

from conftest import ROOT, TRAINING_NAME


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


def open_notebook(client: LanguageClient, path: Path) -> tuple[str, dict[int, str]]:
    """As VS Code does: only the cells the server's selector matches (Python) are synced.
    Returns the notebook's URI and its code cells' URIs by their 1-based index in the .ipynb."""
    nb = nbformat.read(path, as_version=4)
    uri = from_fs_path(str(path))
    cells, docs, by_index = [], [], {}
    for i, c in enumerate(nb.cells, 1):
        if c.cell_type != "code":
            continue
        by_index[i] = cell_uri = f"vscode-notebook-cell:{path}#C{i}"
        cells.append(lsp.NotebookCell(kind=lsp.NotebookCellKind.Code, document=cell_uri))
        docs.append(lsp.TextDocumentItem(uri=cell_uri, language_id="python", version=1, text=c.source))
    client.notebook_document_did_open(lsp.DidOpenNotebookDocumentParams(
        notebook_document=lsp.NotebookDocument(uri=uri, notebook_type="jupyter-notebook", version=1, cells=cells), cell_text_documents=docs))
    return uri, by_index


# ------------------------------------------------------------------------------ a raw client
# For the server's lifecycle (its exit paths, an editor that vanishes): just enough LSP, over the
# server's own pipes, that the test can close them as an editor would.
RAW_SETTINGS = {"run": "manual", "maxSeconds": 120, "maxEpochs": 0, "warmWorker": True}


class RawClient:
    """Speaks just enough LSP to drive the server and answer its requests."""

    def __init__(self, proc: asyncio.subprocess.Process, settings: dict, trusted: bool = True) -> None:
        self.proc, self.settings, self.trusted = proc, settings, trusted
        self.next_id = 0
        self.responses: dict[int, asyncio.Future] = {}
        self.notifications: list[dict] = []
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, settings: dict = RAW_SETTINGS, trusted: bool = True) -> "RawClient":
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "deeplocalize.server", stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT / "server")})
        client = cls(proc, settings, trusted)
        await client.request("initialize", {"processId": os.getpid(), "rootUri": None, "initializationOptions": {"workspaceTrusted": trusted},
                                            "capabilities": {"workspace": {"configuration": True}, "window": {"workDoneProgress": True}}})
        client.notify("initialized", {})
        return client

    def _send(self, msg: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **msg}).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def request(self, method: str, params: dict | None) -> object:
        self.next_id += 1
        fut = self.responses[self.next_id] = asyncio.get_running_loop().create_future()
        self._send({"id": self.next_id, "method": method, "params": params})
        return await asyncio.wait_for(fut, 60)

    def notify(self, method: str, params: dict | None) -> None:
        self._send({"method": method, "params": params})

    async def _read(self) -> None:
        out = self.proc.stdout
        while True:
            header = await out.readline()
            if not header:
                return
            if not header.lower().startswith(b"content-length"):
                continue
            length = int(header.split(b":")[1])
            while (await out.readline()).strip():  # other headers, up to the blank line
                pass
            msg = json.loads(await out.readexactly(length))
            if "id" in msg and "method" in msg:  # a request from the server
                result = [self.settings] if msg["method"] == "workspace/configuration" else None
                self._send({"id": msg["id"], "result": result})
            elif "id" in msg:
                fut = self.responses.pop(msg["id"], None)
                if fut and not fut.done():
                    fut.set_result(msg.get("result"))
            else:
                self.notifications.append(msg)

    def logs(self) -> str:
        return "\n".join(n["params"]["message"] for n in self.notifications if n["method"] == "window/logMessage")

    def statuses(self, phase: str) -> list[dict]:
        """What the server says it is doing (`deeplocalize/runStatus`), in one phase."""
        return [n["params"] for n in self.notifications if n["method"] == "deeplocalize/runStatus" and n["params"]["phase"] == phase]

    def children(self) -> list[int]:
        """Every live process below the server: training processes and the fork server."""
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        return [p.pid for p in kids if alive(p.pid)]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

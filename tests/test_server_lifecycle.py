"""Server lifecycle with a bare JSON-RPC client: shutdown/exit and the editor
vanishing (stdin closed) must leave no process behind (slow)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import psutil
import pytest
from pygls.uris import from_fs_path

from conftest import ROOT
from lsp_helpers import until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
LONG = Path(__file__).parent / "data" / "long_training.py"
SETTINGS = {"run": "manual", "maxSeconds": 120, "maxEpochs": 0, "warmWorker": True}


class RawClient:
    """Speaks just enough LSP to drive the server and answer its requests."""

    def __init__(self, proc: asyncio.subprocess.Process, settings: dict, trusted: bool = True) -> None:
        self.proc, self.settings, self.trusted = proc, settings, trusted
        self.next_id = 0
        self.responses: dict[int, asyncio.Future] = {}
        self.notifications: list[dict] = []
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, settings: dict = SETTINGS, trusted: bool = True) -> "RawClient":
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
        return [p.pid for p in kids if _alive(p.pid)]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def _start_training(tmp_path: Path) -> tuple[RawClient, list[int]]:
    script = tmp_path / "long.py"
    script.write_text(LONG.read_text())
    client = await RawClient.start()
    uri = from_fs_path(str(script))
    client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": script.read_text()}})
    await client.request("workspace/executeCommand", {"command": "deeplocalize.analyze", "arguments": [uri]})
    running = await until(lambda: [s["pid"] for s in client.statuses("running") if s.get("pid")], 90, "training to start")
    # Its training process (and the fork server it came from) below the server, awaited rather than slept for.
    pids = await until(lambda: (kids := client.children()) and running[-1] in kids and kids, 30, "the training process")
    return client, pids


async def _gone(pids: list[int], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        await asyncio.sleep(0.2)
    return False


async def test_shutdown_and_exit_leave_no_child(tmp_path):
    client, pids = await _start_training(tmp_path)
    await client.request("shutdown", None)
    client.notify("exit", None)
    code = await asyncio.wait_for(client.proc.wait(), 30)
    assert code == 0
    assert await _gone(pids)


async def test_editor_vanishing_leaves_no_child(tmp_path):
    client, pids = await _start_training(tmp_path)
    client.proc.stdin.close()  # the editor crashed: stdin EOF, no shutdown
    await asyncio.wait_for(client.proc.wait(), 30)
    assert await _gone(pids)


async def test_untrusted_workspace_runs_no_user_code(tmp_path):
    script = tmp_path / "long.py"
    script.write_text(LONG.read_text())
    client = await RawClient.start(trusted=False)
    uri = from_fs_path(str(script))
    client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": script.read_text()}})
    await client.request("workspace/executeCommand", {"command": "deeplocalize.analyze", "arguments": [uri]})
    deadline = time.monotonic() + 20
    while not client.statuses("skipped") and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert [s["outcome"] for s in client.statuses("skipped")] == ["the workspace is not trusted"]
    assert not client.statuses("running")
    assert client.children() == []
    await client.request("shutdown", None)
    client.notify("exit", None)
    await asyncio.wait_for(client.proc.wait(), 30)

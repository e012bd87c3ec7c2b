"""Server lifecycle with a bare JSON-RPC client: shutdown/exit and the editor
vanishing (stdin closed) must leave no process behind (slow)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pygls.uris import from_fs_path

from lsp_helpers import RawClient, alive, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
LONG = Path(__file__).parent / "data" / "long_training.py"


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
    return await until(lambda: not any(alive(p) for p in pids), timeout, "the server's processes to be gone")


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
    await until(lambda: client.statuses("skipped"), 20, "the skipped status")
    assert [s["outcome"] for s in client.statuses("skipped")] == ["the workspace is not trusted"]
    assert not client.statuses("running")
    assert client.children() == []
    await client.request("shutdown", None)
    client.notify("exit", None)
    await asyncio.wait_for(client.proc.wait(), 30)

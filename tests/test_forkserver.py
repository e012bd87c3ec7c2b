"""The fork server under stress: killed between two saves, grown threads that make a fork
unsafe. Each run still gets a correct training process, nothing false is said, and the log
says what happened (slow: real training)."""

from __future__ import annotations

import asyncio
import logging
import os
import textwrap
import time

import psutil
import pytest

from conftest import FIXTURES, FORKSERVER_NAME
from deeplocalize.runner import RunOptions
from deeplocalize.session import EngineSession
from lsp_helpers import finished, logs, open_copy, save, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _fork_servers(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children(recursive=True) if p.name() == FORKSERVER_NAME]


async def test_a_fork_server_killed_between_two_saves_is_replaced_and_nothing_false_is_said(client, tmp_path):
    client.set_configuration({"run": "onSave", "maxSeconds": 90, "maxEpochs": 20, "debounceMs": 50, "warmWorker": True,
                              "verifyFixes": False}, section="deeplocalize")
    uri, path = open_copy(client, tmp_path, FIXTURES / "buggy/b01_relu_output_ce.py")
    save(client, uri)
    await until(lambda: finished(client, path.name), 120, "the first run")
    first = [(d.code, d.severity, d.range) for d in client.diagnostics[uri]]
    (server,) = await until(lambda: _fork_servers(client._server.pid) or None, 30, "the fork server")
    server.kill()
    server.wait(10)
    path.write_text(path.read_text() + "\n# edited\n")
    save(client, uri)
    await until(lambda: finished(client, path.name, 2), 120, "the second run")
    assert [(d.code, d.severity, d.range) for d in client.diagnostics[uri]] == first  # the same diagnosis, nothing about the server
    assert any("fork server" in m for m in logs(client)), logs(client)[-10:]
    (replacement,) = await until(lambda: _fork_servers(client._server.pid) or None, 30, "a new fork server")
    assert replacement.pid != server.pid


SITECUSTOMIZE = textwrap.dedent('''
    # A background thread of the user's environment (a monitoring agent, say) that starts another
    # thread later: the fork server's thread count grows after its imports.
    import os, threading, time

    def _watch():
        while not os.path.exists(os.environ["GROW_THREADS_WHEN"]):
            time.sleep(0.05)
        threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        time.sleep(3600)

    threading.Thread(target=_watch, daemon=True).start()
''')


def test_a_fork_server_whose_threads_grew_is_not_forked_from(tmp_path, caplog):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    flag = tmp_path / "grow"
    options = RunOptions(env={"PYTHONPATH": str(tmp_path / "site"), "GROW_THREADS_WHEN": str(flag)})
    session = EngineSession(options)
    script = str(FIXTURES / "correct/c02_iris_functional.py")

    async def go():
        first = await session.run(script)
        (server,) = session.pool.forks.pids()
        threads = len(os.listdir(f"/proc/{server}/task"))
        flag.touch()
        deadline = time.monotonic() + 30
        while len(os.listdir(f"/proc/{server}/task")) <= threads and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert len(os.listdir(f"/proc/{server}/task")) > threads, "the thread did not start"
        second = await session.run(script)
        third = await session.run(script)
        return first, second, third, server

    with caplog.at_level(logging.INFO, logger="deeplocalize"):
        try:
            first, second, third, server = asyncio.run(go())
            servers = session.pool.forks.pids()
        finally:
            asyncio.run(session.close())
    for run in (first, second, third):
        assert run.status == "finished" and len(run.trace.epochs) == 20 and run.trace.crash is None
    # the refused fork: said, that run trained in a fresh interpreter, and the next one came from a new fork server
    said = {getattr(r, "fork_event", None): r for r in caplog.records if r.levelno >= logging.INFO}
    assert said.get("refused") is not None and said["refused"].threads > said["refused"].baseline, caplog.text
    assert "fresh_interpreter" in said, caplog.text
    assert servers and server not in servers
    assert second.trace.epochs[-1].logs["loss"] == pytest.approx(first.trace.epochs[-1].logs["loss"], rel=1e-4)  # same seed, same training

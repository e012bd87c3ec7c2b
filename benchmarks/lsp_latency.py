"""Language-server latencies, measured end to end over stdio with real training.

    python benchmarks/lsp_latency.py

Reports: time from didOpen to the first diagnostic for a NaN fixture and for a
slow-learning fixture (cold: first run in a fresh server, TensorFlow import
included; warm: a pre-started worker), and the p50/p95 latency of hover and
codeAction requests while a run is training, next to the same requests on an
idle server (so the ratio, not the absolute time, is what to read).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


async def start(settings: dict) -> tuple[LanguageClient, dict]:
    client = LanguageClient("deeplocalize-bench", "1")
    state: dict = {"diagnostics": {}, "events": asyncio.Queue()}

    @client.feature(lsp.WORKSPACE_CONFIGURATION)
    def configuration(params: lsp.ConfigurationParams):
        return [settings for _ in params.items]

    @client.feature(lsp.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def create(params):
        return None

    @client.feature(lsp.PROGRESS)
    def progress(params):
        pass

    @client.feature(lsp.WINDOW_LOG_MESSAGE)
    def log(params: lsp.LogMessageParams):
        if "in process" in params.message:
            state["events"].put_nowait(("training", time.perf_counter()))

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def diags(params: lsp.PublishDiagnosticsParams):
        state["diagnostics"][params.uri] = params.diagnostics
        if params.diagnostics:
            state["events"].put_nowait(("diagnostics", time.perf_counter()))

    @client.feature(lsp.WORKSPACE_CODE_LENS_REFRESH)
    def refresh(params):
        return None

    env = {**os.environ, "PYTHONPATH": str(ROOT / "server")}
    await client.start_io(sys.executable, "-m", "deeplocalize.server", env=env)
    await client.initialize_async(lsp.InitializeParams(
        capabilities=lsp.ClientCapabilities(workspace=lsp.WorkspaceClientCapabilities(configuration=True),
                                            window=lsp.WindowClientCapabilities(work_done_progress=True)),
        initialization_options={"interpreter": sys.executable}))
    client.initialized(lsp.InitializedParams())
    return client, state


async def stop(client: LanguageClient) -> None:
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()


def open_doc(client: LanguageClient, path: Path) -> str:
    uri = from_fs_path(str(path))
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=path.read_text())))
    return uri


async def first_diagnostic(fixture: str, warm: bool, tmp: Path) -> float:
    settings = {"run": "onOpenAndSave", "debounceMs": 0, "warmWorker": warm, "maxSeconds": 90}
    client, state = await start(settings)
    if warm:
        await asyncio.sleep(10)  # the pre-started worker imports TensorFlow while the user reads
    path = tmp / Path(fixture).name
    shutil.copy(FIXTURES / fixture, path)
    t0 = time.perf_counter()
    open_doc(client, path)
    while True:
        kind, t = await asyncio.wait_for(state["events"].get(), 120)
        if kind == "diagnostics":
            break
    await stop(client)
    return t - t0


async def request_latency(tmp: Path, during_training: bool, n: int = 60) -> list[float]:
    client, state = await start({"run": "manual", "maxSeconds": 120, "maxEpochs": 0, "warmWorker": False})
    path = tmp / "long_training.py"
    shutil.copy(ROOT / "tests" / "data" / "long_training.py", path)
    uri = open_doc(client, path)
    if during_training:
        await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="deeplocalize.analyze", arguments=[uri]))
        await asyncio.wait_for(state["events"].get(), 60)
        await asyncio.sleep(2)
    doc = lsp.TextDocumentIdentifier(uri=uri)
    times = []
    for i in range(n):
        t = time.perf_counter()
        if i % 2:
            await client.text_document_hover_async(lsp.HoverParams(text_document=doc, position=lsp.Position(line=6, character=5)))
        else:
            await client.text_document_code_action_async(lsp.CodeActionParams(
                text_document=doc, range=lsp.Range(start=lsp.Position(line=6, character=0), end=lsp.Position(line=6, character=5)),
                context=lsp.CodeActionContext(diagnostics=[])))
        times.append(time.perf_counter() - t)
        await asyncio.sleep(0.05)
    await stop(client)
    return times


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for fixture, label in (("buggy/b09_lr_high_regression.py", "NaN (b09)"), ("buggy/b11_lr_too_low.py", "slow learning (b11)")):
            cold = await first_diagnostic(fixture, warm=False, tmp=tmp)
            warm = await first_diagnostic(fixture, warm=True, tmp=tmp)
            print(f"didOpen -> first diagnostic, {label:20s}: cold {cold:5.2f} s, warm worker {warm:5.2f} s")
        idle = await request_latency(tmp, during_training=False)
        busy = await request_latency(tmp, during_training=True)
        for name, v in (("idle", idle), ("while training", busy)):
            print(f"hover/codeAction latency {name:15s}: p50 {1000 * pct(v, 50):6.1f} ms, p95 {1000 * pct(v, 95):6.1f} ms (n={len(v)})")
        print(f"p95 ratio training/idle: {pct(busy, 95) / pct(idle, 95):.2f}x")


if __name__ == "__main__":
    asyncio.run(main())

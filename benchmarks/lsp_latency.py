"""Language-server latencies, measured end to end over stdio with real training.

    python benchmarks/lsp_latency.py [--only b0] [--skip-cold] [--skip-requests]

Save -> first squiggle on every buggy fixture, as an editor sees it (a real LSP client,
default debounce, fixes not verified since the first squiggle comes before that):
- cold: a fresh server with no warm worker (TensorFlow import included);
- warm: a server whose warm worker had time to import TensorFlow before the save;
- again: a second save right after the previous run finished (the pool refills at once).
Each as p50/p95 and as a ratio of the script's plain `python script.py` time, by fault
kind: configuration (a static rule's error, certain before training) or runtime. Then
the p50/p95 latency of hover and codeAction requests while a run trains, next to the same
requests on an idle server (read the ratio, not the absolute time: the machine is shared).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
sys.path.insert(0, str(ROOT / "server"))

from deeplocalize.evaluation import load_expectations  # noqa: E402


def configuration_codes() -> set[str]:
    """Codes the static rules emit: faults certain from the configuration alone."""
    tree = ast.parse((ROOT / "server" / "deeplocalize" / "detectors" / "configuration.py").read_text())
    return {n.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Finding"
            and n.args and isinstance(n.args[0], ast.Constant)}


async def start(settings: dict) -> tuple[LanguageClient, dict]:
    client = LanguageClient("deeplocalize-bench", "1")
    state: dict = {"events": asyncio.Queue(), "final": {}}

    @client.feature(lsp.WORKSPACE_CONFIGURATION)
    def configuration(params: lsp.ConfigurationParams):
        return [settings for _ in params.items]

    @client.feature(lsp.WINDOW_WORK_DONE_PROGRESS_CREATE)
    def create(params):
        return None

    @client.feature(lsp.PROGRESS)
    def progress(params):
        pass

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def diags(params: lsp.PublishDiagnosticsParams):
        state["final"][params.uri] = params.diagnostics
        state["events"].put_nowait(("diagnostics", params.uri, time.perf_counter(), params.diagnostics))

    @client.feature("deeplocalize/runStatus")
    def status(params):
        phase = params.phase if hasattr(params, "phase") else params["phase"]
        uri = params.uri if hasattr(params, "uri") else params["uri"]
        if phase == "running" and getattr(params, "pid", None):
            state["events"].put_nowait(("training", None, time.perf_counter(), None))  # the training process started
        state["events"].put_nowait(("status", uri, time.perf_counter(), phase))

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


def save(client: LanguageClient, uri: str) -> float:
    t0 = time.perf_counter()
    client.text_document_did_save(lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri)))
    return t0


async def until(state: dict, uri: str, want: str, since: float, timeout: float = 180) -> float:
    """Time of the first event for `uri` after `since`: "squiggle" (non-empty diagnostics) or "done"."""
    deadline = time.monotonic() + timeout
    while True:
        kind, u, t, data = await asyncio.wait_for(state["events"].get(), max(1.0, deadline - time.monotonic()))
        if u != uri or t < since:
            continue
        if want == "squiggle" and kind == "diagnostics" and data:
            return t
        if want == "done" and kind == "status" and data in ("done", "failed", "cancelled"):
            return t


SETTINGS = {"run": "onSave", "verifyFixes": False, "maxSeconds": 90}


async def cold(fixtures: list[Path], tmp: Path) -> dict[str, float]:
    out = {}
    for fx in fixtures:
        client, state = await start({**SETTINGS, "warmWorker": False})
        path = tmp / fx.name
        shutil.copy(fx, path)
        uri = open_doc(client, path)
        t0 = save(client, uri)
        out[fx.name] = await until(state, uri, "squiggle", t0) - t0
        await until(state, uri, "done", t0)
        await stop(client)
        print(f"  cold  {fx.name:32s} {out[fx.name]:5.2f} s", flush=True)
    return out


async def warm_and_again(fixtures: list[Path], tmp: Path, ready_s: float) -> tuple[dict[str, float], dict[str, float], dict[str, list]]:
    warm, again, final = {}, {}, {}
    client, state = await start({**SETTINGS, "warmWorker": True})
    for fx in fixtures:
        path = tmp / fx.name
        shutil.copy(fx, path)
        uri = open_doc(client, path)
        await asyncio.sleep(ready_s)  # the user edits; the refilled worker imports TensorFlow meanwhile
        t0 = save(client, uri)
        warm[fx.name] = await until(state, uri, "squiggle", t0) - t0
        await until(state, uri, "done", t0)
        final[fx.name] = state["final"].get(uri) or []
        # Save again at once (an edit that changes the text, so nothing is reused).
        path.write_text(path.read_text() + "\n# edited\n")
        client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=path.read_text())]))
        t1 = save(client, uri)
        again[fx.name] = await until(state, uri, "squiggle", t1) - t1
        await until(state, uri, "done", t1)
        print(f"  warm  {fx.name:32s} {warm[fx.name]:5.2f} s, again {again[fx.name]:5.2f} s", flush=True)
    await stop(client)
    return warm, again, final


async def idle_memory(settle_s: float = 25.0) -> dict[str, float]:
    """What the editor pays while nothing runs: the server and the processes it keeps (the fork
    server, a spare training process), as proportional set size (shared pages split between
    the processes that share them, so the sum is what the group really uses), in MB."""
    import psutil

    client, _ = await start({**SETTINGS, "warmWorker": True})
    await asyncio.sleep(settle_s)  # TensorFlow imported, the spare forked and idle
    server = next(p for p in psutil.Process().children() if "deeplocalize.server" in " ".join(p.cmdline()))
    out: dict[str, float] = {}
    for p in [server, *server.children(recursive=True)]:
        name = "server" if p.pid == server.pid else p.name()
        out[name] = out.get(name, 0.0) + p.memory_full_info().pss / 2**20
    await stop(client)
    return out


def plain_seconds(path: Path) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, str(path)], cwd=path.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    return time.monotonic() - start


async def request_latency(tmp: Path, during_training: bool, n: int = 60) -> list[float]:
    client, state = await start({"run": "manual", "maxSeconds": 120, "maxEpochs": 0, "warmWorker": False})
    path = tmp / "long_training.py"
    shutil.copy(ROOT / "tests" / "data" / "long_training.py", path)
    uri = open_doc(client, path)
    if during_training:
        await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="deeplocalize.analyze", arguments=[uri]))
        while (await asyncio.wait_for(state["events"].get(), 60))[0] != "training":
            pass
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


async def phases(fixtures: list[Path]) -> None:
    """Where the time to the first squiggle goes, seen by the engine with a warm worker:
    when each probe event first arrives after the job is sent (the script's own imports,
    data and model come before `compile`; the probe's model description before `model_preview`)."""
    from deeplocalize.runner import RunOptions
    from deeplocalize.session import EngineSession

    kinds = ("started", "compile", "fit", "model_preview", "initial_weights", "model", "step", "epoch")
    rows: dict[str, list[float]] = {k: [] for k in (*kinds, "streamed", "report")}
    session = EngineSession()
    try:
        for fx in fixtures:
            await session.ready(RunOptions())
            seen: dict[str, float] = {}
            t0 = time.perf_counter()

            def on_event(event, trace) -> None:
                seen.setdefault(event.kind, time.perf_counter() - t0)

            def on_findings(found) -> None:
                seen.setdefault("streamed", time.perf_counter() - t0)

            await session.analyze(str(fx), RunOptions(), on_event=on_event, on_findings=on_findings)
            seen["report"] = time.perf_counter() - t0
            for k in rows:
                if k in seen:
                    rows[k].append(seen[k])
    finally:
        await session.close()
    print("engine phases, warm worker (first arrival after the job; median / p95 over the fixtures that have it):")
    for k, v in rows.items():
        if v:
            print(f"  {k:16s} n={len(v):2d}  median {statistics.median(v):5.2f} s  p95 {pct(v, 95):5.2f} s")


def pct(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def table(name: str, times: dict[str, float], plain: dict[str, float], kinds: dict[str, str]) -> None:
    for kind in ("configuration", "runtime"):
        names = [n for n in times if kinds.get(n) == kind]
        if not names:
            continue
        v = [times[n] for n in names]
        r = [times[n] / plain[n] for n in names if plain.get(n)]
        print(f"{name:6s} {kind:13s} n={len(v):2d}  p50 {pct(v, 50):5.2f} s  p95 {pct(v, 95):5.2f} s   "
              f"x plain run: median {statistics.median(r):.2f}  p95 {pct(r, 95):.2f}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--skip-requests", action="store_true")
    ap.add_argument("--phases", action="store_true", help="only the engine's phase timings (no language server)")
    ap.add_argument("--ready-seconds", type=float, default=8.0, help="time the warm worker gets before each save")
    ap.add_argument("--memory", action="store_true", help="only the idle memory of the server and its processes")
    args = ap.parse_args()
    if args.memory:
        mem = await idle_memory()
        print("idle memory (PSS): " + ", ".join(f"{k} {v:.0f} MB" for k, v in mem.items()) + f"; total {sum(mem.values()):.0f} MB")
        return
    fixtures = [e.path for e in load_expectations(FIXTURES) if e.buggy and args.only in e.path.name]
    config = configuration_codes()
    if args.phases:
        await phases(fixtures)
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"plain runs ({len(fixtures)} buggy fixtures)", flush=True)
        plain = {fx.name: plain_seconds(fx) for fx in fixtures}
        print("warm and save-again", flush=True)
        warm, again, final = await warm_and_again(fixtures, tmp, args.ready_seconds)
        kinds = {n: "configuration" if any(dg.code in config and dg.severity == lsp.DiagnosticSeverity.Error for dg in ds) else "runtime"
                 for n, ds in final.items()}
        cold_t = {} if args.skip_cold else await cold(fixtures, tmp)
        print()
        table("warm", warm, plain, kinds)
        table("again", again, plain, kinds)
        if cold_t:
            table("cold", cold_t, plain, kinds)
        print(f"plain run: median {statistics.median(plain.values()):.2f} s")
        mem = await idle_memory()
        print("idle memory (PSS): " + ", ".join(f"{k} {v:.0f} MB" for k, v in mem.items()) + f"; total {sum(mem.values()):.0f} MB")
        if not args.skip_requests:
            idle = await request_latency(tmp, during_training=False)
            busy = await request_latency(tmp, during_training=True)
            for name, v in (("idle", idle), ("while training", busy)):
                print(f"hover/codeAction latency {name:15s}: p50 {1000 * pct(v, 50):6.1f} ms, p95 {1000 * pct(v, 95):6.1f} ms (n={len(v)})")
            print(f"p95 ratio training/idle: {pct(busy, 95) / pct(idle, 95):.2f}x")


if __name__ == "__main__":
    asyncio.run(main())

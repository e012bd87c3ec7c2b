"""The language server end to end: pytest-lsp drives the real server over stdio,
which trains real Keras models on the fixtures (slow)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from conftest import FIXTURES
from lsp_helpers import apply, child_processes, finished, gone, logs, open_copy, save, statuses, training_pids, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DATA = Path(__file__).parent / "data"


# ------------------------------------------------------------------------------ tests
# One analyzed document, feature by feature: test_lsp_features.py.
async def test_a_certain_configuration_error_is_squiggled_before_training_ends(client: LanguageClient, tmp_path):
    """Streamed: the error is published as soon as the model, compile and data are known;
    the final diagnosis replaces it (one diagnostic, same place), with no duplicate."""
    client.set_configuration({"run": "onSave", "maxSeconds": 120, "verifyFixes": False, "warmWorker": True}, section="deeplocalize")
    uri, path = open_copy(client, tmp_path, DATA / "config_error_slow_epoch.py")
    save(client, uri)
    early = await until(lambda: client.diagnostics.get(uri), 90, "the streamed diagnostic")
    assert not finished(client, path.name), "the diagnostic came only with the final report"
    assert [(d.code, d.range.start.line) for d in early] == [("output-not-distribution", 9)]
    # The status that names it follows the diagnostics on the wire: awaited, not assumed already there.
    await until(lambda: any(s.get("provisional") == ["output-not-distribution"] for s in statuses(client, path.name, "running")), 30,
                "the running status that names the provisional finding")
    await until(lambda: finished(client, path.name), what="the run to finish")
    final = [d for d in client.diagnostics[uri] if d.code == "output-not-distribution"]
    assert len(final) == 1 and final[0].range == early[0].range


async def test_fix_then_rerun_clears_the_diagnostic(client: LanguageClient, tmp_path):
    uri, path = open_copy(client, tmp_path, FIXTURES / "buggy/b01_relu_output_ce.py")
    save(client, uri)
    await until(lambda: finished(client, path.name), what="first run")
    top = client.diagnostics[uri][0]
    assert (top.code, top.range.start.line) == ("output-not-distribution", 11)
    actions = await client.text_document_code_action_async(lsp.CodeActionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri), range=top.range, context=lsp.CodeActionContext(diagnostics=[top])))
    fix = next(a for a in actions if a.is_preferred)
    new = apply(path.read_text(), fix.edit.document_changes[0].edits)
    assert 'keras.layers.Dense(10, activation="softmax"),  # FAULT' in new
    path.write_text(new)
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2), content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=new)]))
    save(client, uri)
    await until(lambda: finished(client, path.name, 2), what="second run")
    assert [d for d in client.diagnostics[uri] if d.severity <= lsp.DiagnosticSeverity.Warning] == []


async def test_cancel_by_command_and_by_progress_kills_the_training_process(client: LanguageClient, tmp_path):
    client.set_configuration({"run": "manual", "maxSeconds": 120, "maxEpochs": 0, "warmWorker": True}, section="deeplocalize")
    uri, path = open_copy(client, tmp_path, DATA / "long_training.py")
    for attempt, how in enumerate(("command", "progress")):
        await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="deeplocalize.analyze", arguments=[uri]))
        pid = (await until(lambda: training_pids(client)[attempt:] or None, 60, "training process"))[0]
        await until(lambda: any(isinstance(r, lsp.WorkDoneProgressReport) for t, rs in client.progress_reports.items() for r in rs[1:] if t not in getattr(client, "_seen", set())), 60, "training progress")
        assert psutil.pid_exists(pid)
        if how == "command":
            assert await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="deeplocalize.cancel", arguments=[uri])) is True
        else:
            token = next(t for t in client.progress_reports if t not in getattr(client, "_seen", set()))
            client.window_work_done_progress_cancel(lsp.WorkDoneProgressCancelParams(token=token))
        await until(lambda: gone(pid), 20, f"process {pid} to be killed ({how})")
        await until(lambda: len([s for s in statuses(client, path.name, "cancelled") if s.get("stage") == "run"]) == attempt + 1, 20, "the cancel")
        client._seen = set(client.progress_reports)
        assert child_processes(client) == []


async def test_cancel_during_verification_keeps_the_first_diagnosis_and_kills_the_rerun(client: LanguageClient, tmp_path):
    uri, path = open_copy(client, tmp_path, FIXTURES / "buggy/b03_deep_sigmoid.py")
    original = path.read_text()
    save(client, uri)
    await until(lambda: statuses(client, path.name, "verifying"), 150, "the first diagnosis")
    first = [d for d in client.diagnostics[uri] if d.severity <= lsp.DiagnosticSeverity.Warning]
    assert first and first[0].data["confirmation"] is None  # published before any experiment
    await until(lambda: child_processes(client), 30, "the verifying re-run to start")
    assert await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="deeplocalize.cancel", arguments=[uri])) is True
    await until(lambda: any(s.get("stage") == "verification" for s in statuses(client, path.name, "cancelled")), 30, "the cancel")
    await until(lambda: not child_processes(client), 20, "the re-run's process tree to be gone")
    assert [d.code for d in client.diagnostics[uri] if d.severity <= lsp.DiagnosticSeverity.Warning] == [d.code for d in first]
    assert path.read_text() == original  # experiments run in memory: the file is never written


async def test_rapid_saves_keep_at_most_one_training_process(client: LanguageClient, tmp_path):
    client.set_configuration({"run": "onSave", "maxSeconds": 120, "maxEpochs": 0, "debounceMs": 50, "warmWorker": True}, section="deeplocalize")
    uri, path = open_copy(client, tmp_path, DATA / "long_training.py")
    peak = 0
    for i in range(8):
        path.write_text(path.read_text() + f"\n# edit {i}\n")
        save(client, uri)
        for _ in range(10):
            peak = max(peak, len(child_processes(client)))
            await asyncio.sleep(0.15)
    await until(lambda: child_processes(client), 60, "the last run to train")
    for _ in range(30):
        peak = max(peak, len(child_processes(client)))
        await asyncio.sleep(0.1)
    assert peak == 1
    await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="deeplocalize.cancel", arguments=[uri]))
    await until(lambda: not child_processes(client), 20, "cancel")


async def test_server_answers_while_training_and_keeps_nothing_with_warm_workers_off(client: LanguageClient, tmp_path):
    client.set_configuration({"run": "manual", "maxSeconds": 120, "maxEpochs": 0, "warmWorker": False}, section="deeplocalize")
    uri, path = open_copy(client, tmp_path, DATA / "long_training.py")
    client.lens_titles[uri] = []  # followed as VS Code does: re-requested at each refresh
    await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="deeplocalize.analyze", arguments=[uri]))
    pid = (await until(lambda: training_pids(client) or None, 60, "training"))[0]
    doc = lsp.TextDocumentIdentifier(uri=uri)
    for _ in range(5):
        await client.text_document_hover_async(lsp.HoverParams(text_document=doc, position=lsp.Position(line=6, character=5)))
        await client.text_document_code_action_async(lsp.CodeActionParams(text_document=doc, range=lsp.Range(start=lsp.Position(line=0, character=0), end=lsp.Position(line=0, character=1)), context=lsp.CodeActionContext(diagnostics=[])))
        lenses = await client.text_document_code_lens_async(lsp.CodeLensParams(text_document=doc))
        assert "cancel" in lenses[0].command.title and lenses[0].command.command == "deeplocalize.cancel"
    assert psutil.pid_exists(pid) and not gone(pid)  # answered while the run was still training
    await client.workspace_execute_command_async(lsp.ExecuteCommandParams(command="deeplocalize.cancel", arguments=[uri]))
    await until(lambda: gone(pid), 20, "cancel")
    # Warm workers off: the run's fork server and spares are stopped with it, nothing waits idle.
    await until(lambda: not psutil.Process(client._server.pid).children(recursive=True), 20, "every process of the run to be gone")
    # The editor is told when the run is over: the lens it re-requests offers a new run, not "training".
    await until(lambda: any("analyze" in t for t in client.lens_titles[uri]), 10, f"the lens to offer a new run ({client.lens_titles[uri]})")


@pytest.mark.parametrize(
    "source, check",
    [
        (FIXTURES / "robustness/crash_before_fit.py", lambda d: d[0].severity == lsp.DiagnosticSeverity.Error and d[0].range.start.line == 5 and "ZeroDivisionError" in d[0].message),
        (FIXTURES / "robustness/syntax_error.py", lambda d: d[0].code == "syntax-error" and d[0].range.start.line == 4),
        (FIXTURES / "robustness/infinite_loop.py", lambda d: len(d) == 1 and d[0].code == "budget-exceeded" and d[0].severity == lsp.DiagnosticSeverity.Information),
        (FIXTURES / "robustness/sys_exit.py", lambda d: len(d) == 1 and d[0].code == "no-training"),
        (FIXTURES / "robustness/prints_megabytes.py", lambda d: True),
        (FIXTURES / "buggy/b06_categorical_int_labels.py", lambda d: d[0].severity == lsp.DiagnosticSeverity.Error and d[0].data["root_cause"] == "loss"),
    ],
    ids=["crash", "syntax-error", "timeout", "sys-exit", "megabytes", "label-crash"],
)
async def test_bad_scripts_are_reported_and_the_server_stays_up(client: LanguageClient, tmp_path, source, check):
    client.set_configuration({"run": "onSave", "maxSeconds": 8, "maxEpochs": 5, "debounceMs": 50, "warmWorker": True}, section="deeplocalize")
    uri, path = open_copy(client, tmp_path, source)
    save(client, uri)
    await until(lambda: finished(client, path.name), 90, "the run")
    assert check(client.diagnostics[uri]), client.diagnostics[uri]
    if source.name == "prints_megabytes.py":
        out = [m for m in logs(client) if m.startswith(f"[{path.name}]")]
        assert out and any("more output lines not shown" in m for m in out)
    # still answering
    await client.text_document_hover_async(lsp.HoverParams(text_document=lsp.TextDocumentIdentifier(uri=uri), position=lsp.Position(line=0, character=0)))
    assert child_processes(client) == []


async def test_non_keras_script_is_not_run(client: LanguageClient, tmp_path):
    uri, path = open_copy(client, tmp_path, FIXTURES / "robustness/not_keras.py")
    save(client, uri)
    await until(lambda: statuses(client, path.name, "skipped"), 30, "the skip")
    assert not training_pids(client)



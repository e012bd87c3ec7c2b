"""The editor shows real training runs: a script open in the editor is run with `deeplocalize
run` in a terminal (here: a child process), and the real server over stdio puts the run's
finding on its line while the run still trains, says so in the message, follows edits made
since the run started, and ignores a folder it cannot read (slow: real training)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from conftest import ROOT
from lsp_helpers import logs, until
from pygls.uris import from_fs_path

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400), pytest.mark.xdist_group("live")]
SCRIPT = ROOT / "tests" / "data" / "live_schedule.py"
FAULT_LINE = next(i for i, line in enumerate(SCRIPT.read_text().splitlines()) if "# FAULT" in line)  # 0-based


def _training(client: LanguageClient, uri: str) -> list[lsp.Diagnostic]:
    return [d for d in client.diagnostics.get(uri, []) if d.source == "training run"]


def _change(client: LanguageClient, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=text)]))


async def test_a_live_run_s_finding_shows_on_its_line_while_it_trains_and_follows_edits(client: LanguageClient, tmp_path):
    script = tmp_path / SCRIPT.name
    shutil.copy(SCRIPT, script)
    text = script.read_text()
    uri = from_fs_path(str(script))
    statuses: list[dict] = []
    client.feature("deeplocalize/trainingRun")(lambda params: statuses.append(params._asdict()))
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
    # An unreadable folder among the runs (a newer version's): ignored, said once in the log.
    newer = tmp_path / ".deeplocalize" / "runs" / "20000101-000000-other"
    newer.mkdir(parents=True)
    (newer / "run.json").write_text(json.dumps({"format": 999}))

    run = subprocess.Popen([sys.executable, "-m", "deeplocalize", "run", str(script)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT / "server"), "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        shown = await until(lambda: _training(client, uri), 120, "the training run's diagnostic")
        assert run.poll() is None, "the run had ended: the finding was not shown while it trained"
        (diag,) = shown
        assert diag.range.start.line == FAULT_LINE and diag.severity == lsp.DiagnosticSeverity.Error
        assert diag.code in ("nan-inf", "exploding-gradients") and "live training run, epoch" in diag.message
        assert any(s["live"] and s["uri"] == uri for s in statuses)
        assert any("ignoring the run folder" in line and "newer" in line for line in logs(client))

        # Two lines added above: the finding moves with its line.
        _change(client, uri, 2, "# notes\n# more notes\n" + text)
        await until(lambda: [d for d in _training(client, uri) if d.range.start.line == FAULT_LINE + 2], 10, "the finding to follow the edit")
        # Its own line edited: the run's finding no longer applies there.
        lines = text.splitlines(keepends=True)
        lines[FAULT_LINE] = "        return lr * 0.1\n"
        _change(client, uri, 3, "".join(lines))
        await until(lambda: not _training(client, uri), 10, "the finding on the edited line to go")
        _change(client, uri, 4, text)
        await until(lambda: _training(client, uri), 10, "the finding to come back with the text the run started from")
        assert run.wait(120) == 0
        await until(lambda: any("finished at epoch 120/120" in d.message for d in _training(client, uri)), 15, "the finished run's label")
        # The status follows its diagnostics; never `killed` on the way (the training ends before the final report).
        await until(lambda: statuses[-1]["state"] == "finished", 5, "the finished run's status")
        assert not statuses[-1]["live"] and statuses[-1]["report"].endswith("report.html")
        assert all(s["state"] in ("live", "finished") for s in statuses), [(s["state"], s["label"]) for s in statuses if s["state"] != "live"]
    finally:
        run.kill()
    client.text_document_did_close(lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri)))
    await until(lambda: not _training(client, uri), 10, "the diagnostics to be cleared on close")

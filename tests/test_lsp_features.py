"""The language server's features on one analyzed document, one test per feature: pytest-lsp
drives the real server over stdio, which trains the learning-rate fixture b10 once for the
module (its diagnosis verified by re-training), and each request is then asked of that run
(slow: real training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from conftest import FIXTURES
from lsp_helpers import apply, child_processes, finished, logs, open_copy, save, statuses, training_pids, until

# One server and one analysis for the module, its tests in file order on one worker (the last reuses the run).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("lsp-features")]
FAULT_LINE = 6  # `lr = 10.0` (0-based)


class Analyzed:
    def __init__(self, client: LanguageClient, uri: str, path: Path, original: str) -> None:
        self.client, self.uri, self.path, self.original = client, uri, path, original

    @property
    def top(self) -> lsp.Diagnostic:
        return self.client.diagnostics[self.uri][0]

    def at(self, line: int, character: int) -> lsp.HoverParams:
        return lsp.HoverParams(text_document=lsp.TextDocumentIdentifier(uri=self.uri), position=lsp.Position(line=line, character=character))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def doc(editor: LanguageClient, tmp_path_factory) -> Analyzed:
    """b10 saved once, analyzed to the end (its fixes verified)."""
    uri, path = open_copy(editor, tmp_path_factory.mktemp("features"), FIXTURES / "buggy/b10_lr_var_adam.py")
    original = path.read_text()
    save(editor, uri)
    await until(lambda: finished(editor, path.name), what="the run to finish")
    return Analyzed(editor, uri, path, original)


async def test_the_diagnostic_sits_on_the_rate_and_links_its_rule_doc(doc: Analyzed):
    top = doc.top
    assert top.range.start.line == FAULT_LINE
    assert top.severity == lsp.DiagnosticSeverity.Error and top.source == "deeplocalize"
    assert top.code in ("exploding-gradients", "nan-inf") and "learning rate" in top.message
    assert top.code_description.href.endswith(f"docs/diagnostics.md#{top.code}")
    assert Path(top.code_description.href.split("file://")[1].split("#")[0]).is_file()
    assert top.data["root_cause"] == "learning_rate" and top.data["fixes"]


async def test_progress_begins_cancellable_reports_epochs_and_ends_with_the_outcome(doc: Analyzed):
    (token, reports), = list(doc.client.progress_reports.items())
    assert isinstance(reports[0], lsp.WorkDoneProgressBegin) and reports[0].cancellable
    assert any(isinstance(r, lsp.WorkDoneProgressReport) and "epoch" in (r.message or "") for r in reports)
    await until(lambda: isinstance(doc.client.progress_reports[token][-1], lsp.WorkDoneProgressEnd), 10, "progress end")
    assert "fault" in doc.client.progress_reports[token][-1].message


async def test_the_first_diagnosis_comes_before_the_experiments_that_verify_it_in_place(doc: Analyzed):
    order = [(s["phase"], s.get("status")) for s in statuses(doc.client, doc.path.name) if s["phase"] in ("verifying", "done")]
    assert order == [("verifying", None), ("done", "ok")]
    top = doc.top
    assert top.data["confirmation"] == "verified" and "Verified by re-training with the fix" in top.message
    verification = top.data["fixes"][0]["verification"]
    assert verification["verdict"] == "verified" and verification["after"]["accuracy"] > verification["before"]["accuracy"] + 0.3
    assert doc.path.read_text() == doc.original and child_processes(doc.client) == []  # in memory, and no process left


async def test_the_preferred_quick_fix_is_the_verified_one_and_rewrites_the_defining_line(doc: Analyzed):
    top = doc.top
    actions = await doc.client.text_document_code_action_async(lsp.CodeActionParams(
        text_document=lsp.TextDocumentIdentifier(uri=doc.uri), range=top.range, context=lsp.CodeActionContext(diagnostics=[top])))
    preferred = [a for a in actions if a.is_preferred]
    assert len(preferred) == 1 and preferred[0].kind == lsp.CodeActionKind.QuickFix
    assert preferred[0].title.endswith("(verified)")
    (change,) = preferred[0].edit.document_changes
    assert change.text_document.uri == doc.uri and change.text_document.version == 1
    assert apply(doc.path.read_text(), change.edits).splitlines()[FAULT_LINE] == "lr = 0.001  # FAULT"


async def test_hover_on_the_faulty_line_shows_what_the_fix_changed(doc: Analyzed):
    hover = await doc.client.text_document_hover_async(doc.at(FAULT_LINE, 6))
    assert "| measure | before | after |" in hover.contents.value and "verified" in hover.contents.value


async def test_hover_on_a_layer_line_shows_its_recorded_statistics(doc: Analyzed):
    hover = await doc.client.text_document_hover_async(doc.at(10, 10))
    assert "dense" in hover.contents.value and "gradient norm" in hover.contents.value


async def test_the_code_lens_above_fit_offers_a_run_and_shows_the_last_outcome(doc: Analyzed):
    lenses = await doc.client.text_document_code_lens_async(lsp.CodeLensParams(text_document=lsp.TextDocumentIdentifier(uri=doc.uri)))
    assert {l.range.start.line for l in lenses} == {16}  # model.fit(...)
    assert any("fault" in l.command.title for l in lenses) and any(l.command.command == "deeplocalize.analyze" for l in lenses)


async def test_each_finding_reaches_the_log_with_its_place_and_rule(doc: Analyzed):
    """The output panel lists what the run found, where (checked by its data, not its wording)."""
    for d in doc.client.diagnostics[doc.uri]:
        assert any(f"{doc.path.name}:{d.range.start.line + 1}:" in m and str(d.code) in m for m in logs(doc.client)), d.code


async def test_saving_the_same_content_again_reuses_the_results_and_trains_nothing(doc: Analyzed):
    n_pids = len(training_pids(doc.client))
    save(doc.client, doc.uri)
    await until(lambda: any(s.get("reused") for s in statuses(doc.client, doc.path.name, "done")), 30, "reuse")
    assert len(training_pids(doc.client)) == n_pids

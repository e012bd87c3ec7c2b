"""The language server on a notebook, one test per feature on one analyzed notebook: its
finding in the cell that defines the faulty layer, the quick fix, hover, the report panel and
the lens in cells, and closing it (slow: the real server trains the notebook's script)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
import pytest_asyncio
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from conftest import FIXTURES
from lsp_helpers import apply, finished, open_notebook, until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("lsp-notebook")]
MODEL_CELL, FIT_CELL, IMPORT_CELL = 4, 6, 2  # 1-based cells of the .ipynb (cell 1 is markdown, not synced)


class Notebook:
    def __init__(self, client: LanguageClient, path: Path, uri: str, cells: dict[int, str]) -> None:
        self.client, self.path, self.uri, self.cells = client, path, uri, cells

    @property
    def diag(self) -> lsp.Diagnostic:
        return next(d for d in self.client.diagnostics.get(self.cells[MODEL_CELL], []) if d.code == "output-not-distribution")

    def cell(self, index: int) -> lsp.TextDocumentIdentifier:
        return lsp.TextDocumentIdentifier(uri=self.cells[index])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def notebook(editor: LanguageClient, tmp_path_factory) -> Notebook:
    """digits_relu_output.ipynb opened and saved as VS Code does, analyzed to the end."""
    path = tmp_path_factory.mktemp("notebook") / "digits.ipynb"
    shutil.copy(FIXTURES / "notebooks" / "digits_relu_output.ipynb", path)
    uri, cells = open_notebook(editor, path)
    editor.notebook_document_did_save(lsp.DidSaveNotebookDocumentParams(notebook_document=lsp.NotebookDocumentIdentifier(uri=uri)))
    await until(lambda: finished(editor, path.name), what="the notebook's run to finish")
    return Notebook(editor, path, uri, cells)


async def test_the_finding_sits_in_the_model_cell_only_verified_in_the_notebooks_script(notebook: Notebook):
    diag = notebook.diag
    assert "Verified by re-training with the fix" in diag.message
    assert diag.severity == lsp.DiagnosticSeverity.Error and diag.range.start == lsp.Position(line=3, character=38)
    assert not any(notebook.client.diagnostics.get(u) for i, u in notebook.cells.items() if i != MODEL_CELL)


async def test_the_quick_fix_edits_the_cell(notebook: Notebook):
    diag = notebook.diag
    actions = await notebook.client.text_document_code_action_async(lsp.CodeActionParams(
        text_document=notebook.cell(MODEL_CELL), range=diag.range, context=lsp.CodeActionContext(diagnostics=[diag])))
    fix = next(a for a in actions if "softmax" in a.title)
    (change,) = fix.edit.document_changes
    assert change.text_document.uri == notebook.cells[MODEL_CELL]
    cell_text = nbformat.read(notebook.path, as_version=4).cells[MODEL_CELL - 1].source
    assert 'Dense(10, activation="softmax")' in apply(cell_text, change.edits)


async def test_hover_in_the_cell_shows_the_layer(notebook: Notebook):
    hover = await notebook.client.text_document_hover_async(lsp.HoverParams(text_document=notebook.cell(MODEL_CELL), position=notebook.diag.range.start))
    assert hover is not None and "dense_1" in hover.contents.value


async def test_the_report_asked_from_a_cell_is_drawn_from_the_run_without_a_new_analysis(notebook: Notebook):
    before = len(notebook.client.run_status)
    reply = await notebook.client.protocol.send_request_async("deeplocalize/report", {"uri": notebook.cells[MODEL_CELL]})
    assert reply.html and "digits.ipynb:cell 4:4:39" in reply.html and "output-not-distribution" in reply.html
    assert reply.run == notebook.diag.data["run"]  # the run that put the diagnostic there
    await notebook.client.text_document_code_lens_async(lsp.CodeLensParams(text_document=notebook.cell(FIT_CELL)))
    assert len(notebook.client.run_status) == before  # nothing ran to draw it (a round trip since)


async def test_the_lens_sits_on_the_fit_cell_only(notebook: Notebook):
    lenses = await notebook.client.text_document_code_lens_async(lsp.CodeLensParams(text_document=notebook.cell(FIT_CELL)))
    assert lenses and lenses[0].range.start.line == 0 and list(lenses[0].command.arguments) == [notebook.uri]
    assert not await notebook.client.text_document_code_lens_async(lsp.CodeLensParams(text_document=notebook.cell(IMPORT_CELL)))


async def test_closing_the_notebook_clears_its_cells_diagnostics(notebook: Notebook):
    notebook.client.notebook_document_did_close(lsp.DidCloseNotebookDocumentParams(
        notebook_document=lsp.NotebookDocumentIdentifier(uri=notebook.uri), cell_text_documents=[notebook.cell(i) for i in notebook.cells]))
    await until(lambda: not notebook.client.diagnostics.get(notebook.cells[MODEL_CELL]), 10, "the cell's diagnostics to be cleared on close")

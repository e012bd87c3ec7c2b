"""Jupyter notebooks in the editor: one analysis per notebook, its places in the cells.

The client syncs a notebook as the notebook itself plus one text document per cell
(`notebookDocument/*`; pygls keeps both in its workspace). The analysis runs the saved
`.ipynb` as a script (see `deeplocalize.notebook`); this module only translates between
that script's lines and the cells: a finding goes to its cell's URI, a hover or a code
lens asked for in a cell comes back to the script's line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types as lsp
from pygls.uris import to_fs_path
from pygls.workspace import Workspace

from ..report import FileReport
from ..findings import SourceRange
from ..notebook import NotebookUnreadable, NothingToRun, cell_places, is_notebook, load_notebook
from .convert import Place, to_range, uri_of

SYNC = lsp.NotebookDocumentSyncOptions(
    notebook_selector=[lsp.NotebookDocumentFilterWithNotebook(notebook="jupyter-notebook", cells=[lsp.NotebookCellLanguage(language="python")])],
    save=True,
)


@dataclass(frozen=True)
class CellRef:
    notebook_uri: str
    path: str  # the notebook's file
    index: int  # 1-based among all its cells in the .ipynb, as the analysis numbers them


def _code_cell_uris(workspace: Workspace, notebook_uri: str) -> list[str]:
    """The synced notebook's code cells, in order. A client may leave out the cells its
    selector does not match (VS Code syncs only Python cells), so the k-th code cell here is
    the k-th code cell of the .ipynb, whatever the markdown around it."""
    nb = workspace.get_notebook_document(notebook_uri=notebook_uri)
    return [c.document for c in nb.cells if c.kind == lsp.NotebookCellKind.Code] if nb is not None else []


def _saved_code_cells(path: str) -> list[int]:
    try:
        return [c.index for c in load_notebook(path).cells]
    except (NotebookUnreadable, NothingToRun):
        return []


def cell_ref(workspace: Workspace, uri: str) -> CellRef | None:
    """The notebook cell a text document is, or None for a plain file."""
    nb = workspace.get_notebook_document(cell_uri=uri)
    if nb is None:
        return None
    path = to_fs_path(nb.uri) or nb.uri
    code = _code_cell_uris(workspace, nb.uri)
    saved = _saved_code_cells(path)
    if uri not in code or code.index(uri) >= len(saved):
        return None
    return CellRef(nb.uri, path, saved[code.index(uri)])


def cell_uris(workspace: Workspace, notebook_uri: str) -> dict[int, str]:
    """Each code cell's index in the saved .ipynb -> its document in the editor."""
    saved = _saved_code_cells(to_fs_path(notebook_uri) or notebook_uri)
    return dict(zip(saved, _code_cell_uris(workspace, notebook_uri)))


def placer(workspace: Workspace, notebook_uri: str, report: FileReport | None) -> Place:
    """Where a script range shows in the editor: its cell's document, lines counted in the cell.
    A provisional report (findings streamed while training) has no notebook yet: the saved one is read."""
    uris = cell_uris(workspace, notebook_uri)
    in_cells = report.place if report is not None and report.notebook is not None else cell_places(to_fs_path(notebook_uri) or notebook_uri)

    def place(r: SourceRange) -> tuple[str, lsp.Range]:
        at = in_cells(r)
        if at.cell is not None and at.cell in uris:
            return uris[at.cell], to_range(at)
        return uri_of(r.file), to_range(at)

    return place


def script_position(workspace: Workspace, uri: str, line: int) -> tuple[str, int] | None:
    """(notebook path, script line) of a 1-based line in a cell; None when it is not a code cell's."""
    ref = cell_ref(workspace, uri)
    if ref is None:
        return None
    try:
        script_line = load_notebook(ref.path).to_script(ref.index, line)
    except (NotebookUnreadable, NothingToRun):
        return None
    return (ref.path, script_line) if script_line is not None else None


def cell_is_saved(workspace: Workspace, uri: str) -> bool:
    """Whether a cell's text is what the saved notebook holds (so an analysis' edits still land right)."""
    ref = cell_ref(workspace, uri)
    if ref is None:
        return False
    try:
        saved = next((c.text for c in load_notebook(ref.path).cells if c.index == ref.index), None)
    except (NotebookUnreadable, NothingToRun):
        return False
    return saved is not None and saved.splitlines() == workspace.get_text_document(uri).source.splitlines()


def is_notebook_uri(uri: str) -> bool:
    return is_notebook(uri.split("?")[0].split("#")[0])


@dataclass(frozen=True)
class View:
    """A text document as the requests see it: the document whose analysis it belongs to (a cell's
    notebook, or itself), where its lines are in the analyzed script, and whether its text is the
    saved one (an analysis' edits land right only then). The one place a request asks "is this a cell?"."""

    uri: str
    owner_uri: str
    cell: CellRef | None

    def script_position(self, workspace: Workspace, line: int) -> tuple[str, int] | None:
        """(file, 1-based line) in the analyzed script of a 1-based line of this document."""
        if self.cell is None:
            return (to_fs_path(self.uri) or self.uri, line)
        return script_position(workspace, self.uri, line)

    def is_saved(self, workspace: Workspace) -> bool:
        if self.cell is not None:
            return cell_is_saved(workspace, self.uri)
        try:
            doc = workspace.get_text_document(self.uri)
            return Path(doc.path).read_text(encoding="utf-8", errors="replace") == doc.source
        except OSError:
            return False


def view(workspace: Workspace, uri: str) -> View:
    ref = cell_ref(workspace, uri)
    return View(uri, ref.notebook_uri if ref is not None else uri, ref)

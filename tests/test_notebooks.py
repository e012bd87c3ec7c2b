"""Jupyter notebooks: the code cells run as one script, findings reported in their cells,
by the CLI and by the language server (a real client over stdio for the latter)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from lsprotocol import types as lsp
from pygls.uris import from_fs_path

from conftest import FIXTURES, ROOT
from deeplocalize.evaluation import Expectation, evaluate
from deeplocalize.findings import Position, SourceRange
from deeplocalize.notebook import NotebookUnreadable, NothingToRun, from_json, load_notebook, to_python
from deeplocalize.report import FileReport
from deeplocalize.runner import RunOptions

# The notebook and distributed twins ask for the same single-device analyses: one worker answers them once.
pytestmark = pytest.mark.xdist_group("twins")

NOTEBOOKS = FIXTURES / "notebooks"
TWINS = json.loads((NOTEBOOKS / "twins.json").read_text())["notebooks"]
BAD = NOTEBOOKS / "bad"


def notebook_json(*cells: tuple[str, str], language: str = "python") -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "k", "display_name": "k", "language": language}}
    nb.cells = [nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src) for kind, src in cells]
    return nbformat.writes(nb)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deeplocalize", *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


# ------------------------------------------------------------------ the script a notebook is (fast)
def test_ipython_syntax_becomes_python_line_for_line():
    cell = "%matplotlib inline\n!pip install keras\nfiles = !ls\n%env KERAS_BACKEND=tensorflow\nx = 1 % 2\nif x:\n    %time y = 2"
    lines = to_python(cell)
    assert len(lines) == len(cell.splitlines())
    assert lines[0].startswith("pass") and lines[1].startswith("pass")  # nothing runs in a shell
    assert lines[2].startswith("files = []")
    assert "environ['KERAS_BACKEND'] = 'tensorflow'" in lines[3]
    assert lines[4] == "x = 1 % 2" and lines[6].startswith("    pass")
    compile("\n".join(lines), "cell", "exec")
    assert to_python("%%time\nmodel.fit(x)")[1] == "model.fit(x)"  # a Python cell magic's body runs
    assert all(l.startswith("#") for l in to_python("%%bash\nrm -rf data"))  # another language's does not
    written = to_python("%%writefile helper.py\ndef f():\n    return 1")
    assert len(written) == 3 and written[0].startswith("open('helper.py', 'w').write(") and "def f()" in written[0]


def test_cells_map_to_script_lines_and_back():
    nb = from_json(notebook_json(("markdown", "# Title"), ("code", "import keras\n%matplotlib inline"), ("markdown", "text"),
                                 ("code", "model = keras.Sequential()\nmodel.fit(x, y)"),
                                 ("code", "import matplotlib.pyplot as plt\nplt.plot(model.history.history['loss'])")), "/tmp/n.ipynb")
    assert [c.index for c in nb.cells] == [2, 4, 5] and nb.runs == 2  # the plot cell after the training cell does not run
    fit_line = nb.to_script(4, 2)
    assert nb.script.splitlines()[fit_line - 1] == "model.fit(x, y)"
    at = nb.to_cell(SourceRange("/tmp/n.ipynb", Position(fit_line, 1), Position(fit_line, 16)))
    assert (at.cell, at.start.line, at.end.line, at.end.column) == (4, 2, 2, 16)
    # the plot cell is in the script (a fix may edit it) but after the stop line
    lines = nb.script.splitlines()
    assert lines.index("plt.plot(model.history.history['loss'])") > next(i for i, l in enumerate(lines) if l.startswith("raise SystemExit"))
    # a range never spills out of its cell
    spill = nb.to_cell(SourceRange("/tmp/n.ipynb", Position(fit_line, 1), Position(fit_line + 3, 4)))
    assert spill.cell == 4 and spill.end.line == 2


def test_a_function_that_trains_keeps_the_cell_calling_it():
    nb = from_json(notebook_json(("code", "def train(m):\n    m.fit(x, y)"), ("code", "train(model)"), ("code", "print('done')")), "/tmp/n.ipynb")
    assert nb.runs == 2


@pytest.mark.parametrize("name, kind, where", [
    ("corrupt.ipynb", NotebookUnreadable, "not valid JSON"),
    ("not_a_notebook.ipynb", NotebookUnreadable, "nbformat"),
    ("no_code_cells.ipynb", NothingToRun, "no code cells"),
    ("r_kernel.ipynb", NothingToRun, "kernel language is R"),
])
def test_bad_notebooks_are_refused_with_a_reason(name, kind, where, session):
    with pytest.raises(kind, match=where):
        load_notebook(str(BAD / name))
    report = asyncio.run(session.analyze(str(BAD / name), RunOptions()))  # returns before any process starts
    assert report.run is None and report.to_json()["status"] == ("syntax_error" if kind is NotebookUnreadable else "nothing_to_run")


@pytest.mark.parametrize("name, code, status, anchor", [  # the text report's line and the JSON status
    ("corrupt.ipynb", 1, "syntax_error", ":64:5: error notebook-unreadable"),
    ("not_a_notebook.ipynb", 1, "syntax_error", ":1:1: error notebook-unreadable"),
    ("syntax_error_in_cell.ipynb", 1, "syntax_error", ":cell 2:2:10: error syntax-error"),
    ("no_code_cells.ipynb", 0, "nothing_to_run", "skipped: the notebook has no code cells"),
    ("r_kernel.ipynb", 0, "nothing_to_run", "skipped: the notebook's kernel language is R"),
])
def test_cli_refuses_bad_notebooks_without_running_them(name, code, status, anchor):
    text = cli("check", "--no-progress", str(BAD / name))
    assert text.returncode == code and anchor in text.stdout, text.stdout + text.stderr
    assert f"{name}: {status}" in text.stdout or status == "nothing_to_run"  # the summary line (a skipped file has none)


# ------------------------------------------------------------------ the same diagnosis as the script (slow)
def _findings(report: FileReport, twin_text: str | None = None) -> list[tuple]:
    """What a user compares: code, severity, cause and the source text at the place (the line, from the column)."""
    out = []
    for lf in report.findings:
        at = report.place(lf.range)
        if at.cell is not None:
            line = next(c.text for c in report.notebook.cells if c.index == at.cell).splitlines()[at.start.line - 1]
        else:
            line = (twin_text or "").splitlines()[at.start.line - 1].replace("  # FAULT", "")
        out.append((lf.finding.code, lf.finding.severity, lf.finding.root_cause, line[at.start.column - 1:]))
    return sorted(out)


@pytest.fixture(scope="module")
def pairs(session) -> list[tuple[dict, FileReport, FileReport]]:
    exps = [Expectation(NOTEBOOKS / t["path"], t["buggy"], [], []) for t in TWINS] + [Expectation(FIXTURES / t["twin"], t["buggy"], [], []) for t in TWINS]
    # 6 epochs for the script and its notebook alike: every fault here shows within 3 (the healthy ones ask 15 and 30).
    # The distributed twins ask for the same single-device analyses: answered once by the session.
    summary = asyncio.run(evaluate(exps, session, RunOptions(max_epochs=6), parallel=2))
    reports = [s.report for s in summary.scores]
    return [(t, reports[i], reports[i + len(TWINS)]) for i, t in enumerate(TWINS)]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("i", range(len(TWINS)), ids=[t["path"] for t in TWINS])
def test_a_notebook_gets_the_same_findings_in_its_cells_as_its_twin_script(pairs, i):
    twin, notebook, script = pairs[i]
    assert notebook.status == script.status == "ok"
    found = _findings(notebook)
    assert found == _findings(script, (FIXTURES / twin["twin"]).read_text())
    assert any(sev in ("error", "warning") for _, sev, _, _ in found) == twin["buggy"], found
    assert all(lf.range.file == notebook.path and notebook.place(lf.range).cell for lf in notebook.findings)
    # What the language server publishes: each diagnostic in its cell's document, on the twin's text.
    assert _diagnostics(notebook) == _diagnostics(script, (FIXTURES / twin["twin"]).read_text())


def _diagnostics(report: FileReport, twin_text: str | None = None) -> list[tuple]:
    """The server's diagnostics for a report, as (code, severity, cause, source text from the range's start)."""
    from pygls.workspace import Workspace

    from deeplocalize.lsp.convert import file_place, to_diagnostic
    from deeplocalize.lsp.cells import placer

    texts: dict[str, str] = {}
    place = file_place
    if report.notebook is not None:
        workspace = Workspace(from_fs_path(str(Path(report.path).parent)))
        code = {c.index: f"vscode-notebook-cell:{report.path}#C{c.index}" for c in report.notebook.cells}
        texts = {code[c.index]: c.text for c in report.notebook.cells}
        workspace.put_notebook_document(lsp.DidOpenNotebookDocumentParams(
            notebook_document=lsp.NotebookDocument(uri=from_fs_path(report.path), notebook_type="jupyter-notebook", version=1,
                                                   cells=[lsp.NotebookCell(kind=lsp.NotebookCellKind.Code, document=u) for u in code.values()]),
            cell_text_documents=[lsp.TextDocumentItem(uri=u, language_id="python", version=1, text=texts[u]) for u in code.values()]))
        place = placer(workspace, from_fs_path(report.path), report)
    out = []
    for lf in report.findings:
        uri, _ = place(lf.range)
        d = to_diagnostic(lf, report.trace, "run", place)
        text = texts[uri] if report.notebook is not None else (twin_text or "").replace("  # FAULT", "")
        out.append((d.code, d.severity, d.data["root_cause"], text.splitlines()[d.range.start.line][d.range.start.character:]))
    return sorted(out)


@pytest.mark.slow
def test_cli_json_gives_each_range_its_cell(tmp_path):
    nb = tmp_path / "digits.ipynb"
    shutil.copy(NOTEBOOKS / "digits_relu_output.ipynb", nb)
    report = tmp_path / "report.html"
    r = cli("check", "--format", "json", "--no-verify", "--report", str(report), str(nb))  # verification in a notebook: see the server's test
    assert r.returncode == 1, r.stdout + r.stderr
    assert "digits.ipynb:cell 4:4:39" in report.read_text() and "training report written" in r.stderr
    f = json.loads(r.stdout)["files"][0]["findings"][0]
    assert f["code"] == "output-not-distribution"
    assert f["range"]["cell"] == 4 and f["range"]["start"] == {"line": 4, "column": 39}
    assert f["fixes"][0]["edits"][0]["range"] == {"file": str(nb), "start": {"line": 4, "column": 39}, "end": {"line": 4, "column": 45}, "cell": 4}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_text_report_names_the_cell(pairs):
    from rich.console import Console

    from deeplocalize.cli import render_text

    report = next(nb for twin, nb, _ in pairs if twin["path"] == "digits_relu_output.ipynb")
    console = Console(record=True, width=500)
    render_text(report, console)
    out = console.export_text()
    assert "digits_relu_output.ipynb:cell 4:4:39: error output-not-distribution (root cause: activation)" in out, out
    assert "[cell 4:4:39 -> '\"softmax\"']" in out, out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sarif_places_notebook_findings_in_their_cells(pairs):
    from sarif_schema import sarif_errors

    from deeplocalize.sarif import to_sarif

    doc = to_sarif([nb for _, nb, _ in pairs], root=str(ROOT))
    assert not sarif_errors(doc), sarif_errors(doc)[:10]
    results = doc["runs"][0]["results"]
    assert results and all(r["properties"]["cell"] >= 1 for r in results)
    relu = next(r for r in results if r["ruleId"] == "output-not-distribution")
    assert relu["properties"]["cell"] == 4 and relu["locations"][0]["physicalLocation"]["region"]["startLine"] == 4


def test_cli_prints_sarif_for_bad_input_too():
    r = cli("check", "--format", "sarif", str(BAD / "syntax_error_in_cell.ipynb"), str(BAD / "r_kernel.ipynb"), str(FIXTURES / "robustness/syntax_error.py"))
    from sarif_schema import sarif_errors

    doc = json.loads(r.stdout)
    assert r.returncode == 1 and not sarif_errors(doc), sarif_errors(doc)
    run = doc["runs"][0]
    assert [x["ruleId"] for x in run["results"]] == ["syntax-error", "syntax-error"]
    assert run["results"][0]["properties"]["cell"] == 2
    assert "kernel language is R" in run["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"]


@pytest.mark.slow
def test_a_crash_points_at_its_cell():
    r = cli("check", "--no-progress", str(BAD / "crash_in_cell.ipynb"))
    assert r.returncode == 1 and ":cell 3:3:11: error script-crashed" in r.stdout and "ZeroDivisionError" in r.stdout, r.stdout


# ------------------------------------------------------------------ the language server (slow)
# Feature by feature on one analyzed notebook: test_lsp_notebook.py.


@pytest.mark.slow
def test_a_language_clients_virtual_notebook_document_runs_as_a_script(tmp_path):
    """jupyterlab-lsp shows a notebook to a server as one Python document named like the
    notebook (`.virtual_documents/name.ipynb`), its magics as `get_ipython()` calls."""
    twin = (FIXTURES / "buggy/b01_relu_output_ce.py").read_text().splitlines()
    virtual = tmp_path / ".virtual_documents" / "digits.ipynb"
    virtual.parent.mkdir()
    virtual.write_text("\n".join(["get_ipython().run_line_magic('matplotlib', 'inline')", *twin[1:], "get_ipython().system('ls')", "display(model)"]) + "\n")
    r = cli("check", "--no-progress", "--no-verify", str(virtual))
    assert r.returncode == 1 and "digits.ipynb:12:39: error output-not-distribution" in r.stdout, r.stdout + r.stderr


def test_the_editor_places_findings_in_cells_even_before_the_report_is_complete(tmp_path):
    """Findings streamed while training come in a provisional report (no notebook attached yet);
    the editor still shows them in their cell, found by the code cells' order (VS Code syncs only
    the Python cells, not the markdown between them)."""
    from pygls.workspace import Workspace

    from deeplocalize.lsp.cells import cell_ref, placer

    path = tmp_path / "digits.ipynb"
    shutil.copy(NOTEBOOKS / "digits_relu_output.ipynb", path)
    workspace = Workspace(from_fs_path(str(tmp_path)))
    nb = nbformat.read(path, as_version=4)
    code = {i: f"vscode-notebook-cell:{path}#C{i}" for i, c in enumerate(nb.cells, 1) if c.cell_type == "code"}
    workspace.put_notebook_document(lsp.DidOpenNotebookDocumentParams(
        notebook_document=lsp.NotebookDocument(uri=from_fs_path(str(path)), notebook_type="jupyter-notebook", version=1,
                                               cells=[lsp.NotebookCell(kind=lsp.NotebookCellKind.Code, document=u) for u in code.values()]),
        cell_text_documents=[lsp.TextDocumentItem(uri=u, language_id="python", version=1, text=nb.cells[i - 1].source) for i, u in code.items()]))
    script_line = load_notebook(str(path)).to_script(4, 4)
    provisional = FileReport(str(path), "ok", 0.0, [])
    uri, rng = placer(workspace, from_fs_path(str(path)), provisional)(SourceRange(str(path), Position(script_line, 39), Position(script_line, 45)))
    assert uri == code[4] and (rng.start.line, rng.start.character) == (3, 38)
    assert cell_ref(workspace, code[6]).index == 6

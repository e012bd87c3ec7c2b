"""The DeepLocalize language server (pygls 2).

Handlers only start or stop background work: each document has at most one run
(an asyncio task owning one training process tree); a new run cancels the old
one; a run whose content hash matches the last finished run reuses its results.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from .. import __version__
from ..engine import EnvironmentProblem
from ..findings import LocatedFinding, Position, SourceRange
from ..notebook import NothingToRun, is_notebook
from ..report import FileReport
from ..runner import RunOptions, kill_all
from ..script import Script, describe
from ..session import EngineSession
from ..verify import testable
from ..vocab import RunPhase, is_serious
from . import notebooks
from .convert import Place, code_actions, file_place, overlaps, to_diagnostic
from .hover import layer_markdown, layers_at, verification_markdown
from .logs import attach, log
from .progress import OutputLog, RunProgress
from .settings import Settings

COMMAND_ANALYZE = "deeplocalize.analyze"
COMMAND_CANCEL = "deeplocalize.cancel"
COMMAND_SHOW_REPORT = "deeplocalize.showReport"  # the client's command (VS Code: a webview panel of REPORT_REQUEST)
REPORT_REQUEST = "deeplocalize/report"


@dataclass
class DocState:
    uri: str
    path: str
    task: asyncio.Task | None = None
    pending: asyncio.TimerHandle | None = None
    report: FileReport | None = None
    report_key: str | None = None
    report_run: str = ""
    published: set[str] = field(default_factory=set)
    diagnostics: dict[str, list[lsp.Diagnostic]] = field(default_factory=dict)
    running_since: float | None = None
    last_outcome: str = ""
    open: bool = True


class DeepLocalizeServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("deeplocalize", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Full, notebook_document_sync=notebooks.SYNC)
        self.docs: dict[str, DocState] = {}
        self.session = EngineSession()
        self.gate = asyncio.Semaphore(1)  # one training at a time on a 2-core machine
        self.report_lock = asyncio.Lock()
        self.init_options: dict[str, Any] = {}
        self.settings_cache: Settings = Settings()
        self.shutting_down = False

    # ------------------------------------------------------------------ util
    def status(self, state: DocState, phase: RunPhase, outcome: str = "", **details: Any) -> None:
        """Custom notification `deeplocalize/runStatus` for clients that show run state (the VS Code
        status bar) and for tests: `details` say more about the phase (see docs in the README)."""
        if self.shutting_down:
            return
        try:
            self.protocol.notify("deeplocalize/runStatus", {"uri": state.uri, "phase": phase, "outcome": outcome, "file": os.path.basename(state.path), **details})
        except Exception:  # noqa: BLE001
            pass

    def trusted(self) -> bool:
        return self.init_options.get("workspaceTrusted", True) is not False

    async def settings(self, uri: str) -> Settings:
        fallback = self.init_options.get("interpreter") or None
        caps = self.client_capabilities
        if caps and caps.workspace and caps.workspace.configuration:
            try:
                result = await asyncio.wait_for(asyncio.shield(self.workspace_configuration_async(
                    lsp.ConfigurationParams(items=[lsp.ConfigurationItem(scope_uri=uri, section="deeplocalize")]))), 5)
                self.settings_cache = Settings.from_json(result[0] if result else None, fallback)
            except Exception as exc:  # noqa: BLE001
                log.warning(f"deeplocalize: could not read settings ({type(exc).__name__}); using the last known ones")
        else:
            self.settings_cache = Settings.from_json(self.init_options.get("settings"), fallback)
        self.session.pool.refill = self.settings_cache.warm_worker
        self.session.pool.max_spares = self.settings_cache.max_warm_workers
        return self.settings_cache

    def doc(self, uri: str) -> DocState:
        state = self.docs.get(uri)
        if state is None:
            state = self.docs[uri] = DocState(uri, to_fs_path(uri) or uri)
        return state

    def workspace_folder_of(self, path: str) -> str | None:
        """Scripts run from their workspace folder (as a terminal in the editor would); else their own folder."""
        best = None
        for folder in self.workspace.folders.values():
            root = to_fs_path(folder.uri)
            if root and os.path.abspath(path).startswith(os.path.abspath(root) + os.sep) and (best is None or len(root) > len(best)):
                best = root
        return best

    def is_python(self, uri: str) -> bool:
        if uri.endswith((".py", ".pyw")):
            return True
        # A language client's virtual document of a notebook (jupyterlab-lsp): Python text under a .ipynb name.
        doc = self.workspace.text_documents.get(uri)
        return notebooks.is_notebook_uri(uri) and doc is not None and doc.language_id == "python"

    # ------------------------------------------------------------------ runs
    def schedule(self, uri: str, reason: str, delay: float | None = None) -> None:
        """Debounced start; a pending or running analysis of this document is replaced."""
        state = self.doc(uri)
        if state.pending is not None:
            state.pending.cancel()
        loop = asyncio.get_running_loop()
        wait = (self.settings_cache.debounce_ms / 1000) if delay is None else delay
        state.pending = loop.call_later(wait, lambda: self.start(uri, reason))

    def start(self, uri: str, reason: str) -> None:
        state = self.doc(uri)
        state.pending = None
        previous = state.task
        if previous is not None and not previous.done():
            previous.cancel()
        state.task = asyncio.ensure_future(self._run(state, reason, previous))
        # The lens says "training" until the task is done (a finished, failed or cancelled run may
        # still drain its processes after its last step): the one refresh that ends it is here.
        state.task.add_done_callback(lambda _: None if self.shutting_down else self.refresh_lenses())

    def cancel(self, uri: str) -> bool:
        state = self.docs.get(uri)
        if state is None:
            return False
        cancelled = False
        if state.pending is not None:
            state.pending.cancel()
            state.pending = None
            cancelled = True
        if state.task is not None and not state.task.done():
            state.task.cancel()
            cancelled = True
        return cancelled

    async def _run(self, state: DocState, reason: str, previous: asyncio.Task | None) -> None:
        try:
            await self._analyze_and_verify(state, reason, previous)
        finally:
            if not self.settings_cache.warm_worker and not self.shutting_down:
                await self.session.drain(servers=True)  # nothing started for the run outlives it

    async def _analyze_and_verify(self, state: DocState, reason: str, previous: asyncio.Task | None) -> None:
        if previous is not None:
            try:
                await previous  # its process tree is gone before a new one starts
            except BaseException:  # noqa: BLE001
                pass
        if not self.trusted():
            log.warning("deeplocalize: the workspace is not trusted, so no user code is run. Trust the workspace to analyze training scripts.")
            self.status(state, "skipped", "the workspace is not trusted")
            return
        settings = await self.settings(state.uri)
        script = self._script_to_run(state)
        if script is None:
            return
        key = hashlib.sha256((script.text + repr(settings.key())).encode()).hexdigest()
        if state.report is not None and state.report_key == key:
            log.info(f"deeplocalize: {os.path.basename(state.path)} unchanged since the last run; reusing its results")
            self.publish(state, state.report, state.report_run)
            self.status(state, "done", state.last_outcome, status=state.report.status, reused=True)
            return
        name = os.path.basename(state.path)
        options = settings.run_options()
        options.cwd = self.workspace_folder_of(state.path)
        run_id = f"deeplocalize/{uuid.uuid4()}"  # also the progress token
        progress = RunProgress(self, run_id, name, state)
        await progress.begin(asyncio.current_task())
        report = await self._first_diagnosis(state, reason, settings, options, script, run_id, progress)
        if report is None:
            return
        if settings.verify_fixes and any(testable(f) for f in report.findings):
            # The first diagnosis is out; experiments update it in place.
            log.info(f"deeplocalize: {name}: first diagnosis published ({state.last_outcome}); verifying its fixes by re-training")
            await self._verify(state, report, run_id, options, settings.verify_seconds, progress)
        log.info(f"deeplocalize: {name}: {report.status}, {state.last_outcome}")
        state.report_key = key  # reused on an unchanged save only once complete
        progress.end(state.last_outcome)
        self.status(state, "done", state.last_outcome, status=report.status)

    def _script_to_run(self, state: DocState) -> Script | None:
        """The saved file, described, or None (logged, diagnostics cleared) when there is nothing to run."""
        path = state.path
        try:
            script = describe(path)
        except FileNotFoundError as exc:
            log.error(f"deeplocalize: {exc}")
            return None
        if isinstance(script.notebook_problem, NothingToRun):
            log.info(f"deeplocalize: {os.path.basename(path)}: {script.notebook_problem}")
            self.publish(state, None, "")
            self.status(state, "skipped", str(script.notebook_problem))
            return None
        if script.notebook_problem is None and script.syntax is None and not script.keras:
            log.info(f"deeplocalize: {os.path.basename(path)} does not use Keras/TensorFlow; nothing to run")
            self.publish(state, None, "")
            self.status(state, "skipped", "does not use Keras/TensorFlow")
            return None
        return script

    async def _first_diagnosis(self, state: DocState, reason: str, settings: Settings, options: RunOptions, script: Script, run_id: str,
                               progress: RunProgress) -> FileReport | None:
        """The probed run, its findings streamed while it trains, then published; None when it did not finish."""
        path, name = state.path, os.path.basename(state.path)
        output = OutputLog(self, name)
        try:
            async with self.gate:
                state.running_since = time.monotonic()
                self.status(state, "running")
                self.refresh_lenses()
                log.info(f"deeplocalize: analyzing {name} ({reason}) with {options.python}, budget {settings.max_seconds:g} s / {settings.max_epochs or 'all'} epochs")
                started = time.monotonic()

                def streamed(found: list[LocatedFinding]) -> None:
                    # Certain before the run ends: squiggled now; the final diagnosis replaces them.
                    provisional = FileReport(path, "running", time.monotonic() - started, list(found), source=script.text, script=script)
                    state.report, state.report_run, state.report_key = provisional, run_id, None
                    self.publish(state, provisional, run_id)
                    self.status(state, "running", provisional=[lf.finding.code for lf in found])
                    log.info(f"deeplocalize: {name}: {', '.join(lf.finding.code for lf in found)} found after "
                             f"{time.monotonic() - started:.1f} s while training; the full diagnosis follows")

                report = await self.session.analyze(script, options, on_event=progress.on_event, on_output=output.line, on_findings=streamed,
                                                    warm_next=settings.verify_fixes and settings.warm_worker)
        except asyncio.CancelledError:
            self._unfinished(state, progress, output, "cancelled", "Cancelled",
                             f"deeplocalize: run of {name} cancelled; its training process was stopped", logging.INFO)
            raise
        except EnvironmentProblem as exc:
            self._unfinished(state, progress, output, "failed", "interpreter problem", f"deeplocalize: {exc}", logging.ERROR)
            self.show(f"DeepLocalize cannot train with {options.python}: TensorFlow/Keras not importable. Pick another interpreter or install tensorflow in it.", lsp.MessageType.Error)
            return None
        except Exception as exc:  # noqa: BLE001 - the server must survive anything a run does
            self._unfinished(state, progress, output, "failed", "internal error",
                             f"deeplocalize: internal error while analyzing {name}: {type(exc).__name__}: {exc}", logging.ERROR)
            return None
        finally:
            state.running_since = None
            if self.settings_cache.warm_worker and not self.shutting_down:
                self.session.prewarm_soon(options)
        output.flush()
        state.report, state.report_run = report, run_id  # hovers follow it while experiments run
        self._finished(state, report, run_id)
        return report

    def _finished(self, state: DocState, report: FileReport, run_id: str) -> None:
        serious = [f for f in report.findings if is_serious(f.finding.severity)]
        state.last_outcome = (f"{len(serious)} fault{'s' if len(serious) != 1 else ''}" if serious else "no faults") + f", {report.duration_s:.1f} s"
        self.publish(state, report, run_id)
        for lf in report.findings:
            f = lf.finding
            at = report.place(lf.range)
            log.info(f"deeplocalize: {os.path.basename(at.file)}:{f'cell {at.cell}:' if at.cell else ''}{at.start.line}: {f.severity} {f.code} [{f.root_cause}] {f.message}")

    async def _verify(self, state: DocState, report: FileReport, run_id: str, options: RunOptions, budget: float, progress: RunProgress) -> None:
        """Re-train with the fixes applied; each concluded finding is republished at once."""
        name = os.path.basename(state.path)

        def on_update(lf: LocatedFinding) -> None:
            v = next((fix.verification for fix in lf.fixes if fix.verification), None)
            log.info(f"deeplocalize: {name}: {lf.finding.code} {lf.confirmation}" + (f" ({v.reason})" if v else ""))
            self.publish(state, report, run_id)

        try:
            async with self.gate:
                state.running_since = time.monotonic()
                self.status(state, "verifying")
                self.refresh_lenses()
                summary = await self.session.verify(report, budget, options, on_update=on_update, on_progress=progress.message)
        except asyncio.CancelledError:
            log.info(f"deeplocalize: verification of {name} cancelled; its training process was stopped; the first diagnosis stands")
            progress.end("Cancelled")
            self.status(state, "cancelled", stage="verification")
            raise
        except Exception as exc:  # noqa: BLE001 - the first diagnosis stays published
            log.error(f"deeplocalize: internal error while verifying fixes of {name}: {type(exc).__name__}: {exc}")
            return
        finally:
            state.running_since = None
            if self.settings_cache.warm_worker and not self.shutting_down:
                self.session.prewarm_soon(options)
        if summary is not None:
            log.info(f"deeplocalize: {name}: verification {summary.verified} verified, {summary.refuted} unconfirmed, "
                     f"{summary.inconclusive} inconclusive in {summary.seconds:.1f} s")
        self._finished(state, report, run_id)

    def _unfinished(self, state: DocState, progress: RunProgress, output: OutputLog, phase: str, outcome: str,
                    message: str, level: int) -> None:
        """A run that ended without a report: say why everywhere the user looks."""
        output.flush()
        log.log(level, message)
        progress.end(outcome[:1].upper() + outcome[1:])
        self.status(state, phase, "" if phase == "cancelled" else outcome, stage="run")

    # ------------------------------------------------------------ publishing
    def place(self, state: DocState, report: FileReport | None) -> Place:
        return notebooks.placer(self.workspace, state.uri, report) if is_notebook(state.path) else file_place

    def publish(self, state: DocState, report: FileReport | None, run_id: str) -> None:
        by_uri: dict[str, list[lsp.Diagnostic]] = {}
        if report is not None:
            place = self.place(state, report)
            for lf in report.findings:
                by_uri.setdefault(place(lf.range)[0], []).append(to_diagnostic(lf, report.trace, run_id, place))
        by_uri.setdefault(state.uri, [])
        for uri in state.published - set(by_uri):
            by_uri[uri] = []
        state.diagnostics = by_uri
        state.published = {u for u, d in by_uri.items() if d}
        for uri, diags in by_uri.items():
            self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diags))

    def clear(self, state: DocState) -> None:
        for uri in state.published | {state.uri}:
            self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        state.published = set()
        state.diagnostics = {}

    def show(self, message: str, kind: lsp.MessageType) -> None:
        try:
            self.window_show_message(lsp.ShowMessageParams(type=kind, message=message))
        except Exception:  # noqa: BLE001
            pass

    def refresh_lenses(self) -> None:
        caps = self.client_capabilities
        if caps and caps.workspace and caps.workspace.code_lens and caps.workspace.code_lens.refresh_support:
            try:
                self.workspace_code_lens_refresh(None)
            except Exception:  # noqa: BLE001
                pass

    # ------------------------------------------------------------- shutdown
    async def close(self) -> None:
        """Cancel every run and wait for its process tree to be gone."""
        self.shutting_down = True
        tasks = []
        for state in self.docs.values():
            if state.pending is not None:
                state.pending.cancel()
            if state.task is not None and not state.task.done():
                state.task.cancel()
                tasks.append(state.task)
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await self.session.close()
        kill_all()


server = DeepLocalizeServer()
attach(server)


@server.feature(lsp.INITIALIZE)
def on_initialize(ls: DeepLocalizeServer, params: lsp.InitializeParams) -> None:
    ls.init_options = params.initialization_options if isinstance(params.initialization_options, dict) else {}


@server.feature(lsp.INITIALIZED)
async def on_initialized(ls: DeepLocalizeServer, params: lsp.InitializedParams) -> None:
    settings = await ls.settings("")
    log.info(f"deeplocalize {__version__}: server on Python {sys.version.split()[0]}; training interpreter {settings.run_options().python}"
           + ("" if ls.trusted() else " (workspace not trusted: no user code will run)"))
    if settings.warm_worker and ls.trusted():
        ls.session.prewarm_soon(settings.run_options())


@server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def on_config(ls: DeepLocalizeServer, params: lsp.DidChangeConfigurationParams) -> None:
    await ls.settings("")  # takes effect at the next run
    log.info("deeplocalize: settings changed; they apply from the next run")


async def _opened(ls: DeepLocalizeServer, uri: str) -> None:
    ls.doc(uri).open = True
    settings = await ls.settings(uri)
    if settings.run == "onOpenAndSave":
        ls.schedule(uri, "opened")


async def _saved(ls: DeepLocalizeServer, uri: str) -> None:
    settings = await ls.settings(uri)
    if settings.run in ("onSave", "onOpenAndSave"):
        ls.schedule(uri, "saved")


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
async def on_open(ls: DeepLocalizeServer, params: lsp.DidOpenTextDocumentParams) -> None:
    if ls.is_python(params.text_document.uri):
        await _opened(ls, params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
async def on_save(ls: DeepLocalizeServer, params: lsp.DidSaveTextDocumentParams) -> None:
    if ls.is_python(params.text_document.uri):
        await _saved(ls, params.text_document.uri)


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def on_close(ls: DeepLocalizeServer, params: lsp.DidCloseTextDocumentParams) -> None:
    state = ls.docs.get(params.text_document.uri)
    if state is None:
        return
    ls.cancel(state.uri)
    ls.clear(state)
    ls.docs.pop(state.uri, None)


@server.feature(REPORT_REQUEST)
async def on_report(ls: DeepLocalizeServer, params: Any) -> dict[str, Any]:
    """The training report (report_html) of a document's last analysis, drawn from what that run
    recorded: no second analysis. `{uri}` -> `{html, file, run}`, or `{html: null, message}`."""
    given = params.get("uri") if isinstance(params, dict) else getattr(params, "uri", None)  # pygls: a namedtuple
    uri = _uri_arg(ls, (given,))
    state = ls.docs.get(uri) if uri else None
    if state is None or state.report is None or state.report.status == "running":
        return {"html": None, "message": "No finished analysis of this file yet: save it (or run 'DeepLocalize: Analyze Current File') first."}
    try:
        from ..report_html import render
    except ImportError as exc:
        return {"html": None, "message": f"The training report needs matplotlib in the server's interpreter ({exc})."}
    report = state.report
    async with ls.report_lock:  # matplotlib draws one figure at a time; off the event loop
        page = await asyncio.to_thread(render, [report])
    return {"html": page, "file": os.path.basename(state.path), "run": state.report_run}


@server.feature(lsp.NOTEBOOK_DOCUMENT_DID_OPEN)
async def on_notebook_open(ls: DeepLocalizeServer, params: lsp.DidOpenNotebookDocumentParams) -> None:
    await _opened(ls, params.notebook_document.uri)


@server.feature(lsp.NOTEBOOK_DOCUMENT_DID_SAVE)
async def on_notebook_save(ls: DeepLocalizeServer, params: lsp.DidSaveNotebookDocumentParams) -> None:
    await _saved(ls, params.notebook_document.uri)


@server.feature(lsp.NOTEBOOK_DOCUMENT_DID_CLOSE)
def on_notebook_close(ls: DeepLocalizeServer, params: lsp.DidCloseNotebookDocumentParams) -> None:
    on_close(ls, lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=params.notebook_document.uri)))


@server.command(COMMAND_ANALYZE)
def cmd_analyze(ls: DeepLocalizeServer, *args: Any) -> bool:
    uri = _uri_arg(ls, args)
    if uri is None:
        return False
    ls.schedule(uri, "requested", delay=0)
    return True


@server.command(COMMAND_CANCEL)
def cmd_cancel(ls: DeepLocalizeServer, *args: Any) -> bool:
    uri = _uri_arg(ls, args)
    return ls.cancel(uri) if uri else False


def _uri_arg(ls: DeepLocalizeServer, args: tuple) -> str | None:
    """The document a command is about; a notebook cell stands for its notebook."""
    if not args:
        return None
    a = args[0]
    if isinstance(a, dict):
        a = a.get("uri") or a.get("external")
    if not isinstance(a, str):
        return None
    ref = notebooks.cell_ref(ls.workspace, a)
    return ref.notebook_uri if ref is not None else a


@server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
def on_code_action(ls: DeepLocalizeServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    uri = params.text_document.uri
    versions: dict[str, int | None] = {}
    for u in ls.workspace.text_documents:
        versions[u] = ls.workspace.get_text_document(u).version
    ours = [d for d in params.context.diagnostics if d.source == "deeplocalize" and isinstance(d.data, dict)]
    if not ours:  # clients that do not echo diagnostics back: use the published ones
        for state in ls.docs.values():
            ours += [d for d in state.diagnostics.get(uri, []) if overlaps(d.range, params.range)]
    if not _saved_matches(ls, uri):
        return []  # the buffer has changed since the analysis: its edits would land in the wrong place
    actions: list[lsp.CodeAction] = []
    for d in ours:
        actions += code_actions(d, versions)
    return actions


def _saved_matches(ls: DeepLocalizeServer, uri: str) -> bool:
    if notebooks.cell_ref(ls.workspace, uri) is not None:
        return notebooks.cell_is_saved(ls.workspace, uri)
    try:
        doc = ls.workspace.get_text_document(uri)
        return Path(doc.path).read_text(encoding="utf-8", errors="replace") == doc.source
    except OSError:
        return False


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
def on_hover(ls: DeepLocalizeServer, params: lsp.HoverParams) -> lsp.Hover | None:
    path = to_fs_path(params.text_document.uri)
    line = params.position.line + 1
    if notebooks.cell_ref(ls.workspace, params.text_document.uri) is not None:  # the analyzed script's line
        path, line = notebooks.script_position(ls.workspace, params.text_document.uri, line) or ("", 0)
    parts: list[str] = []
    for state in ls.docs.values():
        if state.report is None:
            continue
        for lf in state.report.findings:
            if lf.range.file == path and lf.range.start.line <= line <= lf.range.end.line and (md := verification_markdown(lf)):
                parts.append(md)
        trace = state.report.trace
        if trace is not None and trace.layers:
            parts += [layer_markdown(trace, l) for l in layers_at(trace, path, line)[:3]]
        if parts:
            return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value="\n\n---\n\n".join(parts)))
    return None


_FIT_RE = re.compile(r"\.fit\s*\(")


@server.feature(lsp.TEXT_DOCUMENT_CODE_LENS)
def on_code_lens(ls: DeepLocalizeServer, params: lsp.CodeLensParams) -> list[lsp.CodeLens]:
    uri = params.text_document.uri
    ref = notebooks.cell_ref(ls.workspace, uri)
    doc_uri = ref.notebook_uri if ref is not None else uri  # a notebook's lens sits in its fit cell
    state = ls.docs.get(doc_uri)
    line = _fit_line(ls, state, uri)
    if line is None:
        return []
    rng = lsp.Range(start=lsp.Position(line=line, character=0), end=lsp.Position(line=line, character=0))
    running = state is not None and (state.running_since is not None or (state.task is not None and not state.task.done()))
    if running:
        lenses = [lsp.CodeLens(range=rng, command=lsp.Command(title="$(sync~spin) DeepLocalize: training… (cancel)", command=COMMAND_CANCEL, arguments=[doc_uri]))]
    else:
        lenses = [lsp.CodeLens(range=rng, command=lsp.Command(title="▶ DeepLocalize: analyze", command=COMMAND_ANALYZE, arguments=[doc_uri]))]
    if state and state.last_outcome:
        lenses.append(lsp.CodeLens(range=rng, command=lsp.Command(title=f"last run: {state.last_outcome}", command=COMMAND_ANALYZE, arguments=[doc_uri])))
    if state and state.report is not None and state.report.status != "running" and not running and _client_shows_reports(ls):
        lenses.append(lsp.CodeLens(range=rng, command=lsp.Command(title="$(graph) training report", command=COMMAND_SHOW_REPORT, arguments=[doc_uri])))
    return lenses


def _client_shows_reports(ls: DeepLocalizeServer) -> bool:
    """Only a client that has the report command gets its lens (the VS Code extension says so)."""
    return bool(ls.init_options.get("showReport"))


def _fit_line(ls: DeepLocalizeServer, state: DocState | None, uri: str) -> int | None:
    """The 0-based line of the analyzed `fit(...)` call in this document, else of the first one written."""
    report = state.report if state is not None else None
    if state is not None and report is not None and report.trace and report.trace.fit and report.trace.fit.site:
        site = report.trace.fit.site[-1]
        where, rng = ls.place(state, report)(SourceRange(site.file, Position(site.line, 1), Position(site.line, 1)))
        if where == uri:
            return rng.start.line
    for i, l in enumerate(ls.workspace.get_text_document(uri).source.splitlines()):
        if _FIT_RE.search(l) and not l.lstrip().startswith("#"):
            return i
    return None


@server.feature(lsp.SHUTDOWN)
async def on_shutdown(ls: DeepLocalizeServer, *args: Any) -> None:
    await ls.close()


@server.feature(lsp.EXIT)
def on_exit(ls: DeepLocalizeServer, *args: Any) -> None:
    ls.shutting_down = True
    kill_all()

"""One document's analysis in the editor: a debounced start, the previous run cancelled and
awaited (its process tree gone) before the next one trains, an unchanged text reused, and
the first diagnosis then the verification each holding the one training slot."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator

from lsprotocol import types as lsp

from ..engine import EnvironmentProblem
from ..findings import LocatedFinding
from ..notebook import NothingToRun
from ..report import FileReport
from ..runner import RunOptions
from ..script import Script, describe
from ..verify import testable
from ..vocab import RunPhase, is_serious
from .documents import DocState
from .host import Host
from .logs import log
from .run_progress import OutputLog, RunProgress
from ..settings import Settings


class DocumentRun:
    def __init__(self, server: Host, state: DocState) -> None:
        self.server, self.state = server, state
        self.publisher = server.publisher
        self.task: asyncio.Task | None = None
        self.pending: asyncio.TimerHandle | None = None
        self.training_since: float | None = None

    @property
    def name(self) -> str:
        return os.path.basename(self.state.path)

    @property
    def running(self) -> bool:
        return self.training_since is not None or (self.task is not None and not self.task.done())

    # ------------------------------------------------------------ control
    def schedule(self, reason: str, delay: float | None = None) -> None:
        """Debounced start; a pending or running analysis of this document is replaced."""
        if self.pending is not None:
            self.pending.cancel()
        wait = (self.server.settings_cache.debounce_ms / 1000) if delay is None else delay
        self.pending = asyncio.get_running_loop().call_later(wait, lambda: self.start(reason))

    def start(self, reason: str) -> None:
        self.pending = None
        previous = self.task
        if previous is not None and not previous.done():
            previous.cancel()
        self.task = asyncio.ensure_future(self._run(reason, previous))
        # The lens says "training" until the task is done (a finished, failed or cancelled run may
        # still drain its processes after its last step): the one refresh that ends it is here.
        self.task.add_done_callback(lambda _: None if self.server.shutting_down else self.publisher.refresh_lenses())

    def cancel(self) -> bool:
        cancelled = False
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
            cancelled = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
            cancelled = True
        return cancelled

    @asynccontextmanager
    async def busy(self, phase: RunPhase, options: RunOptions) -> AsyncIterator[None]:
        """The one training slot, held for a phase that trains; the lens and status say so."""
        try:
            async with self.server.gate:
                self.training_since = time.monotonic()
                self.publisher.status(self.state, phase)
                self.publisher.refresh_lenses()
                yield
        finally:
            self.training_since = None
            if self.server.settings_cache.warm_worker and not self.server.shutting_down:
                self.server.session.prewarm_soon(options)

    # ------------------------------------------------------------ pipeline
    async def _run(self, reason: str, previous: asyncio.Task | None) -> None:
        try:
            await self._analyze_and_verify(reason, previous)
        finally:
            if not self.server.settings_cache.warm_worker and not self.server.shutting_down:
                await self.server.session.drain(servers=True)  # nothing started for the run outlives it

    async def _analyze_and_verify(self, reason: str, previous: asyncio.Task | None) -> None:
        state, server = self.state, self.server
        if previous is not None:
            try:
                await previous  # its process tree is gone before a new one starts
            except BaseException:  # noqa: BLE001
                pass
        if not server.trusted():
            log.warning("deeplocalize: the workspace is not trusted, so no user code is run. Trust the workspace to analyze training scripts.")
            self.publisher.status(state, "skipped", "the workspace is not trusted")
            return
        settings = await server.settings(state.uri)
        script = self._script_to_run()
        if script is None:
            return
        key = hashlib.sha256((script.text + repr(settings.key())).encode()).hexdigest()
        if state.report is not None and state.report_key == key:
            log.info(f"deeplocalize: {self.name} unchanged since the last run; reusing its results")
            self.publisher.publish(state, state.report, state.report_run)
            self.publisher.status(state, "done", state.last_outcome, status=state.report.status, reused=True)
            return
        options = settings.run_options()
        options.cwd = server.workspace_folder_of(state.path)
        run_id = f"deeplocalize/{uuid.uuid4()}"  # also the progress token
        progress = RunProgress(server, self.publisher, run_id, self.name, state)
        await progress.begin(asyncio.current_task())
        report = await self._first_diagnosis(reason, settings, options, script, run_id, progress)
        if report is None:
            return
        if settings.verify_fixes and any(testable(f) for f in report.findings):
            # The first diagnosis is out; experiments update it in place.
            log.info(f"deeplocalize: {self.name}: first diagnosis published ({state.last_outcome}); verifying its fixes by re-training")
            await self._verify(report, run_id, options, settings.verify_seconds, progress)
        log.info(f"deeplocalize: {self.name}: {report.status}, {state.last_outcome}")
        state.report_key = key  # reused on an unchanged save only once complete
        progress.end(state.last_outcome)
        self.publisher.status(state, "done", state.last_outcome, status=report.status)

    def _script_to_run(self) -> Script | None:
        """The saved file, described, or None (logged, diagnostics cleared) when there is nothing to run."""
        try:
            script = describe(self.state.path)
        except FileNotFoundError as exc:
            log.error(f"deeplocalize: {exc}")
            return None
        skipped = None
        if isinstance(script.notebook_problem, NothingToRun):
            skipped = str(script.notebook_problem)
            log.info(f"deeplocalize: {self.name}: {skipped}")
        elif script.notebook_problem is None and script.syntax is None and not script.keras:
            skipped = "does not use Keras/TensorFlow"
            log.info(f"deeplocalize: {self.name} does not use Keras/TensorFlow; nothing to run")
        if skipped is None:
            return script
        self.state.set_report(None, "")
        self.publisher.publish(self.state, None, "")
        self.publisher.status(self.state, "skipped", skipped)
        return None

    async def _first_diagnosis(self, reason: str, settings: Settings, options: RunOptions, script: Script, run_id: str,
                               progress: RunProgress) -> FileReport | None:
        """The probed run, its findings streamed while it trains, then published; None when it did not finish."""
        state, name = self.state, self.name
        output = OutputLog(name)
        try:
            async with self.busy("running", options):
                log.info(f"deeplocalize: analyzing {name} ({reason}) with {options.python}, budget {settings.max_seconds:g} s / {settings.max_epochs or 'all'} epochs")
                started = time.monotonic()

                def streamed(found: list[LocatedFinding]) -> None:
                    # Certain before the run ends: squiggled now; the final diagnosis replaces them.
                    provisional = FileReport(state.path, "running", time.monotonic() - started, list(found), source=script.text, script=script)
                    state.set_report(provisional, run_id)
                    self.publisher.publish(state, provisional, run_id)
                    self.publisher.status(state, "running", provisional=[lf.finding.code for lf in found])
                    log.info(f"deeplocalize: {name}: {', '.join(lf.finding.code for lf in found)} found after "
                             f"{time.monotonic() - started:.1f} s while training; the full diagnosis follows")

                report = await self.server.session.analyze(script, options, on_event=progress.on_event, on_output=output.line, on_findings=streamed,
                                                           warm_next=settings.verify_fixes and settings.warm_worker)
        except asyncio.CancelledError:
            self._unfinished(progress, output, "cancelled", "Cancelled",
                             f"deeplocalize: run of {name} cancelled; its training process was stopped", logging.INFO)
            raise
        except EnvironmentProblem as exc:
            self._unfinished(progress, output, "failed", "interpreter problem", f"deeplocalize: {exc}", logging.ERROR)
            self.publisher.show(f"DeepLocalize cannot train with {options.python}: TensorFlow/Keras not importable. Pick another interpreter or install tensorflow in it.", lsp.MessageType.Error)
            return None
        except Exception as exc:  # noqa: BLE001 - the server must survive anything a run does
            self._unfinished(progress, output, "failed", "internal error",
                             f"deeplocalize: internal error while analyzing {name}: {type(exc).__name__}: {exc}", logging.ERROR)
            return None
        output.flush()
        state.set_report(report, run_id)  # hovers follow it while experiments run
        self._finished(report, run_id)
        return report

    async def _verify(self, report: FileReport, run_id: str, options: RunOptions, budget: float, progress: RunProgress) -> None:
        """Re-train with the fixes applied; each concluded finding is republished at once."""
        name = self.name

        def on_update(lf: LocatedFinding) -> None:
            v = next((fix.verification for fix in lf.fixes if fix.verification), None)
            log.info(f"deeplocalize: {name}: {lf.finding.code} {lf.confirmation}" + (f" ({v.reason})" if v else ""))
            self.publisher.publish(self.state, report, run_id)

        try:
            async with self.busy("verifying", options):
                summary = await self.server.session.verify(report, budget, options, on_update=on_update, on_progress=progress.message)
        except asyncio.CancelledError:
            log.info(f"deeplocalize: verification of {name} cancelled; its training process was stopped; the first diagnosis stands")
            progress.end("Cancelled")
            self.publisher.status(self.state, "cancelled", stage="verification")
            raise
        except Exception as exc:  # noqa: BLE001 - the first diagnosis stays published
            log.error(f"deeplocalize: internal error while verifying fixes of {name}: {type(exc).__name__}: {exc}")
            return
        if summary is not None:
            log.info(f"deeplocalize: {name}: verification {summary.verified} verified, {summary.refuted} unconfirmed, "
                     f"{summary.inconclusive} inconclusive in {summary.seconds:.1f} s")
        self._finished(report, run_id)

    def _finished(self, report: FileReport, run_id: str) -> None:
        serious = [f for f in report.findings if is_serious(f.finding.severity)]
        self.state.last_outcome = (f"{len(serious)} fault{'s' if len(serious) != 1 else ''}" if serious else "no faults") + f", {report.duration_s:.1f} s"
        self.publisher.publish(self.state, report, run_id)
        for lf in report.findings:
            f = lf.finding
            at = report.place(lf.range)
            log.info(f"deeplocalize: {os.path.basename(at.file)}:{f'cell {at.cell}:' if at.cell else ''}{at.start.line}: {f.severity} {f.code} [{f.root_cause}] {lf.message}")

    def _unfinished(self, progress: RunProgress, output: OutputLog, phase: RunPhase, outcome: str, message: str, level: int) -> None:
        """A run that ended without a report: say why everywhere the user looks."""
        output.flush()
        log.log(level, message)
        progress.end(outcome[:1].upper() + outcome[1:])
        self.publisher.status(self.state, phase, "" if phase == "cancelled" else outcome, stage="run")

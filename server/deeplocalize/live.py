"""`deeplocalize run train.py [args...]`: the user's real training, with the probe.

The script runs as `python train.py args...` would: every epoch, its own devices and strategy,
the terminal's stdin/stdout/stderr, the current directory, the environment as it is, and its
exit code. The probe sends only sampled steps' statistics (see probe.hooks.Probe.fetches). The
findings are printed as they settle (the editor's streaming rule: a configuration error as soon as
the model meets its data, NaN/Inf at once, a runtime fault once it holds at two epoch ends) and
written to the run's folder (run_folder.py), which the editor watches; the final diagnosis
replaces them when the script ends. Training is never stopped for a finding unless
`stop_on_error`. Ctrl-C reaches the script as it would without us (KeyboardInterrupt); a second
one kills it. If this command dies, the training dies with it (the child's parent-death signal).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .detectors import diagnose, measure
from .detectors.numerical import step_has_nonfinite
from .engine import StreamedFindings, report_of_run
from .findings import LocatedFinding
from .report import FileReport, reports_json
from .run_folder import FORMAT, RunFolder, RunFolderError, folder_root, prune
from .runner import RunOptions, RunResult
from .training_process import Started, start
from .sarif import to_sarif
from .source import load_source
from .script import Script
from .trace import Trace, TraceBuilder, TraceEvent
from .verify import testable
from .vocab import RunStatus, is_serious

FINDINGS_EVERY_S = 2.0  # findings.json at most this often while findings change


@dataclass
class LiveOptions:
    python: str = sys.executable
    argv: list[str] = field(default_factory=list)
    runs_folder: str | None = None  # relative to the script's folder; None: .deeplocalize/runs
    runs_root: str | None = None  # the runs' folder itself (a notebook's cells have no folder of their own)
    name: str | None = None  # the run folders' name; None: the script's
    keep_runs: int = 20
    stop_on_error: bool = False
    cwd: str | None = None  # None: the current directory, as `python` runs
    env: dict[str, str] = field(default_factory=dict)  # added to the environment as it is


Say = Callable[[str], None]


def shown_by_the_run(lf: LocatedFinding, traces: list[Trace]) -> bool:
    """Whether a finding stands at its severity without an experiment: errors do, and warnings
    whose fix cannot be tried by a short re-run; any other warning only while its fit's own
    training shows it failing or far from fitting (the analysis on save confirms such warnings
    by re-training with the fix; a live run runs no experiments)."""
    if lf.finding.severity != "warning" or not testable(lf):
        return True
    trace = next((t for t in traces if t.fit_index == lf.fit_index), traces[-1] if traces else None)
    progress = measure(trace) if trace is not None else None
    return progress is not None and (progress.fails or progress.poor)


class LiveFindings:
    """What a live run has established so far: findings streamed by the editor's rule, plus
    non-finite values the moment they appear (nothing after them can undo them)."""

    def __init__(self, on_new: Callable[[list[LocatedFinding]], None], traces: Callable[[], list[Trace]]) -> None:
        self.on_new = on_new
        self.traces = traces
        self.located: list[LocatedFinding] = []
        self.said: set[tuple] = set()  # (code, file, line) of the findings said so far
        self._stream = StreamedFindings(self._add)
        self._nonfinite_seen: set[int] = set()

    def __call__(self, event: TraceEvent, trace: Trace) -> None:
        self._stream(event, trace)
        if event.kind == "step" and id(trace) not in self._nonfinite_seen and trace.steps and step_has_nonfinite(trace.steps[-1]):
            self._nonfinite_seen.add(id(trace))
            try:
                found = [f for f in diagnose(trace) if is_serious(f.severity) and f.symptom == "nan_inf"]
            except Exception:  # noqa: BLE001 - a partial trace: the final diagnosis says it
                return
            if found:
                self._stream.add(trace, found)

    def _add(self, found: list[LocatedFinding]) -> None:
        new = []
        for lf in found:
            key = (lf.finding.code, lf.range.file, lf.range.start.line)
            if key not in self.said and shown_by_the_run(lf, self.traces()):
                self.said.add(key)
                new.append(lf)
        if new:
            self.located += new
            self.on_new(new)


class LiveRun:
    """One real run of a script, start to end (see the module's docstring)."""

    def __init__(self, script: Script, options: LiveOptions, say: Say, say_finding: Callable[[LocatedFinding, Trace | None], None]) -> None:
        self.script = script
        self.options = options
        self.say = say
        self.say_finding = say_finding
        self.builder = TraceBuilder(script.path)
        self.folder: RunFolder | None = None
        self.findings = LiveFindings(self._new_findings, lambda: self.builder.traces or [self.builder.trace])
        self.proc: Started | None = None
        self.interrupts = 0
        self.stopped_on_error = False
        self._findings_written = 0.0
        self._findings_dirty = False
        self._html_dirty = False
        self.started = time.monotonic()
        self.final: FileReport | None = None  # the final diagnosis, once the run ended

    # ------------------------------------------------------------------ the run
    async def run(self, early: Started | None = None) -> int:
        """`early`: a training process started before the command imported itself (launch.py),
        taken over if it runs the interpreter and environment of these options."""
        if early is None or not early.serves(self.options.python, self.options.env):
            if early is not None:
                early.discard()  # another interpreter or environment: it would only import TensorFlow beside ours
            try:
                early = start(self.options.python, self.options.env)
            except OSError as exc:
                self.say(f"deeplocalize: cannot start {self.options.python}: {exc.strerror or exc}")
                return 2
        early.adopted = True
        self.proc, ev_r, ct_w = early, early.events, early.control
        job = {"script": self.script.path, "argv": list(self.options.argv), "max_epochs": None, "seed": None, "live": True,
               "cwd": self.options.cwd or os.getcwd(), "parent": os.getpid()}
        if self.script.source is not None:
            job["source"] = self.script.source
        with os.fdopen(ct_w, "w") as control:
            control.write(json.dumps(job) + "\n")
        self._open_folder(self.proc.pid)
        loop = asyncio.get_running_loop()
        parsed = self._parse_early(loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._read_events(ev_r)
            returncode = await self.proc.wait()
            await parsed
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        report = self._final_report(returncode)
        self._finish(report, returncode)
        return self._exit_code(returncode)

    async def follow(self, fd: int, pid: int, pending: bytes = b"", on_folder: Callable[[Path], None] | None = None) -> None:
        """Record a training that runs elsewhere (the Keras callback's process, monitor_sink.py):
        its events arrive on `fd` (`pending`: what was already read of them) until it closes it;
        the findings are said and the run folder written as for a run started here."""
        self._open_folder(pid, monitor=True)
        parsed = self._parse_early(asyncio.get_running_loop())
        if self.folder is not None and on_folder is not None:
            on_folder(self.folder.path)
        for line in pending.splitlines(keepends=True):
            self._on_line(line)
        await self._read_events(fd)
        await parsed
        trace = self.builder.trace
        ended = trace.end_reason is not None or trace.crash is not None
        # No word of its end: the training process was killed (its pipe closed with it).
        returncode = (1 if trace.crash is not None else 130 if trace.end_reason == "interrupted" else 0) if ended else -9
        self._finish(self._final_report(returncode), returncode)

    def _parse_early(self, loop: asyncio.AbstractEventLoop) -> "asyncio.Future[None]":
        """Parse the script for the locator while it trains (a thread), and load what the training
        report draws with (matplotlib's colormaps, Pillow): time otherwise spent after the training,
        before the final report."""
        def parse() -> None:
            try:
                load_source(self.script.path)
            except Exception:  # noqa: BLE001 - the final report parses it again and says what is wrong
                pass
            if self.folder is not None:
                try:
                    from .report_html import warm

                    warm()
                except Exception:  # noqa: BLE001 - the report is drawn (or its failure said) when it is needed
                    pass

        return loop.run_in_executor(None, parse)

    def _on_signal(self, sig: int) -> None:
        """Ctrl-C: to the script, as a terminal would send it; a second one kills it. SIGTERM: passed on."""
        if self.proc is None or self.proc.returncode is not None:
            return
        if sig == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts == 1:
                self._signal_script(signal.SIGINT)
                return
            self.say("deeplocalize: killing the script (second Ctrl-C)")
            self._signal_script(signal.SIGKILL)
            return
        self._signal_script(sig)

    def _signal_script(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    async def _read_events(self, fd: int) -> None:
        reader = asyncio.StreamReader(limit=2**24)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
        try:
            while line := await reader.readline():
                self._on_line(line)
        finally:
            transport.close()

    def _on_line(self, line: bytes) -> None:
        self._write(lambda: self.folder.append(line) if self.folder else None)
        event = self.builder.feed_line(line)
        if event is None:
            return
        self.findings(event, self.builder.trace)
        if event.kind in ("fit", "epoch", "end", "crash"):
            self._progress(event)

    # ------------------------------------------------------------------ findings
    def _new_findings(self, new: list[LocatedFinding]) -> None:
        for lf in new:
            self.say_finding(lf, self.builder.trace)
        self._findings_dirty = self._html_dirty = True
        self._write_findings()
        # The count in run.json (the editor's status bar) with the findings, not at the next epoch's end.
        self._write(lambda: self.folder.write_meta(findings=self._serious()) if self.folder else None)
        if self.folder is not None and not self.folder.html_written:  # the first finding: a report to open now
            self._html_dirty = False
            self._write_html(self._live_report())
        if self.options.stop_on_error and any(lf.finding.severity == "error" for lf in new) and not self.stopped_on_error:
            self.stopped_on_error = True
            self.say("deeplocalize: stopping the script (--stop-on-error)")
            self._signal_script(signal.SIGINT)

    def _progress(self, event: TraceEvent) -> None:
        trace = self.builder.trace
        fit = trace.fit
        self._write(lambda: self.folder.write_meta(epoch=len(trace.epochs), epochs=fit.epochs_requested if fit else None,
                                                  fit=len(self.builder.traces), findings=self._serious()) if self.folder else None)
        self._write_findings()
        if event.kind == "epoch" and self.folder is not None and self.folder.html_due(changed=self._html_dirty):
            self._html_dirty = False
            self._write_html(self._live_report())

    def _serious(self) -> int:
        return sum(is_serious(lf.finding.severity) for lf in self.findings.located)

    def _live_report(self) -> FileReport:
        return FileReport(self.script.path, "ok", time.monotonic() - self.started, list(self.findings.located), self.builder.trace,
                          source=self.script.text, script=self.script)

    def _write_findings(self, report: FileReport | None = None) -> None:
        if self.folder is None:
            return
        due = time.monotonic() - self._findings_written >= FINDINGS_EVERY_S
        if report is None and not (self._findings_dirty and due):
            return
        report = report or self._live_report()
        self._findings_written, self._findings_dirty = time.monotonic(), False
        self._write(lambda: self.folder.write_findings(reports_json([report]),
                                                       to_sarif([report], root=os.path.dirname(self.script.path))))

    def _final_report(self, returncode: int | None) -> FileReport:
        traces = self.builder.traces or [self.builder.trace]
        trace = traces[-1]
        status: RunStatus = "finished"
        message = ""
        if trace.crash is not None:
            status = "crashed"
        elif returncode is not None and returncode < 0 and trace.end_reason is None:
            status, message = "failed", f"the training process was killed (signal {-returncode})"
            trace.end_reason = "interrupted"  # killed from outside: not the script's doing
        run = RunResult(status, trace, time.monotonic() - self.started, returncode, [], message, list(traces), leftover=[
            p for t in traces for p in t.leftover])
        options = RunOptions(python=self.options.python, max_seconds=float("inf"), max_epochs=None, max_memory_mb=None)
        report = report_of_run(self.script, run, options, time.monotonic() - self.started)
        for lf in report.findings:
            if not shown_by_the_run(lf, list(traces)):
                lf.finding.severity = "information"
        return report

    def _finish(self, report: FileReport, returncode: int | None) -> None:
        self.final = report
        trace = self.builder.trace
        state = ("stopped" if self.stopped_on_error else "interrupted" if trace.end_reason == "interrupted" or self.interrupts
                 else "crashed" if trace.crash is not None else "failed" if returncode not in (0, None) and trace.end_reason is None
                 else "finished")
        if self.folder is not None:
            # Its state last: a reader that sees the run ended finds everything else complete.
            self._write_findings(report)
            self._write_html(report)
            self._write(lambda: self.folder.write_meta(state=state, exit_code=returncode, epoch=len(trace.epochs),
                                                      findings=sum(is_serious(lf.finding.severity) for lf in report.findings)))
            self.folder.close()
            try:
                prune(self.folder.path.parent, self.options.keep_runs)
            except OSError:
                pass

    def _write_html(self, report: FileReport) -> None:
        try:
            from .report_html import render

            html = render([report])
        except Exception as exc:  # noqa: BLE001 - the report is a view; the findings are written
            self.say(f"deeplocalize: the training report could not be drawn ({type(exc).__name__}: {exc})")
            return
        self._write(lambda: self.folder.write_html(html) if self.folder else None)

    def _exit_code(self, returncode: int | None) -> int:
        if self.stopped_on_error:
            return 1
        if returncode is None:
            return 1
        return 128 - returncode if returncode < 0 else returncode

    # ------------------------------------------------------------------ the folder
    def _open_folder(self, pid: int, monitor: bool = False) -> None:
        root = Path(self.options.runs_root) if self.options.runs_root else folder_root(self.script.path, self.options.runs_folder)
        try:
            self.folder = RunFolder.create(self.script.path, self.options.argv, pid, root, self.script.text, extra={"monitor": True} if monitor else None,
                                           name=self.options.name)
        except RunFolderError as exc:
            self.say(f"deeplocalize: {exc}; the training runs, and the findings are printed here only")
            return
        self.say(f"deeplocalize: recording this run in {os.path.relpath(self.folder.path)} (format {FORMAT})")

    def _write(self, write: Callable[[], None]) -> None:
        """A write to the run folder; the first failure is said once and the folder is given up (training goes on)."""
        if self.folder is None or self.folder.broken is not None:
            return
        try:
            write()
        except RunFolderError as exc:
            self.say(f"deeplocalize: {exc}; the training goes on, the findings are printed here only")


@dataclass
class FindingText:
    """A finding as a live run prints it, in parts a console may style."""

    where: str
    severity: str
    code: str
    found_in: str  # " (found in epoch 5)", or empty
    message: str
    fixes: list[str]

    def plain(self) -> str:
        head = f"{self.where}: {self.severity} {self.code}{self.found_in}: {self.message}"
        return "\n".join([head, *(f"    fix: {fix}" for fix in self.fixes)])


def finding_text(lf: LocatedFinding, trace: Trace | None, where: Callable[[LocatedFinding], str]) -> FindingText:
    f = lf.finding
    found_in = ""
    if trace is not None and trace.fit is not None:
        # At an epoch's end: that epoch; at a step (NaN at once): the epoch that step is in.
        epoch = max(len(trace.epochs), trace.steps[-1].epoch + 1 if trace.steps else 1)
        found_in = f" (found in epoch {epoch})"
    return FindingText(where(lf), f.severity, f.code, found_in, lf.message, [fix.title for fix in lf.fixes])


def findings_of(path: Path) -> list[dict]:
    """The findings a run folder holds (for tests and tools)."""
    data = json.loads((path / "findings.json").read_text(encoding="utf-8"))
    return [f for file in data["files"] for f in file["findings"]]

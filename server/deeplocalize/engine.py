"""One analysis of one script: checks that need no training, the probed run,
the diagnosis, and the anchoring of each finding in the source."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Callable

from .detectors import HeldTwice, StopWhenDecisive, diagnose, measure, settled_findings, symptom_key
from .detectors.configuration import check_static
from .findings import Finding, FrameTarget, LocatedFinding, Position, SourceRange
from .locate import Locator, frame_range, line_range, load_source
from .notebook import NotebookUnreadable, NothingToRun
from .report import FileReport, VerifySummary
from .rules import Rule, rule
from .runner import EventCallback, OutputCallback, RunOptions, RunResult, Runs
from .script import Script
from .strategies import KERAS_DISTRIBUTED_BUG, UNSUPPORTED, UNSUPPORTED_STRATEGY
from .trace import Frame, Trace, TraceEvent
from .verify import Experiment, UpdateCallback, testable, verify_findings
from .vocab import ReportStatus, is_serious, rank

# Findings about the run itself, not the network: never verified by a re-run.
_RUN = frozenset({"not_testable"})
SYNTAX_ERROR = rule("syntax-error", "run", "error", "syntax-error", "The file does not parse; nothing was run.", traits=_RUN)
PROCESS_DIED = rule(
    "training-process-died", "run", "error", "training-process-died",
    "The training process died (killed from outside, or the interpreter itself failed); findings are those seen so far.", traits=_RUN)
BUDGET = rule(
    "budget-exceeded", "run", "information", "budget-exceeded",
    "The run hit its time budget (`--max-seconds`, `deeplocalize.maxSeconds`): the whole process tree is stopped and the findings "
    "are those seen so far.", traits=_RUN)
MEMORY = rule(
    "memory-exceeded", "run", "warning", "memory-exceeded",
    "The run hit its memory budget (`--max-memory-mb`, `deeplocalize.maxMemoryMb`): the whole process tree is stopped.", traits=_RUN)
CAPPED = rule(
    "analysis-capped", "run", "information", "analysis-capped",
    "The script asks for more epochs than the analysis trains (`--max-epochs`, `deeplocalize.maxEpochs`) and no fault showed within the cap.",
    details="Information only: the cap is the analysis' choice, never blamed on the script (no too-few-epochs or too-few-steps "
            "finding is ever based on the capped count).", traits=_RUN)
PROBE_DEGRADED = rule(
    "probe-degraded", "run", "hint", "probe-degraded",
    "The probe could not record per-layer statistics for this model (an unusual layer or training step);",
    details="the analysis fell back to the loss and the configuration checks. The run itself was not affected.", traits=_RUN)
NOTEBOOK_UNREADABLE = rule(
    "notebook-unreadable", "run", "error", "notebook-unreadable",
    "The `.ipynb` file is not a Jupyter notebook (not JSON, or not the notebook format); nothing was run.", traits=_RUN)
NO_TRAINING = rule("no-training", "run", "hint", "no-training", "The script ended without calling `fit()` on a Keras model.", traits=_RUN)
PROCESSES_LEFT = rule(
    "processes-left", "run", "information", "processes-left",
    "The script left processes running when it ended (a helper it started, a forked copy, a daemon); the analysis stopped them.",
    details="An analysis leaves nothing running: when the training process ends, everything it started (children, grandchildren "
            "in another session, forked copies of the training process) is stopped. Run as `python`, the script would leave them "
            "running: stop them where the script ends (`terminate()`/`wait()`, `pool.close()`/`join()`), or make them daemons.",
    traits=_RUN)


class EnvironmentProblem(Exception):
    """The chosen interpreter cannot run the probe (no TensorFlow/Keras, unsupported version)."""


def _run_finding(r: Rule, message: str, rng: SourceRange, evidence: dict | None = None) -> LocatedFinding:
    return LocatedFinding(r.finding(message, FrameTarget(), evidence=evidence or {}), rng, [], None)


def _worker_failed_to_start(run: RunResult) -> bool:
    """The worker reports `ready` after importing Keras and before the user's script starts:
    dying before that is the interpreter's problem, not the script's."""
    return not run.trace.versions and run.status in ("failed", "finished", "crashed")


async def analyze(
    script: Script,
    options: RunOptions,
    runs: Runs,
    on_event: EventCallback | None = None,
    on_output: OutputCallback | None = None,
    warm_next: bool = False,
    on_findings: FindingsCallback | None = None,
) -> FileReport:
    """Analyze one script with training processes from `runs`. Findings are located in the
    file, so the script's text should match it. `warm_next` prepares a second training
    process when the run starts, for the experiments that may follow. `on_findings` receives
    findings that are certain before the run ends (see `StreamedFindings`); the report's
    findings replace them."""
    start = time.monotonic()
    unrunnable = not_runnable(script)
    if unrunnable is not None:
        return unrunnable
    if script.notebook is not None:
        options = _in_notebook_folder(options, script.path)
    stream = StreamedFindings(on_findings) if on_findings is not None else None

    def events(event: TraceEvent, trace: Trace) -> None:
        if on_event is not None:
            on_event(event, trace)
        if stream is not None:
            stream(event, trace)

    run = await runs.run(script, options, on_event=events, on_output=on_output, should_stop=StopWhenDecisive(), keep_warm=warm_next)
    _check_environment(run, options)
    return report_of_run(script, run, options, time.monotonic() - start)


def report_of_run(script: Script, run: RunResult, options: RunOptions, duration_s: float) -> FileReport:
    """The diagnosis of a finished run: every fit's findings, and what the user should know
    about how the run went."""
    traces = run.traces or [run.trace]
    findings = diagnose_fits(traces)
    findings += _about_the_run(run, options, findings, load_source(script.path), script.path)
    # Hover and the code lens follow the first fit; every fit's findings are in `findings`.
    return FileReport(script.path, _status(run), duration_s, findings, traces[0], run, source=script.text,
                      notebook=script.notebook, script=script)


def _in_notebook_folder(options: RunOptions, path: str) -> RunOptions:
    """Jupyter runs a notebook from its own folder, so its relative data paths resolve there."""
    return replace(options, cwd=os.path.dirname(path))


def not_runnable(script: Script) -> FileReport | None:
    """A file that nothing should run for (not a notebook, no code, does not parse, no Keras,
    an unsupported strategy): its report, without running anything."""
    path, exc = script.path, script.notebook_problem
    if isinstance(exc, NothingToRun):
        return FileReport(path, "nothing_to_run", 0.0, [], message=str(exc), script=script)
    if isinstance(exc, NotebookUnreadable):
        at = SourceRange(path, Position(exc.line, exc.column), Position(exc.line, exc.column + 1))
        return FileReport(path, "syntax_error", 0.0, [_run_finding(NOTEBOOK_UNREADABLE, str(exc), at)], script=script)
    if script.syntax is not None:
        found = LocatedFinding(SYNTAX_ERROR.finding(script.syntax.message, FrameTarget()), script.syntax.range, [], None)
        return FileReport(path, "syntax_error", 0.0, [found], notebook=script.notebook, script=script)
    if not script.keras:
        return FileReport(path, "not_keras", 0.0, [], message="the script does not import Keras or TensorFlow", notebook=script.notebook,
                          script=script)
    if script.unsupported_strategy is not None:
        name, at = script.unsupported_strategy
        msg = (f"not analyzed: the script trains under {name}, which DeepLocalize does not support ({UNSUPPORTED[name]}); "
               "supported are one device, MirroredStrategy and MultiWorkerMirroredStrategy")
        return FileReport(path, "nothing_to_run", 0.0, [_run_finding(UNSUPPORTED_STRATEGY, msg[0].upper() + msg[1:] + ".", at)], message=msg,
                          notebook=script.notebook, script=script)
    return None


def _check_environment(run: RunResult, options: RunOptions) -> None:
    if run.trace.unsupported:
        raise EnvironmentProblem(f"the interpreter {options.python} cannot run the probe: {run.trace.unsupported}")
    if _worker_failed_to_start(run):
        tail = "\n".join(run.output[-5:])
        raise EnvironmentProblem(f"the interpreter {options.python} cannot run the probe (cannot import TensorFlow/Keras):\n{tail}")


def _status(run: RunResult) -> ReportStatus:
    if run.status in ("crashed", "failed", "memory"):
        return "crashed"
    return "timeout" if run.status == "timeout" else "ok"


def _about_the_run(run: RunResult, options: RunOptions, findings: list[LocatedFinding], src, path: str) -> list[LocatedFinding]:
    """What the user should know about how the run went: its budgets, its cap, the probe, no fit at all."""
    trace = run.trace
    traces = run.traces or [trace]
    fallback = Locator(trace).fallback()
    out: list[LocatedFinding] = []
    if run.status == "failed":
        out.append(_run_finding(PROCESS_DIED, run.message or "the training process died", line_range(src, path, 1), {"output": run.output[-5:]}))
    elif run.status == "timeout":
        anchor = findings[0].range if findings else fallback
        out.append(_run_finding(BUDGET, f"Training {run.message}; findings are those seen so far, and nothing is said about the rest "
                              "(to analyze more of it, raise --max-seconds / deeplocalize.maxSeconds).", _first_line(anchor),
                              {"max_seconds": options.max_seconds, "steps_seen": len(trace.steps)}))
    elif run.status == "memory":
        out.append(_run_finding(MEMORY, f"Training {run.message}.", _first_line(fallback), {"max_memory_mb": options.max_memory_mb}))
    # Capped while the loss was still falling: no verdict on the epochs after the cap.
    capped = [t for t in traces if t.fit_end and t.fit_end.get("reason") == "capped" and t.fit is not None
              and (p := measure(t)) is not None and (p.still_improving or p.spared_by_the_cut)]
    if capped and not any(is_serious(f.finding.severity) for f in findings + out):
        fit = capped[0].fit
        out.append(_run_finding(CAPPED, f"The analysis trained {fit.epochs} of the {fit.epochs_requested} epochs this fit asks for "
                              "(the epoch cap, --max-epochs / deeplocalize.maxEpochs); no fault showed in that time, and nothing is said "
                              "about the epochs after it.", _first_line(frame_range(fit.site[0]) if fit.site else fallback),
                              {"epochs_analyzed": fit.epochs, "epochs_requested": fit.epochs_requested}))
    bugs = [(t, w) for t in traces for w in t.keras_workarounds]
    if bugs:
        t, first = bugs[0]
        where_fit = _first_line(frame_range(t.fit.site[0]) if t.fit is not None and t.fit.site else fallback)
        keras_version = trace.versions.get("keras", "3")
        out.append(_run_finding(KERAS_DISTRIBUTED_BUG,
                                f"Keras {keras_version}'s fit() fails here under MultiWorkerMirroredStrategy with {options.workers} workers "
                                f"({first['error']}; {first['issue']}), so this script crashes when run as is. The analysis fixed Keras "
                                "in its own training processes to see the training; the findings are about the model as it trains once "
                                "Keras is fixed.", where_fit, {"keras_steps": sorted({w['which'] for _, w in bugs}), "issue": first["issue"]}))
    if run.leftover:
        out.append(_processes_left(run.leftover, path, fallback))
    if trace.probe_errors:
        out.append(_run_finding(PROBE_DEGRADED, "Per-layer statistics could not be recorded for this model, so only the loss and the "
                              f"configuration were checked ({trace.probe_errors[0]}).", _first_line(fallback)))
    if run.status == "finished" and not any(t.fit for t in traces) and trace.crash is None:
        how = "called sys.exit() before training" if trace.end_reason == "sys_exit" else "finished without training a Keras model with fit()"
        out.append(_run_finding(NO_TRAINING, f"The script {how}; nothing to analyze.", line_range(src, path, 1)))
    return out


def _processes_left(left: list[dict], path: str, fallback: SourceRange) -> LocatedFinding:
    """At the first line that started one of them (else where training is)."""
    sites = [Frame.from_dict(p["site"][0]) for p in left if p.get("site")]
    at = _first_line(frame_range(sites[0]) if sites else fallback)
    names = []
    for p in left:
        site = Frame.from_dict(p["site"][0]) if p.get("site") else None
        names.append(p.get("command", "a process") + (f", started at line {site.line}" if site is not None and site.file == path else ""))
    shown = "; ".join(names[:4]) + (f"; and {len(names) - 4} more" if len(names) > 4 else "")
    return _run_finding(PROCESSES_LEFT, f"The script left {len(left)} process{'es' if len(left) != 1 else ''} running when it ended "
                        f"({shown}); the analysis stopped {'them' if len(left) != 1 else 'it'}. Run with `python`, "
                        f"{'they' if len(left) != 1 else 'it'} would keep running after the script.", at,
                        {"processes": [p.get("command", "") for p in left]})


FindingsCallback = Callable[[list[LocatedFinding]], None]


class StreamedFindings:
    """Findings that are certain before the run ends, reported the moment they are; the
    final diagnosis replaces them.

    A configuration error (a loss that cannot work with the output activation or the
    labels) is certain once the model, its compile and the fit's data are known, before
    the first batch: checked at the few events where more becomes known (the fit's data,
    the model preview, first predictions, first step, first epoch), once each per fit. A
    runtime finding is reported once it holds at two epoch ends in a row past the symptom
    window (>= 3 epochs and a quarter of the fit), whether or not it stops the run.
    """

    CHECKPOINTS = ("fit", "model_preview", "model", "step", "epoch")

    def __init__(self, on_findings: FindingsCallback) -> None:
        self.on_findings = on_findings
        self.checked: set[tuple[int, str]] = set()
        self.held = HeldTwice()
        self.sent: set[tuple] = set()
        self.located: list[LocatedFinding] = []

    def __call__(self, event: TraceEvent, trace: Trace) -> None:
        kind = event.kind
        if trace.fit is None or trace.compile is None or kind not in self.CHECKPOINTS:
            return
        try:
            found: list[Finding] = []
            if (id(trace), kind) not in self.checked:
                self.checked.add((id(trace), kind))
                found += [f for f in check_static(trace) if f.severity == "error"]
            if kind == "epoch":
                settled = {symptom_key(f): f for f in settled_findings(trace)}
                found += [settled[k] for k in self.held(trace, set(settled))]
            if found:
                self.add(trace, found)
        except Exception:  # noqa: BLE001 - a partial trace: the final diagnosis will say it
            return

    def add(self, trace: Trace, found: list[Finding]) -> None:
        """Findings of `trace` known to be certain now: located, and said once each."""
        locator = Locator(trace)
        new = []
        for f in found:
            located = locator.locate(f)
            key = (f.code, located.range.file, located.range.start.line, located.range.start.column)
            if key not in self.sent:
                self.sent.add(key)
                located.fit_index = trace.fit_index
                new.append(located)
        if new:
            self.located += new
            self.on_findings(list(self.located))


async def verify_report(
    report: FileReport,
    options: RunOptions,
    budget_s: float,
    runs: Runs,
    on_update: UpdateCallback | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> VerifySummary | None:
    """Re-train with each serious finding's fixes applied (see verify.py); updates the report in place."""
    if report.run is None or report.script is None or report.status in ("syntax_error", "not_keras", "nothing_to_run") \
            or not any(testable(f) for f in report.findings):
        return None
    started = time.monotonic()
    runs.prewarm_soon(options)  # no-op when the run already started one
    if report.notebook is not None:
        options = _in_notebook_folder(options, report.path)
    exp = Experiment(report.script, report.run, options, runs)
    report.verification = await verify_findings(exp, report.findings, budget_s, on_update, on_progress)
    report.findings.sort(key=lambda f: rank(f.finding.severity))
    report.duration_s += time.monotonic() - started
    return report.verification


def diagnose_fits(traces: list[Trace]) -> list[LocatedFinding]:
    """Each fit diagnosed with its own compile and located with its own call sites;
    a fault seen in several fits (the same code at the same place) is reported once."""
    kept: dict[tuple, LocatedFinding] = {}
    for t in traces:
        if t.fit is None and t.crash is None and t is not traces[0]:
            continue
        locator = Locator(t)
        for f in diagnose(t):
            located = locator.locate(f)
            located.fit_index = t.fit_index
            key = (f.code, located.range.start.line, located.range.start.column)
            cur = kept.get(key)
            if cur is None or rank(f.severity) < rank(cur.finding.severity):
                kept[key] = located
    return sorted(kept.values(), key=lambda f: rank(f.finding.severity))


def _first_line(rng: SourceRange) -> SourceRange:
    return SourceRange(rng.file, rng.start, Position(rng.start.line, rng.end.column if rng.end.line == rng.start.line else rng.start.column + 1))


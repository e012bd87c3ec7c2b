"""One analysis of one script: checks that need no training, the probed run,
the diagnosis, and the anchoring of each finding in the source."""

from __future__ import annotations

import ast
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from .detectors import DecisiveRule, diagnose, measure, settled_findings, symptom_key
from .detectors.static_rules import check_static
from .findings import Finding, LocatedFinding, Position, SourceRange, Target
from .locate import Locator, frame_range, line_range, load_source
from .notebook import Notebook, NotebookUnreadable, NothingToRun, is_notebook, load_notebook
from .rules import Rule, rule
from .runner import EventCallback, OutputCallback, RunOptions, RunResult, WorkerPool, run_script
from .strategies import KERAS_DISTRIBUTED_BUG, UNSUPPORTED, UNSUPPORTED_STRATEGY, unsupported_strategy
from .trace import Trace
from .verify import Experiment, UpdateCallback, VerifySummary, testable, verify_findings
from .vocab import KERAS_MODULES, ReportStatus, is_serious, rank

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


class EnvironmentProblem(Exception):
    """The chosen interpreter cannot run the probe (no TensorFlow/Keras, unsupported version)."""


@dataclass
class FileReport:
    path: str
    status: ReportStatus
    duration_s: float
    findings: list[LocatedFinding] = field(default_factory=list)
    trace: Trace | None = None
    run: RunResult | None = None
    message: str = ""
    source: str = ""  # the text that was analyzed (fixes apply to it)
    verification: VerifySummary | None = None
    notebook: Notebook | None = None  # set when `path` is a notebook: `source` is its code cells as one script

    def place(self, r: SourceRange) -> SourceRange:
        """Where the user reads a range: in a notebook, its cell and the line in that cell."""
        return self.notebook.to_cell(r) if self.notebook is not None else r

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "status": self.status,
            "duration_s": round(self.duration_s, 3),
            "findings": [f.to_json(self.place) for f in self.findings],
            "verification": self.verification.to_json() if self.verification else None,
        }

    @property
    def worst(self) -> str | None:
        sev = [f.finding.severity for f in self.findings]
        return min(sev, key=rank) if sev else None


def syntax_error(text: str, path: str) -> SourceRange | None:
    try:
        compile(text, path, "exec")
    except SyntaxError as exc:
        line = exc.lineno or 1
        col = exc.offset or 1
        end_line = exc.end_lineno or line
        end_col = exc.end_offset if exc.end_offset and (end_line > line or exc.end_offset > col) else col + 1
        return SourceRange(path, Position(line, col), Position(end_line, end_col))
    return None


def uses_keras(text: str, path: str, depth: int = 0) -> bool:
    """Whether the script (or a local module it imports) imports Keras/TensorFlow."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    local: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for n in names:
            if n.split(".")[0] in KERAS_MODULES:
                return True
            local.append(n.split(".")[0])
    if depth < 2:
        base = Path(path).resolve().parent
        for mod in dict.fromkeys(local):
            candidate = base / f"{mod}.py"
            if candidate.is_file():
                try:
                    if uses_keras(candidate.read_text(encoding="utf-8", errors="replace"), str(candidate), depth + 1):
                        return True
                except OSError:
                    continue
    return False


def _run_finding(r: Rule, message: str, rng: SourceRange, evidence: dict | None = None) -> LocatedFinding:
    return LocatedFinding(r.finding(message, Target("frame"), evidence=evidence or {}), rng, [], None)


def _worker_failed_to_start(run: RunResult) -> bool:
    """The worker reports `ready` after importing Keras and before the user's script starts:
    dying before that is the interpreter's problem, not the script's."""
    return not run.trace.versions and run.status in ("failed", "finished", "crashed")


async def analyze(
    path: str,
    options: RunOptions,
    pool: WorkerPool | None = None,
    on_event: EventCallback | None = None,
    on_output: OutputCallback | None = None,
    text: str | None = None,
    warm_next: bool = False,
    on_findings: FindingsCallback | None = None,
) -> FileReport:
    """Analyze one script. `text`, when given, is what runs in place of the file's content
    (the editor's saved text, or a fixed copy); findings are located in the file, so it
    should match it. `warm_next` starts a second worker when the run starts, for the
    experiments that may follow. `on_findings` receives findings that are certain before
    the run ends (see `StreamedFindings`); the report's findings replace them."""
    source = text
    start = time.monotonic()
    path = os.path.abspath(path)
    notebook: Notebook | None = None
    if is_notebook(path):
        try:
            notebook = load_notebook(path)
        except (NotebookUnreadable, NothingToRun) as exc:
            return _not_a_runnable_notebook(path, exc)
        options = _in_notebook_folder(options, path)
        text = source = text if text is not None else notebook.script
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise FileNotFoundError(f"cannot read {path}: {exc.strerror}") from exc
    unrunnable = _not_runnable(text, path)
    if unrunnable is not None:
        unrunnable.duration_s = time.monotonic() - start
        unrunnable.notebook = notebook
        return unrunnable

    # The experiments' worker imports TensorFlow while this run trains; a healthy script
    # leaves it as the next analysis' warm worker.
    stream = StreamedFindings(on_findings) if on_findings is not None else None

    def events(event: dict, trace: Trace) -> None:
        if on_event is not None:
            on_event(event, trace)
        if stream is not None:
            stream(event, trace)

    run = await run_script(path, options, pool=pool, on_event=events, on_output=on_output, should_stop=DecisiveRule(), source=source,
                           keep_warm=warm_next)
    _check_environment(run, options)
    traces = run.traces or [run.trace]
    findings = diagnose_fits(traces)
    findings += _about_the_run(run, options, findings, load_source(path), path)
    # Hover and the code lens follow the first fit; every fit's findings are in `findings`.
    return FileReport(path, _status(run), time.monotonic() - start, findings, traces[0], run, source=text, notebook=notebook)


def _in_notebook_folder(options: RunOptions, path: str) -> RunOptions:
    """Jupyter runs a notebook from its own folder, so its relative data paths resolve there."""
    return replace(options, cwd=os.path.dirname(path))


def _not_a_runnable_notebook(path: str, exc: Exception) -> FileReport:
    if isinstance(exc, NothingToRun):
        return FileReport(path, "nothing_to_run", 0.0, [], message=str(exc))
    assert isinstance(exc, NotebookUnreadable)
    at = SourceRange(path, Position(exc.line, exc.column), Position(exc.line, exc.column + 1))
    return FileReport(path, "syntax_error", 0.0, [_run_finding(NOTEBOOK_UNREADABLE, str(exc), at)])


def _not_runnable(text: str, path: str) -> FileReport | None:
    """A file that does not parse or does not use Keras: reported without running anything."""
    bad = syntax_error(text, path)
    if bad is not None:
        try:
            compile(text, path, "exec")
        except SyntaxError as exc:
            msg = f"SyntaxError: {exc.msg}"
        return FileReport(path, "syntax_error", 0.0, [LocatedFinding(SYNTAX_ERROR.finding(msg, Target("frame")), bad, [], None)])
    if not uses_keras(text, path):
        return FileReport(path, "not_keras", 0.0, [], message="the script does not import Keras or TensorFlow")
    unsupported = unsupported_strategy(text, path)
    if unsupported is not None:
        name, at = unsupported
        msg = (f"not analyzed: the script trains under {name}, which DeepLocalize does not support ({UNSUPPORTED[name]}); "
               "supported are one device, MirroredStrategy and MultiWorkerMirroredStrategy")
        return FileReport(path, "nothing_to_run", 0.0, [_run_finding(UNSUPPORTED_STRATEGY, msg[0].upper() + msg[1:] + ".", at)], message=msg)
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
        out.append(_run_finding(BUDGET, f"Training {run.message}; findings are those seen so far.", _first_line(anchor),
                              {"max_seconds": options.max_seconds, "steps_seen": len(trace.steps)}))
    elif run.status == "memory":
        out.append(_run_finding(MEMORY, f"Training {run.message}.", _first_line(fallback), {"max_memory_mb": options.max_memory_mb}))
    # Capped while the loss was still falling: no verdict on the epochs after the cap.
    capped = [t for t in traces if t.fit_end and t.fit_end.get("reason") == "capped" and t.fit is not None
              and (p := measure(t)) is not None and p.still_improving]
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
    if trace.probe_errors:
        out.append(_run_finding(PROBE_DEGRADED, "Per-layer statistics could not be recorded for this model, so only the loss and the "
                              f"configuration were checked ({trace.probe_errors[0]}).", _first_line(fallback)))
    if run.status == "finished" and not any(t.fit for t in traces) and trace.crash is None:
        how = "called sys.exit() before training" if trace.end_reason == "sys_exit" else "finished without training a Keras model with fit()"
        out.append(_run_finding(NO_TRAINING, f"The script {how}; nothing to analyze.", line_range(src, path, 1)))
    return out


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
        self.previous: dict[int, set[tuple]] = {}
        self.sent: set[tuple] = set()
        self.located: list[LocatedFinding] = []

    def __call__(self, event: dict, trace: Trace) -> None:
        kind = event.get("type")
        if trace.fit is None or trace.compile is None or kind not in self.CHECKPOINTS:
            return
        try:
            found: list[Finding] = []
            if (id(trace), kind) not in self.checked:
                self.checked.add((id(trace), kind))
                found += [f for f in check_static(trace) if f.severity == "error"]
            if kind == "epoch":
                settled = {symptom_key(f): f for f in settled_findings(trace)}
                stable = settled.keys() & self.previous.get(id(trace), set())
                self.previous[id(trace)] = set(settled)
                found += [settled[k] for k in stable]
            if found:
                self._send(trace, found)
        except Exception:  # noqa: BLE001 - a partial trace: the final diagnosis will say it
            return

    def _send(self, trace: Trace, found: list[Finding]) -> None:
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


async def verify(
    report: FileReport,
    options: RunOptions,
    budget_s: float,
    pool: WorkerPool | None = None,
    on_update: UpdateCallback | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> VerifySummary | None:
    """Re-train with each serious finding's fixes applied (see verify.py); updates the report in place."""
    if report.run is None or report.status in ("syntax_error", "not_keras", "nothing_to_run") or not any(testable(f) for f in report.findings):
        return None
    started = time.monotonic()
    if pool is not None:
        await pool.prewarm(options)  # no-op when the run already started one
    if report.notebook is not None:
        options = _in_notebook_folder(options, report.path)
    exp = Experiment(report.path, report.source, report.run, options, pool)
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


"""All detectors, and the diagnosis that merges their findings into one per fault.

Every detector is a pure function of a `Trace` (plus the learning-curve summary),
so each can be tested on a synthetic trace without TensorFlow.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..findings import Finding, FrameTarget, element
from ..rules import REGISTRY, has_trait
from ..trace import Trace
from ..vocab import is_serious, rank
from .crash import detect_crash
from .numerical import detect_nonfinite, first_nonfinite, step_has_nonfinite
from .progress import Progress, measure
from .registry import RuntimeDetector, runtime_detectors
from .configuration import check_static

# Every module of this package, so that each `@runtime_detector` and each rule is registered.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

RUNTIME_DETECTORS: list[RuntimeDetector] = runtime_detectors()



def _has(f: Finding, trait: str) -> bool:
    return has_trait(f.code, trait)


def diagnose(trace: Trace) -> list[Finding]:
    static = check_static(trace)
    findings = list(static)
    if trace.crash is not None:
        findings = detect_crash(trace, static) + static
        if trace.fit_end is None:  # crashed before or while training: nothing to measure
            return _merge(findings)
    findings += detect_nonfinite(trace)
    progress = measure(trace)
    if first_nonfinite(trace) is None:
        for detector in RUNTIME_DETECTORS:
            findings += detector(trace, progress)
        # More epochs of a run whose steps diverge only diverge further.
        if any(_has(f, "diverging") for f in findings):
            findings = [f for f in findings if f.code != "too-few-epochs"]
        # Configurations that train, only worse: a warning once training confirms it (a curve of
        # fewer than three steps, e.g. two full-batch epochs under the epoch cap, confirms nothing).
        for f in findings:
            if _has(f, "confirmed_by_training") and (progress is None or not progress.poor):
                f.severity = "information"
    return _merge(findings)


def _key(f: Finding) -> tuple:
    t = f.target
    if isinstance(t, FrameTarget):
        return (t.kind, t.frame.file if t.frame else None, t.frame.line if t.frame else None)
    return (f.root_cause, *element(t))


def _merge(findings: list[Finding]) -> list[Finding]:
    """One finding per (root cause, source element): keep the most severe, fold the others' symptoms into its evidence."""
    kept: dict[tuple, Finding] = {}
    for f in findings:
        k = _key(f)
        if k not in kept:
            kept[k] = f
            continue
        cur = kept[k]
        if rank(f.severity) < rank(cur.severity):
            f.evidence.setdefault("also_observed", []).append(cur.symptom)
            kept[k] = f
        else:
            cur.evidence.setdefault("also_observed", []).append(f.symptom)
    out = list(kept.values())
    # Specific evidence explains generic symptoms and fallback causes: those yield.
    strong = any(f.confidence == "strong" and is_serious(f.severity) for f in out)
    weak_warnings = [f for f in out if f.confidence == "weak" and is_serious(f.severity)]
    for f in weak_warnings:
        if strong:
            f.severity = "information"
    if not strong and len(weak_warnings) > 1:
        # Among fallbacks, keep the most specific one as the warning.
        weak_warnings.sort(key=_fallback_rank)
        for f in weak_warnings[1:]:
            f.severity = "information"
    return sorted(out, key=lambda f: rank(f.severity))


def _fallback_rank(f: Finding) -> int:
    r = REGISTRY.get(f.code)
    return r.fallback_rank if r is not None and r.fallback_rank is not None else len(REGISTRY)


MIN_EPOCHS_FOR_SYMPTOM = 3
MIN_FRACTION_FOR_SYMPTOM = 0.25  # of the fit's epochs


def past_symptom_window(trace: Trace) -> bool:
    """Seen long enough for a symptom of the whole run to mean something: >= 3 epochs and a quarter of the fit."""
    fit, done = trace.fit, len(trace.epochs)
    return fit is not None and done >= MIN_EPOCHS_FOR_SYMPTOM and done >= MIN_FRACTION_FOR_SYMPTOM * fit.epochs


class HeldTwice:
    """Symptoms that hold at two epoch ends in a row, per fit: what the run may stop on (a silent
    failure) and what may be reported before it ends (a settled finding) are both this."""

    def __init__(self) -> None:
        self._previous: dict[int, set[tuple]] = {}

    def __call__(self, trace: Trace, symptoms: set[tuple]) -> set[tuple]:
        """Call once per epoch end with that end's symptoms; returns those also seen at the previous end."""
        held = symptoms & self._previous.get(id(trace), set())
        self._previous[id(trace)] = symptoms
        return held


class StopWhenDecisive:
    """Stop training early: a NaN has appeared, a static error is certain and one
    epoch has been seen, or a silent failure is established (see `silent_failure`).

    Called on every probe event while the run streams in, so it is incremental:
    each step is inspected once, the static rules are evaluated once, the
    runtime detectors once per epoch.
    """

    def __init__(self, silent_failures: bool = True, static_errors: bool = True) -> None:
        self._trace: Trace | None = None
        self.silent_failures = silent_failures
        self.static_errors = static_errors
        self.reason = ""

    def _start(self, trace: Trace) -> None:
        """A new fit (its own Trace) starts with a fresh verdict."""
        self._trace = trace
        self._seen = 0
        self._nonfinite = False
        self._static_error: bool | None = None
        self._epochs_checked = 0
        self._held = HeldTwice()

    def __call__(self, trace: Trace) -> bool:
        if trace is not self._trace:
            self._start(trace)
        for step in trace.steps[self._seen:]:
            if not self._nonfinite and step_has_nonfinite(step):
                self._nonfinite = True
        self._seen = len(trace.steps)
        if self._nonfinite and len(trace.steps) >= 2:
            self.reason = "non-finite values"
            return True
        if self.static_errors and trace.epochs and self._static_error is None:
            self._static_error = any(f.severity == "error" for f in check_static(trace))
        if self._static_error:
            self.reason = "a certain configuration error"
            return True
        if self.silent_failures and len(trace.epochs) > self._epochs_checked:
            self._epochs_checked = len(trace.epochs)
            stable = self._held(trace, silent_failure(trace))
            if stable:
                self.reason = f"{sorted(stable)[0][0]} established over two epochs"
                return True
        return False


def silent_failure(trace: Trace) -> set[tuple]:
    """Established symptoms of a fit that trains without crashing, as (code, target) keys.

    Only after a window (>= 3 epochs and a quarter of the fit), only while epochs remain
    to save, and a flat loss only when it is really flat (< 2% drop) at chance level.
    """
    if not past_symptom_window(trace) or trace.fit is None or len(trace.epochs) >= trace.fit.epochs:
        return set()
    progress = measure(trace)
    out = set()
    for f in diagnose(trace):
        # Symptoms that do not heal by themselves: the run can stop and let experiments settle the cause.
        if not is_serious(f.severity) or not _has(f, "established"):
            continue
        if f.code == "not-learning" and (progress is None or progress.rel_improvement >= 0.02 or progress.oscillation > 0.5):
            continue
        out.add(symptom_key(f))
    return out


def symptom_key(f: Finding) -> tuple:
    """The same symptom blamed on the same element, across epochs of one fit."""
    return (f.code, f.root_cause, *element(f.target))


def settled_findings(trace: Trace) -> list[Finding]:
    """Serious findings of a fit seen past the symptom window (the window of
    `silent_failure`): what may be reported before the run ends once it holds at two
    epoch ends in a row (HeldTwice), whether or not it stops the run."""
    if not past_symptom_window(trace):
        return []
    return [f for f in diagnose(trace) if is_serious(f.severity)]


def is_decisive(trace: Trace) -> bool:
    """One-shot form of StopWhenDecisive, for a finished trace."""
    return StopWhenDecisive()(trace)


__all__ = ["diagnose", "is_decisive", "settled_findings", "symptom_key", "HeldTwice", "StopWhenDecisive", "measure", "Progress"]

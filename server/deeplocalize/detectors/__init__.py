"""All detectors, and the diagnosis that merges their findings into one per fault.

Every detector is a pure function of a `Trace` (plus the learning-curve summary),
so each can be tested on a synthetic trace without TensorFlow.
"""

from __future__ import annotations

from typing import Callable

from ..findings import Finding
from ..trace import Trace
from .crash import detect_crash
from .curves import detect_batch_size, detect_epochs, detect_not_learning, detect_regularization, detect_unrelated_labels
from .numerical import detect_nonfinite, first_nonfinite, step_has_nonfinite
from .progress import Progress, measure
from .smells import detect_activation_smells, detect_unscaled_data
from .static_rules import check_static
from .training import detect_bad_init, detect_dead_relu, detect_exploding, detect_saturation, detect_update_ratio, detect_vanishing

RuntimeDetector = Callable[[Trace, "Progress | None"], list[Finding]]

# Ordered from the most specific evidence to the most generic symptom: when two
# detectors blame the same source element, the earlier one's finding is kept.
RUNTIME_DETECTORS: list[RuntimeDetector] = [
    detect_exploding,
    detect_vanishing,
    detect_saturation,
    detect_dead_relu,
    detect_bad_init,
    detect_activation_smells,
    detect_regularization,
    detect_batch_size,
    detect_update_ratio,
    detect_epochs,
    detect_unrelated_labels,
    detect_unscaled_data,
    detect_not_learning,
]

_RANK = {"error": 0, "warning": 1, "information": 2, "hint": 3}


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
        # Configurations that train, only worse: a warning once training confirms it.
        for f in findings:
            if f.code in CONFIRMED_BY_TRAINING and progress is not None and not progress.poor:
                f.severity = "information"
    return _merge(findings)


CONFIRMED_BY_TRAINING = {"regression-loss-on-classes"}


def _key(f: Finding) -> tuple:
    t = f.target
    if t.kind in ("frame",):
        return (t.kind, t.frame.file if t.frame else None, t.frame.line if t.frame else None)
    return (f.root_cause, t.kind, t.layer, t.arg)


def _merge(findings: list[Finding]) -> list[Finding]:
    """One finding per (root cause, source element): keep the most severe, fold the others' symptoms into its evidence."""
    kept: dict[tuple, Finding] = {}
    for f in findings:
        k = _key(f)
        if k not in kept:
            kept[k] = f
            continue
        cur = kept[k]
        if _RANK[f.severity] < _RANK[cur.severity]:
            f.evidence.setdefault("also_observed", []).append(cur.symptom)
            kept[k] = f
        else:
            cur.evidence.setdefault("also_observed", []).append(f.symptom)
    out = list(kept.values())
    # Specific evidence explains generic symptoms and fallback causes: those yield.
    strong = any(f.confidence == "strong" and f.severity in ("error", "warning") for f in out)
    weak_warnings = [f for f in out if f.confidence == "weak" and f.severity in ("error", "warning")]
    for f in weak_warnings:
        if strong:
            f.severity = "information"
    if not strong and len(weak_warnings) > 1:
        # Among fallbacks, keep the most specific one as the warning.
        order = {code: i for i, code in enumerate(WEAK_PREFERENCE)}
        weak_warnings.sort(key=lambda f: order.get(f.code, len(order)))
        for f in weak_warnings[1:]:
            f.severity = "information"
    return sorted(out, key=lambda f: _RANK[f.severity])


WEAK_PREFERENCE = ["exploding-gradients", "too-few-epochs", "weights-barely-change", "saturated-activation", "dead-relu", "vanishing-gradients", "not-learning"]


class DecisiveRule:
    """Stop training early: a NaN has appeared, or a static error is certain and one epoch has been seen.

    Called on every probe event while the run streams in, so it is incremental:
    each step is inspected once and the static rules are evaluated once.
    """

    def __init__(self) -> None:
        self._trace: Trace | None = None

    def _start(self, trace: Trace) -> None:
        """A new fit (its own Trace) starts with a fresh verdict."""
        self._trace = trace
        self._seen = 0
        self._nonfinite = False
        self._static_error: bool | None = None

    def __call__(self, trace: Trace) -> bool:
        if trace is not self._trace:
            self._start(trace)
        for step in trace.steps[self._seen:]:
            if not self._nonfinite and step_has_nonfinite(step):
                self._nonfinite = True
        self._seen = len(trace.steps)
        if self._nonfinite and len(trace.steps) >= 2:
            return True
        if trace.epochs and self._static_error is None:
            self._static_error = any(f.severity == "error" for f in check_static(trace))
        return bool(self._static_error)


def is_decisive(trace: Trace) -> bool:
    """One-shot form of DecisiveRule, for a finished trace."""
    return DecisiveRule()(trace)


__all__ = ["diagnose", "is_decisive", "DecisiveRule", "measure", "Progress"]

"""Proof by experiment: re-train with a fix applied and measure what it changed.

A finding's root cause is chosen by rules; its fixes (one per candidate cause, best
first) are hypotheses. Each is applied to an in-memory copy of the script and trained
in a warm worker with the same seed and data, for as many epochs as the original run
needed to show the symptom plus a short margin. The measures of the symptom before
and after decide: `verified` (gone or clearly better), `refuted` (no better: the next
candidate is tried), `inconclusive` (budget, or a fix a short run cannot test). A
verified alternative moves the finding to its cause and line; a warning that no fix
helps is demoted to information, which also guards against false alarms.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable

import numpy as np

from .detectors import StopWhenDecisive, diagnose, measure
from .detectors.setup import loss_family
from .detectors.numerical import first_nonfinite
from .detectors.progress import ACCURACY_KEYS, AT_CHANCE_RATIO, STALL_IMPROVEMENT, VAL_ACCURACY_KEYS, hit_rate
from .edits import apply_fix
from .findings import Failure, Fix, LocatedFinding, Verification
from .report import VerifySummary
from .runner import RunOptions, RunResult, Runs
from .rules import has_trait
from .script import Script
from .trace import Trace
from .vocab import CLASSIFICATION_LOSSES, is_serious

MAX_TRIES_PER_FINDING = 3
MIN_JUDGED_EPOCHS = 3  # a fix is never judged on a single epoch when the fit asks for more
MIN_JUDGED_STEPS = 50  # nor refuted on fewer steps than this when the analysis cut the fit short,
CERTAIN_REFUTATIONS = ("finite", "loss_min")  # unless more steps cannot undo it (NaN again, a loss below zero)
# Per-layer statistic that shows each symptom, for the numbers next to the verdict.
LAYER_STAT = {"dead_relu": ("out", "dead_units", "dead_unit_fraction"), "saturation": ("pre", "sat5", "saturated_fraction")}

MEASURE_NAMES = {"loss_vs_chance": "loss relative to chance"}  # how a measure's key reads in a reason
# Clearly better: accuracy up by this much (absolute), or the relative loss drop up by this much.
ACCURACY_GAIN = 0.05
LOSS_DROP_GAIN = 0.15

UpdateCallback = Callable[[LocatedFinding], Awaitable[None] | None]


def testable(lf: LocatedFinding) -> bool:
    f = lf.finding
    return is_serious(f.severity) and not _untestable(f.code) and any(fix.edits for fix in lf.fixes)


def _untestable(code: str) -> bool:
    """A short re-run cannot test it: its fix changes the training length or the data, or it is about the run."""
    return has_trait(code, "not_testable")


# ------------------------------------------------------------------ measures
def epochs_shown(trace: Trace) -> int:
    """Epochs the original run needed to show the symptom (a started epoch counts)."""
    done = len(trace.epochs)
    started = max((s.epoch + 1 for s in trace.steps), default=0)
    return max(1, done, started)


def rerun_epochs(trace: Trace, cap: int | None) -> int:
    """The symptom's epochs plus a short margin, never more than the analysis cap."""
    shown = epochs_shown(trace)
    margin = 1 if shown <= 4 else math.ceil(0.2 * shown)
    total = shown + margin
    return min(total, cap) if cap else total


def truncated(trace: Trace, epochs: int) -> Trace:
    """The trace as it was after `epochs` epochs (to compare runs at equal length)."""
    return replace(trace, epochs=trace.epochs[:epochs], steps=[s for s in trace.steps if s.epoch < epochs])


def judged_as_is(trace: Trace) -> Trace:
    """An experiment's epoch cap is the length at which two runs are compared, not a budget that
    cut the user's fit short: the detectors judge its curve as it is (no benefit of a cut fit)."""
    if trace.fit_end and trace.fit_end.get("reason") == "capped":
        return replace(trace, fit_end={**trace.fit_end, "reason": "compared"})
    return trace


def _last(trace: Trace, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        s = trace.epoch_series(key)
        s = s[np.isfinite(s)]
        if len(s) and np.all((s >= 0) & (s <= 1)):
            return round(float(s[-1]), 4)
    return None


def _same_layer(before: Trace, after: Trace, index: int | None) -> int | None:
    """The layer's index in the fixed run: a fix that adds a layer in front (an input
    Normalization) shifts the indices; layer names do not change."""
    if index is None or not 0 <= index < len(before.layers):
        return index
    name = before.layers[index].name
    return next((l.index for l in after.layers if l.name == name), index)


def outcome(trace: Trace, finding_symptom: str | None = None, layer: int | None = None) -> dict[str, Any]:
    """The measures a verdict compares: finite or not, loss and its drop, accuracy (Keras'
    metric, and the probe's own hit rate over the last epoch, the same whatever the loss),
    the symptom's layer statistic."""
    classification = loss_family(trace) in CLASSIFICATION_LOSSES or _last(trace, ACCURACY_KEYS) is not None
    if trace.crash is not None:
        return {"crashed": True, "error": f"{trace.crash.exc_type}: {trace.crash.message.splitlines()[0][:200] if trace.crash.message else ''}"}
    out: dict[str, Any] = {"finite": first_nonfinite(trace) is None}
    losses = trace.series("loss", "loss")
    losses = losses[np.isfinite(losses)]
    if len(losses) >= 3:
        out["loss_start"], out["loss_min"] = round(float(np.median(losses[:5])), 5), round(float(np.min(losses)), 5)
    p = measure(trace)
    if p is not None:
        out["loss"] = round(p.final_loss, 5) if math.isfinite(p.final_loss) else str(p.final_loss)
        out["loss_drop"] = round(p.rel_improvement, 4) if math.isfinite(p.rel_improvement) else None
        if p.chance_ratio is not None and math.isfinite(p.chance_ratio):
            out["loss_vs_chance"] = round(p.chance_ratio, 4)
    else:
        # No per-step loss (a custom train_step): the epoch logs still have it.
        losses = trace.epoch_series("loss")
        if len(losses) and not np.all(np.isfinite(losses)):
            out["finite"] = False
        losses = losses[np.isfinite(losses)]
        if len(losses) >= 2:
            out["loss"] = round(float(losses[-1]), 5)
            out["loss_drop"] = round(float((losses[0] - losses[-1]) / max(abs(losses[0]), 1e-12)), 4)
    acc = _last(trace, ACCURACY_KEYS)
    if acc is not None:
        out["accuracy"] = acc
    hits = hit_rate(trace) if classification else None
    if hits is not None:
        out["hit_rate"] = round(hits, 4)
    val = _last(trace, VAL_ACCURACY_KEYS)
    if val is not None:
        out["val_accuracy"] = val
    if finding_symptom in ("exploding_gradient", "nan_inf"):
        growth = _weight_growth(trace)
        if growth is not None:
            out["weight_growth"] = growth
    stat = LAYER_STAT.get(finding_symptom or "")
    if stat and layer is not None:
        series = trace.series(f"L{layer}.{stat[0]}", stat[1])
        series = series[np.isfinite(series)]
        if len(series):
            out[stat[2]] = round(float(np.median(series[-max(3, len(series) // 3):])), 4)
    out["epochs"] = len(trace.epochs)
    return {k: v for k, v in out.items() if v is not None}


def _weight_growth(trace: Trace) -> float | None:
    """Largest growth of a layer's weight norm over the run (a diverging run's signature)."""
    worst = None
    for layer in trace.trainable_layers:
        w = trace.series(f"L{layer.index}.w", "norm")
        w = w[np.isfinite(w)]
        if len(w) >= 2 and w[0] > 0:
            g = float(np.max(w) / w[0])
            worst = g if worst is None else max(worst, g)
    return round(worst, 3) if worst is not None else None


def judge(before: dict[str, Any], after: dict[str, Any], symptom_remains: bool, loss_changed: bool, generalization: bool = False) -> tuple[str, str, str]:
    """(verdict, reason, measure) from the measures before and after a fix; `measure` names the one
    the verdict rests on (a key of the measures, or "crash" / "finite" / "weight_growth").
    `generalization`: the symptom is about held-out data (too much regularization), so validation
    accuracy leads; otherwise training is what failed and the training measures lead."""
    if after.get("crashed"):
        if before.get("crashed") and after.get("error") != before.get("error"):
            return "verified", "the crash is gone (a later, different error follows)", "crash"
        return "refuted", f"the script {'still crashes' if before.get('crashed') else 'crashes with this fix'}: {after.get('error')}", "crash"
    if before.get("crashed"):
        return "verified", "the crash is gone", "crash"
    if not after.get("finite", True):
        return "refuted", "the values still become NaN/Inf" if not before.get("finite", True) else "the values become NaN/Inf with this fix", "finite"
    if _below_zero(before) and _below_zero(after):
        # A loss that started positive and goes negative has no minimum: finite or not, it is not healed.
        return "refuted", f"the loss still goes below zero ({after['loss_min']:.4g})", "loss_min"
    if not before.get("finite", True):
        if after.get("loss_vs_chance", 0.0) >= AT_CHANCE_RATIO and (after.get("loss_drop") or 0.0) < STALL_IMPROVEMENT:
            # Finite, but the loss sits at the loss of guessing: the fix hid the NaN, training still fails.
            return "refuted", "the values stay finite, but training stays at chance", "loss_vs_chance"
        return "verified", "the values stay finite", "finite"
    wb, wa = before.get("weight_growth"), after.get("weight_growth")
    if wb is not None and wa is not None and wb >= 100 and wa < min(10.0, wb / 100):
        return "verified", f"the weights stay bounded (x{wa:.3g} instead of x{wb:.3g})", "weight_growth"
    gain, key = _gain(before, after, loss_changed, generalization)
    what = MEASURE_NAMES.get(key, key.replace("_", " "))
    if gain is not None and gain < -0.02:
        return "refuted", f"{what} gets worse", key
    accuracy_like = key in ("accuracy", "val_accuracy", "hit_rate")
    if gain is not None and accuracy_like and gain >= 0.02 and key in before:
        # Near the top a fixed gain is out of reach: a third fewer errors is as clear.
        err_before = 1.0 - before[key]
        if err_before > 0 and gain / err_before >= 0.3:
            return "verified", f"{what} clearly better ({gain / err_before:.0%} fewer errors)" + (" (the symptom is still measured)" if symptom_remains else ""), key
    if gain is not None and gain >= (ACCURACY_GAIN if accuracy_like else LOSS_DROP_GAIN):
        return "verified", f"{what} clearly better" + (" (the symptom is still measured)" if symptom_remains else ""), key
    if not symptom_remains and gain is not None and gain >= 0.03:
        return "verified", f"the symptom is gone and {what} is better", key
    return "refuted", "no clear improvement" + ("; the symptom remains" if symptom_remains else ""), key


def _same_place(a: Fix, b: Fix) -> bool:
    return [e.range for e in a.edits] == [e.range for e in b.edits]


def _below_zero(measures: dict[str, Any]) -> bool:
    start, low = measures.get("loss_start"), measures.get("loss_min")
    return isinstance(start, float) and isinstance(low, float) and start > 0 and low < -0.01 * start


def _gain(before: dict[str, Any], after: dict[str, Any], loss_changed: bool, generalization: bool = False) -> tuple[float | None, str]:
    """How much better the fixed run trains, on the most comparable measure both have (and its key).
    Keras' accuracy changes meaning with the loss (binary vs categorical): when the fix
    changes the loss only the probe's hit rate compares."""
    if loss_changed:
        keys: tuple[str, ...] = ("hit_rate",)
    elif generalization:
        keys = ("val_accuracy", "hit_rate", "accuracy")
    else:
        keys = ("hit_rate", "accuracy", "val_accuracy")
    for key in keys:
        if key in before and key in after:
            return after[key] - before[key], key
    if loss_changed:  # a different loss: only its ratio to the loss at chance compares
        if "loss_vs_chance" in before and "loss_vs_chance" in after:
            return before["loss_vs_chance"] - after["loss_vs_chance"], "loss_vs_chance"
        return None, "loss"
    if "loss_drop" in before and "loss_drop" in after:
        return after["loss_drop"] - before["loss_drop"], "loss_drop"
    return None, "loss"


# ------------------------------------------------------------------ experiments
@dataclass
class Experiment:
    """One counterfactual run's context: the original script and its run."""

    script: Script
    run: RunResult
    options: RunOptions
    runs: Runs
    trained: dict[tuple[str, int, int], RunResult] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.script.path

    @property
    def text(self) -> str:
        return self.script.text

    async def train(self, text: str, fit_index: int, epochs: int, deadline: float, more: bool = False) -> RunResult | None:
        """`text` trained for `epochs` epochs of fit `fit_index`, within the deadline. The
        same text is trained once (two findings with the same fix, the control run).
        `more`: another run surely follows, so the next worker is prepared meanwhile."""
        key = (text, fit_index, epochs)
        if key in self.trained:
            return self.trained[key]
        remaining = deadline - time.monotonic()
        if remaining < 3:
            return None
        opts = replace(self.options, max_epochs=epochs, max_fits=fit_index + 1, max_seconds=min(self.options.max_seconds, remaining))
        run = await self.runs.run(self.script.edited(text), opts, should_stop=_stop_on_nonfinite(), keep_warm=more)
        if run.status not in ("timeout", "memory", "failed", "cancelled"):
            self.trained[key] = run
        return run

    async def control(self, fit_index: int, epochs: int, deadline: float) -> Trace | None:
        """The unchanged script trained as long as the fixed ones: the original run stopped
        at a certain configuration error after one epoch, too early to judge a fix against."""
        run = await self.train(self.text, fit_index, epochs, deadline, more=True)
        if run is None or run.status in ("timeout", "memory", "failed"):
            return None
        return _fit_trace(run.traces or [run.trace], fit_index)


def _stop_on_nonfinite() -> StopWhenDecisive:
    """A counterfactual run stops at its first NaN (the verdict is then certain), nothing else."""
    return StopWhenDecisive(silent_failures=False, static_errors=False)


def _cut_short(trace: Trace) -> bool:
    """The analysis trained fewer epochs than the fit asks for (its cap or an early stop)."""
    fit = trace.fit
    return fit is not None and len(trace.epochs) < fit.epochs_requested


def _fit_trace(traces: list[Trace], index: int) -> Trace | None:
    for t in traces:
        if t.fit_index == index and (t.fit is not None or t.crash is not None):
            return t
    return traces[-1] if traces and index >= len(traces) - 1 and traces[-1].crash is not None else None


def _loss_name(trace: Trace | None) -> str | None:
    return str(trace.compile.loss.get("name")) if trace is not None and trace.compile is not None else None


async def try_fixes(exp: Experiment, lf: LocatedFinding, fixes: list[Fix], deadline: float) -> Verification:
    """Train with `fixes` applied together and judge the finding's symptom."""
    started = time.monotonic()
    f = lf.finding
    traces = exp.run.traces or [exp.run.trace]
    before_trace = _fit_trace(traces, lf.fit_index) or exp.run.trace
    if any(e.range.file != exp.path for fix in fixes for e in fix.edits):
        return Verification("inconclusive", {}, {}, 0, 0, 0.0, "the fix edits another file")
    text = exp.text
    for fix in fixes:
        text = apply_fix(text, fix)
    shown = len(before_trace.epochs)
    fit_epochs = before_trace.fit.epochs if before_trace.fit else shown
    stopped_at_config_error = (exp.run.status == "decisive" and before_trace.crash is None and first_nonfinite(before_trace) is None
                               and before_trace.fit_index == (exp.run.traces or [exp.run.trace])[-1].fit_index)
    if stopped_at_config_error and shown < MIN_JUDGED_EPOCHS and fit_epochs > shown:
        per_epoch = max(1, len(before_trace.steps) // max(1, shown))
        epochs = min(fit_epochs, max(MIN_JUDGED_EPOCHS, math.ceil(MIN_JUDGED_STEPS / per_epoch)))
        control = await exp.control(lf.fit_index, epochs, deadline)
        if control is None:
            return Verification("inconclusive", {}, {}, 0, 0, time.monotonic() - started, "verification budget used up")
        before_trace, shown = control, len(control.epochs)
    else:
        epochs = rerun_epochs(before_trace, exp.options.max_epochs)
    layer = (f.observed or {}).get("layer")
    before = outcome(before_trace, f.symptom, layer)
    try:
        after_run = await exp.train(text, lf.fit_index, epochs, deadline)
    except OSError as exc:
        return Verification("inconclusive", before, {}, 0, 0, time.monotonic() - started, f"could not start a run: {exc}")
    if after_run is None:
        return Verification("inconclusive", before, {}, 0, 0, time.monotonic() - started, "verification budget used up")
    seconds = time.monotonic() - started
    after_traces = after_run.traces or [after_run.trace]
    after_trace = _fit_trace(after_traces, lf.fit_index)
    if after_run.status in ("timeout", "memory", "failed") or after_trace is None:
        why = {"timeout": "verification budget used up", "memory": "memory budget exceeded", "failed": "the run died"}.get(after_run.status, "the fit was not reached")
        return Verification("inconclusive", before, {}, 0, 0, seconds, why)
    # Equal length: the fixed run is judged at the epochs the original showed, the margin only when the original stopped inside an epoch.
    compared = judged_as_is(truncated(after_trace, shown) if shown and len(after_trace.epochs) > shown and first_nonfinite(before_trace) is None
                            and before_trace.crash is None else after_trace)
    after = outcome(compared, f.symptom, _same_layer(before_trace, compared, layer))
    after_findings = diagnose(compared) if compared.crash is None else None
    remains = any(g.code == f.code and is_serious(g.severity) for g in after_findings) if after_findings is not None else True
    verdict, reason, measure = judge(before, after, remains, _loss_name(before_trace) != _loss_name(after_trace), has_trait(f.code, "generalization"))
    if verdict == "refuted" and not remains and not after.get("crashed") and before_trace.crash is None and first_nonfinite(before_trace) is None:
        # The symptom is gone but the runs are alike this early (an early stop judged them at its epoch):
        # both trained as long as the fit asks, the original as the control, say which trains better.
        longer = await _over_the_fit(exp, lf, text, before_trace, len(compared.epochs), layer, deadline)
        if longer is not None and longer[0] == "verified":
            verdict, reason, measure, before, after, compared, after_findings = longer
    if (verdict == "refuted" and measure not in CERTAIN_REFUTATIONS and not after.get("crashed") and len(compared.steps) < MIN_JUDGED_STEPS
            and _cut_short(before_trace)):
        verdict, reason = "inconclusive", f"only {len(compared.steps)} training steps fit in the analysis' epoch cap: too few to judge this fix"
    return Verification(verdict, before, after, len(compared.steps), len(compared.epochs), time.monotonic() - started, reason,
                        [g.code for g in after_findings] if after_findings is not None else None, measure)


async def _over_the_fit(exp: Experiment, lf: LocatedFinding, text: str, before_trace: Trace, judged: int, layer: int | None,
                        deadline: float) -> tuple[str, str, str, dict, dict, Trace, list] | None:
    """The fixed script and the original (control) trained for every epoch the fit asks for (up to
    the analysis' cap), judged at the end; None when that is no longer than what was judged or
    does not fit in the budget."""
    f = lf.finding
    full = before_trace.fit.epochs if before_trace.fit else judged
    if exp.options.max_epochs:
        full = min(full, exp.options.max_epochs)
    if full <= judged:
        return None
    control = await exp.control(lf.fit_index, full, deadline)
    fixed_run = await exp.train(text, lf.fit_index, full, deadline) if control is not None else None
    fixed = _fit_trace(fixed_run.traces or [fixed_run.trace], lf.fit_index) if fixed_run is not None else None
    if control is None or fixed is None or fixed_run.status in ("timeout", "memory", "failed") or fixed.crash is not None:
        return None
    before, after = outcome(control, f.symptom, layer), outcome(fixed, f.symptom, _same_layer(control, fixed, layer))
    found = diagnose(judged_as_is(fixed))
    remains = any(g.code == f.code and is_serious(g.severity) for g in found)
    verdict, reason, measure = judge(before, after, remains, _loss_name(control) != _loss_name(fixed), has_trait(f.code, "generalization"))
    return verdict, f"{reason} over the fit's {len(fixed.epochs)} epochs", measure, before, after, fixed, found


async def verify_findings(
    exp: Experiment,
    findings: list[LocatedFinding],
    budget_s: float,
    on_update: UpdateCallback | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> VerifySummary:
    """Try each serious finding's fixes in rank order until one is verified; then,
    if two findings co-exist and no single fix helped, their first fixes together."""
    summary = VerifySummary()
    start = time.monotonic()
    deadline = start + budget_s
    todo = [lf for lf in findings if testable(lf)]
    unresolved: list[LocatedFinding] = []
    for n, lf in enumerate(todo, 1):
        tried: list[Fix] = []
        preferred: Fix | None = None
        candidates = [x for x in lf.fixes if x.edits][:MAX_TRIES_PER_FINDING]
        for fix in candidates:
            if on_progress:
                on_progress(f"verifying {lf.finding.code} ({n}/{len(todo)}): {fix.title}")
            fix.verification = await try_fixes(exp, lf, [fix], deadline)
            tried.append(fix)
            summary.tried += 1
            if fix.verification.verdict == "verified":
                # Another cause's fix may heal it too, and better: the experiment decides which is the cause.
                rival = _rival(lf, fix, candidates, tried)
                if rival is not None:
                    if on_progress:
                        on_progress(f"verifying {lf.finding.code} ({n}/{len(todo)}): {rival.title}, against {fix.title}")
                    rival.verification = await try_fixes(exp, lf, [rival], deadline)
                    tried.append(rival)
                    summary.tried += 1
                    if rival.verification.verdict == "verified" and heals_better(rival.verification, fix.verification):
                        preferred = rival
                break
            if fix.verification.reason == "verification budget used up":
                break
            exp.runs.prewarm_soon(exp.options)  # the next candidate's run
        _conclude(lf, tried, summary, preferred=preferred)
        if lf.confirmation != "verified":
            unresolved.append(lf)
        await _notify(on_update, lf)
    partner = unresolved[1] if len(unresolved) >= 2 else _partner(unresolved[0], findings) if unresolved else None
    if unresolved and partner is not None:
        first, second = unresolved[0], partner
        pair = [first.fixes[0], second.fixes[0]]
        if not _overlap(pair) and pair[0].edits and pair[1].edits:
            if on_progress:
                on_progress(f"verifying {first.finding.code} and {second.finding.code} together")
            v = await try_fixes(exp, first, pair, deadline)
            summary.tried += 1
            if v.verdict == "verified":
                for lf, fix in ((first, pair[0]), (second, pair[1])):
                    fix.verification = replace(v, reason=f"{v.reason}, with the fix of {(second if lf is first else first).finding.code} applied too")
                    _conclude(lf, [fix], summary, undo_demotion=True)
                    await _notify(on_update, lf)
    for lf, fix in _healed_alongside(findings):
        # The verified finding carries the fault; this one is its symptom: information.
        f = lf.finding
        if lf.confirmation == "unconfirmed":
            summary.refuted -= 1
            summary.demoted -= lf.demoted
            lf.demoted = False
        f.severity = "information" if f.severity == "warning" else f.severity
        _conclude(lf, [fix], summary)
        await _notify(on_update, lf)
    for lf in keep_real_failures(exp.run.traces or [exp.run.trace], findings, summary):
        await _notify(on_update, lf)
    summary.seconds = time.monotonic() - start
    return summary


def keep_real_failures(traces: list[Trace], findings: list[LocatedFinding], summary: VerifySummary) -> list[LocatedFinding]:
    """A fit that plainly failed (a whole fit ending at the accuracy and loss of guessing) keeps one
    warning when no fix tried healed it: the symptom is real though its cause is not established.
    Only a symptom that is not real may be demoted. One per fit: the failure itself (not-learning)
    if it was said, else the first refuted warning. Returns the findings changed."""
    kept = []
    for fit in sorted({lf.fit_index for lf in findings if lf.demoted}):
        same_fit = [lf for lf in findings if lf.fit_index == fit]
        if any(lf.confirmation == "verified" or is_serious(lf.finding.severity) for lf in same_fit):
            continue  # healed, or a warning or error stands already
        trace = _fit_trace(traces, fit)
        p = measure(trace) if trace is not None else None
        if p is None or not p.fails:
            continue
        demoted = [lf for lf in same_fit if lf.demoted]
        keep = next((lf for lf in demoted if lf.finding.code == "not-learning"), demoted[0])
        tried = list(dict.fromkeys(fix.title for lf in demoted for fix in lf.fixes
                                   if fix.verification is not None and fix.verification.verdict == "refuted"))
        keep.finding.severity = "warning"
        keep.demoted = False
        summary.demoted -= 1
        keep.failure = Failure(p.final_loss, tried, p.chance_ratio, p.accuracy, p.chance_accuracy)
        kept.append(keep)
    return kept


def _healed_alongside(findings: list[LocatedFinding]) -> list[tuple[LocatedFinding, Fix]]:
    """Findings of the same fit that a verified fix healed as well (a flat loss or a stalled
    update that came from a wrong loss): their symptom is gone from the verified run, so that
    fix is theirs too, and their own guesses (a step-size change) are withdrawn with it."""
    out = []
    for lf in findings:
        if lf.confirmation == "verified" or _untestable(lf.finding.code) or not lf.fixes:
            continue
        for other in findings:
            v = other.fixes[0].verification if other.confirmation == "verified" and other.fixes else None
            if other is lf or v is None or v.remaining is None or other.fit_index != lf.fit_index or lf.finding.code in v.remaining:
                continue
            out.append((lf, replace(other.fixes[0], verification=replace(v, reason=f"{v.reason}; it healed {other.finding.code}, which explains this"))))
            break
    return out


async def _notify(on_update: UpdateCallback | None, lf: LocatedFinding) -> None:
    if on_update is not None:
        res = on_update(lf)
        if asyncio.iscoroutine(res):
            await res


def _partner(lf: LocatedFinding, findings: list[LocatedFinding]) -> LocatedFinding | None:
    """A lone unhealed fault may need a second change that a weaker observation suggests
    (a regression loss on XOR *and* a step too small): the first such observation with
    another cause, whose fix is tried together with the fault's."""
    for other in findings:
        f = other.finding
        if (other is not lf and f.severity == "information" and other.confirmation is None and not _untestable(f.code)
                and f.root_cause and f.root_cause != lf.finding.root_cause and other.fixes and other.fixes[0].edits):
            return other
    return None


def _overlap(fixes: list[Fix]) -> bool:
    spans = sorted((e.range.start.line, e.range.start.column, e.range.end.line, e.range.end.column) for fix in fixes for e in fix.edits)
    return any((a[2], a[3]) > (b[0], b[1]) for a, b in zip(spans, spans[1:]))


def _rival(lf: LocatedFinding, verified: Fix, candidates: list[Fix], tried: list[Fix]) -> Fix | None:
    """The next untried candidate of another cause than the verified fix's, if any."""
    cause = verified.root_cause or lf.finding.root_cause
    return next((c for c in candidates if c not in tried and (c.root_cause or lf.finding.root_cause) != cause), None)


# Which measure says that one fixed run trains better than another (higher is better; loss_vs_chance lower).
_HEALING = (("hit_rate", 1), ("val_accuracy", 1), ("accuracy", 1), ("loss_vs_chance", -1), ("loss_drop", 1))
HEALS_BETTER_MARGIN = 0.02


def heals_better(a: Verification, b: Verification) -> bool:
    """Whether fix a's run trains clearly better than fix b's, on the first measure both have."""
    for key, sign in _HEALING:
        x, y = a.after.get(key), b.after.get(key)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            return sign * (x - y) > HEALS_BETTER_MARGIN
    return False


def _conclude(lf: LocatedFinding, tried: list[Fix], summary: VerifySummary, undo_demotion: bool = False,
              preferred: Fix | None = None) -> None:
    """Move the finding to the verified cause (`preferred` when several healed: the one that healed
    more), or mark it unconfirmed/inconclusive."""
    f = lf.finding
    verdicts = [fix.verification.verdict for fix in tried if fix.verification]
    winner = preferred or next((fix for fix in tried if fix.verification and fix.verification.verdict == "verified"), None)
    if winner is not None:
        assert winner.verification is not None
        summary.verified += 1
        if tried and tried[0] is not winner:
            summary.corrected += 1
        if undo_demotion and lf.confirmation == "unconfirmed":  # refuted alone, verified together
            summary.refuted -= 1
            if lf.demoted:
                f.severity = "warning"
                lf.demoted = False
                summary.demoted -= 1
        lf.confirmation = "verified"
        if winner.root_cause and winner.root_cause != f.root_cause:
            f.root_cause = winner.root_cause
            if winner.anchor is not None:
                lf.range = winner.anchor
        # The experiment settled the cause: untried fixes for other candidate causes are
        # withdrawn (an untried step-size change can make a run that the verified fix heals
        # worse); tried ones stay as evidence (a refuted fix is shown, never offered).
        # Of the same cause, an untried other value for the very place the winner edits (a second rate) is
        # withdrawn too: the verified value supersedes it; another way to make the same change stays offered.
        lf.fixes = [winner, *(fix for fix in lf.fixes if fix is not winner and (fix.verification or (
            fix.root_cause == winner.root_cause and not _same_place(fix, winner))))]
        return
    if verdicts and all(v == "refuted" for v in verdicts):
        summary.refuted += 1
        lf.confirmation = "unconfirmed"
        if f.severity == "warning":
            f.severity = "information"
            lf.demoted = True
            summary.demoted += 1
        return
    if verdicts:
        summary.inconclusive += 1
        lf.confirmation = "inconclusive"

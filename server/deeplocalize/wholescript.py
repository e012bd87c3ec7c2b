"""Does a fix leave the whole script right?

Verification (verify.py) asks whether a fix heals the symptom within the fit. This
asks the broader question a user relies on when they accept a quick fix: with the
fix applied, does the script still run to its last line — `evaluate`, `predict`,
its prints — and are the numbers it reports (final training and validation logs,
its own `evaluate` results) not worse than before? A fix that fails this is a
bug in the product (a scaler applied to the training data only, a guard that
turns NaN into a meaningless loss).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from .detectors import measure
from .edits import apply_fix
from .findings import Fix
from .report import FileReport
from .runner import RunOptions, Runs
from .script import Script, describe
from .trace import ScriptResult

HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "hit")
# Error metrics in target units, by the power of the target scale they carry.
ERROR_POWER = {"mse": 2, "mean_squared_error": 2, "mae": 1, "mean_absolute_error": 1, "rmse": 1, "root_mean_squared_error": 1,
               "huber": 1, "log_cosh": 1, "logcosh": 1}
ACCURACY_SLACK = 0.03  # run-to-run noise of a test split (at least one sample's worth)
LOSS_SLACK = 0.10  # relative


@dataclass
class ScriptRun:
    status: str  # completed | crashed | timeout | memory | failed | cancelled
    message: str
    fits: list[ScriptResult] = field(default_factory=list)  # each fit's last-epoch logs
    evaluations: list[ScriptResult] = field(default_factory=list)  # each of its own evaluate calls' results
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"status": self.status, "message": self.message, "fits": [f.to_json() for f in self.fits],
                "evaluations": [e.to_json() for e in self.evaluations], "seconds": round(self.seconds, 2)}


@dataclass
class FixCheck:
    finding: str
    fix: str
    before: ScriptRun
    after: ScriptRun
    problems: list[str]


async def run_to_end(script: Script, options: RunOptions, runs: Runs) -> ScriptRun:
    result = await runs.run(script, options, keep_warm=True, record=True)
    status = {"finished": "completed"}.get(result.status, result.status)
    crash = result.trace.crash
    message = f"{crash.exc_type}: {crash.message}" if crash is not None else result.message
    if status == "completed" and result.trace.end_reason == "sys_exit":
        message = "the script called sys.exit"
    return ScriptRun(status, message, result.script_fits, result.script_evaluations, result.duration_s)


def _kind(key: str) -> int:
    """+1 higher is better, -1 lower is better, 0 unknown."""
    k = key.lower().removeprefix("val_")
    if any(h in k for h in HIGHER_IS_BETTER):
        return 1
    if "loss" in k or "error" in k or k in ERROR_POWER or "crossentropy" in k:
        return -1
    return 0


def _power(key: str, loss: str) -> int | None:
    k = key.lower().removeprefix("val_")
    if k == "loss":
        return ERROR_POWER.get((loss or "").lower())
    return ERROR_POWER.get(k)


def _same_loss(a: str, b: str) -> bool:
    """Losses whose values can be compared: the same function, or the two forms of
    categorical cross-entropy (one-hot vs indices give the same numbers)."""
    a, b = (a or "").lower(), (b or "").lower()
    cat = lambda s: "categorical_crossentropy" in s  # noqa: E731
    return a == b or (cat(a) and cat(b))


def compare(before: ScriptResult, after: ScriptResult, key: str, value_b: float | None, value_a: float | None) -> str | None:
    """Why `after` is worse on this metric, or None."""
    kind = _kind(key)
    if kind == 0 or value_b is None or value_a is None:
        return None
    power = _power(key, before.loss)
    if key.lower().removeprefix("val_") == "loss" and not _same_loss(before.loss, after.loss):
        return None  # another loss function: not comparable
    if kind < 0 and value_a < -1e-6 and "crossentropy" in after.loss.lower() and key.lower().endswith("loss"):
        return f"{key} is negative ({value_a:.4g}): the labels are still outside the range the loss expects"
    if math.isnan(value_b) or (kind < 0 and value_b < 0):
        return None  # NaN, or a negative loss/error: the "before" number was already meaningless
    if math.isnan(value_a):
        return f"{key} became NaN (was {value_b:.4g})"
    scale_b, scale_a = before.target_scale, after.target_scale
    if power and scale_b and scale_a:
        # In units of the targets' spread: a fix that standardizes the targets is judged fairly.
        value_b, value_a = value_b / scale_b**power, value_a / scale_a**power
    elif power and scale_b != scale_a:
        return None
    # An accuracy on n samples moves in steps of 1/n: one sample's flip is not a regression.
    samples = min(before.samples or 10**9, after.samples or 10**9)
    if kind > 0 and value_a < value_b - max(ACCURACY_SLACK, 1.0 / samples + 1e-3):
        return f"{key} {value_b:.4g} -> {value_a:.4g}"
    if kind < 0 and value_a > value_b * (1 + LOSS_SLACK) + 1e-6:
        return f"{key} {value_b:.4g} -> {value_a:.4g}" + (" (relative to the targets' spread)" if power and scale_b else "")
    return None


def regressions(before: ScriptRun, after: ScriptRun, chance_accuracy: float | None = None) -> list[str]:
    """What the fix made worse in the script's own results; empty when nothing did. A classifier
    whose accuracy was no better than always answering the most frequent class (`chance_accuracy`)
    before the fix had no result the fix can lose (a model that guesses one class, then the other,
    moves between the two classes' shares; its loss may not even mean anything, with labels
    outside the loss' range): only a fix that breaks it (NaN, a negative loss) is reported."""
    if after.status != "completed":
        return [f"the script no longer completes ({after.status}: {after.message})" if before.status == "completed"
                else f"the script still does not complete ({after.status}: {after.message})"]
    problems: list[str] = []
    if before.status != "completed":
        return problems  # it crashed before: completing is the improvement
    if len(after.evaluations) != len(before.evaluations):
        problems.append(f"evaluate ran {len(after.evaluations)} times instead of {len(before.evaluations)}")
    pairs: list[tuple[str, ScriptResult, ScriptResult]] = []
    if before.fits and after.fits:
        pairs.append(("training", before.fits[-1], after.fits[-1]))
    pairs += [(f"evaluate #{i + 1}", b, a) for i, (b, a) in enumerate(zip(before.evaluations, after.evaluations))]
    for where, b, a in pairs:
        vals_b, vals_a = b.values, a.values
        shared = [k for k in vals_b if k in vals_a]
        # Accuracy is what a classifier's user reads; a cross-entropy can rise while it
        # improves (an epoch-averaged loss with a rough first epoch). Losses judge the rest.
        guessed = chance_accuracy is not None and any(
            _kind(k) > 0 and "acc" in k.lower() and isinstance(vals_b[k], float) and vals_b[k] <= chance_accuracy + ACCURACY_SLACK for k in shared)
        scored = [] if guessed else [k for k in shared if _kind(k) > 0] or [k for k in shared if _kind(k) < 0]
        for key in shared:
            va = vals_a[key]
            broken = isinstance(va, float) and (math.isnan(va) or va < 0)  # NaN, or a negative loss: judged anyway
            if key not in scored and not broken:
                continue
            why = compare(b, a, key, vals_b[key], va)
            if why:
                problems.append(f"{where}: {why}")
    return problems


def offered_fixes(report: FileReport) -> list[tuple[str, Fix]]:
    """Every fix the user is offered (not those re-training refuted), once per distinct patched text."""
    seen: set[str] = set()
    out = []
    for lf in report.findings:
        for fix in lf.fixes:
            if any(e.range.file != report.path for e in fix.edits) or (fix.verification and fix.verification.verdict == "refuted"):
                continue
            text = apply_fix(report.source, fix)
            if text in seen or text == report.source:
                continue
            seen.add(text)
            out.append((lf.finding.code, fix))
    return out


async def check_fixes(report: FileReport, options: RunOptions, runs: Runs) -> list[FixCheck]:
    """Run the script as it is and with each offered fix, to the end; list what got worse."""
    fixes = offered_fixes(report)
    if not fixes:
        return []
    script = report.script or describe(report.path, report.source)
    before = await run_to_end(script, options, runs)
    progress = measure(report.trace) if report.trace is not None else None
    chance = progress.chance_accuracy if progress is not None else None
    checks = []
    for code, fix in fixes:
        after = await run_to_end(script.edited(apply_fix(report.source, fix)), options, runs)
        checks.append(FixCheck(code, fix.title, before, after, regressions(before, after, chance)))
    return checks


async def check_many(reports: list[FileReport], options: RunOptions, runs: Runs, parallel: int = 1) -> list[FixCheck]:
    sem = asyncio.Semaphore(parallel)

    async def one(report: FileReport) -> list[FixCheck]:
        async with sem:
            return await check_fixes(report, options, runs)

    results = await asyncio.gather(*(one(r) for r in reports))
    return [c for r in results for c in r]

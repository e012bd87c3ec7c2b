"""Scoring the engine against fixtures with known faults.

A buggy fixture is *detected* when some finding is a warning or error,
*localized* when such a finding's range covers an expected line, and
*diagnosed* when that same finding also names an expected root cause. A correct
fixture counts as a false positive when any warning or error is reported.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .report import FileReport
from .runner import RunOptions
from .session import EngineSession
from .vocab import is_serious



@dataclass
class Expectation:
    path: Path
    buggy: bool
    root_causes: list[str]
    lines: list[int]
    mistake_class: str = ""
    # Why the tool misses this one today (a limit written down, so that any other miss fails the tests).
    known_miss: str = ""


@dataclass
class Score:
    expectation: Expectation
    report: FileReport
    detected: bool
    localized: bool
    diagnosed: bool
    first_s: float = 0.0  # time to the first diagnosis (before any verification)
    wall_s: float = 0.0  # the whole check as the caller waited for it (0 when the report was reused)

    @property
    def false_positive(self) -> bool:
        return not self.expectation.buggy and self.detected


@dataclass
class Summary:
    scores: list[Score] = field(default_factory=list)

    def rate(self, attr: str) -> tuple[int, int]:
        buggy = [s for s in self.scores if s.expectation.buggy]
        return sum(getattr(s, attr) for s in buggy), len(buggy)

    @property
    def false_positives(self) -> tuple[int, int]:
        correct = [s for s in self.scores if not s.expectation.buggy]
        return sum(s.false_positive for s in correct), len(correct)


def load_expectations(fixtures_dir: Path) -> list[Expectation]:
    data = json.loads((fixtures_dir / "expected.json").read_text())
    return [Expectation(fixtures_dir / f["path"], f["buggy"], f["root_causes"], f["lines"], f.get("mistake_class", ""), f.get("known_miss", ""))
            for f in data["fixtures"]]


def score(exp: Expectation, report: FileReport) -> Score:
    serious = [f for f in report.findings if is_serious(f.finding.severity)]
    covers = lambda f: any(f.range.start.line <= line <= f.range.end.line for line in exp.lines)  # noqa: E731
    localized = any(covers(f) for f in serious)
    diagnosed = any(covers(f) and f.finding.root_cause in exp.root_causes for f in serious)
    return Score(exp, report, bool(serious), localized, diagnosed)


async def evaluate(expectations: list[Expectation], session: EngineSession, options: RunOptions | None = None, parallel: int = 2,
                   verify_seconds: float | None = None, warm: bool = False) -> Summary:
    """Score each expectation; with `verify_seconds`, after verifying the fixes by experiment.
    `warm`: each analysis starts with a training process ready (TensorFlow imported, as in
    the editor), so timings exclude that import."""
    sem = asyncio.Semaphore(parallel)

    async def one(exp: Expectation) -> Score:
        async with sem:
            if warm:
                await session.ready(options)  # the editor's steady state: a worker with TensorFlow imported
            started = time.monotonic()
            report = await session.check(str(exp.path), options, verify_seconds=verify_seconds)
            result = score(exp, report)
            # The first diagnosis' time, before any verification (a reused report keeps its own).
            result.first_s = report.duration_s - (report.verification.seconds if report.verification else 0.0)
            result.wall_s = time.monotonic() - started
            return result

    tasks = [asyncio.ensure_future(one(e)) for e in expectations]
    try:
        return Summary(list(await asyncio.gather(*tasks)))
    finally:
        # One failed (the interpreter cannot run the probe): the others stop now, before the
        # caller closes the session under their runs.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def verified_fixes_heal(summary: Summary, session: EngineSession, options: RunOptions | None = None, parallel: int = 2) -> tuple[int, list[str]]:
    """Apply each verified preferred fix to its script, train the fixed text as an analysis
    would (no verification) and list the faults it did not heal: the same code still at
    warning/error, or a crash. Returns (fixes checked, failures)."""
    from .edits import apply_fix
    from .script import describe

    sem = asyncio.Semaphore(parallel)
    jobs = []
    for s in summary.scores:
        for lf in s.report.findings:
            fix = lf.preferred
            if lf.confirmation == "verified" and fix is not None and fix.verification and fix.verification.verdict == "verified":
                jobs.append((s, lf, apply_fix(s.expectation.path.read_text(), fix)))

    async def one(s: Score, lf, fixed: str) -> str | None:
        async with sem:
            report = await session.check(describe(str(s.expectation.path), fixed), options, verify_seconds=None)
        # The symptom the fix was verified on must be gone; a milder one of the same cause may follow
        # (a diverging rate lowered to the optimizer's usual one can then learn slowly within the cap).
        left = [f for f in report.findings if is_serious(f.finding.severity) and f.finding.code == lf.finding.code]
        if left or report.status == "crashed":
            return f"{s.expectation.path.name}: {lf.finding.code} fixed by '{lf.preferred.title}' still shows " + "; ".join(
                f"{f.finding.severity} {f.finding.code}[{f.finding.root_cause}]" for f in left) + f" ({report.status})"
        return None

    results = await asyncio.gather(*(one(*job) for job in jobs))
    return len(jobs), [r for r in results if r]

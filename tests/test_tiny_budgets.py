"""The analysis' own budget is never blamed on the script: every healthy real program, cut
short by a tiny time budget or a two-epoch cap, gets no warning or error (what the budget cut
is information at most). Real TensorFlow training (slow)."""

from __future__ import annotations

import asyncio

import pytest

from conftest import FIXTURES
from deeplocalize.evaluation import load_expectations
from deeplocalize.runner import RunOptions
from deeplocalize.vocab import is_serious

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800), pytest.mark.xdist_group("tiny-budgets")]
HEALTHY = [e for e in load_expectations(FIXTURES / "real") if not e.buggy]
TINY = {"max-seconds 10": RunOptions(max_seconds=10), "max-epochs 2": RunOptions(max_epochs=2)}


@pytest.mark.parametrize("budget", list(TINY))
def test_no_healthy_real_program_is_blamed_for_a_tiny_budget(budget, session):
    async def first_diagnoses():
        return [await session.analyze(str(e.path), TINY[budget]) for e in HEALTHY]

    blamed = []
    for e, report in zip(HEALTHY, asyncio.run(first_diagnoses())):
        serious = [f for f in report.findings if is_serious(f.finding.severity)]
        blamed += [f"{e.path.name} ({report.status}): {f.finding.severity} {f.finding.code} line {f.range.start.line}: {f.finding.message}"
                   for f in serious]
    assert len(HEALTHY) >= 15
    assert not blamed, "\n".join(blamed)

"""Proof by experiment on real training (slow): a fix is re-trained before it is trusted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conftest import ROOT, running_jobs
from deeplocalize.runner import RunOptions
from deeplocalize.session import EngineSession

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent / "data"


def run(session: EngineSession, path: Path, budget: float = 60.0):
    async def go():
        report = await session.analyze(str(path), RunOptions(), warm_next=True)
        first = [(f.finding.code, f.finding.severity, f.finding.root_cause, f.range.start.line) for f in report.findings]
        await session.verify(report, budget, RunOptions())
        return first, report

    return asyncio.run(go())


def test_a_refuted_first_guess_is_corrected_by_a_later_candidate(tmp_path, session):
    script = tmp_path / "nan_two_suspects.py"
    script.write_text((DATA / "nan_two_suspects.py").read_text())
    before = script.read_text()
    first, report = run(session, script)
    # The rules blame the tiny initializer first; re-training refutes that and verifies the step size.
    assert [c[2] for c in first if c[1] == "error"] == ["initialization"], first
    f = next(f for f in report.findings if f.finding.code in ("nan-inf", "exploding-gradients"))
    assert f.confirmation == "verified" and f.finding.root_cause == "learning_rate"
    assert f.range.start.line == 16 and f.fixes[0].root_cause == "learning_rate"
    tried = [x for x in f.fixes if x.verification]
    assert tried[0].verification.verdict == "verified" and any(x.verification.verdict == "refuted" and x.root_cause == "initialization" for x in tried)
    assert "cause: learning rate" in f.message and "Verified by re-training" in f.message
    assert report.verification.corrected == 1
    assert script.read_text() == before and not running_jobs(session)


def test_a_warning_that_no_fix_heals_is_demoted_to_information(session):
    first, report = run(session, DATA / "dead_branch_skip.py")
    assert ("dead-relu", "warning") in [(c[0], c[1]) for c in first]
    f = next(f for f in report.findings if f.finding.code == "dead-relu")
    assert f.finding.severity == "information" and f.confirmation == "unconfirmed"
    assert f.message.startswith("Unconfirmed: ")
    assert all(x.verification.verdict == "refuted" for x in f.fixes if x.verification)
    assert report.verification.demoted == 1 and not running_jobs(session)


def test_a_too_small_budget_leaves_the_diagnosis_as_it_was(session):
    first, report = run(session, ROOT / "fixtures/buggy/b16_unscaled_wine.py", budget=2.0)
    assert [(f.finding.code, f.finding.severity, f.finding.root_cause, f.range.start.line) for f in report.findings] == first
    assert all(f.confirmation in (None, "inconclusive") for f in report.findings)

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


def test_a_real_failure_that_no_fix_heals_stays_a_warning_without_a_cause(session):
    """Issue 21, class 2: labels drawn apart from the inputs hold the model at the majority class.
    No fix tried heals it, yet training plainly failed: the warning stays, says so and what was
    tried, and names no cause as settled."""
    first, report = run(session, DATA / "labels_by_chance.py")
    assert ("not-learning", "warning") in [(c[0], c[1]) for c in first]
    f = next(f for f in report.findings if f.finding.code == "not-learning")
    assert f.finding.severity == "warning" and f.confirmation == "unconfirmed" and not f.demoted
    assert "the cause is not established; tried: " in f.message and "likely cause" not in f.message
    assert f.cause_label.startswith("cause not established")
    assert report.verification.demoted == 0 and report.verification.refuted >= 1 and not running_jobs(session)


def test_of_two_causes_whose_fixes_both_heal_the_one_that_heals_more_is_named_and_both_are_offered(session):
    """Issue 21, class 4, on a real run: raw measurements trained with SGD at 0.5. Scaling the inputs
    and a smaller step both heal; scaling trains better, so it names the cause; the step stays offered."""
    _, report = run(session, ROOT / "fixtures/buggy/b36_raw_features_sgd_two_fixes.py")
    f = next(f for f in report.findings if f.confirmation == "verified")
    assert f.finding.root_cause == "data_normalization" and f.range.start.line == 9
    verified = [x for x in f.fixes if x.verification and x.verification.verdict == "verified"]
    assert [x.root_cause for x in verified] == ["data_normalization", "learning_rate"] and f.preferred is verified[0]
    assert "Also heals it, less: Lower the learning rate" in f.message


def test_a_too_small_budget_leaves_the_diagnosis_as_it_was(session):
    first, report = run(session, ROOT / "fixtures/buggy/b16_unscaled_wine.py", budget=2.0)
    assert [(f.finding.code, f.finding.severity, f.finding.root_cause, f.range.start.line) for f in report.findings] == first
    assert all(f.confirmation in (None, "inconclusive") for f in report.findings)


def test_of_two_fixes_that_heal_the_one_that_heals_more_is_preferred_and_both_are_offered():
    """Class 4 of issue 21: raw features trained with SGD diverge; scaling the inputs and a smaller
    step both heal. The experiment names the cause whose fix trains better and offers both."""
    from deeplocalize.findings import Finding, Fix, LocatedFinding, Position, OptimizerArg, SourceRange, Verification
    from deeplocalize.report import VerifySummary
    from deeplocalize.verify import _conclude, heals_better

    def verified(acc: float) -> Verification:
        return Verification("verified", {"finite": False}, {"finite": True, "hit_rate": acc, "loss_drop": 0.5}, 40, 2, 1.0, "the values stay finite",
                            measure="finite")

    here = SourceRange("/tmp/t.py", Position(3, 1), Position(3, 9))
    data = SourceRange("/tmp/t.py", Position(9, 1), Position(9, 9))
    lr = Fix("Use learning rate 0.01", [], root_cause="learning_rate", anchor=here, verification=verified(0.62))
    scale = Fix("Scale the inputs", [], root_cause="data_normalization", anchor=data, verification=verified(0.93))
    assert heals_better(scale.verification, lr.verification) and not heals_better(lr.verification, scale.verification)
    assert not heals_better(verified(0.93), verified(0.92))  # within the margin: the rank order stands
    f = Finding("nan-inf", "error", "nan_inf", "learning_rate", "NaN/Inf first appeared in the loss.", OptimizerArg(arg="learning_rate"),
                names_cause=True)
    lf = LocatedFinding(f, here, [lr, scale], None)
    summary = VerifySummary()
    _conclude(lf, [lr, scale], summary, preferred=scale)
    assert lf.preferred is scale and f.root_cause == "data_normalization" and lf.range == data and summary.corrected == 1
    assert [x.title for x in lf.fixes] == ["Scale the inputs", "Use learning rate 0.01"]  # both offered, the better first
    assert "cause: data normalization" in lf.message and "Also heals it, less: Use learning rate 0.01" in lf.message

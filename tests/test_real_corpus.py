"""The engine on the corpus of real programs (fixtures/real/): public tutorials, book
notebooks and the faulty programs of the DeepFD / AUTOTRAINER benchmarks, rewritten
only for Keras 3 and offline data. Real TensorFlow training (slow)."""

from __future__ import annotations

import asyncio

import pytest

from conftest import FIXTURES
from deeplocalize.edits import apply_fix
from deeplocalize.evaluation import Summary, evaluate, load_expectations, verified_fixes_heal
from deeplocalize.runner import RunOptions
from deeplocalize.wholescript import check_many

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3000)]
REAL = FIXTURES / "real"
EXPECTATIONS = load_expectations(REAL)
# The corpus in interleaved halves (each with buggy and healthy programs), one per test worker: the
# analyses of a half, with their fixes verified, run in the fixture of its first test. One worker
# for the whole corpus would end long after the others.
SHARDS = 2


@pytest.fixture(scope="module", params=[pytest.param(i, id=f"half{i + 1}", marks=pytest.mark.xdist_group(f"real-corpus-{i + 1}"))
                                        for i in range(SHARDS)])
def summary(request, session) -> Summary:
    shard = EXPECTATIONS[request.param::SHARDS]
    # Twice the CLI's time budget: under the suite's load (three workers, two analyses each, on two cores) a
    # program's 15 s plain run can take a minute; the analysis' budget is not what this module tests.
    return asyncio.run(evaluate(shard, session, RunOptions(max_seconds=120), parallel=2, verify_seconds=60.0))


def _describe(s) -> str:
    found = "; ".join(f"{f.finding.severity} {f.finding.code}[{f.finding.root_cause}]@{f.range.start.line}" for f in s.report.findings)
    return f"{s.expectation.path.name} expects {s.expectation.root_causes}@{s.expectation.lines}: {found or 'nothing'}"


def test_corpus_is_real_and_large_enough():
    buggy = [e for e in EXPECTATIONS if e.buggy]
    healthy = [e for e in EXPECTATIONS if not e.buggy]
    assert len(buggy) >= 25 and len(healthy) >= 15
    for e in EXPECTATIONS:
        head = e.path.read_text()[:1500].lower()
        assert "origin" in head or "source" in head or "adapted from" in head, f"{e.path.name} does not name its origin"
        if e.buggy:
            assert e.lines and e.root_causes, e.path.name


def test_no_warning_or_error_on_any_healthy_real_program(summary):
    false_alarms = [_describe(s) for s in summary.scores if s.false_positive]
    assert not false_alarms, false_alarms


def test_at_least_90_percent_of_real_bugs_on_an_expected_line_with_an_expected_cause(summary):
    diagnosed, total = summary.rate("diagnosed")
    missed = [_describe(s) for s in summary.scores if s.expectation.buggy and not s.diagnosed]
    assert diagnosed / total >= 0.9, missed


def test_every_real_bug_is_detected_but_the_known_misses(summary):
    """A miss is either written down with its reason (`known_miss` in expected.json: at most 3% of the
    buggy programs, the issue's target) or a failure."""
    missed = [_describe(s) for s in summary.scores if s.expectation.buggy and not s.detected and not s.expectation.known_miss]
    assert not missed, missed
    known = [e for e in EXPECTATIONS if e.buggy and e.known_miss]
    assert len(known) <= 0.03 * len([e for e in EXPECTATIONS if e.buggy])


def test_sarif_output_of_every_real_program_validates_against_the_schema(summary):
    from sarif_schema import sarif_errors

    from deeplocalize.sarif import to_sarif

    doc = to_sarif([s.report for s in summary.scores])
    assert not sarif_errors(doc), sarif_errors(doc)[:10]
    assert len(doc["runs"][0]["results"]) == sum(len(s.report.findings) for s in summary.scores)


def test_fixes_offered_on_real_programs_are_valid_python(summary):
    for s in summary.scores:
        text = s.expectation.path.read_text()
        for lf in s.report.findings:
            for fix in lf.fixes:
                compile(apply_fix(text, fix), str(s.expectation.path), "exec")


def test_every_verified_fix_on_a_real_program_heals_it_when_applied_and_trained(summary, session):
    checked, failures = asyncio.run(verified_fixes_heal(summary, session, RunOptions(), parallel=2))
    assert checked >= 15 // SHARDS, checked
    assert not failures, failures


def test_every_fix_offered_on_a_real_program_keeps_the_whole_script_right(summary, session):
    """Each offered fix applied and run to the script's last line (its evaluate, predict and
    prints): it completes, and its own results are not worse. Every fit is capped at the same
    8 epochs before and after, to keep CI short; benchmarks/whole_script_fixes.py runs them in full."""
    reports = [s.report for s in summary.scores if s.expectation.buggy]
    checks = asyncio.run(check_many(reports, RunOptions(max_seconds=240, max_epochs=8), session, parallel=2))
    assert len(checks) >= 25 // SHARDS, len(checks)
    failing = [f"{c.finding}: {c.fix}: {c.problems}" for c in checks if c.problems]
    assert not failing, failing

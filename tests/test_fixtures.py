"""The engine on every fixture, with real TensorFlow training (slow)."""

from __future__ import annotations

import asyncio

import pytest

from conftest import FIXTURES
from deeplocalize.edits import apply_fix
from deeplocalize.engine import analyze
from deeplocalize.evaluation import Summary, evaluate, load_expectations
from deeplocalize.runner import RunOptions

pytestmark = pytest.mark.slow
EXPECTATIONS = load_expectations(FIXTURES)


@pytest.fixture(scope="module")
def summary() -> Summary:
    return asyncio.run(evaluate(EXPECTATIONS, RunOptions(), parallel=2))


def _score(summary: Summary, name: str):
    return next(s for s in summary.scores if s.expectation.path.name == name)


def test_fixture_set_covers_every_root_cause_twice():
    from deeplocalize.findings import ROOT_CAUSES

    buggy = [e for e in EXPECTATIONS if e.buggy]
    assert len(buggy) >= 25 and len([e for e in EXPECTATIONS if not e.buggy]) >= 8
    for cause in ROOT_CAUSES:
        assert sum(e.root_causes[0] == cause for e in buggy) >= 2, cause


@pytest.mark.parametrize("name", [e.path.name for e in EXPECTATIONS if e.buggy])
def test_buggy_fixture_is_detected(summary, name):
    s = _score(summary, name)
    assert s.detected, [f.finding.message for f in s.report.findings]


@pytest.mark.parametrize("name", [e.path.name for e in EXPECTATIONS if not e.buggy])
def test_correct_fixture_has_no_warning_or_error(summary, name):
    s = _score(summary, name)
    assert not s.false_positive, [f"{f.finding.code}: {f.finding.message}" for f in s.report.findings]


def test_at_least_90_percent_localized_with_the_expected_root_cause(summary):
    diagnosed, total = summary.rate("diagnosed")
    missed = [s.expectation.path.name for s in summary.scores if s.expectation.buggy and not s.diagnosed]
    assert diagnosed / total >= 0.9, missed


def test_every_json_finding_follows_the_schema(summary):
    from deeplocalize.findings import ROOT_CAUSES, SEVERITIES

    for s in summary.scores:
        doc = s.report.to_json()
        assert doc["status"] in ("ok", "crashed", "timeout", "not_keras", "syntax_error")
        for f in doc["findings"]:
            assert f["severity"] in SEVERITIES and f["root_cause"] in (*ROOT_CAUSES, None)
            r = f["range"]
            assert r["start"]["line"] >= 1 and r["start"]["column"] >= 1
            assert (r["end"]["line"], r["end"]["column"]) >= (r["start"]["line"], r["start"]["column"])
            assert f["layer"] is None or set(f["layer"]) == {"name", "index", "class"}
            for fix in f["fixes"]:
                assert fix["title"] and all({"range", "new_text"} <= set(e) for e in fix["edits"])


def test_preferred_fixes_produce_valid_python(summary):
    for s in summary.scores:
        text = s.expectation.path.read_text()
        for lf in s.report.findings:
            if lf.fixes:
                compile(apply_fix(text, lf.fixes[0]), str(s.expectation.path), "exec")


@pytest.mark.parametrize("name", ["b01_relu_output_ce.py", "b10_lr_var_adam.py", "b16_unscaled_wine.py", "b26_batch_const.py"])
def test_applying_the_preferred_fix_removes_the_fault(summary, tmp_path, name):
    s = _score(summary, name)
    top = next(f for f in s.report.findings if f.finding.severity in ("error", "warning") and f.fixes)
    fixed = tmp_path / name
    fixed.write_text(apply_fix(s.expectation.path.read_text(), top.fixes[0]))
    report = asyncio.run(analyze(str(fixed), RunOptions()))
    remaining = [f for f in report.findings if f.finding.severity in ("error", "warning") and f.finding.root_cause == top.finding.root_cause]
    assert remaining == [], [f.finding.message for f in remaining]


def test_decisive_faults_stop_training_early(summary):
    """A NaN run stops at the NaN rather than training every requested epoch."""
    s = _score(summary, "b09_lr_high_regression.py")
    assert s.report.run.status == "decisive"
    assert len(s.report.trace.epochs) < s.report.trace.fit.epochs

"""A diverged run's numbers (inf, NaN in a finding's evidence or a fix's before/after) reach every
output as strict JSON: findings.json, SARIF, the CLI's JSON and the server's diagnostics. A run
that blew up is exactly the one a user needs the report of. No TensorFlow."""

from __future__ import annotations

import json
import math

from sarif_schema import sarif_errors

from deeplocalize.findings import Fix, LocatedFinding, OptimizerArg, Position, SourceRange, TextEdit, Verification
from deeplocalize.lsp.convert import to_diagnostic
from deeplocalize.report import FileReport, reports_json
from deeplocalize.rules import all_rules
from deeplocalize.sarif import to_sarif


def _diverged(path: str) -> FileReport:
    here = SourceRange(path, Position(23, 5), Position(23, 30))
    rule = all_rules()["nan-inf"]
    finding = rule.finding("NaN/Inf first appeared in the loss.", OptimizerArg(arg="learning_rate"), root_cause="learning_rate",
                           evidence={"loss_max": math.inf, "loss_min": -math.inf, "loss_last": math.nan, "steps": [1.0, math.inf]})
    check = Verification("verified", {"finite": False, "loss": math.inf}, {"finite": True, "loss": 0.4}, 40, 2, 1.0, "the values stay finite")
    fix = Fix("Use learning rate 0.01", [TextEdit(here, "0.01")], root_cause="learning_rate", anchor=here, verification=check)
    return FileReport(path, "complete", 1.0, [LocatedFinding(finding, here, [fix], None)])


def test_inf_and_nan_in_a_report_are_written_as_strict_json_strings(tmp_path):
    report = _diverged(str(tmp_path / "train.py"))
    doc = json.loads(json.dumps(reports_json([report]), allow_nan=False))
    f = doc["files"][0]["findings"][0]
    assert f["evidence"]["loss_max"] == "inf" and f["evidence"]["loss_min"] == "-inf" and f["evidence"]["loss_last"] == "nan"
    assert f["evidence"]["steps"] == [1.0, "inf"]
    assert f["fixes"][0]["verification"]["before"]["loss"] == "inf"
    assert sarif_errors(to_sarif([report], root=str(tmp_path))) == []
    diag = to_diagnostic(report.findings[0], None, "r1")
    data = json.loads(json.dumps(diag.data, allow_nan=False))
    assert data["evidence"]["loss_max"] == "inf" and data["fixes"][0]["verification"]["before"]["loss"] == "inf"

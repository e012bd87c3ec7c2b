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


def test_the_training_report_of_a_diverged_deep_model_draws_well_formed_plots():
    """Curves broken where the loss went NaN, a panel per statistic with the faulty layer framed,
    a deep model's rows labelled every few layers: every plot is an SVG a browser can parse."""
    import base64
    import re
    import xml.etree.ElementTree as ET

    from conftest import TraceBuilder
    from deeplocalize.report_html import Mark, _heatmaps, render

    builder = TraceBuilder(["relu"] * 119 + ["softmax"]).healthy(epochs=3, steps=10)
    for step in builder.trace.steps[20:]:
        step.values["loss"]["loss"] = math.nan
    report = FileReport("/tmp/model.py", "complete", 1.0, [], builder.trace)
    page = render([report]) + _heatmaps(builder.trace, Mark(7, 21, "nan-inf: layer 7"))
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert len(images) == 3  # the curves, the heatmaps, the marked heatmaps
    svgs = [ET.fromstring(base64.b64decode(i)) for i in images]
    ns = "{http://www.w3.org/2000/svg}"
    curves, heat, marked = svgs
    assert len(curves.findall(f".//{ns}polyline")) >= 3  # the loss until it went NaN, accuracy and loss per epoch
    panels = heat.findall(f".//{ns}image")
    assert len(panels) >= 2 * 5  # each panel and its color scale
    labels = [t.text for t in heat.findall(f".//{ns}text") if t.text and "dense_" in t.text]
    assert 0 < len(labels) <= 40 * 7 and "0 dense_0" in labels  # every few layers of 120
    assert [r for r in marked.findall(f".//{ns}rect") if r.get("stroke") == "red"]
    assert [line for line in marked.findall(f".//{ns}line") if line.get("stroke") == "red"]

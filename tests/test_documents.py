"""The server's document store: requests about a file (hover, code actions) ask which
documents' reports speak of it; the answer follows reports as they change and documents as
they close. No TensorFlow, no server."""

from __future__ import annotations

from deeplocalize.findings import FrameTarget, LocatedFinding, Position, SourceRange
from deeplocalize.lsp.documents import Documents
from deeplocalize.rules import all_rules
from deeplocalize.report import FileReport
from deeplocalize.trace import Frame, LayerInfo, Trace


class _Idle:
    task = None
    running = False

    def schedule(self, reason: str, delay: float | None = None) -> None: ...

    def cancel(self) -> bool:
        return False


def _report(path: str, finding_in: str | None = None, layer_in: str | None = None) -> FileReport:
    here = SourceRange(finding_in or path, Position(3, 1), Position(3, 9))
    findings = [LocatedFinding(next(iter(all_rules().values())).finding("m", FrameTarget()), here, [], None)] if finding_in else []
    trace = Trace(path, layers=[LayerInfo(0, "dense", "Dense", site=[Frame(layer_in, 4)])]) if layer_in else None
    return FileReport(path, "complete", 1.0, findings, trace)


def test_a_file_is_answered_by_the_documents_whose_report_speaks_of_it():
    docs = Documents(lambda state: _Idle())
    train, helper, other = docs.ensure("file:///w/train.py"), docs.ensure("file:///w/helper_user.py"), docs.ensure("file:///w/other.py")
    train.set_report(_report("/w/train.py", layer_in="/w/layers.py"), "r1")
    helper.set_report(_report("/w/helper_user.py", finding_in="/w/layers.py"), "r2")
    other.set_report(_report("/w/other.py"), "r3")
    assert [s.uri for s in docs.reporting_on("/w/layers.py")] == [train.uri, helper.uri]
    assert [s.uri for s in docs.reporting_on("/w/other.py")] == [other.uri]

    train.set_report(_report("/w/train.py"), "r4")  # the layer moved back into the script
    assert [s.uri for s in docs.reporting_on("/w/layers.py")] == [helper.uri]
    assert [s.uri for s in docs.reporting_on("/w/train.py")] == [train.uri]

    docs.pop(helper.uri)  # closed
    assert list(docs.reporting_on("/w/layers.py")) == []
    train.set_report(None, "")  # a new run started: no report yet
    assert list(docs.reporting_on("/w/train.py")) == []

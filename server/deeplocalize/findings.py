"""What a detector concludes, before and after it is anchored in the source.

Detectors say *what* must change (a `Target`: "the activation of layer 3",
"the learning rate of the optimizer") and *to what* (`FixSpec`); the locator
turns that into file ranges and text edits. Keeping the two apart lets detectors
run on synthetic traces and the locator run on source text alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .trace import Frame

ROOT_CAUSES = (
    "activation", "loss", "learning_rate", "optimizer", "initialization", "data_normalization",
    "labels", "architecture", "regularization", "batch_size", "epochs", "numerical_operation",
)
SEVERITIES = ("error", "warning", "information", "hint")


@dataclass
class Target:
    """The source element that must change.

    kind: layer_arg | layer | optimizer_arg | compile_arg | fit_arg | fit_data | frame | code
    """

    kind: str
    layer: int | None = None
    arg: str | None = None
    position: int | None = None
    frame: Frame | None = None
    code: dict[str, Any] | None = None


@dataclass
class FixSpec:
    """A change expressed on the target: a new value for it, or a line to insert after it."""

    title: str
    new_value: str | None = None
    insert_after: str | None = None
    arg: str | None = None
    target: Target | None = None
    # Edits applied together with this one, as a single fix (the same setting on
    # several layers, an activation and the loss that goes with it).
    also: list["FixSpec"] = field(default_factory=list)


@dataclass
class Finding:
    code: str
    severity: str
    symptom: str
    root_cause: str | None
    message: str
    target: Target
    layer: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    fixes: list[FixSpec] = field(default_factory=list)
    observed: dict[str, Any] | None = None
    # "weak" when the root cause is a fallback or the symptom is generic; a weak
    # finding yields to any strong one (it becomes information).
    confidence: str = "strong"

    def __post_init__(self) -> None:
        assert self.severity in SEVERITIES, self.severity
        assert self.root_cause is None or self.root_cause in ROOT_CAUSES, self.root_cause


@dataclass
class Position:
    line: int
    column: int


@dataclass
class SourceRange:
    """1-based line and column, as linters print them; `end` is exclusive."""

    file: str
    start: Position
    end: Position

    def to_json(self) -> dict[str, Any]:
        return {"start": vars(self.start), "end": vars(self.end)}


@dataclass
class TextEdit:
    range: SourceRange
    new_text: str


@dataclass
class Fix:
    title: str
    edits: list[TextEdit]


@dataclass
class LocatedFinding:
    finding: Finding
    range: SourceRange
    fixes: list[Fix]
    layer: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        f = self.finding
        return {
            "severity": f.severity,
            "code": f.code,
            "symptom": f.symptom,
            "root_cause": f.root_cause,
            "message": f.message,
            "range": self.range.to_json(),
            "layer": self.layer,
            "evidence": f.evidence,
            "fixes": [{"title": x.title, "edits": [{"range": e.range.to_json(), "new_text": e.new_text} for e in x.edits]} for x in self.fixes],
        }

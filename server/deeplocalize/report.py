"""What the analysis of one file produced: its findings, the run they came from, what the
verification experiments did. Every output (CLI text and JSON, SARIF, the training report,
the language server's diagnostics) is rendered from a `FileReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .findings import LocatedFinding, SourceRange
from .notebook import Notebook
from .probe.channel import json_ready
from .runner import RunResult
from .script import Script
from .trace import Trace
from .vocab import ReportStatus, rank


@dataclass
class VerifySummary:
    """What the experiments did, for the report and the benchmark."""

    tried: int = 0
    verified: int = 0
    refuted: int = 0
    inconclusive: int = 0
    corrected: int = 0  # a first guess refuted, a later candidate verified
    demoted: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in vars(self).items()}


# The JSON of reports (`deeplocalize check --format json`, a run folder's findings.json). 2: fixes
# carry "preferred", "root_cause" and "verification"; findings "confirmation"; ranges their "file".
JSON_VERSION = 2


def reports_json(reports: "list[FileReport]") -> dict:
    """Strict JSON: a diverged run's evidence holds inf and NaN, written as strings."""
    return json_ready({"version": JSON_VERSION, "files": [r.to_json() for r in reports]})


@dataclass
class FileReport:
    path: str
    status: ReportStatus
    duration_s: float
    findings: list[LocatedFinding] = field(default_factory=list)
    trace: Trace | None = None
    run: RunResult | None = None
    message: str = ""
    source: str = ""  # the text that was analyzed (fixes apply to it)
    verification: VerifySummary | None = None
    notebook: Notebook | None = None  # set when `path` is a notebook: `source` is its code cells as one script
    script: Script | None = None  # what was analyzed, as described up front (the experiments edit it)

    def place(self, r: SourceRange) -> SourceRange:
        """Where the user reads a range: in a notebook, its cell and the line in that cell."""
        return self.notebook.to_cell(r) if self.notebook is not None else r

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "status": self.status,
            "duration_s": round(self.duration_s, 3),
            "findings": [f.to_json(self.place) for f in self.findings],
            "verification": self.verification.to_json() if self.verification else None,
        }

    @property
    def worst(self) -> str | None:
        sev = [f.finding.severity for f in self.findings]
        return min(sev, key=rank) if sev else None

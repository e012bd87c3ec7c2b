"""Reports as SARIF 2.1.0, the format code-scanning services ingest (`--format sarif`).

One run of one tool: every rule the registry declares (id, name, help text and help URI),
then one result per finding with its level, message, physical location and fixes as
artifact changes. Paths are relative to the directory the CLI ran in (`%SRCROOT%`), as
code-scanning uploads expect. A notebook's findings are placed in its cells: the region
counts lines within the cell, and the result's `properties.cell` says which (SARIF has no
notion of cells; the `.ipynb` file is the artifact).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import __version__
from .probe.channel import json_ready
from .report import FileReport
from .findings import LocatedFinding, SourceRange
from .rules import Rule, all_rules, docs_uri
from .vocab import Severity

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVEL: dict[Severity, str] = {"error": "error", "warning": "warning", "information": "note", "hint": "note"}
ROOT = "%SRCROOT%"


def to_sarif(reports: list[FileReport], root: str | None = None) -> dict[str, Any]:
    root = os.path.abspath(root or os.getcwd())
    rules = sorted(all_rules().values(), key=lambda r: r.code)
    index = {r.code: i for i, r in enumerate(rules)}
    results = [_result(report, lf, index, root) for report in reports for lf in report.findings]
    return json_ready({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "DeepLocalize",
                "version": __version__,
                "informationUri": docs_uri(None),
                "rules": [_rule(r) for r in rules],
            }},
            "originalUriBaseIds": {ROOT: {"uri": _dir_uri(root)}},
            "artifacts": [{"location": _artifact(r.path, root)} for r in reports],
            "invocations": [{"executionSuccessful": True,
                             "toolExecutionNotifications": [_skipped(r, root) for r in reports if r.status in ("not_keras", "nothing_to_run")]}],
            "results": results,
        }],
    })


def _rule(r: Rule) -> dict[str, Any]:
    summary = r.text(r.summary)
    full = summary + (" " + r.text(r.details) if r.details else "")
    causes = ", ".join(c for c in r.causes if c) or "none (not a fault of the network)"
    return {
        "id": r.code,
        "name": "".join(part.capitalize() for part in r.code.split("-")),
        "shortDescription": {"text": summary},
        "fullDescription": {"text": full},
        "help": {"text": f"{full} Root causes: {causes}.", "markdown": f"{full}\n\n*{r.severity}*; root causes: {causes}."},
        "helpUri": docs_uri(r.code),
        "defaultConfiguration": {"level": LEVEL[r.severity]},
        "properties": {"section": r.section, "root_causes": [c for c in r.causes if c]},
    }


def _result(report: FileReport, lf: LocatedFinding, index: dict[str, int], root: str) -> dict[str, Any]:
    f = lf.finding
    at = report.place(lf.range)
    props: dict[str, Any] = {"symptom": f.symptom, "root_cause": f.root_cause, "confirmation": lf.confirmation}
    if at.cell is not None:
        props["cell"] = at.cell
    cause = f" (root cause: {f.root_cause.replace('_', ' ')})" if f.root_cause else ""
    result: dict[str, Any] = {
        "ruleId": f.code,
        "level": LEVEL[f.severity],
        "message": {"text": f"{lf.message}{cause}"},
        "locations": [{"physicalLocation": {"artifactLocation": _artifact(at.file, root), "region": _region(at)}}],
        "properties": props,
    }
    if f.code in index:
        result["ruleIndex"] = index[f.code]
    fixes = [fix for fix in lf.fixes if not (fix.verification and fix.verification.verdict == "refuted")]
    if fixes:
        result["fixes"] = [{
            "description": {"text": fix.title + (" (verified by re-training)" if fix.verification and fix.verification.verdict == "verified" else "")},
            "artifactChanges": _changes(report, fix.edits, root),
        } for fix in fixes]
    return result


def _changes(report: FileReport, edits: list, root: str) -> list[dict[str, Any]]:
    by_file: dict[str, list[dict[str, Any]]] = {}
    for e in edits:
        at = report.place(e.range)
        by_file.setdefault(at.file, []).append({"deletedRegion": _region(at), "insertedContent": {"text": e.new_text}})
    return [{"artifactLocation": _artifact(path, root), "replacements": reps} for path, reps in by_file.items()]


def _region(r: SourceRange) -> dict[str, int]:
    return {"startLine": r.start.line, "startColumn": r.start.column, "endLine": r.end.line, "endColumn": r.end.column}


def _artifact(path: str, root: str) -> dict[str, Any]:
    path = os.path.abspath(path)
    if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
        return {"uri": os.path.relpath(path, root).replace(os.sep, "/"), "uriBaseId": ROOT}
    return {"uri": _file_uri(path)}


def _skipped(report: FileReport, root: str) -> dict[str, Any]:
    return {"level": "note", "message": {"text": f"skipped: {report.message}"},
            "locations": [{"physicalLocation": {"artifactLocation": _artifact(report.path, root)}}]}


def _file_uri(path: str) -> str:
    return Path(path).as_uri()


def _dir_uri(path: str) -> str:
    return _file_uri(path).rstrip("/") + "/"

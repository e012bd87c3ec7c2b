"""Findings -> LSP diagnostics and quick-fix code actions (pure functions)."""

from __future__ import annotations

from typing import Any, Callable

from lsprotocol import types as lsp
from pygls.uris import from_fs_path

from ..findings import LocatedFinding, Position, SourceRange
from ..probe.channel import json_ready
from ..rules import docs_uri
from ..trace import Trace

SOURCE = "deeplocalize"
SEVERITY = {
    "error": lsp.DiagnosticSeverity.Error,
    "warning": lsp.DiagnosticSeverity.Warning,
    "information": lsp.DiagnosticSeverity.Information,
    "hint": lsp.DiagnosticSeverity.Hint,
}


def to_range(r: SourceRange) -> lsp.Range:
    return lsp.Range(
        start=lsp.Position(line=max(r.start.line - 1, 0), character=max(r.start.column - 1, 0)),
        end=lsp.Position(line=max(r.end.line - 1, 0), character=max(r.end.column - 1, 0)),
    )


def docs_href(code: str) -> str:
    return docs_uri(code)


def uri_of(path: str) -> str:
    return from_fs_path(path) or path


# Where a range of the analyzed text shows in the editor: a document and a range in it (a
# file's own lines, or a notebook cell's: see cells.placer).
Place = Callable[[SourceRange], "tuple[str, lsp.Range]"]


def file_place(r: SourceRange) -> tuple[str, lsp.Range]:
    return uri_of(r.file), to_range(r)


def _related(lf: LocatedFinding, trace: Trace | None, place: Place) -> list[lsp.DiagnosticRelatedInformation]:
    """Where the symptom was observed: the layer (and step) where it first showed."""
    obs = lf.finding.observed
    if not obs or trace is None or obs.get("layer") is None:
        return []
    layer = trace.layer(int(obs["layer"]))
    if layer is None or not layer.site:
        return []
    site = layer.site[0]
    where = {"out": "forward output", "pre": "pre-activation", "grad": "gradient", "w": "weights", "loss": "loss"}.get(obs.get("where", ""), "values")
    when = f" at epoch {obs['epoch'] + 1}, step {obs['step']}" if "epoch" in obs else ""
    uri, rng = place(SourceRange(site.file, Position(site.line, 1), Position(site.end_line or site.line, 1001)))
    loc = lsp.Location(uri=uri, range=rng)
    return [lsp.DiagnosticRelatedInformation(location=loc, message=f"observed in the {where} of layer '{layer.name}' ({layer.cls}){when}")]


def fixes_data(lf: LocatedFinding, place: Place = file_place) -> list[dict[str, Any]]:
    return [
        {"title": fix.title, "edits": [_edit_json(place, e.range, e.new_text) for e in fix.edits],
         "verification": json_ready(fix.verification.to_json()) if fix.verification else None, "preferred": fix is lf.preferred}
        for fix in lf.fixes
    ]


def _edit_json(place: Place, r: SourceRange, new_text: str) -> dict[str, Any]:
    uri, rng = place(r)
    return {"uri": uri, "range": _range_json(rng), "newText": new_text}


def _range_json(r: lsp.Range) -> dict[str, Any]:
    return {"start": {"line": r.start.line, "character": r.start.character}, "end": {"line": r.end.line, "character": r.end.character}}


def to_diagnostic(lf: LocatedFinding, trace: Trace | None, run_id: str, place: Place = file_place) -> lsp.Diagnostic:
    f = lf.finding
    cause = f" (root cause: {f.root_cause.replace('_', ' ')})" if f.root_cause else ""
    return lsp.Diagnostic(
        range=place(lf.range)[1],
        severity=SEVERITY[f.severity],
        code=f.code,
        code_description=lsp.CodeDescription(href=docs_href(f.code)),
        source=SOURCE,
        message=f"{lf.message}{cause}",
        related_information=_related(lf, trace, place) or None,
        data={"fixes": fixes_data(lf, place), "root_cause": f.root_cause, "symptom": f.symptom, "run": run_id, "evidence": json_ready(f.evidence),
              "confirmation": lf.confirmation},
    )




def code_actions(diag: lsp.Diagnostic, version_of: Callable[[str], int | None]) -> list[lsp.CodeAction]:
    """One quick fix per fix carried in the diagnostic's data; only a fix verified by
    re-training is preferred (and says so), so an editor never auto-applies a guess, and a
    fix that re-training refuted is not offered at all."""
    data = diag.data if isinstance(diag.data, dict) else {}
    actions = []
    for fix in data.get("fixes") or []:
        by_uri: dict[str, list[lsp.TextEdit]] = {}
        for e in fix.get("edits", []):
            r = e["range"]
            by_uri.setdefault(e["uri"], []).append(lsp.TextEdit(
                range=lsp.Range(start=lsp.Position(**r["start"]), end=lsp.Position(**r["end"])), new_text=e["newText"]))
        changes = [
            lsp.TextDocumentEdit(text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version_of(uri)), edits=edits)
            for uri, edits in by_uri.items()
        ]
        verdict = (fix.get("verification") or {}).get("verdict")
        if verdict == "refuted":
            continue  # re-training with it did not help: not offered (the hover shows what was tried)
        suffix = " (verified)" if verdict == "verified" else ""
        actions.append(lsp.CodeAction(
            title=f"DeepLocalize: {fix['title']}{suffix}", kind=lsp.CodeActionKind.QuickFix, diagnostics=[diag],
            # Preferred only when verified, and only one (two fixes may both heal: the one that healed more).
            edit=lsp.WorkspaceEdit(document_changes=changes), is_preferred=verdict == "verified" and fix.get("preferred", True) is not False,
        ))
    return actions


def overlaps(a: lsp.Range, b: lsp.Range) -> bool:
    return (a.start.line, a.start.character) <= (b.end.line, b.end.character) and (b.start.line, b.start.character) <= (a.end.line, a.end.character)

"""Findings of real training runs (`deeplocalize run`, `deeplocalize.keras.Monitor`) in the editor.

The server looks at the run folders (run_folder.py) of the scripts open in the editor, once a
second, and shows the findings of each script's latest run as diagnostics of their own source
("training run"), next to the analysis on save, which keeps its own. The run recorded the text it
started from: lines are mapped through the edits made since, and a finding (or a fix) whose line
was edited is dropped. A folder that cannot be read (another format version, a torn write) is
ignored with one log line. Clients that show run state get `deeplocalize/trainingRun`.
"""

from __future__ import annotations

import difflib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lsprotocol import types as lsp

from ..run_folder import RunRecord, folder_root, read_run
from .convert import SEVERITY, docs_href, uri_of
from .logs import log

SOURCE = "training run"
NOTIFICATION = "deeplocalize/trainingRun"
POLL_S = 1.0


@dataclass
class _Watched:
    path: str
    root: Path
    shown: tuple = ()  # what the diagnostics were made from (folder, its files' mtimes, the text's version)
    diagnostics: list[lsp.Diagnostic] = field(default_factory=list)


def line_map(old: str, new: str) -> dict[int, int]:
    """1-based line of the text a run started from -> its line in the current text, for the
    lines no edit touched."""
    out: dict[int, int] = {}
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    for a, b, n in matcher.get_matching_blocks():
        for k in range(n):
            out[a + k + 1] = b + k + 1
    return out


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def run_label(record: RunRecord, now: float | None = None) -> str:
    """How a diagnostic names its run: 'live training run, epoch 12/32' or 'training run 5 min ago, finished at epoch 32/32'."""
    m = record.meta
    epoch = f"epoch {m.epoch or 0}/{m.epochs}" if m.epochs else f"epoch {m.epoch or 0}"
    if record.alive:
        return f"live training run, {epoch}"
    state = record.state
    ago = _age((now or time.time()) - (m.updated or m.started))
    return f"training run {ago} ago, {state} at {epoch}"


def latest_run(root: Path, script: str, refused: Callable[[Path, str], None]) -> RunRecord | None:
    """The script's most recent run in `root`: a live one first, else the last started."""
    if not root.is_dir():
        return None
    found: list[RunRecord] = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        record = read_run(folder)
        if isinstance(record, str):
            refused(folder, record)
            continue
        if os.path.abspath(record.meta.script) == os.path.abspath(script):
            found.append(record)
            if len(found) >= 3:
                break
    live = [r for r in found if r.alive]
    return (live or found or [None])[0]


def to_diagnostics(record: RunRecord, script: str, text: str, now: float | None = None) -> list[lsp.Diagnostic]:
    """The run's findings in the script, mapped into `text`; those on edited lines are dropped."""
    if record.findings is None:
        return []
    lines = line_map(record.source, text) if record.source is not None and record.source != text else None
    label = run_label(record, now)
    out = []
    for file in record.findings.get("files", []):
        for f in file.get("findings", []):
            rng = _mapped(f.get("range") or {}, script, lines)
            if rng is None or f.get("severity") not in SEVERITY:
                continue
            fixes = []
            for fix in f.get("fixes") or []:
                if (fix.get("verification") or {}).get("verdict") == "refuted":
                    continue
                edits = [(_mapped(e.get("range") or {}, script, lines), e.get("new_text", "")) for e in fix.get("edits") or []]
                if edits and all(r is not None for r, _ in edits):
                    fixes.append({"title": fix.get("title", "fix"), "preferred": False, "verification": None,
                                  "edits": [{"uri": uri_of(script), "range": _range_json(r), "newText": t} for r, t in edits]})
            cause = f" (root cause: {f['root_cause'].replace('_', ' ')})" if f.get("root_cause") else ""
            out.append(lsp.Diagnostic(
                range=rng, severity=SEVERITY[f["severity"]], code=f.get("code"),
                code_description=lsp.CodeDescription(href=docs_href(f["code"])) if f.get("code") else None,
                source=SOURCE, message=f"{f.get('message', '')}{cause} [{label}]",
                data={"fixes": fixes, "root_cause": f.get("root_cause"), "run": str(record.path), "training_run": True}))
    return out


def _mapped(r: dict[str, Any], script: str, lines: dict[int, int] | None) -> lsp.Range | None:
    if os.path.abspath(r.get("file") or script) != os.path.abspath(script) or "start" not in r or "end" not in r:
        return None  # another file than the script: its text then is unknown
    start, end = r["start"], r["end"]
    a, b = int(start["line"]), int(end["line"])
    if lines is not None:
        if a not in lines or b not in lines:
            return None
        a, b = lines[a], lines[b]
    return lsp.Range(start=lsp.Position(line=a - 1, character=max(int(start["column"]) - 1, 0)),
                     end=lsp.Position(line=b - 1, character=max(int(end["column"]) - 1, 0)))


def _range_json(r: lsp.Range) -> dict[str, Any]:
    return {"start": {"line": r.start.line, "character": r.start.character}, "end": {"line": r.end.line, "character": r.end.character}}


class TrainingRuns:
    """The run folders of the open scripts, looked at every POLL_S seconds."""

    def __init__(self, text_of: Callable[[str], str | None], publish: Callable[[str, list[lsp.Diagnostic]], None],
                 notify: Callable[[dict[str, Any]], None]) -> None:
        self.text_of = text_of
        self.publish = publish
        self.notify = notify
        self.watched: dict[str, _Watched] = {}  # uri -> what is shown for it
        self._refused: set[tuple[Path, str]] = set()

    def watch(self, uri: str, path: str, runs_folder: str | None) -> None:
        root = folder_root(path, runs_folder or None)
        current = self.watched.get(uri)
        if current is None or current.root != root:
            self.watched[uri] = _Watched(path, root)
        self.refresh(uri)

    def unwatch(self, uri: str) -> None:
        w = self.watched.pop(uri, None)
        if w is not None and w.diagnostics:
            self.publish(uri, [])

    def refresh_all(self) -> None:
        for uri in list(self.watched):
            self.refresh(uri)

    def refresh(self, uri: str) -> None:
        w = self.watched.get(uri)
        if w is None:
            return
        try:
            record = latest_run(w.root, w.path, self._refuse)
            text = self.text_of(uri)
            key = _key(record, text)
            if key == w.shown:
                return
            w.shown = key
            diagnostics = to_diagnostics(record, w.path, text) if record is not None and text is not None else []
        except Exception as exc:  # noqa: BLE001 - a folder written while read: the next look settles it
            log.warning(f"deeplocalize: could not read the training runs of {w.path} ({type(exc).__name__}: {exc})")
            return
        if diagnostics or w.diagnostics:
            self.publish(uri, diagnostics)
        w.diagnostics = diagnostics
        if record is not None:
            self.notify(_status(uri, record))

    def _refuse(self, folder: Path, reason: str) -> None:
        if (folder, reason) not in self._refused:
            self._refused.add((folder, reason))
            log.info(f"deeplocalize: ignoring the run folder {folder}: {reason}")


def _key(record: RunRecord | None, text: str | None) -> tuple:
    if record is None:
        return (None, hash(text))
    stamps = []
    for name in ("run.json", "findings.json"):
        try:
            stamps.append((record.path / name).stat().st_mtime_ns)
        except OSError:
            stamps.append(None)
    # A live run's label (its age) changes without its files: once a minute is enough.
    return (str(record.path), *stamps, record.alive, hash(text), int(time.time() // 60))


def _status(uri: str, record: RunRecord) -> dict[str, Any]:
    m = record.meta
    report = record.path / "report.html"
    findings = sum(len(f.get("findings", [])) for f in (record.findings or {}).get("files", []))
    return {"uri": uri, "folder": str(record.path), "state": record.state, "live": record.alive, "epoch": m.epoch, "epochs": m.epochs,
            "findings": findings, "serious": m.findings, "report": str(report) if report.exists() else None, "label": run_label(record)}

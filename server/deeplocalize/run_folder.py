"""The folder of one real training run (`deeplocalize run`): plain files that any reader (the
language server, a copy made on a GPU machine, a later `deeplocalize` command) reads the same way.

    .deeplocalize/runs/20261204-191502-train/
        run.json        what ran, its state (live, finished, crashed, ...), its epoch, updated as it goes
        source.py       the script's text as the run started (the editor maps lines through later edits)
        trace.jsonl     the probe's events, one JSON object per line, appended as they come
        findings.json   the findings so far, in the schema of `deeplocalize check --format json`
        findings.sarif  the same as SARIF 2.1.0
        report.html     the training report (every `HTML_EVERY_S`, sooner when the findings change, and at the end)

Every file but the trace is replaced whole (written aside, then renamed), so a reader never sees
half of one, even after a SIGKILL; a trace's torn last line is skipped by its reader. A folder of
another format version, or one that cannot be read, is ignored with a reason (`read_run`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

FORMAT = 1
DEFAULT_FOLDER = os.path.join(".deeplocalize", "runs")
HTML_EVERY_S = 30.0
HTML_SOONEST_S = 3.0

RunState = Literal["live", "finished", "crashed", "interrupted", "stopped", "failed"]


class RunFolderError(Exception):
    """The run folder cannot be made or written (a read-only disk, a path that is a file)."""


@dataclass
class RunMeta:
    """run.json: what ran and how far it got."""

    format: int
    script: str  # absolute path of the script
    argv: list[str]
    started: float  # time.time() when the run started
    pid: int  # the training process
    host: str
    state: RunState = "live"
    updated: float = 0.0
    epoch: int | None = None  # epochs finished in the current fit
    epochs: int | None = None  # epochs the current fit asks for
    fit: int = 0  # fits started so far
    findings: int = 0  # warnings and errors so far
    exit_code: int | None = None
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # The process that writes this folder and marks its end: the run is live until it has, even
    # in the seconds between the training's exit and its final report (absent in older folders).
    recorder: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunMeta":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def folder_root(script: str, configured: str | None = None) -> Path:
    """Where runs of `script` go: the configured folder (relative to the script's), else
    `.deeplocalize/runs` next to the script."""
    base = Path(script).resolve().parent
    return (base / (configured or DEFAULT_FOLDER)).resolve()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


class RunFolder:
    """The writer of one run's folder. Every write that fails raises RunFolderError once and then
    turns the folder off (`broken`): the training goes on, the caller says so once."""

    def __init__(self, path: Path, meta: RunMeta) -> None:
        self.path = path
        self.meta = meta
        self.broken: str | None = None
        self._trace = None
        self._last_html = time.monotonic()  # the first report once the run is HTML_EVERY_S old, or soon after a finding

    @classmethod
    def create(cls, script: str, argv: list[str], pid: int, root: Path, source: str, extra: dict[str, Any] | None = None,
               name: str | None = None) -> "RunFolder":
        """A new folder `<time>-<script>` (suffixed when another run of it started in the same second)."""
        stem = re.sub(r"[^\w.-]+", "_", name or Path(script).stem)[:60] or "script"
        name = time.strftime("%Y%m%d-%H%M%S") + "-" + stem
        try:
            root.mkdir(parents=True, exist_ok=True)
            _ignored_by_git(root)
            for n in range(1, 1000):
                path = root / (name if n == 1 else f"{name}-{n}")
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    continue
            else:
                raise RunFolderError(f"cannot make a run folder in {root}: too many runs started this second")
            meta = RunMeta(FORMAT, str(Path(script).resolve()), list(argv), time.time(), pid, socket.gethostname(), updated=time.time(),
                           extra=dict(extra or {}), recorder=os.getpid())
            folder = cls(path, meta)
            _atomic_write(path / "source.py", source)
            folder._trace = open(path / "trace.jsonl", "ab", buffering=0)
            folder.write_meta()
            return folder
        except OSError as exc:
            raise RunFolderError(f"cannot write the run folder in {root}: {exc.strerror or exc}") from None

    def _guard(self, what: str, write: Any) -> None:
        if self.broken is not None:
            return
        try:
            write()
        except OSError as exc:
            self.broken = f"cannot write {what} in {self.path}: {exc.strerror or exc}"
            raise RunFolderError(self.broken) from None

    def append(self, line: bytes) -> None:
        """One event line of the probe, as it came."""
        if self._trace is not None:
            self._guard("the trace", lambda: self._trace.write(line if line.endswith(b"\n") else line + b"\n"))

    def write_meta(self, **changes: Any) -> None:
        for k, v in changes.items():
            setattr(self.meta, k, v)
        self.meta.updated = time.time()
        self._guard("run.json", lambda: _atomic_write(self.path / "run.json", json.dumps(asdict(self.meta), indent=1)))

    def write_findings(self, findings_json: dict[str, Any], sarif: dict[str, Any]) -> None:
        self._guard("findings.json", lambda: _atomic_write(self.path / "findings.json", json.dumps(findings_json, indent=1, allow_nan=False)))
        self._guard("findings.sarif", lambda: _atomic_write(self.path / "findings.sarif", json.dumps(sarif, indent=1, allow_nan=False)))

    def html_due(self, changed: bool = False) -> bool:
        """Every HTML_EVERY_S; sooner (HTML_SOONEST_S) when the findings changed."""
        return time.monotonic() - self._last_html >= (HTML_SOONEST_S if changed else HTML_EVERY_S)

    @property
    def html_written(self) -> bool:
        return (self.path / "report.html").exists()

    def write_html(self, html: str) -> None:
        self._last_html = time.monotonic()
        self._guard("report.html", lambda: _atomic_write(self.path / "report.html", html))

    def close(self) -> None:
        if self._trace is not None:
            try:
                self._trace.close()
            except OSError:
                pass
            self._trace = None


def _ignored_by_git(root: Path) -> None:
    """A `.deeplocalize` folder ignores itself in git (as pytest's cache does): runs are not source."""
    for folder in (root, *root.parents):
        if folder.name == ".deeplocalize":
            ignore = folder / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# Created by DeepLocalize: training runs are not source.\n*\n", encoding="utf-8")
            return


def prune(root: Path, keep: int) -> list[Path]:
    """Remove the oldest finished runs beyond `keep` (a live one is never removed); returns what went."""
    runs = sorted((p for p in root.iterdir() if p.is_dir() and (p / "run.json").exists()), key=lambda p: p.name) if root.is_dir() else []
    removed = []
    for path in runs[:-keep] if keep > 0 else runs:
        record = read_run(path)
        if isinstance(record, RunRecord) and record.alive:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


@dataclass
class RunRecord:
    """A run folder as a reader sees it."""

    path: Path
    meta: RunMeta
    findings: dict[str, Any] | None  # findings.json, None before the first write
    source: str | None
    # When run.json was read (`read_run`): its training process or its recorder ran (on this machine;
    # another host's live run counts as running until it has been silent for an hour).
    running: bool = False

    @property
    def alive(self) -> bool:
        return self.meta.state == "live" and self.running

    @property
    def state(self) -> str:
        """Its state, with a live run whose process is gone (killed with its command) called `killed`."""
        return "killed" if self.meta.state == "live" and not self.alive else self.meta.state


def process_running(pid: int) -> bool:
    """The process exists and is not a zombie (a killed run's process whose parent is gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (not Linux): it exists


def _processes_run(meta: RunMeta) -> bool:
    return process_running(meta.pid) or (meta.recorder is not None and process_running(meta.recorder))


def _read_meta(path: Path) -> "RunMeta | str":
    try:
        meta_json = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no run.json"
    except (OSError, ValueError) as exc:
        return f"run.json unreadable ({type(exc).__name__})"
    if not isinstance(meta_json, dict) or not isinstance(meta_json.get("format"), int):
        return "run.json has no format version"
    if meta_json["format"] > FORMAT:
        return f"written by a newer DeepLocalize (format {meta_json['format']}, this one reads {FORMAT})"
    try:
        return RunMeta.from_json(meta_json)
    except TypeError as exc:
        return f"run.json incomplete ({exc})"


def read_run(path: Path) -> "RunRecord | str":
    """The run in `path`, or why it cannot be read (never raises)."""
    meta = _read_meta(path)
    if isinstance(meta, str):
        return meta
    if meta.host != socket.gethostname():  # its processes cannot be looked at from here
        return _with_files(path, meta, time.time() - meta.updated < 3600)
    running = meta.state == "live" and _processes_run(meta)
    if meta.state == "live" and not running:
        # Its recorder may have written the end and exited between that read and this look at its
        # processes: read again. Live still, it was live when both were already gone: killed.
        again = _read_meta(path)
        meta = again if isinstance(again, RunMeta) else meta
    return _with_files(path, meta, running)


def _with_files(path: Path, meta: RunMeta, running: bool) -> "RunRecord | str":
    """The record of `meta`, with the findings and source written before it was read."""
    findings: dict[str, Any] | None = None
    try:
        findings = json.loads((path / "findings.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        return f"findings.json unreadable ({type(exc).__name__})"
    if findings is not None and not (isinstance(findings, dict) and isinstance(findings.get("files"), list)):
        return "findings.json is not a findings report"
    try:
        source: str | None = (path / "source.py").read_text(encoding="utf-8")
    except (OSError, ValueError):
        source = None
    return RunRecord(path, meta, findings, source, running)

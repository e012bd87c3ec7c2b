"""What the server knows of each document it analyzes, and which reports speak of a file.

A report can place findings and layers in files other than the one analyzed (a helper module
that defines a layer, a notebook's cells), so requests about a file ask the index, not every
document in turn."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

from lsprotocol import types as lsp
from pygls.uris import to_fs_path

from ..report import FileReport


class Run(Protocol):
    """A document's analysis as the store and the requests drive it (runs.DocumentRun)."""

    task: asyncio.Task | None

    @property
    def running(self) -> bool: ...

    def schedule(self, reason: str, delay: float | None = None) -> None: ...

    def cancel(self) -> bool: ...


@dataclass
class DocState:
    uri: str
    path: str
    run: Run = field(init=False, repr=False)  # made with the state (Documents.ensure)
    report: FileReport | None = None
    report_key: str | None = None  # the text and settings the complete report answers; None while provisional
    report_run: str = ""
    published: set[str] = field(default_factory=set)
    diagnostics: dict[str, list[lsp.Diagnostic]] = field(default_factory=dict)
    last_outcome: str = ""
    files: frozenset[str] = frozenset()  # the files its report speaks of
    on_files: Callable[["DocState", frozenset[str]], None] | None = field(default=None, repr=False)  # the index's (Documents)

    def set_report(self, report: FileReport | None, run_id: str, key: str | None = None) -> None:
        self.report, self.report_run, self.report_key = report, run_id, key
        self.reindex()

    def reindex(self) -> None:
        """After the report changed in place (verification can move a finding to another file)."""
        files = _files_of(self.report) if self.report is not None else frozenset()
        if files != self.files:
            before, self.files = self.files, files
            if self.on_files is not None:
                self.on_files(self, before)


def _files_of(report: FileReport) -> frozenset[str]:
    files = {report.path} | {lf.range.file for lf in report.findings}
    trace = report.trace
    if trace is not None:
        files |= {frame.file for layer in trace.layers for frame in layer.site}
    return frozenset(files)


class Documents:
    """The analyzed documents by URI, and by the files their reports speak of."""

    def __init__(self, make_run: Callable[[DocState], Run]) -> None:
        self._by_uri: dict[str, DocState] = {}
        self._by_file: dict[str, dict[str, None]] = {}  # path -> URIs of the documents whose report speaks of it (in order)
        self._make_run = make_run

    def get(self, uri: str) -> DocState | None:
        return self._by_uri.get(uri)

    def ensure(self, uri: str) -> DocState:
        state = self._by_uri.get(uri)
        if state is None:
            state = self._by_uri[uri] = DocState(uri, to_fs_path(uri) or uri, on_files=self._files_changed)
            state.run = self._make_run(state)
        return state

    def pop(self, uri: str) -> DocState | None:
        state = self._by_uri.pop(uri, None)
        if state is not None:
            self._files_changed(state, state.files, now=frozenset())
        return state

    def _files_changed(self, state: DocState, before: frozenset[str], now: frozenset[str] | None = None) -> None:
        now = state.files if now is None else now
        for path in before - now:
            uris = self._by_file.get(path, {})
            uris.pop(state.uri, None)
            if not uris:
                self._by_file.pop(path, None)
        for path in now - before:
            self._by_file.setdefault(path, {})[state.uri] = None

    def __iter__(self) -> Iterator[DocState]:
        return iter(list(self._by_uri.values()))

    def reporting_on(self, path: str) -> Iterator[DocState]:
        """Documents whose last report has something to say about `path`."""
        states = (self._by_uri.get(uri) for uri in list(self._by_file.get(path, ())))
        return (s for s in states if s is not None and s.report is not None)

    def published_on(self, uri: str) -> list[lsp.Diagnostic]:
        return [d for s in self for d in s.diagnostics.get(uri, [])]

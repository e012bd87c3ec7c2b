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

    def set_report(self, report: FileReport | None, run_id: str, key: str | None = None) -> None:
        self.report, self.report_run, self.report_key = report, run_id, key
        self.reindex()

    def reindex(self) -> None:
        """After the report changed in place (verification can move a finding to another file)."""
        self.files = _files_of(self.report) if self.report is not None else frozenset()


def _files_of(report: FileReport) -> frozenset[str]:
    files = {report.path} | {lf.range.file for lf in report.findings}
    trace = report.trace
    if trace is not None:
        files |= {frame.file for layer in trace.layers for frame in layer.site}
    return frozenset(files)


class Documents:
    """The analyzed documents by URI."""

    def __init__(self, make_run: Callable[[DocState], Run]) -> None:
        self._by_uri: dict[str, DocState] = {}
        self._make_run = make_run

    def get(self, uri: str) -> DocState | None:
        return self._by_uri.get(uri)

    def ensure(self, uri: str) -> DocState:
        state = self._by_uri.get(uri)
        if state is None:
            state = self._by_uri[uri] = DocState(uri, to_fs_path(uri) or uri)
            state.run = self._make_run(state)
        return state

    def pop(self, uri: str) -> DocState | None:
        return self._by_uri.pop(uri, None)

    def __iter__(self) -> Iterator[DocState]:
        return iter(list(self._by_uri.values()))

    def reporting_on(self, path: str) -> Iterator[DocState]:
        """Documents whose last report has something to say about `path`."""
        return (s for s in self if s.report is not None and path in s.files)

    def published_on(self, uri: str) -> list[lsp.Diagnostic]:
        return [d for s in self for d in s.diagnostics.get(uri, [])]

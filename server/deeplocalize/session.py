"""The engine session: what every client of the engine holds for as long as it works.

It owns the training processes (one fork server per interpreter and environment, the
spare workers forked from it) and the default options, and it runs the one sequence the
CLI, the language server, the benchmarks and the tests all need: describe the script,
analyze it, verify its fixes by experiment, close. One session imports TensorFlow once per
interpreter, however many analyses and experiments it runs.
"""

from __future__ import annotations

from dataclasses import astuple
from typing import Callable

from . import engine
from .cluster import run_cluster
from .engine import FindingsCallback
from .report import FileReport, VerifySummary
from .runner import EventCallback, OutputCallback, RunOptions, RunResult, StopPredicate, WorkerPool, run_one
from .script import Script, describe
from .verify import UpdateCallback



class EngineSession:
    """`refill`/`max_spares`: keep spare workers forked ahead of the next run (the editor).
    `reuse`: an analysis of the same text with the same options and budgets is answered
    from the first one (the tests ask the same question from several modules)."""

    def __init__(self, options: RunOptions | None = None, *, refill: bool = False, max_spares: int = 1, reuse: bool = False) -> None:
        self.options = options or RunOptions()
        self.pool = WorkerPool(refill=refill, max_spares=max_spares)
        self._reports: dict[tuple, FileReport] | None = {} if reuse else None

    # ------------------------------------------------------------ runs
    async def run(
        self,
        script: Script | str,
        options: RunOptions | None = None,
        *,
        on_event: EventCallback | None = None,
        on_output: OutputCallback | None = None,
        should_stop: StopPredicate | None = None,
        keep_warm: bool = False,
        record: bool = False,
    ) -> RunResult:
        """The script trained once: by `options.workers` processes together for a
        multi-worker script, else by one."""
        script = _described(script)
        options = options or self.options
        if options.workers > 1 and script.multi_worker:
            return await run_cluster(script, options, self.pool, on_event=on_event, on_output=on_output, should_stop=should_stop, record=record)
        return await run_one(script, options, self.pool, on_event=on_event, on_output=on_output, should_stop=should_stop,
                             keep_warm=keep_warm, record=record)

    def keep_spares(self, refill: bool, max_spares: int) -> None:
        """How many processes to keep forked ahead of the next run (a setting the user can change at any time)."""
        self.pool.refill, self.pool.max_spares = refill, max_spares

    def prewarm_soon(self, options: RunOptions | None = None) -> None:
        """Another run follows soon: prepare its training process now."""
        self.pool.prewarm_soon(options or self.options)

    # ------------------------------------------------------------ analyses
    async def analyze(
        self,
        script: Script | str,
        options: RunOptions | None = None,
        *,
        on_event: EventCallback | None = None,
        on_output: OutputCallback | None = None,
        on_findings: FindingsCallback | None = None,
        warm_next: bool = False,
    ) -> FileReport:
        """The first diagnosis (see engine.analyze)."""
        return await engine.analyze(_described(script), options or self.options, self, on_event=on_event, on_output=on_output,
                                    warm_next=warm_next, on_findings=on_findings)

    async def verify(
        self,
        report: FileReport,
        budget_s: float,
        options: RunOptions | None = None,
        *,
        on_update: UpdateCallback | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> VerifySummary | None:
        """The report's fixes proved by experiment, in place (see engine.verify_report)."""
        return await engine.verify_report(report, options or self.options, budget_s, self, on_update=on_update, on_progress=on_progress)

    async def check(
        self,
        script: Script | str,
        options: RunOptions | None = None,
        *,
        verify_seconds: float | None = 60.0,
        on_event: EventCallback | None = None,
        on_output: OutputCallback | None = None,
        on_findings: FindingsCallback | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> FileReport:
        """Analyze, then verify the fixes when `verify_seconds` is set: what a user asks for."""
        script = _described(script)
        options = options or self.options
        if self._reports is None:
            return await self._check(script, options, verify_seconds, on_event, on_output, on_findings, on_progress)
        key = (script.path, script.text, repr(astuple(options)), verify_seconds)
        if key not in self._reports:
            self._reports[key] = await self._check(script, options, verify_seconds, on_event, on_output, on_findings, on_progress)
        return self._reports[key]

    async def _check(self, script: Script, options: RunOptions, verify_seconds: float | None, on_event: EventCallback | None,
                     on_output: OutputCallback | None, on_findings: FindingsCallback | None,
                     on_progress: Callable[[str], None] | None) -> FileReport:
        report = await self.analyze(script, options, on_event=on_event, on_output=on_output, on_findings=on_findings,
                                    warm_next=verify_seconds is not None)
        if verify_seconds:
            await self.verify(report, verify_seconds, options, on_progress=on_progress)
        return report

    # ------------------------------------------------------------ lifecycle
    async def ready(self, options: RunOptions | None = None) -> bool:
        """Until a training process is ready for the next run (TensorFlow imported once in
        the fork server, a spare forked from it): the editor's steady state."""
        return await self.pool.ready(options or self.options)

    async def drain(self, servers: bool = False) -> None:
        """Stop the spare workers (and the fork servers with `servers`); the session stays usable."""
        await self.pool.drain(servers=servers)

    async def close(self) -> None:
        """Stop every process the session started; nothing of it is left when this returns."""
        await self.pool.aclose()

    def pids(self) -> list[int]:
        """The idle processes the session keeps: fork servers and spare workers."""
        return [*self.pool.forks.pids(), *self.pool.pids()]


def _described(script: Script | str) -> Script:
    return script if isinstance(script, Script) else describe(script)

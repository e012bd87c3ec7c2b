"""What the user sees of a run while it trains: a cancellable work-done progress and the
script's own output in the log (batched and capped, so a chatty script cannot flood the client)."""

from __future__ import annotations

import asyncio
import time

from lsprotocol import types as lsp

from ..trace import Trace, TraceEvent
from .documents import DocState
from .host import Editor
from .logs import log
from .publisher import Publisher

MAX_LOG_LINES_PER_RUN = 400


class RunProgress:
    """A cancellable work-done progress for one run; client cancel cancels the run."""

    def __init__(self, server: Editor, publisher: Publisher, token: str, name: str, state: DocState) -> None:
        self.server, self.publisher, self.token, self.name, self.state = server, publisher, token, name, state
        self.active = False
        self.last_report = 0.0
        self.epochs = 0
        self.steps = 0

    async def begin(self, task: asyncio.Task | None) -> None:
        caps = self.server.client_capabilities
        if not (caps and caps.window and caps.window.work_done_progress):
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.server.work_done_progress.create_async(self.token)), 5)
        except Exception:  # noqa: BLE001 - no progress UI, the run still happens
            return
        self.active = True
        fut = self.server.work_done_progress.tokens.get(self.token)
        if fut is not None and task is not None:
            fut.add_done_callback(lambda f: task.cancel() if f.cancelled() and not task.done() else None)
        self.server.work_done_progress.begin(self.token, lsp.WorkDoneProgressBegin(
            title=f"Training {self.name}", cancellable=True, message="starting", percentage=0))

    def on_event(self, event: TraceEvent, trace: Trace) -> None:
        kind = event.kind
        if kind == "ready":
            log.info(f"deeplocalize: training {self.name} in process {event.pid} (Keras {event.versions.get('keras')}, "
                     f"TensorFlow {event.versions.get('tensorflow')})")
            self.publisher.status(self.state, "running", pid=event.pid)
        if not self.active:
            return
        if kind == "fit" and trace.fit:
            self.epochs, self.steps = trace.fit.epochs, trace.fit.steps_per_epoch or 0
        if kind not in ("fit", "epoch_begin", "step", "epoch", "model"):
            return
        now = time.monotonic()
        if kind == "step" and now - self.last_report < 0.25:
            return
        self.last_report = now
        epoch = event.epoch if event.epoch is not None else (trace.steps[-1].epoch if trace.steps else 0)
        step = (event.step or 0) + (1 if kind == "step" else 0)
        msg = f"epoch {epoch + 1}/{self.epochs or '?'}" + (f", step {step}/{self.steps}" if self.steps else "")
        pct = None
        if self.epochs:
            done = epoch + (min(step / self.steps, 1.0) if self.steps else 0.0)
            pct = int(min(99, 100 * done / self.epochs))
        try:
            self.server.work_done_progress.report(self.token, lsp.WorkDoneProgressReport(message=f"Training {self.name} — {msg}", percentage=pct))
        except Exception:  # noqa: BLE001
            pass

    def message(self, text: str) -> None:
        if not self.active:
            return
        try:
            self.server.work_done_progress.report(self.token, lsp.WorkDoneProgressReport(message=f"{self.name}: {text}"))
        except Exception:  # noqa: BLE001
            pass

    def end(self, message: str) -> None:
        if not self.active:
            return
        self.active = False
        try:
            self.server.work_done_progress.end(self.token, lsp.WorkDoneProgressEnd(message=message))
        except Exception:  # noqa: BLE001
            pass
        self.server.work_done_progress.tokens.pop(self.token, None)


class OutputLog:
    """The script's own output, batched into log messages and capped per run."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.buffer: list[str] = []
        self.count = 0
        self.last_flush = time.monotonic()

    def line(self, text: str) -> None:
        self.count += 1
        if self.count <= MAX_LOG_LINES_PER_RUN:
            self.buffer.append(text)
        if time.monotonic() - self.last_flush > 0.5:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if self.buffer:
            log.info("\n".join(f"[{self.name}] {l}" for l in self.buffer))
            self.buffer = []
        if self.count > MAX_LOG_LINES_PER_RUN:
            log.info(f"[{self.name}] ... {self.count - MAX_LOG_LINES_PER_RUN} more output lines not shown")
            self.count = MAX_LOG_LINES_PER_RUN

"""Owns the training processes: start, budgets, event stream, cancellation, the end.

A `Worker` is one training process, started before it has a job (TensorFlow imported,
waiting on a private pipe), so that an analysis does not wait for the import when it
starts. It comes from the fork server of its interpreter (forks.py: a fork of a process
that imported TensorFlow once) or, when none can serve, from a fresh interpreter. Every
training process runs in its own session, keeps what its script starts below it, and its
job ends when *it* ends: then whatever it left running is stopped (processes.py), never
waited for.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Protocol

from .forks import ForkedProcess, ForkServers, fork_said
from .probe.child import OUTPUT_MARKER  # stdlib-only module: safe to import here
from .processes import JobTree, tree_rss_mb
from .script import Script
from .training_process import child_command
from .trace import ScriptResult, Trace, TraceBuilder, TraceEvent, parse_ready
from .vocab import RunStatus

log = logging.getLogger("deeplocalize.runner")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colors and cursor moves of progress bars
# Once the training process has ended and what it left is stopped, its pipes close at once;
# this bounds the wait for a process that could not be stopped (never the run's budget).
_DRAIN_S = 3.0

EventCallback = Callable[[TraceEvent, Trace], None]
OutputCallback = Callable[[str], None]
StopPredicate = Callable[[Trace], bool]


@dataclass
class RunOptions:
    """Budgets and environment of one analysis run; every field is user-settable."""

    python: str = sys.executable
    max_seconds: float = 60.0
    max_epochs: int | None = 20
    max_memory_mb: int | None = 4096
    env: dict[str, str] = field(default_factory=dict)
    seed: int | None = 0
    fetch_every: int = 1
    output_lines: int = 200
    cwd: str | None = None  # working directory of the script (None: the script's folder)
    max_fits: int = 4  # fit calls analyzed (fine-tuning, a second model); the script stops after the last
    workers: int = 1  # processes that train a MultiWorkerMirroredStrategy script together (see cluster.py)
    fork_server: bool = True  # training processes forked from a process that imported TensorFlow once

    def key(self) -> tuple:
        return (self.python, tuple(sorted(self.env.items())))


@dataclass
class RunResult:
    """How a run ended (`status`, see vocab.RunStatus).

    `trace` is the last fit's (where a crash or the end of the script is recorded);
    `traces` holds one per analyzed fit, in order.
    """

    status: RunStatus
    trace: Trace
    duration_s: float
    returncode: int | None = None
    output: list[str] = field(default_factory=list)
    message: str = ""
    traces: list[Trace] = field(default_factory=list)
    # A recorded run (`record=True`): what the script itself reported, in order: each fit's last
    # epoch logs, each of its own evaluate calls' results.
    script_fits: list[ScriptResult] = field(default_factory=list)
    script_evaluations: list[ScriptResult] = field(default_factory=list)
    # Processes the script left running when it ended by itself, stopped: `command`, and the
    # user's call `site` that started it where known.
    leftover: list[dict] = field(default_factory=list)
    # The fork server died under the run: the training process died with it, not of the script.
    lost: bool = False


class Runs(Protocol):
    """What the stages above need of whoever owns the training processes (the engine session):
    a run of a script, and a hint that another run follows soon."""

    async def run(self, script: Script, options: RunOptions, *, on_event: EventCallback | None = None, on_output: OutputCallback | None = None,
                  should_stop: StopPredicate | None = None, keep_warm: bool = False, record: bool = False) -> RunResult: ...

    def prewarm_soon(self, options: RunOptions) -> None: ...


USER_PYTHONPATH = "DEEPLOCALIZE_USER_PYTHONPATH"


def child_env(options: RunOptions) -> dict[str, str]:
    """The user's environment plus their overrides; nothing of ours leaks in.

    An editor extension that puts its bundled package on the server's PYTHONPATH
    passes the user's own PYTHONPATH in DEEPLOCALIZE_USER_PYTHONPATH: the training
    process gets that one back, never the extension's.
    """
    env = dict(os.environ)
    if USER_PYTHONPATH in env:
        user = env.pop(USER_PYTHONPATH)
        if user:
            env["PYTHONPATH"] = user
        else:
            env.pop("PYTHONPATH", None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    # A cluster the user's shell names is not joined by an analysis: its workers would wait
    # for this process forever. Multi-worker runs (and --env) set their own.
    env.pop("TF_CONFIG", None)
    env.update(options.env)
    return env


# Variables that change while a client runs without changing what an import does (pytest names
# the current test): a fork server is shared across their values, and each training process
# gets its own value set after the fork, as a fresh interpreter would have it.
_PER_JOB_ENV = ("PYTEST_CURRENT_TEST",)


def _split_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the fork server's environment, what each training process sets on top of it)."""
    return {k: v for k, v in env.items() if k not in _PER_JOB_ENV}, {k: env[k] for k in _PER_JOB_ENV if k in env}


LIVE: "set[Worker]" = set()
FORK_SERVERS: "weakref.WeakSet[ForkServers]" = weakref.WeakSet()  # every registry in this process, for kill_all


def kill_all() -> None:
    """Last resort on exit paths: no process of ours may outlive the server or CLI."""
    for worker in list(LIVE):
        worker.kill()
    for servers in list(FORK_SERVERS):
        servers.kill()


class ExecProcess:
    """A training process started as a fresh interpreter (`python child.py`)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid = proc.pid

    @classmethod
    async def start(cls, options: RunOptions, fds: tuple[int, int, int], env: dict[str, str]) -> "ExecProcess":
        events_w, control_r, output_w = fds
        proc = await asyncio.create_subprocess_exec(
            *child_command(options.python, events_w, control_r),
            pass_fds=(events_w, control_r), stdin=asyncio.subprocess.DEVNULL, stdout=output_w, stderr=output_w,
            start_new_session=True, env=env)
        return cls(proc)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int | None:
        return await self._proc.wait()


class Worker:
    """One training process, started before it has a job; its TensorFlow runtime untouched until
    the script runs (a script may configure it: threads, devices). `forks`: where to fork it from
    (None: a fresh interpreter). `extra_env`: set in its environment only (a multi-worker run's
    TF_CONFIG), so the fork server stays shared."""

    def __init__(self, options: RunOptions, forks: ForkServers | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.options = options
        self.forks = forks if options.fork_server else None
        self.extra_env = extra_env or {}
        self.proc: ForkedProcess | ExecProcess | None = None
        self.tree: JobTree | None = None
        self.forked = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._events: asyncio.StreamReader | None = None
        self._output: asyncio.StreamReader | None = None
        self._transports: list[asyncio.BaseTransport] = []
        self._control_w: int | None = None
        self.ready_event: dict | None = None
        # The read of its first event line (`ready`), shared: whoever waits for the worker to be
        # ready and the run that takes it read that line through this one task, never two
        # readers on one pipe (a second reader fails, and the run would lose every event).
        self._first_line: asyncio.Future | None = None
        self.started_at = time.monotonic()
        self.used = False

    async def start(self) -> "Worker":
        self.loop = asyncio.get_running_loop()
        ev_r, ev_w = os.pipe()
        ct_r, ct_w = os.pipe()
        out_r, out_w = os.pipe()
        theirs = (ev_w, ct_r, out_w)
        try:
            self.proc = await self._fork(theirs)
            self.forked = self.proc is not None
            if self.proc is None:
                self.proc = await ExecProcess.start(self.options, theirs, {**child_env(self.options), **self.extra_env})
        except BaseException:
            for fd in (ev_r, ct_w, out_r):
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self._control_w = ct_w
        self.tree = JobTree(self.proc.pid, JobTree.new_marker())
        LIVE.add(self)
        self._events = await self._reader(ev_r)
        self._output = await self._reader(out_r)
        return self

    async def _fork(self, fds: tuple[int, int, int]) -> ForkedProcess | None:
        if self.forks is None:
            return None
        shared, own = _split_env(child_env(self.options))
        server = self.forks.get(self.options.python, shared)
        if server is None:
            return None
        proc = await server.fork(fds, {**own, **self.extra_env})
        if proc is None:
            log.info(f"deeplocalize: no fork server for {self.options.python} ({(server.problem or 'unavailable').splitlines()[0]}); "
                     "this run starts a fresh interpreter, which imports TensorFlow again", extra=fork_said("fresh_interpreter"))
        return proc

    async def _reader(self, fd: int) -> asyncio.StreamReader:
        reader = asyncio.StreamReader(limit=2**24)
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                                           os.fdopen(fd, "rb", buffering=0))
        self._transports.append(transport)
        return reader

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def kill(self) -> list[str]:
        """Stop the training process and everything it started; returns what else was running."""
        LIVE.discard(self)
        left: list[str] = []
        if self.tree is not None:
            left = self.tree.stop()
        if self._control_w is not None:
            try:
                os.close(self._control_w)
            except OSError:
                pass
            self._control_w = None
        return left

    async def wait_ready(self, timeout: float = 60.0) -> bool:
        """Until TensorFlow is imported in the worker (its `ready` event); the event is kept
        for the job's trace. False if it died or did not get there in time."""
        if self.ready_event is not None:
            return True
        try:
            line = await asyncio.wait_for(asyncio.shield(self._read_first_line()), timeout)
        except asyncio.TimeoutError:
            return False
        event = parse_ready(line)
        if event is None:
            self.kill()
            return False
        self.ready_event = event
        return True

    def _read_first_line(self) -> asyncio.Future:
        assert self._events is not None
        if self._first_line is None:
            self._first_line = asyncio.ensure_future(self._events.readline())
            self._first_line.add_done_callback(lambda f: f.cancelled() or f.exception())  # a spare retired unread: no warning
        return self._first_line

    async def stop(self) -> None:
        """Kill and reap: nothing of it is left when this returns (not even a zombie)."""
        self.kill()
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except (asyncio.TimeoutError, ProcessLookupError):
                pass
        self._close_transports()

    def _close_transports(self) -> None:
        for transport in self._transports:
            try:
                transport.close()
            except RuntimeError:  # its event loop is closed: the pipe goes with the transport
                pass
        self._transports.clear()

    async def run(
        self,
        script: Script,
        on_event: EventCallback | None = None,
        on_output: OutputCallback | None = None,
        should_stop: StopPredicate | None = None,
        record: bool = False,
    ) -> RunResult:
        """Give the worker its job and follow it to the end, enforcing the budgets.

        The script's text runs in place of the file's when it is not the file's own (a
        counterfactual run with a fix applied, a notebook); the file is never written.
        `record` runs the script to its end without layer probes, keeping only what it
        reports (`RunResult.script_fits`, `script_evaluations`)."""
        assert self.proc is not None and self.tree is not None and self._events is not None and not self.used
        self.used = True
        opts = self.options
        job = {"script": script.path, "argv": [], "max_epochs": opts.max_epochs, "seed": opts.seed, "fetch_every": opts.fetch_every,
               "cwd": opts.cwd, "max_fits": opts.max_fits, "marker": self.tree.marker}
        if script.source is not None:
            job["source"] = script.source
        if record:
            job["record"] = True
        # The training process ends with os._exit (TensorFlow's teardown is slow), so what it
        # meant to delete at exit (autograph's generated modules, a few per fit) would stay in
        # the temp folder: it writes into one of its own, removed here when the job is over.
        job["tmpdir"] = scratch = tempfile.mkdtemp(prefix="deeplocalize-job-")
        self._send(job)
        state = _JobState(TraceBuilder(script.path), opts.output_lines)
        readers = [asyncio.ensure_future(self._read_events(state, on_event, should_stop)),
                   asyncio.ensure_future(self._read_output(state, on_output))]
        watcher = asyncio.ensure_future(self._watch(state))
        try:
            # The job ends when the training process ends, not when its pipes close: a process
            # the script started may hold them open. What it left running is stopped now.
            returncode = await self.proc.wait()
            state.left = self.kill()
            await asyncio.wait(readers, timeout=_DRAIN_S)
        except asyncio.CancelledError:
            self.kill()
            state.end("cancelled", "cancelled")
            try:
                await asyncio.wait_for(asyncio.shield(self.proc.wait()), 10)
            except BaseException:  # noqa: BLE001
                pass
            raise
        finally:
            watcher.cancel()
            self.kill()
            for reader in readers:
                reader.cancel()
            self._close_transports()
            shutil.rmtree(scratch, ignore_errors=True)
        return state.result(returncode, lost=self.forked and returncode is None)

    def _send(self, job: dict) -> None:
        """The job goes down the control pipe, which is then closed: one job per worker."""
        try:
            os.write(self._control_w, (json.dumps(job) + "\n").encode())
        except OSError:
            pass
        finally:
            if self._control_w is not None:
                os.close(self._control_w)
                self._control_w = None

    async def _read_events(self, job: "_JobState", on_event: EventCallback | None, should_stop: StopPredicate | None) -> None:
        assert self._events is not None
        builder = job.builder
        line = await self._read_first_line()  # perhaps read already, by wait_ready()
        while line:
            event = builder.feed_line(line)
            if event is not None and event.kind not in ("script_fit", "script_evaluate"):
                if on_event is not None:
                    on_event(event, builder.trace)
                if should_stop is not None and event.training and job.status == "finished" and should_stop(builder.trace):
                    job.end("decisive")
                    self.kill()
                    return
            line = await self._events.readline()

    async def _read_output(self, job: "_JobState", on_output: OutputCallback | None) -> None:
        assert self._output is not None
        pending = b""
        # stdout and stderr share one pipe: each carries the marker once.
        markers_left = 2
        while chunk := await self._output.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                # A progress bar redraws with \r: keep its final state, without terminal escapes.
                text = ANSI.sub("", raw.decode("utf-8", "replace").split("\r")[-1]).rstrip()
                if markers_left:
                    if OUTPUT_MARKER in text:
                        markers_left -= 1
                    elif text:
                        job.startup.append(text)
                    continue
                if text:
                    job.output.append(text)
                    if on_output is not None:
                        on_output(text)
            if len(pending) > 1 << 16:
                pending = pending[-(1 << 16) :]
        if pending.strip():
            job.output.append(pending.decode("utf-8", "replace").split("\r")[-1].rstrip())

    async def _watch(self, job: "_JobState") -> None:
        """The budgets, and a look at the process tree every quarter second (see processes.JobTree)."""
        assert self.proc is not None and self.tree is not None
        opts = self.options
        while self.proc.returncode is None:
            await asyncio.sleep(0.25)
            self.tree.watch()
            if time.monotonic() - job.start > opts.max_seconds:
                job.end("timeout", f"stopped after the {opts.max_seconds:g} s budget")
                self.kill()
                return
            if opts.max_memory_mb and tree_rss_mb(self.proc.pid) > opts.max_memory_mb:
                job.end("memory", f"stopped: memory above the {opts.max_memory_mb} MB budget")
                self.kill()
                return


# Statuses of a run that the analysis stopped (its budgets, a decisive finding, a cancel): the
# trace's end_reason then says so.
STOPPED_BY_US: frozenset[str] = frozenset({"timeout", "memory", "decisive", "cancelled"})


class _JobState:
    """What the readers and the budget watcher of one job share while it runs."""

    def __init__(self, builder: TraceBuilder, output_lines: int) -> None:
        self.builder = builder
        self.output: collections.deque[str] = collections.deque(maxlen=output_lines)
        self.startup: collections.deque[str] = collections.deque(maxlen=output_lines)
        self.start = time.monotonic()
        self.status: RunStatus = "finished"
        self.message = ""
        self.left: list[str] = []  # still running once the training process had ended by itself

    def end(self, status: RunStatus, message: str = "") -> None:
        self.status, self.message = status, message

    def result(self, returncode: int | None, lost: bool = False) -> RunResult:
        trace = self.builder.trace
        if not self.output and self.startup and not trace.versions:
            self.output.extend(self.startup)  # the worker died before the script: its start-up errors matter
        if self.status == "finished":
            if lost:
                self.end("failed", "the fork server died during the run, and the training process with it")
            elif trace.crash is not None:
                self.end("crashed")
            elif returncode not in (0, None) and trace.end_reason is None:
                self.end("failed", f"the training process died (exit code {returncode})" + (
                    ": killed by a signal, possibly out of memory" if returncode and returncode < 0 else ""))
        if self.status in STOPPED_BY_US and trace.end_reason is None:
            trace.end_reason = self.status  # the detectors tell a fit our budget cut from one that ended by itself
        # Left running by a script that ended by itself; what an analysis stopped is not the script's.
        left = [p for t in self.builder.traces for p in t.leftover]
        if self.status in ("finished", "crashed") and trace.end_reason != "fit_done":
            left += [{"command": c} for c in self.left]
        return RunResult(self.status, trace, time.monotonic() - self.start, returncode, list(self.output), self.message,
                         list(self.builder.traces), list(self.builder.script_fits), list(self.builder.script_evaluations), left,
                         lost and self.status == "failed")


class WorkerPool:
    """Training processes ready for a job, and the fork servers they are forked from.

    A spare is forked ahead of time and waits on its control pipe (no CPU), its TensorFlow
    runtime not started: it shares the fork server's memory, copy-on-write, so it costs little
    more than its own pages. At most `max_spares` wait, for whichever (interpreter,
    environment) keys are in use, the least recently started stopped first. With `refill`,
    the pool is topped up when a spare is taken and none is left, else when its run ends.
    Spares belong to the event loop that started them (their pipes are read there); one of
    another loop is stopped instead of used. The fork servers serve every loop."""

    def __init__(self, refill: bool = False, max_spares: int = 1, forks: ForkServers | None = None) -> None:
        self.refill = refill
        self.max_spares = max_spares
        self.forks = forks if forks is not None else ForkServers()
        FORK_SERVERS.add(self.forks)
        self._spare: list[tuple[tuple, Worker]] = []  # oldest first
        self._starting: dict[tuple, asyncio.Future] = {}
        self._pending: set[asyncio.Future] = set()
        self._scheduled: set[asyncio.Future] = set()
        self._closed = False
        self._draining = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _count(self, key: tuple) -> int:
        return sum(k == key for k, _ in self._spare)

    def _pop(self, key: tuple) -> Worker | None:
        for i, (k, worker) in enumerate(self._spare):
            if k == key:
                del self._spare[i]
                return worker
        return None

    def worker(self, options: RunOptions, extra_env: dict[str, str] | None = None) -> Worker:
        """A new (not yet started) worker from this pool's fork servers."""
        return Worker(options, forks=self.forks, extra_env=extra_env)

    async def take(self, options: RunOptions) -> Worker:
        key = options.key()
        loop = asyncio.get_running_loop()
        if not self._count(key):
            await self._start_in_flight(key)  # one is on its way: cheaper than a new fork
        while (worker := self._pop(key)) is not None:
            if worker.alive() and not worker.used and worker.loop is loop:
                worker.options = options
                if self.refill and not self._count(key):
                    # None left: the successor starts now. With one left, it starts when this run
                    # ends (run_script), so its start does not slow this run's first squiggle.
                    self.prewarm_soon(options)
                return worker
            self._retire(worker)
        return await self.worker(options).start()

    async def _start_in_flight(self, key: tuple) -> None:
        """Until a start of a spare for `key` already under way in this loop has landed (its future
        only ever gets a result)."""
        starting = self._starting.get(key)
        if starting is not None and starting.get_loop() is asyncio.get_running_loop():
            await asyncio.shield(starting)

    async def prewarm(self, options: RunOptions) -> None:
        """Start one more idle worker for these options, up to `max_spares` (one start at a time per key)."""
        key = options.key()
        loop = asyncio.get_running_loop()
        for k, w in list(self._spare):
            if not (w.alive() and not w.used and w.loop is loop):
                self._spare.remove((k, w))
                self._retire(w)
        if self._count(key) >= max(self.max_spares, 1) or key in self._starting or self._closed or self._draining:
            return
        fut = loop.create_future()
        self._starting[key] = fut
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        try:
            worker = await self.worker(options).start()
            if self._closed or self._draining:  # it must not outlive the pool or the run
                worker.kill()
                return
            while self._spare and len(self._spare) >= max(self.max_spares, 1):
                self._retire(self._spare.pop(0)[1])  # the least recently started
            self._spare.append((key, worker))
        except OSError:
            pass
        finally:
            self._starting.pop(key, None)
            fut.set_result(None)
        if self.refill and self._count(key) < self.max_spares and not self._closed:
            self.prewarm_soon(options)  # fill up to the depth, one start at a time

    def prewarm_soon(self, options: RunOptions) -> None:
        """Prewarm in the background, tracked, so that `drain` can wait for a start that is
        already scheduled instead of finding its worker idle after the user's run ended."""
        task = asyncio.ensure_future(self.prewarm(options))
        self._scheduled.add(task)
        task.add_done_callback(self._scheduled.discard)

    def _retire(self, worker: Worker) -> None:
        """Stop a spare and reap it (in the background where its loop runs: no zombie, no
        transport left to the GC)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if worker.loop is not loop:
            worker.kill()
            return
        fut = asyncio.ensure_future(worker.stop())
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)

    async def drain(self, servers: bool = False) -> None:
        """Stop the spare workers (the user keeps none between runs), and with `servers` the
        fork servers too; the pool stays usable. Starts already scheduled are let finish
        first (a fork, not an import), so none lands in the pool afterwards."""
        self._draining = True
        try:
            if self._scheduled:
                await asyncio.wait(list(self._scheduled), timeout=15)
            self._kill_spares()
            if servers:
                await asyncio.to_thread(self.forks.stop)
        finally:
            self._draining = False

    async def settled(self, timeout: float = 30.0) -> None:
        """Until no start or stop is in flight (or `timeout`): what the pool holds then stays as it
        is until the next run or prewarm (what a caller checks after `drain`, instead of waiting a while)."""
        deadline = time.monotonic() + timeout
        while (busy := [*self._scheduled, *self._pending]) and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(busy, timeout=left)

    def _kill_spares(self) -> None:
        for _, worker in self._spare:
            worker.kill()
        self._spare.clear()

    def close(self) -> None:
        self._closed = True
        self._kill_spares()
        self.forks.close()

    async def ready(self, options: RunOptions) -> bool:
        """Prewarm if needed and wait until a spare worker has imported TensorFlow (the
        editor's steady state: benchmarks time analyses from there)."""
        for _ in range(3):  # another analysis may take the spare just started: start the next one
            await self._start_in_flight(options.key())  # another caller's start: wait for it, not one more
            await self.prewarm(options)
            worker = next((w for k, w in self._spare if k == options.key()), None)
            if worker is not None:
                return await worker.wait_ready()
        return False

    async def aclose(self, servers: bool = True) -> None:
        """Close, let workers still starting finish (they kill themselves), and reap every
        spare; the fork servers too unless `servers` is False (a shared registry)."""
        self._closed = True
        for task in list(self._scheduled):
            task.cancel()  # a spare nobody will use: not waited for (a fork in flight ends by itself)
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=15)
        spares = [w for _, w in self._spare]
        self._spare.clear()
        loop = asyncio.get_running_loop()
        for w in spares:
            if w.loop is not loop:  # its pipes are read by a loop that is gone: killed, reaped by the fork server
                w.kill()
        await asyncio.gather(*(w.stop() for w in spares if w.loop is loop))
        if servers:
            await asyncio.to_thread(self.forks.close)

    def pids(self) -> list[int]:
        return [w.pid for _, w in self._spare if w.pid]


async def run_one(
    script: Script,
    options: RunOptions,
    pool: WorkerPool | None = None,
    on_event: EventCallback | None = None,
    on_output: OutputCallback | None = None,
    should_stop: StopPredicate | None = None,
    keep_warm: bool = False,
    record: bool = False,
) -> RunResult:
    """One training process runs the script. `keep_warm`: start the next worker while this
    one trains (another run follows)."""
    worker = await pool.take(options) if pool is not None else await Worker(options).start()
    if keep_warm and pool is not None:
        pool.prewarm_soon(options)
    try:
        result = await worker.run(script, on_event=on_event, on_output=on_output, should_stop=should_stop, record=record)
    finally:
        worker.kill()
        if pool is not None and pool.refill:
            pool.prewarm_soon(options)
        if worker.proc is not None and worker.proc.returncode is None:
            try:
                await asyncio.shield(worker.stop())
            except BaseException:  # noqa: BLE001 - cancelled while reaping: the kill was sent
                pass
    if result.lost and not (pool is not None and pool.closed):
        # Not the script's doing: the same job again in a fresh interpreter, said in the log
        # (not when the session was closed under the run: nobody waits for its answer).
        log.warning("deeplocalize: the fork server died during the run; running it again in a fresh interpreter", extra=fork_said("rerun_fresh"))
        worker = await Worker(options).start()
        try:
            return await worker.run(script, on_event=on_event, on_output=on_output, should_stop=should_stop, record=record)
        finally:
            worker.kill()
    return result

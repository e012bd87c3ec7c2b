"""Owns the training child process: spawn, budgets, event stream, cancellation.

A `Worker` is spawned ahead of time (TensorFlow imported, waiting for a job on a
private pipe) so that an analysis does not pay the ~4 s import when it starts.
Every child runs in its own session, so one `killpg` removes the whole tree.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from .probe.child import OUTPUT_MARKER  # stdlib-only module: safe to import here
from .trace import Trace, TraceBuilder, decode_event
from .vocab import RunStatus

CHILD = Path(__file__).resolve().parent / "probe" / "child.py"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colors and cursor moves of progress bars

EventCallback = Callable[[dict, Trace], None]
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
    # A recorded run (`record=True`): what the script itself reported, in order
    # (`script_fit`: last epoch's logs; `script_evaluate`: its own evaluate results).
    script_results: list[dict] = field(default_factory=list)


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


def kill_tree(pid: int) -> None:
    """Kill the child's process group and any descendant that left it."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in descendants:
        try:
            proc.kill()
        except psutil.Error:
            pass


def tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / (1024 * 1024)


LIVE: "set[Worker]" = set()


def kill_all() -> None:
    """Last resort on exit paths: no child may outlive the server or CLI."""
    for worker in list(LIVE):
        worker.kill()


# Calls that TensorFlow accepts only before its runtime is initialized. A warm worker has
# initialized it (it traces the statistics while idle), so a script making one of them
# runs in a worker started for it that has not.
_RUNTIME_CONFIG = re.compile(
    r"\b(set_(intra|inter)_op_parallelism_threads|set_logical_device_configuration|set_virtual_device_configuration"
    r"|set_memory_growth|set_visible_devices)\s*\(")


def configures_runtime(text: str) -> bool:
    return bool(_RUNTIME_CONFIG.search(text))


# The strategy whose workers `--workers N` starts (cluster.py); any other script runs as one process.
_MULTI_WORKER = re.compile(r"\bMultiWorkerMirroredStrategy\s*\(")


def uses_multi_worker(text: str) -> bool:
    return bool(_MULTI_WORKER.search(text))


class Worker:
    """One child interpreter, started before it has a job. `fresh_runtime`: it leaves the
    TensorFlow runtime uninitialized for a script that configures it."""

    def __init__(self, options: RunOptions, fresh_runtime: bool = False) -> None:
        self.options = options
        self.fresh_runtime = fresh_runtime
        self.proc: asyncio.subprocess.Process | None = None
        self._events: asyncio.StreamReader | None = None
        self._control_w: int | None = None
        self.ready_event: dict | None = None
        self.started_at = time.monotonic()
        self.used = False

    async def start(self) -> "Worker":
        ev_r, ev_w = os.pipe()
        ct_r, ct_w = os.pipe()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.options.python,
                "-u",
                str(CHILD),
                "--events-fd",
                str(ev_w),
                "--control-fd",
                str(ct_r),
                *(["--fresh-runtime"] if self.fresh_runtime else []),
                pass_fds=(ev_w, ct_r),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env=child_env(self.options),
            )
        except BaseException:
            for fd in (ev_r, ev_w, ct_r, ct_w):
                os.close(fd)
            raise
        os.close(ev_w)
        os.close(ct_r)
        self._control_w = ct_w
        LIVE.add(self)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(ev_r, "rb", buffering=0))
        self._events = reader
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def kill(self) -> None:
        LIVE.discard(self)
        if self.proc is not None and self.proc.returncode is None:
            kill_tree(self.proc.pid)
        if self._control_w is not None:
            try:
                os.close(self._control_w)
            except OSError:
                pass
            self._control_w = None

    async def wait_ready(self, timeout: float = 60.0) -> bool:
        """Until TensorFlow is imported in the worker (its `ready` event); the event is kept
        for the job's trace. False if it died or did not get there in time."""
        if self.ready_event is not None:
            return True
        assert self._events is not None
        try:
            line = await asyncio.wait_for(self._events.readline(), timeout)
        except asyncio.TimeoutError:
            return False
        try:
            event = json.loads(line) if line else None
        except json.JSONDecodeError:
            event = None
        if not event or event.get("type") != "ready":
            self.kill()
            return False
        self.ready_event = event
        return True

    async def stop(self) -> None:
        """Kill and reap: nothing of it is left when this returns (not even a zombie)."""
        self.kill()
        if self.proc is not None:
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except (asyncio.TimeoutError, ProcessLookupError):
                pass
            transport = getattr(self.proc, "_transport", None)
            if transport is not None:
                transport.close()

    async def run(
        self,
        script: str,
        on_event: EventCallback | None = None,
        on_output: OutputCallback | None = None,
        should_stop: StopPredicate | None = None,
        argv: list[str] | None = None,
        source: str | None = None,
        record: bool = False,
    ) -> RunResult:
        """Give the worker its job and follow it to the end, enforcing the budgets.

        `source` runs that text in place of the file's (a counterfactual run with a
        fix applied); the file itself is never written. `record` runs the script to its end
        without layer probes, keeping only what it reports (`RunResult.script_results`)."""
        assert self.proc is not None and self._events is not None and not self.used
        self.used = True
        opts = self.options
        job = {"script": script, "argv": argv or [], "max_epochs": opts.max_epochs, "seed": opts.seed, "fetch_every": opts.fetch_every,
               "cwd": opts.cwd, "max_fits": opts.max_fits}
        if source is not None:
            job["source"] = source
        if record:
            job["record"] = True
        self._send(job)
        job_state = _JobState(TraceBuilder(script), opts.output_lines)
        watcher = asyncio.ensure_future(self._watch_budgets(job_state))
        try:
            await asyncio.gather(self._read_events(job_state, on_event, should_stop), self._read_output(job_state, on_output))
            returncode = await self.proc.wait()
        except asyncio.CancelledError:
            self.kill()
            job_state.end("cancelled", "cancelled")
            try:
                await asyncio.shield(self.proc.wait())
            except BaseException:  # noqa: BLE001
                pass
            raise
        finally:
            watcher.cancel()
            self.kill()
        return job_state.result(returncode)

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
        if self.ready_event is not None:  # read early by wait_ready()
            builder.feed(self.ready_event)
            if on_event is not None:
                on_event(self.ready_event, builder.trace)
        while line := await self._events.readline():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("type") in ("script_fit", "script_evaluate"):
                job.script_results.append(decode_event(event))
                continue
            builder.feed(event)
            if on_event is not None:
                on_event(event, builder.trace)
            if should_stop is not None and event.get("type") in ("step", "epoch", "model") and job.status == "finished" and should_stop(builder.trace):
                job.end("decisive")
                self.kill()
                return

    async def _read_output(self, job: "_JobState", on_output: OutputCallback | None) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        pending = b""
        # stdout and stderr share one pipe: each carries the marker once.
        markers_left = 2
        while chunk := await self.proc.stdout.read(65536):
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

    async def _watch_budgets(self, job: "_JobState") -> None:
        assert self.proc is not None
        opts = self.options
        while self.proc.returncode is None:
            await asyncio.sleep(0.25)
            if time.monotonic() - job.start > opts.max_seconds:
                job.end("timeout", f"stopped after the {opts.max_seconds:g} s budget")
                self.kill()
                return
            if opts.max_memory_mb and tree_rss_mb(self.proc.pid) > opts.max_memory_mb:
                job.end("memory", f"stopped: memory above the {opts.max_memory_mb} MB budget")
                self.kill()
                return


class _JobState:
    """What the readers and the budget watcher of one job share while it runs."""

    def __init__(self, builder: TraceBuilder, output_lines: int) -> None:
        self.builder = builder
        self.output: collections.deque[str] = collections.deque(maxlen=output_lines)
        self.startup: collections.deque[str] = collections.deque(maxlen=output_lines)
        self.start = time.monotonic()
        self.status: RunStatus = "finished"
        self.message = ""
        self.script_results: list[dict] = []

    def end(self, status: RunStatus, message: str = "") -> None:
        self.status, self.message = status, message

    def result(self, returncode: int | None) -> RunResult:
        trace = self.builder.trace
        if not self.output and self.startup and not trace.versions:
            self.output.extend(self.startup)  # the worker died before the script: its start-up errors matter
        if self.status == "finished":
            if trace.crash is not None:
                self.end("crashed")
            elif returncode not in (0, None) and trace.end_reason is None:
                self.end("failed", f"the training process died (exit code {returncode})" + (
                    ": killed by a signal, possibly out of memory" if returncode and returncode < 0 else ""))
        return RunResult(self.status, trace, time.monotonic() - self.start, returncode, list(self.output), self.message,
                         list(self.builder.traces), self.script_results)


class WorkerPool:
    """Warm workers (TensorFlow imported, waiting for a job): at most `max_spares` idle
    in all, for whichever (interpreter, environment) keys are in use, the least recently
    started stopped first. An idle worker blocks on its control pipe: no CPU, about 0.5 GB
    of memory. With `refill`, the pool is topped up when a worker is taken and none is left,
    else when its run ends; with two spares, a save right after a short run finds one that
    has already imported TensorFlow (an import takes longer than a run that stops at a
    configuration error), and no import competes with a run for the CPU."""

    def __init__(self, refill: bool = False, max_spares: int = 1) -> None:
        self.refill = refill
        self.max_spares = max_spares
        self._spare: list[tuple[tuple, Worker]] = []  # oldest first
        self._starting: dict[tuple, asyncio.Future] = {}
        self._pending: set[asyncio.Future] = set()
        self._scheduled: set[asyncio.Future] = set()
        self._closed = False
        self._draining = False

    def _count(self, key: tuple) -> int:
        return sum(k == key for k, _ in self._spare)

    def _pop(self, key: tuple) -> Worker | None:
        for i, (k, worker) in enumerate(self._spare):
            if k == key:
                del self._spare[i]
                return worker
        return None

    async def take(self, options: RunOptions) -> Worker:
        key = options.key()
        starting = self._starting.get(key)
        if starting is not None and not self._count(key):
            try:
                await asyncio.shield(starting)  # one is on its way: cheaper than a new import
            except Exception:  # noqa: BLE001
                pass
        while (worker := self._pop(key)) is not None:
            if worker.alive() and not worker.used:
                worker.options = options
                if self.refill and not self._count(key):
                    # None left: the successor starts now. With one left, it starts when this run
                    # ends (run_script), so its import does not slow this run's first squiggle.
                    self.prewarm_soon(options)
                return worker
            worker.kill()
        return await Worker(options).start()

    async def prewarm(self, options: RunOptions) -> None:
        """Start one more idle worker for these options, up to `max_spares` (one import at a time per key)."""
        key = options.key()
        self._spare = [(k, w) for k, w in self._spare if w.alive() and not w.used]
        if self._count(key) >= max(self.max_spares, 1) or key in self._starting or self._closed or self._draining:
            return
        fut = asyncio.get_running_loop().create_future()
        self._starting[key] = fut
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        try:
            worker = await Worker(options).start()
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
            self.prewarm_soon(options)  # fill up to the depth, one import at a time

    def prewarm_soon(self, options: RunOptions) -> None:
        """Prewarm in the background, tracked, so that `drain` can wait for a start that is
        already scheduled instead of finding its worker idle after the user's run ended."""
        task = asyncio.ensure_future(self.prewarm(options))
        self._scheduled.add(task)
        task.add_done_callback(self._scheduled.discard)

    def _retire(self, worker: Worker) -> None:
        """Stop a spare and reap it in the background (no zombie, no transport left to the GC)."""
        fut = asyncio.ensure_future(worker.stop())
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Stop the spare workers (the user keeps none between runs); the pool stays usable.
        Starts already scheduled are let finish first (a process spawn, not an import), so none
        lands in the pool afterwards."""
        self._draining = True
        try:
            if self._scheduled:
                await asyncio.wait(list(self._scheduled), timeout=15)
            self._kill_spares()
        finally:
            self._draining = False

    def _kill_spares(self) -> None:
        for _, worker in self._spare:
            worker.kill()
        self._spare.clear()

    def close(self) -> None:
        self._closed = True
        self._kill_spares()

    async def ready(self, options: RunOptions) -> bool:
        """Prewarm if needed and wait until a spare worker has imported TensorFlow (the
        editor's steady state: benchmarks time analyses from there)."""
        await self.prewarm(options)
        worker = next((w for k, w in self._spare if k == options.key()), None)
        return bool(worker is not None and await worker.wait_ready())

    async def aclose(self) -> None:
        """Close, let workers still starting finish (they kill themselves), and reap every spare."""
        self._closed = True
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=15)
        spares = [w for _, w in self._spare]
        self._spare.clear()
        await asyncio.gather(*(w.stop() for w in spares))

    def pids(self) -> list[int]:
        return [w.pid for _, w in self._spare if w.pid]


def _script_text(script: str, source: str | None) -> str:
    if source is not None:
        return source
    try:
        return Path(script).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


async def run_script(
    script: str,
    options: RunOptions,
    pool: WorkerPool | None = None,
    on_event: EventCallback | None = None,
    on_output: OutputCallback | None = None,
    should_stop: StopPredicate | None = None,
    source: str | None = None,
    keep_warm: bool = False,
    record: bool = False,
) -> RunResult:
    """`keep_warm`: start the next worker while this one trains (another run follows)."""
    if options.workers > 1 and uses_multi_worker(_script_text(script, source)):
        from .cluster import run_cluster  # it builds on Worker

        return await run_cluster(script, options, on_event=on_event, on_output=on_output, should_stop=should_stop, source=source, record=record)
    if configures_runtime(_script_text(script, source)):
        worker = await Worker(options, fresh_runtime=True).start()  # never a warm one: see configures_runtime
    else:
        worker = await pool.take(options) if pool is not None else await Worker(options).start()
    if keep_warm and pool is not None:
        pool.prewarm_soon(options)
    try:
        return await worker.run(script, on_event=on_event, on_output=on_output, should_stop=should_stop, source=source, record=record)
    finally:
        worker.kill()
        if pool is not None and pool.refill:
            pool.prewarm_soon(options)
        if worker.proc is not None and worker.proc.returncode is None:
            try:
                await asyncio.shield(worker.stop())
            except BaseException:  # noqa: BLE001 - cancelled while reaping: the kill was sent
                pass


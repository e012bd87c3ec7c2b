"""Multi-worker runs: one script trained by several worker processes on this machine, as
`tf.distribute.MultiWorkerMirroredStrategy` does across machines.

Every worker runs the probe (its statistics are all-reduced in the step, so each worker
must trace the same probed step or the collectives would wait forever); the chief's trace
is the one analyzed, the others' events are read and dropped. The workers live and die
together: when the chief ends, for any reason, the others are killed; when another worker
ends first, the chief gets a short grace to end too, then it is killed and the run is
reported as failed, naming that worker, instead of waiting on it until the budget.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import replace

from .runner import EventCallback, OutputCallback, RunOptions, RunResult, StopPredicate, Worker, WorkerPool
from .script import Script

# How long the chief may keep going after another worker ended: long enough to finish a
# last step and exit on its own, short against any budget.
_GRACE_S = 10.0
# How long a chief that crashed or died waits for the others' ends: a worker killed from
# outside makes the chief's collective fail at once, often before that worker's own end is
# read, and the cause is the lost worker, not the chief's error.
_CAUSE_S = 3.0


def free_ports(n: int) -> list[int]:
    """Ports the OS has just handed out on 127.0.0.1 (held together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    """TF_CONFIG of worker `index` (0 is the chief) of a cluster on this machine."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


async def run_cluster(
    script: Script,
    options: RunOptions,
    pool: WorkerPool | None = None,
    on_event: EventCallback | None = None,
    on_output: OutputCallback | None = None,
    should_stop: StopPredicate | None = None,
    record: bool = False,
) -> RunResult:
    """Train `script` with `options.workers` processes and return the chief's run."""
    ports = free_ports(options.workers)

    def worker(i: int) -> Worker:
        # The chief's time budget is the run's: the others get a little longer, so that a budget
        # always ends the run as the chief's timeout, never as "a worker was lost".
        opts = replace(options, max_seconds=options.max_seconds + (_GRACE_S + 5 if i else 0))
        env = {"TF_CONFIG": tf_config(ports, i)}
        return pool.worker(opts, extra_env=env) if pool is not None else Worker(opts, extra_env=env)

    workers = [worker(i) for i in range(options.workers)]
    tasks: list[asyncio.Future] = []
    try:
        for w in workers:
            await w.start()
        chief = asyncio.ensure_future(workers[0].run(script, on_event=on_event, on_output=on_output, should_stop=should_stop, record=record))
        others = {asyncio.ensure_future(w.run(script, record=record)): i for i, w in enumerate(workers) if i}
        tasks = [chief, *others]
        return await _follow(chief, others, workers)
    finally:
        for w in workers:
            w.kill()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


async def _follow(chief: asyncio.Future, others: dict[asyncio.Future, int], workers: list[Worker]) -> RunResult:
    done, _ = await asyncio.wait({chief, *others}, return_when=asyncio.FIRST_COMPLETED)
    if chief in done:
        result: RunResult = chief.result()
        first_lost = await _lost_worker(others) if result.status in ("crashed", "failed") else None
        if first_lost is None:
            return result
        ended, lost = first_lost
    else:
        ended = next(iter(done))
        lost = ended.result()
        try:
            result = await asyncio.wait_for(asyncio.shield(chief), _GRACE_S)
            in_time = True
        except asyncio.TimeoutError:
            workers[0].kill()
            result, in_time = await chief, False
        if in_time and lost.status == "finished" and result.status in ("finished", "decisive"):
            return result  # both reached the end of the script
        if in_time and lost.status == "crashed" and result.status == "crashed":
            return result  # the script's own error, raised on every worker: the chief's says where
    if lost.status == "memory":  # the memory budget holds for each worker's process tree
        result = _worker_lost(result, others[ended], len(workers), lost)
        return replace(result, status="memory", message=f"stopped: memory of worker {others[ended]} above the {workers[0].options.max_memory_mb} MB budget")
    return _worker_lost(result, others[ended], len(workers), lost)


async def _lost_worker(others: dict[asyncio.Future, int]) -> tuple[asyncio.Future, RunResult] | None:
    """Another worker that ended abnormally, not of the script's own error, within `_CAUSE_S`
    of the chief's end: the cause of the chief's crash (its collective lost that peer)."""
    pending = set(others)
    loop = asyncio.get_running_loop()
    until = loop.time() + _CAUSE_S
    while pending and (left := until - loop.time()) > 0:
        done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            lost: RunResult = task.result()
            if lost.status in ("failed", "memory"):
                return task, lost
    return None


def _worker_lost(result: RunResult, index: int, count: int, lost: RunResult) -> RunResult:
    """The chief's run, failed because worker `index` ended while it still trained. Whatever
    the chief then did (an error from a collective that lost its peer, waiting) follows from
    that worker's end, not from the script: no crash of the chief is reported."""
    how = {"crashed": "crashed", "failed": "died", "memory": "went over the memory budget", "timeout": "hit the time budget",
           "finished": "finished early"}.get(lost.status, f"ended ({lost.status})")
    code = f", exit code {lost.returncode}" if lost.returncode not in (None, 0) else ""
    crash = lost.trace.crash
    why = f": {crash.exc_type}: {crash.message.splitlines()[0] if crash.message else ''}" if crash is not None else ""
    tail = [f"[worker {index}] {line}" for line in lost.output[-5:]]
    for trace in {id(t): t for t in [result.trace, *result.traces]}.values():
        trace.crash = None
    return replace(result, status="failed", output=[*result.output, *tail],
                   message=f"worker {index} of {count} {how}{code}{why} while the chief (worker 0) still trained; all workers were stopped")

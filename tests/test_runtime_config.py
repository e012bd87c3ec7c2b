"""Scripts that configure the TensorFlow runtime (threads, logical devices) must run as under
`python`, where those calls fail once the runtime has started: no training process runs a
TensorFlow operation before the script, so the spare that waits in the editor's steady state
serves them like any other script."""

from __future__ import annotations

import asyncio

import pytest

from conftest import FIXTURES
from deeplocalize.runner import RunOptions
from deeplocalize.vocab import is_serious

RUNTIME = FIXTURES / "runtime"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_scripts_that_configure_the_runtime_train_normally_in_the_waiting_spare(session):
    async def run_all() -> list[tuple[str, object, bool]]:
        options = RunOptions()
        out = []
        # visible_devices.py (+ memory growth) needs a GPU to fail in a started runtime: not run here.
        for name in ("threads.py", "logical_devices.py"):
            await session.ready(options)  # the editor's steady state: a spare with TensorFlow imported
            spare = session.pool.pids()
            report = await session.analyze(str(RUNTIME / name), options)
            out.append((name, report, bool(spare) and not set(spare) & set(session.pool.pids())))  # taken, not retired
        return out

    for name, report, in_spare in asyncio.run(run_all()):
        assert report.status == "ok" and not any(is_serious(f.finding.severity) for f in report.findings), (
            name, [f"{f.finding.code}: {f.finding.message}" for f in report.findings])
        assert report.trace.fit is not None and report.trace.epochs, name  # it trained, probed
        assert in_spare, name  # the spare served it

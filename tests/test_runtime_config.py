"""Scripts that configure the TensorFlow runtime (threads, logical devices, visible devices,
GPU memory growth) must run as under `python`: a spare worker has initialized the runtime
(it traced the probe's statistics), so they get a fresh fork of the fork server, whose
runtime no operation has touched, and the spare stays for the next script."""

from __future__ import annotations

import asyncio

import pytest

from conftest import FIXTURES
from deeplocalize.runner import RunOptions
from deeplocalize.script import configures_runtime
from deeplocalize.vocab import is_serious

RUNTIME = FIXTURES / "runtime"


@pytest.mark.parametrize("line", [
    "tf.config.threading.set_intra_op_parallelism_threads(2)",
    "tf.config.threading.set_inter_op_parallelism_threads(2)",
    "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)",
    "tf.config.experimental.set_virtual_device_configuration(gpu, [...])",
    "tf.config.experimental.set_memory_growth(gpu, True)",
    "tf.config.set_visible_devices([], 'GPU')",
])
def test_runtime_configuration_calls_are_recognized(line):
    assert configures_runtime(f"import tensorflow as tf\n{line}\n")


def test_ordinary_scripts_keep_the_warm_worker():
    assert not configures_runtime((FIXTURES / "correct/c01_digits_mlp.py").read_text())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_scripts_that_configure_the_runtime_train_normally_next_to_a_warm_worker(session):
    async def run_all() -> list[tuple[str, object, bool]]:
        options = RunOptions()
        await session.ready(options)  # the editor's steady state: a spare with TensorFlow imported and its runtime initialized
        out = []
        # visible_devices.py (+ memory growth) needs a GPU to fail in a warm worker: recognized above, not re-run here.
        for name in ("threads.py", "logical_devices.py"):
            spare = session.pool.pids()
            report = await session.analyze(str(RUNTIME / name), options)
            out.append((name, report, bool(spare) and session.pool.pids() == spare))
        return out

    for name, report, spare_kept in asyncio.run(run_all()):
        assert report.status == "ok" and not any(is_serious(f.finding.severity) for f in report.findings), (
            name, [f"{f.finding.code}: {f.finding.message}" for f in report.findings])
        assert report.trace.fit is not None and report.trace.epochs, name  # it trained, probed
        assert spare_kept, name  # the warm worker was not given a script it would break

"""Training under tf.distribute: MirroredStrategy on two logical CPUs and MultiWorkerMirroredStrategy
with two worker processes on this machine give the diagnosis of the same script on one device;
the workers of a run live and die together; unsupported strategies are refused with a clear message."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from conftest import FIXTURES, ROOT, running_jobs
from deeplocalize.evaluation import Expectation, evaluate
from deeplocalize.report import FileReport
from deeplocalize.runner import RunOptions
from deeplocalize.vocab import STAT_FIELDS

# The notebook and distributed twins ask for the same single-device analyses: one worker answers them once.
pytestmark = pytest.mark.xdist_group("twins")

DISTRIBUTED = FIXTURES / "distributed"
TWINS = json.loads((DISTRIBUTED / "twins.json").read_text())["scripts"]


def _findings(report: FileReport) -> list[tuple]:
    """What a user compares: code, severity, cause and the source text from the finding's column
    (a distributed script indents the model under `strategy.scope()`, so lines and columns move)."""
    lines = report.source.splitlines() if report.source else open(report.path).read().splitlines()
    out = []
    for lf in report.findings:
        if lf.finding.code == "keras-distributed-bug":
            continue
        line = lines[lf.range.start.line - 1][lf.range.start.column - 1:].replace("  # FAULT", "")
        out.append((lf.finding.code, lf.finding.severity, lf.finding.root_cause, line))
    return sorted(out)


def _training(session) -> set[int]:
    return {p.pid for p in running_jobs(session)}


# ------------------------------------------------------------------ refused before running (fast)
@pytest.mark.parametrize("call", ["tf.distribute.TPUStrategy(resolver)", "tf.distribute.experimental.ParameterServerStrategy(resolver)",
                                  "tf.distribute.experimental.CentralStorageStrategy()"])
def test_an_unsupported_strategy_is_refused_at_its_line_without_running(tmp_path, call, session):
    script = tmp_path / "train.py"
    script.write_text(f"import keras\nimport tensorflow as tf\n\nresolver = None\nstrategy = {call}\nmodel = keras.Sequential()\n")
    report = asyncio.run(session.analyze(str(script)))
    assert report.status == "nothing_to_run" and report.run is None
    name = call.split("(")[0].split(".")[-1]
    assert name in report.message and "MirroredStrategy" in report.message  # says what is supported instead
    (only,) = report.findings
    assert only.finding.code == "unsupported-strategy" and only.finding.severity == "information"
    assert (only.range.start.line, only.range.start.column) == (5, len("strategy = ") + 1)
    result = subprocess.run([sys.executable, "-m", "deeplocalize", "check", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and f"skipped: not analyzed: the script trains under {name}" in result.stdout


# ------------------------------------------------------------------ the statistics are the global batch's
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["mirrored_relu_output.py", "mirrored_healthy_cnn.py"])
def test_mirrored_statistics_equal_single_device_statistics_step_by_step(name, session):
    """Each replica sees half of every batch: means, maxima, dead units, the loss and the hit rate
    must be those of the whole batch (sums and maxima combined across replicas, not means of
    means), and the gradients the all-reduced ones. Same seed, same data order: same numbers."""
    twin = next(t["twin"] for t in TWINS if t["path"] == name)
    single = asyncio.run(session.run(str(FIXTURES / twin), RunOptions(max_epochs=1, seed=0))).trace
    mirrored = asyncio.run(session.run(str(DISTRIBUTED / name), RunOptions(max_epochs=1, seed=0))).trace
    assert not mirrored.probe_errors and mirrored.crash is None
    assert len(mirrored.steps) == len(single.steps) > 20
    compared = 0
    for a, b in zip(single.steps, mirrored.steps):
        assert set(a.values) == set(b.values)
        for key, stats in a.values.items():
            for field, x in stats.items():
                y = b.values[key][field]
                if math.isnan(x):
                    assert math.isnan(y)
                    continue
                # rows of a softmax sum to 1: their spread is float noise around 0
                tolerance = 1e-3 * abs(x) + 1e-6 if field == "rowsum_std" else 1e-3 * max(1.0, abs(x))
                assert abs(x - y) <= tolerance, (b.g, key, field, x, y)
                compared += 1
    assert compared > 1000


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_replica_statistics_combine_into_the_whole_batch_and_a_nan_on_one_replica_counts(tmp_path):
    """Two replicas whose shards differ in size, scale, sign and finiteness: the combined
    statistics are those of the whole batch computed on one device, on every replica."""
    script = tmp_path / "combine.py"
    script.write_text(textwrap.dedent("""
        import json
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from deeplocalize.probe import stats as S
        from deeplocalize.probe.collect import Collector, pack

        rng = np.random.default_rng(0)
        first = rng.normal(size=(6, 4)).astype("float32")
        second = (10 * rng.normal(size=(2, 4))).astype("float32")
        first[:, 3] = -1.0                       # unit 3 is dead on replica 0 only
        second[0, 3], second[1, 0] = 5.0, np.nan # ... alive on replica 1, which also has a NaN
        whole = np.concatenate([first, second])
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        data = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant([first, second][ctx.replica_id_in_sync_group]))

        def replica(x):
            col = Collector(tf.compat.v1.get_default_graph(), [])
            col.outputs[0], col.y_pred = x, x  # as the probe collects a layer's output and the predictions
            vec, layout = pack([object()], col)
            return vec[1:]  # after the sampled flag: [L0.out, y_pred] in layout order

        combined = [v.numpy().tolist() for v in strategy.experimental_local_results(tf.function(lambda d: strategy.run(replica, args=(d,)))(data))]
        single = tf.concat([S.activation_stats(tf.constant(whole)), S.prediction_stats(tf.constant(whole))], 0).numpy().tolist()
        print(json.dumps({"combined": combined, "single": single}))
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "server"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    single = result["single"]
    act = dict(zip(STAT_FIELDS["out"], single))
    assert act["nonfinite"] == pytest.approx(1 / 32)  # the NaN on replica 1 counts in the whole batch's non-finite share
    assert act["dead_units"] == 0.0  # no unit is dead over the whole batch (unit 3 lives on replica 1)
    for replica_values in result["combined"]:  # every replica holds the same, whole-batch numbers
        assert replica_values == pytest.approx(single, rel=1e-5, abs=1e-6)


# ------------------------------------------------------------------ same diagnosis as the twin
def _reports(session, workers: int) -> list[tuple[dict, FileReport, FileReport]]:
    twins = [t for t in TWINS if t["workers"] == workers]
    exps = [Expectation(DISTRIBUTED / t["path"], t["buggy"], [], []) for t in twins]
    # 6 epochs for both sides: every fault here shows within 3, and the healthy ones stay healthy.
    options = RunOptions(max_epochs=6, workers=workers)
    # Two processes per multi-worker run on two cores: one at a time.
    distributed = asyncio.run(evaluate(exps, session, options, parallel=2 if workers == 1 else 1)).scores
    # The notebook twins ask for the same single-device analyses: answered once by the session.
    singles = asyncio.run(evaluate([Expectation(FIXTURES / t["twin"], t["buggy"], [], []) for t in twins], session, RunOptions(max_epochs=6))).scores
    return [(t, d.report, s.report) for t, d, s in zip(twins, distributed, singles)]


@pytest.fixture(scope="module")
def mirrored(session) -> list[tuple[dict, FileReport, FileReport]]:
    return _reports(session, 1)


@pytest.fixture(scope="module")
def multiworker(session) -> list[tuple[dict, FileReport, FileReport]]:
    return _reports(session, 2)


def _assert_same_diagnosis(twin: dict, report: FileReport, single: FileReport) -> None:
    assert report.status == single.status == "ok"
    # The early stop works as on one device: a NaN or an established silent failure ends the run.
    assert (report.run.status == "decisive") == (single.run.status == "decisive"), (report.run.status, single.run.status)
    found = _findings(report)
    assert found == _findings(single)
    assert any(sev in ("error", "warning") for _, sev, _, _ in found) == twin["buggy"], found


MIRRORED = [t["path"] for t in TWINS if t["workers"] == 1]
MULTIWORKER = [t["path"] for t in TWINS if t["workers"] == 2]


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("i", range(len(MIRRORED)), ids=MIRRORED)
def test_a_mirrored_script_gets_the_findings_of_its_single_device_twin(mirrored, i):
    _assert_same_diagnosis(*mirrored[i])
    twin, report, single = mirrored[i]
    assert not any(lf.finding.code == "keras-distributed-bug" for lf in report.findings)  # Keras' MirroredStrategy path works


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("i", range(len(MULTIWORKER)), ids=MULTIWORKER)
def test_two_workers_get_the_findings_of_the_single_process_twin(multiworker, i):
    _assert_same_diagnosis(*multiworker[i])
    twin, report, single = multiworker[i]
    # Keras 3's own fit() fails with two workers: the user is told, at the fit line, that this is Keras'.
    (bug,) = [lf for lf in report.findings if lf.finding.code == "keras-distributed-bug"]
    assert bug.finding.severity == "warning" and "keras-team/keras#20585" in bug.finding.message
    assert report.source.splitlines()[bug.range.start.line - 1].startswith("model.fit(")


# ------------------------------------------------------------------ the workers live and die together
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cancelling_a_multi_worker_run_leaves_no_process(session):
    before = _training(session)

    async def go() -> set[int]:
        started = asyncio.Event()
        during: set[int] = set()

        def on_event(event, trace) -> None:
            if event.kind == "step" and not started.is_set():
                during.update(_training(session) - before)
                started.set()

        task = asyncio.ensure_future(session.run(str(DISTRIBUTED / "multiworker_healthy_iris.py"),
                                                 RunOptions(max_epochs=None, workers=2, max_seconds=200), on_event=on_event))
        await asyncio.wait_for(started.wait(), 150)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return during

    during = asyncio.run(go())
    assert len(during) == 2  # the chief and the other worker were both training
    deadline = time.monotonic() + 10
    while _training(session) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (_training(session) - before)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in during)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_that_dies_is_reported_at_once_not_waited_for(session):
    before = _training(session)
    killed: list[int] = []
    chief: list[int] = []

    def on_event(event, trace) -> None:
        if event.kind == "ready":  # only the chief's events are read: its pid is the chief's
            chief.append(event.pid)
        if event.kind == "step" and trace.steps and trace.steps[-1].g == 5 and not killed:
            for pid in _training(session) - before - set(chief):
                os.kill(pid, 9)
                killed.append(pid)

    start = time.monotonic()
    result = asyncio.run(session.run(str(DISTRIBUTED / "multiworker_healthy_iris.py"),
                                     RunOptions(max_epochs=None, workers=2, max_seconds=250), on_event=on_event))
    took = time.monotonic() - start
    assert killed, "the other worker was not found"
    assert result.status == "failed" and "worker 1 of 2 died" in result.message, result.message
    assert len(killed) == 1 and took < 120  # the grace after the worker's death, not the 250 s budget
    assert not (_training(session) - before)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_time_budget_stops_every_worker_and_is_reported_as_the_budget(session, tmp_path):
    before = _training(session)
    # Far more epochs than 15 s can train, however fast the machine.
    script = tmp_path / "multiworker_long_iris.py"
    script.write_text((DISTRIBUTED / "multiworker_healthy_iris.py").read_text().replace("epochs=30", "epochs=3000"))
    result = asyncio.run(session.run(str(script), RunOptions(max_epochs=None, workers=2, max_seconds=15)))
    assert result.status == "timeout" and "15 s budget" in result.message  # the analysis' own limit, not a lost worker
    assert not (_training(session) - before)


def test_the_cli_refuses_an_impossible_worker_count():
    result = subprocess.run([sys.executable, "-m", "deeplocalize", "check", "--workers", "0", str(DISTRIBUTED / "multiworker_lr_nan.py")],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0 and "--workers must be between 1 and 8" in result.stderr


def test_the_editor_setting_sets_the_worker_count():
    from deeplocalize.settings import Settings

    manifest = json.loads((ROOT / "package.json").read_text())["contributes"]["configuration"]["properties"]
    assert manifest["deeplocalize.workers"]["default"] == 1
    assert Settings.from_json({"workers": 2}, None).run_options().workers == 2
    assert Settings.from_json({"workers": "many"}, None).run_options().workers == 1  # a bad value falls back
    assert Settings.from_json({"workers": 99}, None).run_options().workers == 8

"""Scripts that start their own processes (a helper, a forked copy of the training process,
a multiprocessing pool, a daemon in a new session that ignores SIGTERM, a child that
reopens its output): the analysis ends within its budget, reports the run, says what was
left running, and leaves nothing running, in the CLI and the language server alike (slow)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Callable

import psutil
import pytest
from lsprotocol import types as lsp

from conftest import FIXTURES, FORKSERVER_NAME, ROOT, SPARE_NAME, ours_since, running_jobs
from lsp_helpers import finished, open_copy, save, statuses, until
from deeplocalize.runner import RunOptions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
PROCESSES = FIXTURES / "processes"
# fixture -> what the script leaves running when it ends, as the report names it (None: nothing)
CASES = {
    "popen_helper.py": "sleep 600",
    "fork_before_fit.py": "a forked copy of the training process",
    "fork_during_fit.py": "a forked copy of the training process",
    "pool_left_open.py": None,  # Python's own exit ends a pool's workers: nothing is left, nothing is said
    "daemon_new_session.py": "import os, signal, time",
    "reopens_stdout.py": "os.close(1)",
    "threads_left_running.py": None,  # threads are not processes: the run ends when the script does
}
BUDGET, VERIFY, GRACE = 30, 20, 30  # the CLI's budgets in the report, and a grace that covers TensorFlow's import


def _settle(before: set[int], timeout: float = 5.0, idle: Callable[[], dict[int, str]] = dict) -> list[str]:
    """What is still there once a kill has had time to land (a SIGKILLed process is reaped within ms),
    other than the `idle` processes the server keeps at that moment."""
    deadline = time.monotonic() + timeout
    while (left := ours_since(before | set(idle()))) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _idle(server_pid: int) -> dict[int, str]:
    """The language server's idle processes (fork servers, spare workers), by pid."""
    out = {}
    for p in psutil.Process(server_pid).children(recursive=True):
        try:
            if p.name() in (SPARE_NAME, FORKSERVER_NAME):
                out[p.pid] = p.name()
        except psutil.Error:
            continue  # gone while listed
    return out


def _left_finding(findings: list[dict]) -> list[dict]:
    return [f for f in findings if f["code"] == "processes-left"]


def test_the_cli_ends_in_its_budget_reports_each_run_and_leaves_nothing(tmp_path):
    """One CLI run over every case, as a CI job would check a folder: each file within its budgets,
    each reported, what was left said, and nothing running once the CLI has exited."""
    for name in [*CASES, "_model.py"]:
        shutil.copy(PROCESSES / name, tmp_path / name)
    before = {p.pid for p in psutil.process_iter()}
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "deeplocalize", "check", "--format", "json", "--max-seconds", str(BUDGET),
                        "--verify-seconds", str(VERIFY), *[str(tmp_path / name) for name in CASES]], capture_output=True, text=True,
                       timeout=len(CASES) * (BUDGET + VERIFY) + GRACE + 60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT / "server")})
    took = time.monotonic() - start
    files = {os.path.basename(f["path"]): f for f in json.loads(r.stdout)["files"]}
    assert r.returncode == 0 and sorted(files) == sorted(CASES), r.stdout + r.stderr
    assert took < sum(f["duration_s"] for f in files.values()) + GRACE  # no run waited on a leftover beyond its own time
    for name, doc in files.items():
        assert doc["duration_s"] < BUDGET + VERIFY, (name, doc["duration_s"])
        assert doc["status"] == "ok", (name, doc)  # a healthy model, analyzed to its end
        assert not [f for f in doc["findings"] if f["severity"] in ("error", "warning")], (name, doc["findings"])
        left = _left_finding(doc["findings"])
        if CASES[name] is None:
            assert left == [], name
        else:
            assert len(left) == 1 and left[0]["severity"] == "information" and CASES[name] in left[0]["message"], (name, doc["findings"])
    assert _settle(before) == []


def test_the_report_names_the_line_that_started_the_helper_and_the_trace_is_the_training_process_own(session, tmp_path):
    """The forked copy trains too, with the probe in it: its events never reach the trace."""
    async def go():
        out = {}
        for name in ("popen_helper.py", "fork_before_fit.py"):
            out[name] = await session.analyze(str(PROCESSES / name), RunOptions(max_seconds=BUDGET))
        return out

    reports = asyncio.run(go())
    helper = reports["popen_helper.py"]
    (left,) = [f for f in helper.findings if f.finding.code == "processes-left"]
    assert left.range.start.line == 8 and "sleep 600, started at line 8" in left.finding.message  # `subprocess.Popen(...)`
    forked = reports["fork_before_fit.py"]
    trace = forked.trace
    epochs = len(trace.epochs)  # one run's epochs and steps, not two runs' interleaved
    assert epochs >= 3 and [e.epoch for e in trace.epochs] == list(range(epochs)) and len(trace.steps) == 10 * epochs
    assert [s.g for s in trace.steps] == list(range(10 * epochs))
    assert not running_jobs(session)


def test_the_verification_experiments_of_a_script_that_starts_a_helper_leave_nothing(session):
    """Every re-run that verifies a fix starts the script's helper again: each is stopped with its run."""
    before = {p.pid for p in psutil.process_iter()}
    report = asyncio.run(session.check(str(PROCESSES / "popen_helper_diverges.py"), RunOptions(max_seconds=BUDGET), verify_seconds=VERIFY))
    (fault,) = [f for f in report.findings if f.finding.severity == "error"]
    assert fault.finding.root_cause == "learning_rate" and fault.range.start.line == 10 and fault.confirmation == "verified", fault.finding.message
    assert report.verification.tried >= 1
    assert _settle(before | set(session.pids())) == []


def test_a_script_that_never_ends_with_a_helper_is_stopped_at_its_budget(tmp_path, session):
    script = tmp_path / "helper_then_loop.py"
    script.write_text("import subprocess\nimport keras\nsubprocess.Popen(['sleep', '600'])\nwhile True:\n    pass\n")
    before = {p.pid for p in psutil.process_iter()}
    start = time.monotonic()
    report = asyncio.run(session.analyze(str(script), RunOptions(max_seconds=8)))
    assert time.monotonic() - start < 8 + 10
    assert report.status == "timeout" and [f.finding.code for f in report.findings] == ["budget-exceeded"]  # stopped by us: not "left"
    assert _settle(before | set(session.pids())) == []  # the session's own fork server may have started with this test


@pytest.mark.parametrize("ends", ["by itself", "at its budget"])
def test_what_a_training_process_leaves_in_the_temp_folder_goes_with_it(tmp_path, session, ends):
    """The training process skips Python's exit (TensorFlow's teardown is slow), so what was to be
    deleted at exit (autograph writes a few modules per fit so) would pile up in the temp folder,
    one analysis after another. It writes into a folder of the job's, removed with the job."""
    script = tmp_path / "temp_at_exit.py"
    script.write_text(textwrap.dedent(f"""\
        import atexit, os, tempfile
        import keras, numpy as np
        with tempfile.NamedTemporaryFile(suffix=".py", delete=False) as f:  # as autograph does
            atexit.register(os.remove, f.name)
        print("TEMP", f.name, flush=True)
        model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3, activation="softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(np.random.rand(64, 4), np.random.randint(0, 3, 64), epochs=2, verbose=0)
        {"while True: pass" if ends == "at its budget" else ""}
        """))
    report = asyncio.run(session.analyze(str(script), RunOptions(max_seconds=8 if ends == "at its budget" else 60)))
    assert report.status == ("timeout" if ends == "at its budget" else "ok"), report.status
    (temp,) = [line.split()[1] for line in report.run.output if line.startswith("TEMP ")]
    folder = os.path.dirname(temp)
    assert os.path.realpath(folder) != os.path.realpath(tempfile.gettempdir())  # the job's own folder
    assert not os.path.exists(temp) and not os.path.exists(folder)


# ------------------------------------------------------------------ the language server
async def test_the_server_reports_each_run_and_leaves_nothing(server, tmp_path):
    """Saved one after the other in one editor: after each run only the processes the server keeps
    between runs are left (its fork server and a spare), nothing of the script's."""
    shutil.copy(PROCESSES / "_model.py", tmp_path / "_model.py")
    before = {p.pid for p in psutil.process_iter()}
    for name, left_running in CASES.items():
        uri, path = open_copy(server, tmp_path, PROCESSES / name)
        start = time.monotonic()
        save(server, uri)
        await until(lambda: finished(server, path.name), BUDGET + VERIFY + GRACE, f"the run of {name}")
        assert time.monotonic() - start < BUDGET + VERIFY + GRACE, name
        diagnostics = server.diagnostics[uri]
        assert not [d for d in diagnostics if d.severity <= lsp.DiagnosticSeverity.Warning], (name, diagnostics)
        left = [d for d in diagnostics if d.code == "processes-left"]
        assert (left == []) if left_running is None else (len(left) == 1 and left_running in left[0].message), (name, diagnostics)
        kept = {p.pid for p in psutil.Process(server._server.pid).children(recursive=True) if p.name() in (SPARE_NAME, FORKSERVER_NAME)}
        assert _settle(before | kept) == [], name


async def test_a_run_cancelled_from_the_editor_leaves_nothing(server, tmp_path):
    (tmp_path / "src").mkdir()
    script = tmp_path / "src" / "helpers_and_long_training.py"
    script.write_text((PROCESSES / "popen_helper.py").read_text().replace("train()", "train(epochs=10_000)"))
    shutil.copy(PROCESSES / "_model.py", tmp_path / "_model.py")
    server.set_configuration({"run": "manual", "maxSeconds": 120, "maxEpochs": 0, "warmWorker": True}, section="deeplocalize")
    before = {p.pid for p in psutil.process_iter()}
    uri, path = open_copy(server, tmp_path, script)
    await server.workspace_execute_command_async(lsp.ExecuteCommandParams(command="deeplocalize.analyze", arguments=[uri]))
    await until(lambda: any(" sleep 600" in p for p in ours_since(before)), 60, "the helper")
    await until(lambda: any(s.get("pid") for s in statuses(server, path.name, "running")), 60, "training")
    assert await server.workspace_execute_command_async(lsp.ExecuteCommandParams(command="deeplocalize.cancel", arguments=[uri])) is True
    await until(lambda: statuses(server, path.name, "cancelled"), 30, "the cancel")
    # The fork server and its spare stay (warm workers are on): everything of the run is gone.
    # The spare for the next run is forked when the run ends: awaited, not slept for.
    idle = lambda: _idle(server._server.pid)  # noqa: E731
    await until(lambda: SPARE_NAME in idle().values(), 60, "the next run's spare")
    assert _settle(before, idle=idle) == []  # the helper too: it carries this test run's mark


@pytest.fixture
async def server(client):
    """The language server of test_server.py, with the budgets of the CLI runs above."""
    client.set_configuration({"run": "onSave", "maxSeconds": BUDGET, "maxEpochs": 20, "debounceMs": 50, "warmWorker": True,
                              "verifySeconds": VERIFY}, section="deeplocalize")
    yield client

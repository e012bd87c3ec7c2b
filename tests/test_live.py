"""`deeplocalize run`: the real training, diagnosed while it runs, as a user runs it (the CLI in
a child process, its output read as the terminal would show it), with real TensorFlow (slow)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import FIXTURES, ROOT
from deeplocalize.evaluation import load_expectations
from deeplocalize.live import findings_of
from deeplocalize.run_folder import FORMAT, RunRecord, process_running, read_run
from deeplocalize.runner import RunOptions
from deeplocalize.vocab import is_serious

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.xdist_group("live")]
LATE = load_expectations(FIXTURES / "late")
HEALTHY = sorted((FIXTURES / "correct").glob("*.py"))
TINY = ROOT / "tests" / "data" / "live_tiny.py"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT / "server")}


def _command(script: Path, *args: str, options: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "deeplocalize", "run", *options, str(script), *args]  # the `deeplocalize` command


def _run(script: Path, *args: str, cwd: Path, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """As in a terminal: the script's output and ours in one stream, in the order written."""
    return subprocess.run(_command(script, *args, options=options), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600, env=ENV)


def _folders(script: Path) -> list[Path]:
    root = script.parent / ".deeplocalize" / "runs"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _record(folder: Path) -> RunRecord:
    record = read_run(folder)
    assert isinstance(record, RunRecord), record
    return record


@pytest.mark.parametrize("exp", LATE, ids=lambda e: e.path.name)
def test_a_late_fault_is_found_on_its_line_while_training_goes_on_and_a_bounded_check_misses_it(exp, tmp_path, session):
    script = tmp_path / exp.path.name
    shutil.copy(exp.path, script)
    out = _run(script, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
    lines = out.stdout.splitlines()
    said = [i for i, line in enumerate(lines) if re.match(rf"{re.escape(script.name)}:({'|'.join(map(str, exp.lines))}):\d+: (error|warning) ", line)]
    epochs = [i for i, line in enumerate(lines) if re.match(r"Epoch \d+/\d+$", line)]
    assert said, out.stdout[-3000:]
    assert said[0] < epochs[-1], "the finding was printed only after training ended"

    (folder,) = _folders(script)
    record = _record(folder)
    assert record.meta.state == "finished" and record.meta.exit_code == 0 and record.source == exp.path.read_text()
    found = [f for f in findings_of(folder) if is_serious(f["severity"])]
    assert any(f["range"]["start"]["line"] in exp.lines and f["root_cause"] in exp.root_causes for f in found), found
    assert (folder / "findings.sarif").exists() and (folder / "report.html").stat().st_size > 1000
    assert (tmp_path / ".deeplocalize" / ".gitignore").read_text().splitlines()[-1] == "*"  # runs are not source

    # The gap is real: the editor's bounded analysis (its default budgets) sees nothing wrong.
    report = asyncio.run(session.analyze(str(exp.path), RunOptions()))
    assert not [f for f in report.findings if is_serious(f.finding.severity)], [f.message for f in report.findings]


def test_healthy_fixtures_train_to_their_end_with_no_warning_or_error(tmp_path):
    assert len(HEALTHY) >= 10
    problems = []
    for source in HEALTHY:
        script = tmp_path / source.name
        shutil.copy(source, script)
        out = _run(script, cwd=tmp_path)
        folder = next(f for f in _folders(script) if f.name.endswith(source.stem))
        record = _record(folder)
        serious = [f"{f['code']}@{f['range']['start']['line']}" for f in findings_of(folder) if is_serious(f["severity"])]
        if out.returncode != 0 or record.meta.state != "finished" or serious or record.meta.epoch != record.meta.epochs:
            problems.append(f"{source.name}: exit {out.returncode}, {record.meta.state}, epochs {record.meta.epoch}/{record.meta.epochs}, "
                            f"{serious}: {out.stdout[-500:]}")
    assert not problems, "\n".join(problems)


def test_the_script_gets_its_arguments_and_its_exit_code_is_the_command_s(tmp_path):
    script = tmp_path / TINY.name
    shutil.copy(TINY, script)
    out = _run(script, "--epochs", "2", "--exit", "3", cwd=tmp_path)
    assert out.returncode == 3, out.stdout[-2000:]
    assert "Epoch 2/2" in out.stdout and "trained" in out.stdout
    assert _record(_folders(script)[0]).meta.exit_code == 3


def test_the_training_process_started_ahead_runs_with_the_options_the_command_parses(tmp_path):
    """The command starts the training process before it has read all its flags (launch.py):
    whatever their order, the script runs with the environment they give, and a command that
    ends before its run leaves no process behind."""
    script = tmp_path / "show_env.py"
    script.write_text("import os\nprint('MARK=' + os.environ.get('DL_MARK', '-'))\n")
    for options, mark in ((("--env", "DL_MARK=early"), "early"), (("--runs-folder", "runs", "--env", "DL_MARK=late"), "late"),
                          (("--keep-runs", "3"), "-")):
        out = _run(script, cwd=tmp_path, options=options)
        assert out.returncode == 0 and f"MARK={mark}" in out.stdout, (options, out.stdout[-2000:])
    mark = f"orphan-{os.getpid()}-{time.time_ns()}"
    out = _run(tmp_path / "missing.py", cwd=tmp_path, options=("--env", f"DL_MARK={mark}"))
    assert out.returncode == 2 and "no such file" in out.stdout

    def marked() -> list:
        found = []
        for p in psutil.process_iter():
            try:
                if p.environ().get("DL_MARK") == mark:
                    found.append(p)
            except (psutil.Error, OSError):
                continue
        return found

    assert not marked()


def test_a_crash_mid_run_is_reported_at_its_line_with_the_traceback_and_the_findings_so_far(tmp_path):
    script = tmp_path / TINY.name
    shutil.copy(TINY, script)
    out = _run(script, "--epochs", "2", "--crash", cwd=tmp_path)
    assert out.returncode == 1
    assert "Traceback (most recent call last)" in out.stdout and "RuntimeError: the evaluation data is missing" in out.stdout
    crash_line = next(i for i, line in enumerate(TINY.read_text().splitlines(), 1) if "# CRASH" in line)
    folder = _folders(script)[0]
    assert _record(folder).meta.state == "crashed"
    assert any(f["range"]["start"]["line"] == crash_line for f in findings_of(folder)), findings_of(folder)
    trace = (folder / "trace.jsonl").read_text().splitlines()
    assert sum('"type": "epoch"' in line for line in trace) == 2  # what ran before the crash is kept


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _epochs_recorded(script: Path) -> int:
    """Epochs the script's run folder records so far: 0 until its run.json is first written (the
    folder is made before it)."""
    folders = _folders(script)
    record = read_run(folders[0]) if folders else None
    return (record.meta.epoch or 0) if isinstance(record, RunRecord) else 0


def test_a_killed_run_leaves_a_readable_folder_and_no_training_behind(tmp_path):
    script = tmp_path / TINY.name
    shutil.copy(TINY, script)
    proc = subprocess.Popen(_command(script, "--epochs", "200", "--epoch-seconds", "0.2"), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    try:
        _wait_for(lambda: _epochs_recorded(script) >= 2, 120, "two epochs")
        folder = _folders(script)[0]
        training = _record(folder).meta.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _wait_for(lambda: not process_running(training), 15, "the training to die with its command")
    finally:
        proc.kill()
    record = _record(folder)
    assert record.state == "killed" and not record.alive
    lines = (folder / "trace.jsonl").read_bytes().splitlines()
    assert sum(b'"type": "epoch"' in line for line in lines) >= 2
    for line in lines[:-1]:
        json.loads(line)  # only the last line can be torn


def test_an_unwritable_runs_folder_is_said_and_the_training_still_runs(tmp_path):
    script = tmp_path / TINY.name
    shutil.copy(TINY, script)
    (tmp_path / "a-file").write_text("")
    out = _run(script, "--epochs", "2", cwd=tmp_path, options=("--runs-folder", "a-file/runs"))
    assert out.returncode == 0 and "Epoch 2/2" in out.stdout and "trained" in out.stdout
    assert "cannot write the run folder" in out.stdout and "the training runs" in out.stdout


def test_two_runs_of_one_script_at_once_get_a_folder_each(tmp_path):
    script = tmp_path / TINY.name
    shutil.copy(TINY, script)
    procs = [subprocess.Popen(_command(script, "--epochs", "2"), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
             for _ in range(2)]
    assert [p.wait(300) for p in procs] == [0, 0]
    records = [_record(f) for f in _folders(script)]
    assert len(records) == 2 and len({r.meta.pid for r in records}) == 2
    assert all(r.meta.state == "finished" and r.meta.epoch == 2 for r in records)


def test_a_folder_of_a_newer_format_or_a_corrupt_one_is_refused_with_a_reason(tmp_path):
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "run.json").write_text(json.dumps({"format": FORMAT + 1, "script": "x.py"}))
    assert "newer" in read_run(newer)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.json").write_text("{not json")
    assert "unreadable" in read_run(corrupt)
    torn = tmp_path / "torn"
    torn.mkdir()
    (torn / "run.json").write_text(json.dumps({"format": FORMAT, "script": "x.py", "argv": [], "started": 0, "pid": 1, "host": "h"}))
    (torn / "findings.json").write_text('{"version": 2, "files": [')
    assert "findings.json unreadable" in read_run(torn)


def test_a_run_whose_training_ended_is_live_until_its_recorder_writes_the_end_and_killed_if_the_recorder_dies(tmp_path):
    """Between the training's exit and the final report (seconds on a big run) an editor polling
    the folder must not call the run killed: its recorder (`deeplocalize run`) still writes."""
    from deeplocalize.run_folder import RunFolder

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    folder = RunFolder.create(str(tmp_path / "train.py"), [], ended.pid, tmp_path / "runs", "pass\n")
    folder.close()
    record = read_run(folder.path)
    assert isinstance(record, RunRecord) and record.alive and record.state == "live"
    recorder = subprocess.Popen([sys.executable, "-c", "pass"])
    recorder.wait()
    meta = json.loads((folder.path / "run.json").read_text())
    (folder.path / "run.json").write_text(json.dumps({**meta, "recorder": recorder.pid}))
    record = read_run(folder.path)
    assert isinstance(record, RunRecord) and not record.alive and record.state == "killed"


def test_a_run_that_ends_while_its_folder_is_read_is_read_as_ended_not_killed(tmp_path, monkeypatch):
    """The recorder writes the end and exits between the reader's look at run.json and its look at
    the processes (an editor polling a busy machine): the reader must not call the run killed."""
    from deeplocalize import run_folder
    from deeplocalize.run_folder import RunFolder

    folder = RunFolder.create(str(tmp_path / "train.py"), [], os.getpid(), tmp_path / "runs", "pass\n")
    folder.close()

    def ends_now(pid: int) -> bool:  # the recorder finishes as the reader looks at the processes
        folder.write_meta(state="finished", exit_code=0)
        return False

    monkeypatch.setattr(run_folder, "process_running", ends_now)
    record = read_run(folder.path)
    assert isinstance(record, RunRecord) and record.state == "finished" and not record.alive

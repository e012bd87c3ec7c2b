"""`deeplocalize check` as a user and a CI job run it (slow: real training)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import psutil
import pytest

from conftest import FIXTURES, ROOT, ours_since

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deeplocalize", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "server")})


def test_buggy_script_prints_a_linter_line_and_exits_1():
    r = cli("check", str(FIXTURES / "buggy/b01_relu_output_ce.py"))
    assert r.returncode == 1, r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("fixtures/buggy/b01_relu_output_ce.py:12:39: error output-not-distribution (root cause: activation)")
    # the fix was proved by re-training with it, and the numbers say how
    assert re.search(r'fix \(preferred, verified: (hit rate|accuracy|values stay finite).*\): Use activation "softmax"', r.stdout), r.stdout
    assert "Verified by re-training with the fix" in first


def test_no_verify_reports_the_first_diagnosis_only():
    r = cli("check", "--no-verify", "--format", "json", str(FIXTURES / "buggy/b01_relu_output_ce.py"))
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    f = doc["files"][0]["findings"][0]
    assert doc["version"] == 2 and doc["files"][0]["verification"] is None
    assert f["confirmation"] is None and f["fixes"][0]["verification"] is None and f["fixes"][0]["preferred"] is True
    r = cli("check", "--no-verify", str(FIXTURES / "buggy/b01_relu_output_ce.py"))
    assert 'fix (preferred): Use activation "softmax"' in r.stdout and "Verified" not in r.stdout


def test_a_certain_error_is_printed_while_training_goes_on():
    r = cli("check", "--no-verify", str(ROOT / "tests" / "data" / "config_error_slow_epoch.py"))
    assert r.returncode == 1
    early = [l for l in r.stderr.splitlines() if "(found while training; the full report follows)" in l]
    assert len(early) == 1 and "config_error_slow_epoch.py:10:" in early[0] and "output-not-distribution" in early[0]
    assert "output-not-distribution (root cause: activation)" in r.stdout  # the full report still follows


def test_json_report_for_several_files():
    r = cli("check", "--format", "json", str(FIXTURES / "correct/c03_cancer_binary.py"), str(FIXTURES / "buggy/b20_labels_minus_one.py"))
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["version"] == 2 and len(doc["files"]) == 2
    ok, bad = doc["files"]
    assert ok["status"] == "ok" and not [f for f in ok["findings"] if f["severity"] in ("error", "warning")]
    assert ok["verification"] is None  # nothing to verify on a healthy script: no extra runs
    f = bad["findings"][0]
    assert f["root_cause"] == "labels" and f["range"]["start"]["line"] == 8
    # mapped with the training labels' range where fit gets them
    assert "(y - y_min) / (y_max - y_min)" in [e["new_text"] for e in f["fixes"][0]["edits"]]
    fix = f["fixes"][0]
    assert f["confirmation"] == "verified" and fix["preferred"] and fix["root_cause"] == "labels"
    v = fix["verification"]
    assert v["verdict"] == "verified" and v["steps"] > 0 and v["seconds"] > 0 and v["before"] and v["after"]
    assert bad["verification"]["verified"] == 1


def test_correct_script_exits_0():
    r = cli("check", str(FIXTURES / "correct/c02_iris_functional.py"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no faults found" in r.stdout


def test_syntax_error_is_reported_at_its_line():
    r = cli("check", "--format", "json", str(FIXTURES / "robustness/syntax_error.py"))
    doc = json.loads(r.stdout)["files"][0]
    assert r.returncode == 1 and doc["status"] == "syntax_error"
    assert doc["findings"][0]["code"] == "syntax-error" and doc["findings"][0]["range"]["start"]["line"] == 5  # where Python points: the unmatched "]"


def test_script_without_keras_does_not_run():
    r = cli("check", "--format", "json", str(FIXTURES / "robustness/not_keras.py"))
    doc = json.loads(r.stdout)["files"][0]
    assert r.returncode == 0 and doc["status"] == "not_keras" and doc["findings"] == []
    assert doc["duration_s"] < 1.0  # nothing was started


def test_crash_is_an_error_at_the_raising_line():
    r = cli("check", "--format", "json", str(FIXTURES / "robustness/crash_before_fit.py"))
    doc = json.loads(r.stdout)["files"][0]
    assert r.returncode == 1 and doc["status"] == "crashed"
    f = doc["findings"][0]
    assert f["severity"] == "error" and f["range"]["start"]["line"] == 6 and "ZeroDivisionError" in f["message"]


def test_keras2_idiom_is_not_valid_keras3_with_a_rename_fix():
    r = cli("check", "--format", "json", str(FIXTURES / "robustness/keras2_lr.py"))
    f = json.loads(r.stdout)["files"][0]["findings"][0]
    assert f["code"] == "keras3-incompatible" and f["root_cause"] is None and f["range"]["start"]["line"] == 7
    assert f["fixes"][0]["edits"][0]["new_text"] == "learning_rate"


def test_timeout_stops_the_whole_process_tree():
    before = {p.pid for p in psutil.process_iter()}
    r = cli("check", "--format", "json", "--max-seconds", "6", str(FIXTURES / "robustness/infinite_loop.py"))
    doc = json.loads(r.stdout)["files"][0]
    assert doc["status"] == "timeout" and doc["findings"][0]["code"] == "budget-exceeded"
    assert ours_since(before) == []


def test_memory_budget_kills_a_runaway_script():
    r = cli("check", "--format", "json", "--max-memory-mb", "1500", str(FIXTURES / "robustness/allocates.py"))
    doc = json.loads(r.stdout)["files"][0]
    assert doc["findings"][0]["code"] == "memory-exceeded"


def test_usage_errors_exit_2():
    assert cli("check", "no/such/file.py").returncode == 2
    bad_python = cli("check", "--python", "/nonexistent/python3", str(FIXTURES / "correct/c01_digits_mlp.py"))
    assert bad_python.returncode == 2 and "nonexistent" in bad_python.stderr
    assert cli("check").returncode == 2


def test_interpreter_without_tensorflow_is_a_clear_error(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    r = cli("check", "--python", str(venv / "bin" / "python"), str(FIXTURES / "correct/c01_digits_mlp.py"))
    assert r.returncode == 2
    assert "cannot run the probe" in r.stderr and "No module named" in r.stderr

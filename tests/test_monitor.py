"""`deeplocalize.keras.Monitor()`: the Keras callback for training the CLI cannot launch, used as a
user would: a script run by `python` (its output read as the terminal shows it) and a notebook
run by a real Jupyter kernel (nbclient), with real TensorFlow (slow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT
from deeplocalize.evaluation import load_expectations
from deeplocalize.live import findings_of
from deeplocalize.run_folder import RunRecord, read_run
from deeplocalize.vocab import is_serious

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.xdist_group("live")]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT / "server")}
IMPORT = "from deeplocalize.keras import Monitor\n"

# A model whose learning rate is far too low: its weights barely move (found after a few epochs).
SLOW_LEARNER = """\
rng = np.random.default_rng(0)
x = rng.normal(size=(512, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
model = keras.Sequential([keras.Input((8,)), layers.Dense(32, activation="relu"), layers.Dense(2, activation="softmax")])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-7), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
"""


def _python(script: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script)], cwd=script.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600, env=ENV)


def _folders(root: Path) -> list[Path]:
    runs = root / ".deeplocalize" / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def _record(folder: Path) -> RunRecord:
    record = read_run(folder)
    assert isinstance(record, RunRecord), record
    return record


def test_a_late_fault_is_printed_on_its_line_while_the_script_trains_and_kept_in_a_run_folder(tmp_path):
    (exp,) = [e for e in load_expectations(FIXTURES / "late") if e.path.name.startswith("l01")]
    text = exp.path.read_text()
    assert "callbacks=[" in text
    script = tmp_path / exp.path.name
    script.write_text(IMPORT + text.replace("callbacks=[", "callbacks=[Monitor(), "))  # one line added above: lines move by 1
    lines = [n + 1 for n in exp.lines]

    out = _python(script)
    assert out.returncode == 0, out.stdout[-3000:]
    printed = out.stdout.splitlines()
    said = [i for i, line in enumerate(printed) if re.match(rf"{re.escape(script.name)}:({'|'.join(map(str, lines))}):\d+: (error|warning) ", line)]
    epochs = [i for i, line in enumerate(printed) if re.match(r"Epoch \d+/\d+$", line)]
    assert said and said[0] < epochs[-1], out.stdout[-3000:]  # while training goes on

    (folder,) = _folders(tmp_path)
    record = _record(folder)
    assert record.meta.state == "finished" and record.meta.extra.get("monitor") and record.meta.script == str(script)
    found = [f for f in findings_of(folder) if is_serious(f["severity"])]
    assert any(f["range"]["start"]["line"] in lines and f["root_cause"] in exp.root_causes for f in found), found
    assert f"in {os.path.relpath(folder, tmp_path)}" in out.stdout  # the final word names the folder


def test_a_notebook_shows_the_findings_in_the_cell_output_and_keeps_a_run_folder_beside_it(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    cells = ["import numpy as np\nimport keras\nfrom keras import layers\n" + IMPORT, SLOW_LEARNER,
             "history = model.fit(x, y, epochs=30, batch_size=32, verbose=0, callbacks=[Monitor()])"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = tmp_path / "experiment.ipynb"
    nbformat.write(nb, path)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute(env=ENV)

    output = "".join(o.get("text", "") for o in nb.cells[2].outputs if o.get("output_type") == "stream")
    # The cell that made the optimizer (In[2]), at the line of its compile call, as IPython names cells.
    assert re.search(r"Cell In\[2\], line 5: warning weights-barely-change", output), output
    assert "fix: Raise the learning rate" in output
    (folder,) = _folders(tmp_path)
    assert folder.name.endswith("-notebook")
    assert _record(folder).meta.state == "finished"
    assert any(f["code"] == "weights-barely-change" and f["severity"] == "warning" for f in findings_of(folder))


def test_only_fits_with_the_monitor_are_probed_and_a_crash_mid_fit_is_kept(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import numpy as np\nimport keras\nfrom keras import layers\n" + IMPORT + SLOW_LEARNER + """\
model.fit(x, y, epochs=2, verbose=0)
print("plain fit done", flush=True)

def fail(epoch, logs):
    if epoch == 2:
        raise RuntimeError("the checkpoint disk is full")  # CRASH

model.fit(x, y, epochs=10, verbose=0, callbacks=[Monitor(), keras.callbacks.LambdaCallback(on_epoch_end=fail)])
""")
    out = _python(script)
    assert out.returncode == 1 and "RuntimeError: the checkpoint disk is full" in out.stdout, out.stdout[-3000:]
    assert out.stdout.index("plain fit done") < out.stdout.index("deeplocalize: recording")  # the first fit was not probed
    (folder,) = _folders(tmp_path)
    record = _record(folder)
    assert record.meta.state == "crashed"
    crash_line = next(i for i, line in enumerate(script.read_text().splitlines(), 1) if "# CRASH" in line)
    assert any(f["range"]["start"]["line"] == crash_line for f in findings_of(folder)), findings_of(folder)
    events = [json.loads(line) for line in (folder / "trace.jsonl").read_text().splitlines()]
    assert sum(e["type"] == "epoch" for e in events) == 2  # the epochs before the crash are kept


def test_under_deeplocalize_run_the_monitor_steps_aside(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import numpy as np\nimport keras\nfrom keras import layers\n" + IMPORT + SLOW_LEARNER
                      + "model.fit(x, y, epochs=3, verbose=0, callbacks=[Monitor()])\nprint('trained')\n")
    out = subprocess.run([sys.executable, "-m", "deeplocalize", "run", str(script)], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=600, env=ENV)
    assert out.returncode == 0 and "trained" in out.stdout, out.stdout[-3000:]
    (folder,) = _folders(tmp_path)  # one run, recorded once
    assert not _record(folder).meta.extra.get("monitor")

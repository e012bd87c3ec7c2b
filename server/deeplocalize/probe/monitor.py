"""`deeplocalize.keras.Monitor()`: the probe of `deeplocalize run`, for training that the CLI
cannot launch (a Jupyter kernel, a larger program, a job scheduler).

Importing `deeplocalize.keras` installs the probe's patches in opt-in mode: layers, optimizers and
`compile` calls are recorded (where the user's code made them), and only a `fit` whose callbacks
hold a Monitor is probed, exactly as under `deeplocalize run` (sampled statistics, every epoch).
The analysis does not run in the training process: each monitored fit starts a helper process
(`deeplocalize.monitor_sink`, no TensorFlow) that reads the probe's events, settles findings,
and writes the run folder the editor watches. Its findings come back as text that the Monitor
prints from the training thread, so in a notebook they appear in the cell's output as they
settle, and the final diagnosis is printed when the fit ends.
"""

from __future__ import annotations

import linecache
import os
import select
import subprocess
import sys
import time
from typing import Any

import keras

from . import hooks, sites
from ..vocab import RUN_FOLDER_PREFIX
from .channel import Channel, widen_pipe

RELAY_EVERY_S = 0.5  # how often the training thread looks for the helper's findings (between batches)
FINAL_WAIT_S = 60.0  # how long the end of a fit waits for the final diagnosis


class Monitor(keras.callbacks.Callback):
    """Diagnose this fit while it trains: findings printed as they settle, and a run folder
    (`.deeplocalize/runs/<time>-<script>/`, next to the script that calls `fit`, or in the
    current directory for a notebook) that the editor shows.

    `runs_folder`: another folder, relative to the script's; `keep_runs`: how many finished
    runs to keep; `verbose=False`: print nothing (the run folder is still written)."""

    def __init__(self, runs_folder: str | None = None, keep_runs: int = 20, verbose: bool = True) -> None:
        super().__init__()
        self.runs_folder = runs_folder
        self.keep_runs = keep_runs
        self.verbose = verbose
        self._helper: subprocess.Popen | None = None
        self._channel: Channel | None = None
        self._output = b""
        self._relayed = 0.0
        self.run_folder: str | None = None  # the last fit's run folder, once the helper named it

    # ------------------------------------------------------------ the fit's life
    def open(self, site: list[dict[str, Any]]) -> Channel:
        """Start the helper for one fit; the channel the probe sends this fit's events to."""
        script, text = _script_of(site)
        events_r, events_w = os.pipe()
        widen_pipe(events_r)
        cmd = [sys.executable, "-m", "deeplocalize.monitor_sink", "--events-fd", str(events_r), "--script", script, "--pid", str(os.getpid()),
               "--keep-runs", str(self.keep_runs)]
        if self.runs_folder:
            cmd += ["--runs-folder", self.runs_folder]
        if not os.path.isfile(script):  # a notebook's cell: the runs go where the kernel runs (the notebook's folder)
            cmd += ["--runs-root", os.path.join(os.getcwd(), self.runs_folder or os.path.join(".deeplocalize", "runs")), "--name", "notebook"]
        try:
            # Its own session: a Ctrl-C meant for the training leaves the helper to write the final report.
            self._helper = subprocess.Popen(cmd, pass_fds=(events_r,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, start_new_session=True, env=_helper_env())
        except OSError as exc:
            os.close(events_w)
            self._say(f"deeplocalize: cannot start the analysis ({exc}); training goes on without it")
            self._helper = None
        finally:
            os.close(events_r)
        if self._helper is None:
            return Channel(None)
        os.set_blocking(self._helper.stdout.fileno(), False)
        self._channel = Channel(events_w)
        files = _sources(site, script, text)
        self._channel.send("sources", files=files, labels=_cell_labels(files))
        return self._channel

    def close(self, reason: str | None) -> None:
        """The fit ended (`reason`: how, for an end the fit wrapper saw; None: it returned):
        the helper settles the final diagnosis, which is printed."""
        channel, helper = self._channel, self._helper
        self._channel = None
        if channel is None or helper is None:
            return
        channel.send("end", reason=reason or "script_finished")
        channel.close()
        deadline = time.monotonic() + FINAL_WAIT_S
        while helper.poll() is None and time.monotonic() < deadline:
            self._relay(wait=0.2)
        self._relay()
        if helper.poll() is None:
            self._say("deeplocalize: the analysis is still writing its report; it goes on in the background")
        self._helper = None

    # ------------------------------------------------------------ Keras' hooks
    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if time.monotonic() - self._relayed >= RELAY_EVERY_S:
            self._relay()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self._relay()

    # ------------------------------------------------------------ the helper's text
    def _relay(self, wait: float = 0.0) -> None:
        """Print what the helper said (its findings), from the training thread: a notebook shows
        it in the running cell's output."""
        self._relayed = time.monotonic()
        if self._helper is None:
            return
        out = self._helper.stdout
        try:
            if wait and not select.select([out], [], [], wait)[0]:
                return
            chunk = out.read()
        except (OSError, ValueError):
            return
        if not chunk:
            return
        self._output += chunk
        *lines, self._output = self._output.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "replace")
            if text.startswith(RUN_FOLDER_PREFIX):
                self.run_folder = text[len(RUN_FOLDER_PREFIX):]
                continue
            self._say(text)

    def _say(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)


def _script_of(site: list[dict[str, Any]]) -> tuple[str, str]:
    """The file that calls `fit` (a script, a module of a larger program, a notebook cell) and
    its text as it ran."""
    path = site[0]["file"] if site else os.path.abspath(getattr(sys.modules.get("__main__"), "__file__", None) or "notebook.py")
    return path, "".join(linecache.getlines(path))


def _sources(site: list[dict[str, Any]], script: str, text: str) -> dict[str, str]:
    """The text of user code that exists only in memory (a notebook's cells): the helper reads
    files from disk, and these from here."""
    files = {script: text} if not os.path.isfile(script) else {}
    for filename in list(linecache.cache):
        if filename not in files and sites.is_user_file(filename) and not os.path.isfile(filename):
            lines = linecache.getlines(filename)
            if lines:
                files[filename] = "".join(lines)
    return files


def _cell_labels(files: dict[str, str]) -> dict[str, str]:
    """How IPython names the cells these files are ("Cell In[3]"), in a kernel."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        named = {f: shell.compile.format_code_name(f) for f in files} if shell is not None else {}
    except Exception:  # noqa: BLE001 - not IPython, or another version of it
        return {}
    return {f: " ".join(n) for f, n in named.items() if n}


def _helper_env() -> dict[str, str]:
    """This package importable by the helper the way it is here (an editable install, a path)."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


_probe: hooks.Probe | None = None


def install() -> hooks.Probe:
    """The probe, once per process, in opt-in mode: only fits with a Monitor are probed. Under
    `deeplocalize run` or `check` the probe is already there and probes every fit: a Monitor
    then does nothing."""
    global _probe
    if _probe is None and hooks.ACTIVE is not None:
        _probe = hooks.ACTIVE
    if _probe is None:
        _probe = hooks.Probe(Channel(None), max_epochs=None, live=True, monitor_of=_monitor_in)
        _probe.install()
    return _probe


def _monitor_in(callbacks: Any) -> Monitor | None:
    for cb in list(callbacks or []):
        if isinstance(cb, Monitor):
            return cb
    return None

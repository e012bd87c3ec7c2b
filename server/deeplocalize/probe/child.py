"""Entry point of the training child process.

Run by path (``python .../probe/child.py --events-fd N --control-fd M``) in the
interpreter the user picked. It imports TensorFlow first and reports ``ready``,
then waits for one job on the control pipe, so a parent can keep a warm worker
and pay the ~4 s import before the user saves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any

OUTPUT_MARKER = "--deeplocalize:user-script-starts--"
_EXIT = os._exit  # the real one: the script's `os._exit` is wrapped while it runs (see _end_with_os_exit)
_SERVER_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# The patched internals (Trainer._compute_loss, TensorFlowTrainer.make_train_function,
# BaseOptimizer.apply) have these signatures from Keras 3.3 on; tested on 3.15.
SUPPORTED_KERAS = ((3, 3), (4, 0))


def _keras_supported(version: str) -> bool:
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return SUPPORTED_KERAS[0] <= (major, minor) < SUPPORTED_KERAS[1]


def _run_source(script: str, source: str, extra: dict) -> None:
    """Run edited text as if it were the file at `script` (a counterfactual run):
    same `__file__`, folder and imports, and nothing is written to disk."""
    import linecache

    lines = source.splitlines(keepends=True)
    # Tracebacks and call sites read the edited lines, not the file's (mtime None: never re-read).
    linecache.cache[script] = (len(source), None, lines, script)
    code = compile(source, script, "exec")
    namespace = {"__name__": "__main__", "__file__": script, "__builtins__": __builtins__, "__spec__": None, "__loader__": None, "__package__": None}
    exec(code, {**extra, **namespace})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events-fd", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    opts = parser.parse_args()
    sys.path.insert(0, _SERVER_DIR)  # our package, by path; removed again before the user's script runs
    # Skip TensorFlow's slow interpreter teardown: everything is reported.
    _EXIT(serve(opts.events_fd, opts.control_fd))


def import_keras() -> tuple[Any, dict | None]:
    """Keras (and with it TensorFlow), and why this interpreter's Keras cannot be probed, if it cannot."""
    import keras

    if keras.backend.backend() != "tensorflow" or not _keras_supported(keras.__version__):
        return keras, {"keras": keras.__version__, "backend": keras.backend.backend(),
                       "message": f"Keras {keras.__version__} with the {keras.backend.backend()} backend is not supported: "
                                  "DeepLocalize needs Keras 3.3 or newer (3.x) on TensorFlow"}
    return keras, None


def serve(events_fd: int, control_fd: int) -> int:
    """One job, start to end, in this process: import Keras (instant in a child of the fork
    server), say `ready`, wait for the job, run the script with the probe, stop what it left
    running. Returns the exit code. Nothing runs a TensorFlow operation before the script: a
    script that configures the runtime (threads, logical devices, memory growth) finds it
    untouched, as under `python`."""
    from deeplocalize.probe import channel as channel_mod  # stdlib only
    from deeplocalize.probe import leftovers

    leftovers.set_name(leftovers.SPARE_NAME)
    channel = channel_mod.Channel(events_fd)
    keras, problem = import_keras()
    if problem is not None:
        channel.send("unsupported", **problem)
        channel.flush()
        return 3
    import tensorflow as tf

    channel.send("ready", keras=keras.__version__, tensorflow=tf.__version__, python=sys.version.split()[0], pid=os.getpid())
    channel.flush()
    job = _wait_for_job(control_fd)
    if job is None:
        return 0
    if job.get("tmpdir"):  # the job's own temp folder (see runner.Worker.run): this process, and what it starts
        import tempfile

        os.environ["TMPDIR"] = tempfile.tempdir = str(job["tmpdir"])
    leftovers.set_name(leftovers.TRAINING_NAME)
    # Everything the script starts stays below this process (see leftovers) and carries the job's mark.
    leftovers.become_subreaper()
    if job.get("marker"):
        os.environ[leftovers.JOB_MARKER] = str(job["marker"])
    script = os.path.abspath(job["script"])
    if job.get("live"):
        _die_with_parent(job.get("parent"))
    if job.get("seed") is not None:
        keras.utils.set_random_seed(int(job["seed"]))
    _install(job, channel)
    channel.send("started", script=script)
    _enter_script(script, job)
    code, own_end = _run_script(script, job, channel)
    _stop_leftovers(channel, said=own_end)
    return code


def _die_with_parent(parent: int | None) -> None:
    """A real run (`deeplocalize run`) is the user's training: when the command that started it
    dies (killed, even with SIGKILL), the training dies with it, as `python train.py` would."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the parent's end closes the pipes instead
        return
    if parent is not None and os.getppid() != parent:  # it died before the line above
        _EXIT(137)


def _stop_leftovers(channel: Any, said: bool = True) -> None:
    """What the script left running is stopped before this process exits (it would outlive
    the analysis), and, when the script ended by itself (`said`), reported: `leftover` lists
    it. A script the analysis stopped after its last analyzed fit would have gone on to stop
    its processes itself, perhaps: nothing is said of them."""
    from deeplocalize.probe import leftovers

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    left = leftovers.stop_descendants()
    if left and said:
        channel.send("leftover", processes=left)
    channel.flush()


def _wait_for_job(control_fd: int) -> dict | None:
    """Block (idle, no CPU) until the parent sends the job; None when it closed the pipe instead."""
    with os.fdopen(control_fd, "r") as control:
        line = control.readline()
    return json.loads(line) if line else None


def _install(job: dict, channel: Any) -> None:
    from deeplocalize.probe import hooks, spawns

    spawns.install()

    if os.environ.get("TF_CONFIG"):  # one worker of a multi-worker run: Keras' own bugs there first
        from deeplocalize.probe import keras_compat

        keras_compat.install(channel.send)

    if job.get("record"):
        # The script runs to its end with only its own results recorded (no layer probes).
        from deeplocalize.probe import record

        record.install(channel.send, job.get("max_epochs"))
    else:
        probe = hooks.Probe(channel, max_epochs=job.get("max_epochs"), fetch_every=int(job.get("fetch_every", 1)), max_fits=int(job.get("max_fits", 1)),
                            live=bool(job.get("live")))
        probe.install()


def _enter_script(script: str, job: dict) -> None:
    """The interpreter as `python script.py` leaves it: argv, sys.path[0], working directory."""
    if _SERVER_DIR in sys.path:
        sys.path.remove(_SERVER_DIR)
    sys.argv = [script, *job.get("argv", [])]
    sys.path[0] = os.path.dirname(script)
    os.chdir(job.get("cwd") or os.path.dirname(script))
    if job.get("live"):
        return  # the user's own terminal: nothing of ours goes to it
    # Everything before this marker is the worker's own start-up noise (TensorFlow
    # logging), not the user's output: the parent drops it.
    for stream in (sys.stderr, sys.stdout):
        stream.write(OUTPUT_MARKER + "\n")
        stream.flush()


def _run_script(script: str, job: dict, channel: Any) -> tuple[int, bool]:
    """Run the user's script; how it ended is the last event. Returns the exit code, and
    whether the script ended by itself (not stopped by the analysis after its last fit)."""
    import runpy

    from deeplocalize.probe import hooks, ipython, sites

    code, own_end = 0, True
    os._exit = _end_with_os_exit(channel)
    # A notebook's code (as the engine converted it, or a language client's virtual document) runs with IPython's names.
    extra = ipython.namespace() if script.lower().endswith(".ipynb") else {}
    try:
        if job.get("source") is not None:
            _run_source(script, job["source"], extra)
        else:
            runpy.run_path(script, init_globals=extra, run_name="__main__")
        channel.send("end", reason="script_finished")
    except hooks.AnalysisDone:
        channel.send("end", reason="fit_done")
        own_end = False
    except SystemExit as exc:
        channel.send("end", reason="sys_exit", code=exc.code if isinstance(exc.code, int) else str(exc.code))
        if job.get("live"):  # the script's own exit status and message, as `python` would end with them
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
    except KeyboardInterrupt as exc:
        channel.send("end", reason="interrupted")
        code = 130
        if job.get("live"):
            traceback.print_exception(exc)
    except BaseException as exc:  # noqa: BLE001 - any user crash becomes a finding
        channel.send("crash", **sites.crash_event(exc))
        code = 1
        if job.get("live"):  # the user's terminal shows the traceback, as `python` prints it
            traceback.print_exception(exc)
    finally:
        os._exit = _EXIT
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        channel.flush()
    return code, own_end


def _end_with_os_exit(channel: Any) -> Any:
    """`os._exit` for the script: a script that ends its process itself (common, to skip
    TensorFlow's slow teardown) still ends as a script does here: said, and what it started
    stopped. A forked copy of the training process (a `multiprocessing` worker ends this
    way) just exits."""
    owner = os.getpid()

    def _exit(code: int) -> None:
        if os.getpid() == owner:
            channel.send("end", reason="os_exit", code=code)
            _stop_leftovers(channel)
        _EXIT(code)

    return _exit


if __name__ == "__main__":
    sys.exit(main())

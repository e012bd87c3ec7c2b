"""The helper process of `deeplocalize.keras.Monitor()` (probe/monitor.py): it reads one
monitored fit's events from the training process, settles findings as `deeplocalize run` does,
writes the run folder, and prints the findings as plain text, which the Monitor relays from the
training thread (a notebook shows them in the running cell). No TensorFlow here.

    python -m deeplocalize.monitor_sink --events-fd N --script PATH --pid PID [--runs-folder F | --runs-root DIR] [--keep-runs K]

The first event names the user code that exists only in the training process' memory (a
notebook's cells): the locator reads those texts instead of files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys

from .findings import LocatedFinding
from .live import LiveOptions, LiveRun, finding_text
from .script import describe
from .source import register_text
from .trace import Trace
from .vocab import RUN_FOLDER_PREFIX, is_serious


def _first_line(fd: int) -> tuple[bytes, bytes]:
    """The first event and whatever followed it in the same reads."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        data += chunk
    line, _, rest = data.partition(b"\n")
    return line, rest


def _where(lf: LocatedFinding, script: str, labels: dict[str, str]) -> str:
    r = lf.range
    label = labels.get(r.file)
    if label:
        return f"{label}, line {r.start.line}"
    return f"{os.path.relpath(r.file) if os.path.isfile(r.file) else os.path.basename(r.file)}:{r.start.line}:{r.start.column}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="deeplocalize.monitor_sink")
    ap.add_argument("--events-fd", type=int, required=True)
    ap.add_argument("--script", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--runs-folder")
    ap.add_argument("--runs-root")
    ap.add_argument("--keep-runs", type=int, default=20)
    ap.add_argument("--name", help="the run folders' name (default: the script's)")
    args = ap.parse_args(argv)
    # The training's Ctrl-C is not ours: the run ends when its events do, and is then written down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    first, rest = _first_line(args.events_fd)
    try:
        event = json.loads(first)
    except json.JSONDecodeError:
        event = {}
    sources = event.get("files", {}) if event.get("type") == "sources" else {}
    labels = event.get("labels", {}) if event.get("type") == "sources" else {}
    for path, text in sources.items():
        register_text(path, text)
    script = describe(args.script, sources.get(args.script))
    options = LiveOptions(runs_folder=args.runs_folder, runs_root=args.runs_root, keep_runs=args.keep_runs, name=args.name)

    def say(message: str) -> None:
        try:
            print(message, flush=True)
        except (BrokenPipeError, OSError, ValueError):
            pass  # the callback stopped listening (its process ended): the run folder is still written

    def say_finding(lf: LocatedFinding, trace: Trace | None) -> None:
        say("\n" + finding_text(lf, trace, lambda lf: _where(lf, script.path, labels)).plain())

    run = LiveRun(script, options, say, say_finding)
    asyncio.run(run.follow(args.events_fd, args.pid, rest if event else first + b"\n" + rest,
                           on_folder=lambda path: say(RUN_FOLDER_PREFIX + str(path))))
    report = run.final
    if report is not None:
        serious = [lf for lf in report.findings if is_serious(lf.finding.severity)]
        say(f"deeplocalize: {len(serious) or 'no'} finding{'s' if len(serious) != 1 else ''} at warning or error level"
            + (f" in {os.path.relpath(run.folder.path)}" if run.folder is not None else ""))
        for lf in serious:
            if (lf.finding.code, lf.range.file, lf.range.start.line) not in run.findings.said:
                say_finding(lf, None)
    return 0


if __name__ == "__main__":
    code = main()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
    os._exit(code)  # the callback waits for this process: no interpreter teardown (a second of freeing syntax trees)

"""`deeplocalize check FILE...`: the engine as a linter for CI and terminals.
`deeplocalize run train.py [args...]`: the real training, diagnosed while it runs (live.py).

Exit codes of `check`: 0 nothing at warning/error level, 1 something was found, 2 usage or
internal error (bad interpreter, unreadable file). `run` ends with the script's own exit code
(1 when --stop-on-error stopped it, 2 when it could not start).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from . import __version__
from .engine import EnvironmentProblem, not_runnable
from .findings import Fix, LocatedFinding, SourceRange
from .notebook import cell_places
from .report import JSON_VERSION, FileReport, reports_json
from .runner import RunOptions
from .script import describe as describe_script
from .session import EngineSession
from .settings import Settings, add_arguments
from .trace import Trace, TraceEvent
from .sarif import to_sarif
from .vocab import is_serious

if TYPE_CHECKING:
    from .training_process import Started


_STYLE = {"error": "bold red", "warning": "yellow", "information": "cyan", "hint": "dim"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deeplocalize", description="Find and localize faults in Keras training scripts.")
    p.add_argument("--version", action="version", version=f"deeplocalize {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="train each script with probes and report faults like a linter")
    c.add_argument("files", nargs="+", help="Python scripts or Jupyter notebooks (.ipynb) that train a Keras model")
    c.add_argument("--format", choices=("text", "json", "sarif"), default="text",
                   help="text (like a linter), json (version %d), or sarif (SARIF 2.1.0, for code scanning)" % JSON_VERSION)
    c.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML training report (plots per layer over steps)")
    add_arguments(c)  # the settings the editor shares (settings.py): budgets, interpreter, env, seed, verification
    c.add_argument("--show-output", action="store_true", help="echo the script's own output to stderr")
    c.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    r = sub.add_parser("run", help="run a training script as `python` would, every epoch, and diagnose it while it trains",
                       description="Runs SCRIPT with its arguments as `python SCRIPT ARGS...` would (its output, its exit code), with the "
                                   "probe. Findings are printed as they settle and recorded in the run's folder, which the editor shows.")
    r.add_argument("script", help="the Python script to run")
    r.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    r.add_argument("--stop-on-error", action="store_true", help="stop the script (as Ctrl-C would) at the first error found")
    add_arguments(r, "run")
    return p


def _options(settings: Settings) -> RunOptions:
    options = settings.run_options()
    options.cwd = os.getcwd()  # like `python train.py`: relative data paths resolve from where the user runs it
    return options


def render_text(report: FileReport, console: Console) -> None:
    rel = os.path.relpath(report.path)
    if report.status in ("not_keras", "nothing_to_run"):
        console.print(f"{rel}: [dim]skipped: {report.message}[/dim]")
        return
    if not report.findings:
        console.print(f"{rel}: [green]no faults found[/green] ({report.duration_s:.1f} s)")
        return
    for lf in report.findings:
        f = lf.finding
        cause = f" ({lf.cause_label})" if lf.cause_label else ""
        style = _STYLE.get(f.severity, "")
        console.print(f"{where(report.place(lf.range))}: [{style}]{f.severity}[/{style}] [bold]{f.code}[/bold]{cause}: {lf.message}", highlight=False, soft_wrap=True)
        ev = ", ".join(f"{k}={_short(v)}" for k, v in f.evidence.items() if k != "message")
        if ev:
            console.print(f"    evidence: {ev}", style="dim", highlight=False, soft_wrap=True)
        preferred = lf.preferred
        for fix in lf.fixes:
            edits = "; ".join(f"{where(report.place(e.range), file=False)} -> {e.new_text.strip()!r}" for e in fix.edits)
            if fix.verification and fix.verification.verdict == "refuted":  # tried and not offered
                console.print(f"    tried ({_verdict(fix)}): {fix.title}", style="dim", highlight=False, soft_wrap=True)
                continue
            tags = (["preferred"] if fix is preferred else []) + ([_verdict(fix)] if fix.verification else [])
            console.print(f"    fix{' (' + ', '.join(tags) + ')' if tags else ''}: {fix.title}  {escape('[' + edits + ']')}", highlight=False, soft_wrap=True)
    console.print(f"{rel}: {report.status}, {len(report.findings)} finding(s), {report.duration_s:.1f} s", style="dim")


def where(r: SourceRange, file: bool = True) -> str:
    """`train.py:12:5`, or in a notebook `model.ipynb:cell 4:12:5` (the cell's 1-based index)."""
    cell = f"cell {r.cell}:" if r.cell is not None else ""
    return (f"{os.path.relpath(r.file)}:" if file else "") + f"{cell}{r.start.line}:{r.start.column}"


def _verdict(fix: Fix) -> str:
    v = fix.verification
    assert v is not None
    if v.verdict == "verified":
        return f"verified: {v.summary()}"
    return f"{v.verdict}: {v.reason}"


def _write_report(path: str, reports: list[FileReport], err: Console) -> None:
    from .report_html import render  # matplotlib: imported only when a report is asked for

    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render(reports))
    err.print(f"deeplocalize: training report written to {path}", style="dim", markup=False)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    s = str(v)
    return s if len(s) < 60 else s[:57] + "..."


async def _check(args: argparse.Namespace) -> int:
    settings = Settings.from_args(args)
    options = _options(settings)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    out = Console(highlight=False, soft_wrap=True)
    missing = [p for p in args.files if not os.path.isfile(p)]
    if missing:
        err.print(f"deeplocalize: no such file: {missing[0]}", style="red")
        return 2
    try:
        scripts = [describe_script(p) for p in args.files]
    except FileNotFoundError as exc:
        err.print(f"deeplocalize: {exc}", style="red", markup=False)
        return 2
    session = EngineSession(options)
    if any(not_runnable(s) is None for s in scripts):
        session.prewarm_soon()  # TensorFlow's import (once, in the fork server) starts now
    reports: list[FileReport] = []
    show_progress = not args.no_progress and args.format == "text" and err.is_terminal
    try:
        for script in scripts:
            path = script.path

            def on_event(event: TraceEvent, trace: Trace, _p: str = path) -> None:
                if show_progress and event.kind == "epoch" and event.epoch is not None and trace.fit:
                    err.print(f"[dim]{os.path.basename(_p)}: epoch {event.epoch + 1}/{trace.fit.epochs}[/dim]")

            def on_output(line: str) -> None:
                if args.show_output:
                    err.print(line, markup=False, highlight=False)

            said: list = []

            def on_findings(found: list, _p: str = path) -> None:
                # Certain before the run ends (a configuration error): said now, the report follows.
                if args.format == "text" and not args.no_progress:
                    for lf in found[len(said):]:
                        said.append(lf)
                        f = lf.finding
                        at = cell_places(_p)(lf.range)
                        err.print(f"{where(at)}: {f.severity} {f.code} (found while "
                                  f"training; the full report follows): {lf.message}", markup=False, highlight=False)

            def on_progress(message: str, _p: str = path) -> None:
                if show_progress:
                    err.print(f"[dim]{os.path.basename(_p)}: {message}[/dim]", highlight=False)

            try:
                report = await session.check(script, verify_seconds=settings.verify_seconds if settings.verify_fixes else None, on_event=on_event,
                                             on_output=on_output, on_findings=on_findings, on_progress=on_progress)
            except EnvironmentProblem as exc:
                err.print(f"deeplocalize: {exc}", style="red", markup=False)
                return 2
            reports.append(report)
            if args.format == "text":
                render_text(report, out)
    finally:
        await session.close()
    if args.report:
        _write_report(args.report, reports, err)
    if args.format == "json":
        print(json.dumps(reports_json(reports), indent=2, allow_nan=False))
    elif args.format == "sarif":
        print(json.dumps(to_sarif(reports), indent=2, allow_nan=False))
    found = any(is_serious(f.finding.severity) for r in reports for f in r.findings)
    return 1 if found else 0


async def _run(args: argparse.Namespace, early: Started | None = None) -> int:
    from .live import LiveOptions, LiveRun, finding_text

    settings = Settings.from_args(args)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    if not os.path.isfile(args.script):
        err.print(f"deeplocalize: no such file: {args.script}", style="red", markup=False)
        return 2
    script = describe_script(args.script)
    options = LiveOptions(python=settings.interpreter or sys.executable, argv=list(args.args), runs_folder=settings.runs_folder or None,
                          keep_runs=settings.keep_runs, stop_on_error=args.stop_on_error, env=dict(settings.env))
    place = cell_places(script.path)

    def say(message: str) -> None:
        err.print(message, style="dim", markup=False, highlight=False)

    def say_finding(lf: LocatedFinding, trace: Trace | None) -> None:
        t = finding_text(lf, trace, lambda lf: where(place(lf.range)))
        style = _STYLE.get(t.severity, "")
        err.print(f"\n{t.where}: [{style}]{t.severity}[/{style}] [bold]{t.code}[/bold]{t.found_in}: {escape(t.message)}",
                  highlight=False, soft_wrap=True)
        for fix in t.fixes:
            err.print(f"    fix: {fix}", style="dim", markup=False, highlight=False, soft_wrap=True)

    return await LiveRun(script, options, say, say_finding).run(early)


def main(argv: list[str] | None = None, early: Started | None = None) -> int:
    """`early`: the training process `deeplocalize run` started before this module was imported
    (launch.py); used if the options want that interpreter and environment, else stopped."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command == "check":
            return asyncio.run(_check(args))
        if args.command == "run":
            return asyncio.run(_run(args, early))
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        raise
    except Exception as exc:  # noqa: BLE001 - an internal error is exit code 2, never a traceback dump
        print(f"deeplocalize: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        if early is not None:
            early.discard()  # unless a run adopted it
    return 2


def entry(early: Started | None = None) -> None:
    """The `deeplocalize` command: main(), then the process ends without the interpreter's
    teardown (freeing the syntax trees of Keras that the locator parsed takes a second or more;
    everything is written and the training processes are stopped by then)."""
    code = main(None, early)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed terminal
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()

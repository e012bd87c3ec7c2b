"""Every user setting declared once: its field, its editor key (`deeplocalize.<key>`), its CLI
flag, default, bounds and help. The language server's settings and the CLI's options are built
from this list, and a test holds package.json and the README to it, so a new setting is one
line here (plus its declaration in package.json, which the test then checks)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any

from .runner import RunOptions

RUN_MODES = ("onSave", "onOpenAndSave", "manual")


@dataclass(frozen=True)
class Option:
    field: str
    key: str | None  # `deeplocalize.<key>` in the editor; None: the CLI only
    flag: str | None  # the CLI's flag; None: the editor only
    kind: type  # bool, int, float, str or dict
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    none_at_zero: bool = False  # 0 means "no cap" (None in the run options)
    choices: tuple[str, ...] = ()
    commands: tuple[str, ...] = ("check",)  # the CLI commands that take its flag

    def check(self, value: Any) -> Any:
        """The value in bounds, or ValueError saying which bound it breaks."""
        if self.kind in (int, float):
            if isinstance(value, bool):
                raise ValueError("a number")
            try:
                v = self.kind(value)
            except (TypeError, ValueError):
                raise ValueError("a number") from None
            low = self.minimum is not None and v < self.minimum
            high = self.maximum is not None and v > self.maximum
            if (low or high) and self.minimum is not None and self.maximum is not None:
                raise ValueError(f"between {self.minimum:g} and {self.maximum:g}")
            if low:
                raise ValueError(f"at least {self.minimum:g}")
            if high:
                raise ValueError(f"at most {self.maximum:g}")
            return None if (self.none_at_zero and v == 0) else v
        if self.choices and value not in self.choices:
            raise ValueError(f"one of {', '.join(self.choices)}")
        return value


OPTIONS: tuple[Option, ...] = (
    Option("run", "run", None, str, "onSave", "When DeepLocalize trains the script to analyze it.", choices=RUN_MODES),
    Option("max_seconds", "maxSeconds", "--max-seconds", float, 60.0,
           "Time budget of one analysis (TensorFlow import included); the whole process tree is stopped after it.", minimum=1),
    Option("max_epochs", "maxEpochs", "--max-epochs", int, 20, "Cap on the epochs an analysis trains (0: no cap).", minimum=0, none_at_zero=True),
    Option("max_memory_mb", "maxMemoryMb", "--max-memory-mb", int, 4096, "Memory budget of the training process tree in MB (0: no limit).",
           minimum=0, none_at_zero=True),
    Option("workers", "workers", "--workers", int, 1,
           "Worker processes that train a MultiWorkerMirroredStrategy script together on this machine (TF_CONFIG on 127.0.0.1; "
           "the chief's training is analyzed). Other scripts always run as one process.", minimum=1, maximum=8),
    Option("interpreter", "interpreter", "--python", str, "",
           "Python interpreter that runs the server and the training. When set, it is used whatever the Python extension selects; "
           "when empty: the Python extension's selected interpreter, else python3.", commands=("check", "run")),
    Option("env", "env", "--env", dict, {}, "Extra environment variables for the training process.", commands=("check", "run")),
    Option("debounce_ms", "debounceMs", None, int, 150, "Delay before a run starts after a save; a newer save replaces a pending run.", minimum=0),
    Option("verify_fixes", "verifyFixes", "--no-verify", bool, True,
           "After the first diagnosis, re-train briefly with each fix applied (in memory; your file is not touched) and mark the fixes "
           "that heal the symptom as verified. Warnings that no fix heals become information."),
    Option("verify_seconds", "verifySeconds", "--verify-seconds", float, 60.0, "Time budget of the re-runs that verify the fixes of one analysis.",
           minimum=1),
    Option("warm_worker", "warmWorker", None, bool, True,
           "Keep TensorFlow imported between analyses: one fork server per interpreter (about 0.6 GB) forks each training process in a "
           "fraction of a second, and a spare one waits ready. Off: both are stopped after each analysis, and every analysis imports "
           "TensorFlow again."),
    Option("max_warm_workers", "maxWarmWorkers", None, int, 1,
           "Spare training processes kept ready, forked from the fork server (the least recently started is "
           "stopped first). An idle one uses no CPU and about 35 MB of its own: it shares the fork server's memory.", minimum=1),
    Option("seed", None, "--seed", int, 0, "Random seed set before the script runs (-1: none).", minimum=-1),
    Option("runs_folder", "runsFolder", "--runs-folder", str, "",
           "Where `deeplocalize run` records each real training run (its findings, trace and report), relative to the script's folder; "
           "the editor shows the findings of the runs it finds there. Empty: .deeplocalize/runs next to the script.", commands=("run",)),
    Option("keep_runs", "keepRuns", "--keep-runs", int, 20, "Recorded runs kept per folder; older finished ones are removed.", minimum=1,
           commands=("run",)),
)
BY_FIELD = {o.field: o for o in OPTIONS}


@dataclass
class Settings:
    """The settings of one run, typed; defaults and bounds come from OPTIONS (a test checks both agree)."""

    run: str = "onSave"
    max_seconds: float = 60.0
    max_epochs: int | None = 20
    max_memory_mb: int | None = 4096
    workers: int = 1
    interpreter: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    debounce_ms: int = 150
    verify_fixes: bool = True
    verify_seconds: float = 60.0
    warm_worker: bool = True
    max_warm_workers: int = 1
    seed: int | None = 0
    runs_folder: str = ""
    keep_runs: int = 20

    @classmethod
    def from_json(cls, data: Any, fallback_interpreter: str | None) -> "Settings":
        """The editor's settings, tolerantly: a bad value falls back to its default (one above a
        maximum to the maximum) instead of breaking runs."""
        d = data if isinstance(data, dict) else {}
        s = cls()
        for o in OPTIONS:
            if o.key is None or o.key not in d:
                continue
            setattr(s, o.field, _tolerant(o, d[o.key], getattr(s, o.field)))
        s.interpreter = s.interpreter or fallback_interpreter
        return s

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Settings":
        """The CLI's options (see add_arguments); a value out of bounds is an error that names its flag."""
        s = cls()
        for o in OPTIONS:
            if o.flag is None or not hasattr(args, o.field):
                continue
            value = getattr(args, o.field)
            if o.kind is dict:
                value = _pairs(value)
            elif o.flag.startswith("--no-"):
                value = not value
            try:
                setattr(s, o.field, o.check(value))
            except ValueError as exc:
                hint = " (use --no-verify to skip verification)" if o.field == "verify_seconds" else ""
                raise SystemExit(f"deeplocalize: {o.flag} must be {exc}{hint}") from None
        if s.seed is not None and s.seed < 0:
            s.seed = None
        return s

    def run_options(self) -> RunOptions:
        return RunOptions(python=self.interpreter or sys.executable, max_seconds=self.max_seconds, max_epochs=self.max_epochs,
                          max_memory_mb=self.max_memory_mb, env=dict(self.env), workers=self.workers, seed=self.seed)

    def key(self) -> tuple:
        """What changes an analysis' result: a run with the same text and key is reused."""
        return (self.interpreter, self.max_seconds, self.max_epochs, self.max_memory_mb, tuple(sorted(self.env.items())),
                self.verify_fixes, self.verify_seconds, self.workers, self.seed)


def add_arguments(parser: argparse.ArgumentParser, command: str = "check") -> None:
    """The CLI flags of every option that `command` takes."""
    for o in OPTIONS:
        if o.flag is None or command not in o.commands:
            continue
        if o.kind is bool:
            # A --no-X flag turns off what the setting's text describes (on by default).
            text = f"Turn off (on by default): {o.help}" if o.flag.startswith("--no-") else o.help
            parser.add_argument(o.flag, dest=o.field, action="store_true", help=text)
        elif o.kind is dict:
            parser.add_argument(o.flag, dest=o.field, action="append", default=[], metavar="KEY=VALUE", help=o.help)
        elif o.field == "interpreter":
            parser.add_argument(o.flag, dest=o.field, default=sys.executable, help=f"{o.help} Default: this one.")
        else:
            parser.add_argument(o.flag, dest=o.field, type=o.kind, default=o.default, help=f"{o.help} Default: {o.default}.")


def _tolerant(o: Option, value: Any, default: Any) -> Any:
    if o.kind is bool:
        return bool(value)
    if o.kind is dict:
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
    if o.kind is str:
        return value if isinstance(value, str) and (not o.choices or value in o.choices) else default
    try:
        return o.check(value)
    except ValueError:
        above = o.maximum is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value > o.maximum
        return o.kind(o.maximum) if above else default


def _pairs(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"deeplocalize: --env expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        env[k] = v
    return env

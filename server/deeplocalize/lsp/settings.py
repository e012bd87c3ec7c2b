"""User settings (section `deeplocalize`) and how they become run options."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from ..runner import RunOptions

RUN_MODES = ("onSave", "onOpenAndSave", "manual")


@dataclass
class Settings:
    interpreter: str | None = None
    max_seconds: float = 60.0
    max_epochs: int | None = 20
    max_memory_mb: int | None = 4096
    run: str = "onSave"
    env: dict[str, str] = field(default_factory=dict)
    debounce_ms: int = 150
    warm_worker: bool = True
    max_warm_workers: int = 1
    verify_fixes: bool = True
    verify_seconds: float = 60.0
    workers: int = 1

    @classmethod
    def from_json(cls, data: Any, fallback_interpreter: str | None) -> "Settings":
        """Tolerant parse: a bad value falls back to its default instead of breaking runs."""
        d = data if isinstance(data, dict) else {}
        s = cls()
        s.interpreter = (d.get("interpreter") or None) or fallback_interpreter
        s.max_seconds = _num(d.get("maxSeconds"), s.max_seconds, float, 1.0)
        epochs = _num(d.get("maxEpochs"), 20, int, 0)
        s.max_epochs = epochs or None
        memory = _num(d.get("maxMemoryMb"), 4096, int, 0)
        s.max_memory_mb = memory or None
        s.run = d.get("run") if d.get("run") in RUN_MODES else "onSave"
        env = d.get("env")
        s.env = {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}
        s.debounce_ms = _num(d.get("debounceMs"), s.debounce_ms, int, 0)
        s.warm_worker = bool(d.get("warmWorker", True))
        s.max_warm_workers = _num(d.get("maxWarmWorkers"), s.max_warm_workers, int, 1)
        s.verify_fixes = bool(d.get("verifyFixes", True))
        s.verify_seconds = _num(d.get("verifySeconds"), s.verify_seconds, float, 1.0)
        s.workers = min(_num(d.get("workers"), s.workers, int, 1), 8)
        return s

    def run_options(self) -> RunOptions:
        return RunOptions(python=self.interpreter or sys.executable, max_seconds=self.max_seconds, max_epochs=self.max_epochs,
                          max_memory_mb=self.max_memory_mb, env=dict(self.env), workers=self.workers)

    def key(self) -> tuple:
        return (self.interpreter, self.max_seconds, self.max_epochs, self.max_memory_mb, tuple(sorted(self.env.items())),
                self.verify_fixes, self.verify_seconds, self.workers)


def _num(value: Any, default: Any, kind: type, minimum: float) -> Any:
    try:
        v = kind(value)
    except (TypeError, ValueError):
        return default
    return v if v >= minimum else default

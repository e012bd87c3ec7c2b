"""Private event channel from the probe to the parent.

Events travel as JSON lines on an inherited pipe descriptor, never on stdout, so
that the user's prints and Keras progress bars stay intact for the user.
"""

from __future__ import annotations

import json
import math
import os
import threading
from typing import Any


def json_ready(value: Any) -> Any:
    """JSON has no NaN/Inf: encode them as strings (the parent decodes them back; a report's
    reader sees "inf" where the training saw it)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "tolist"):
        return json_ready(value.tolist())
    return value


PIPE_BYTES = 1 << 20


def widen_pipe(fd: int) -> None:
    """A larger pipe for the probe's events (Linux): while the reader draws a report (a second or
    two), the training writes on instead of waiting for it (a sampled step of a deep model is tens
    of kilobytes; a pipe holds 64 by default)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (ImportError, OSError):
        pass  # not Linux, or above the system's limit: the default pipe


class Channel:
    """Writes one JSON object per line; thread-safe and tolerant of a vanished parent.

    Only the training process itself speaks: a copy of it that the script forks (`os.fork`,
    a `multiprocessing` worker) inherits the pipe, and its events would interleave with the
    real run's, so a forked copy is silent."""

    def __init__(self, fd: int | None) -> None:
        self._file = os.fdopen(fd, "w", buffering=1) if fd is not None else None
        self._lock = threading.Lock()
        self._owner = os.getpid()

    def send(self, kind: str, **payload: Any) -> None:
        if self._file is None or os.getpid() != self._owner:
            return
        line = json.dumps({"type": kind, **json_ready(payload)})
        with self._lock:
            try:
                self._file.write(line + "\n")
            except (BrokenPipeError, OSError, ValueError):
                self._file = None

    def flush(self) -> None:
        if self._file is not None and os.getpid() == self._owner:
            try:
                self._file.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._file = None

    def close(self) -> None:
        """The end of this channel's events: the reader sees the end of its pipe."""
        if self._file is not None and os.getpid() == self._owner:
            try:
                self._file.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
        self._file = None

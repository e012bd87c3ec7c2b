"""Call-site capture: which user source line created a layer, optimizer or call.

Runtime call sites are exact where static analysis is not (layers made in loops,
helpers, custom layers); the parent narrows them to tokens with the syntax tree.
"""

from __future__ import annotations

import os
import sys
import traceback
import sysconfig
import types
from typing import Any

_PROBE_DIR = os.path.dirname(os.path.abspath(__file__))
_LIB_DIRS = tuple(
    {
        os.path.abspath(p)
        for p in (
            sysconfig.get_paths().get("stdlib"),
            sysconfig.get_paths().get("platstdlib"),
            sysconfig.get_paths().get("purelib"),
            sysconfig.get_paths().get("platlib"),
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
        )
        if p
    }
)


def is_user_file(filename: str) -> bool:
    """A frame belongs to the user unless it is library, stdlib, frozen or ours."""
    if not filename or filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    if path.startswith(_PROBE_DIR):
        return False
    if "site-packages" in path or "dist-packages" in path:
        return False
    return not any(path.startswith(d + os.sep) for d in _LIB_DIRS)


def frame_position(frame: types.FrameType) -> dict[str, Any]:
    """Line and column span (1-based lines, 0-based columns) of the frame's current call."""
    code = frame.f_code
    line, end_line, col, end_col = frame.f_lineno, frame.f_lineno, None, None
    try:
        positions = list(code.co_positions())
        idx = frame.f_lasti // 2
        if 0 <= idx < len(positions):
            p = positions[idx]
            if p[0] is not None:
                line, end_line, col, end_col = p
    except (AttributeError, ValueError):
        pass
    return {
        "file": os.path.abspath(code.co_filename),
        "line": line,
        "end_line": end_line,
        "col": col,
        "end_col": end_col,
        "function": code.co_name,
    }


def user_call_chain(skip_self: Any = None, limit: int = 8) -> list[dict[str, Any]]:
    """User frames from innermost outwards, skipping frames whose `self` is `skip_self`.

    Skipping the object's own frames maps a custom Layer subclass to the line
    that instantiates it rather than to its `super().__init__` call.
    """
    chain: list[dict[str, Any]] = []
    frame = sys._getframe(1)
    while frame is not None and len(chain) < limit:
        if is_user_file(frame.f_code.co_filename):
            if skip_self is None or frame.f_locals.get("self") is not skip_self:
                chain.append(frame_position(frame))
        frame = frame.f_back
    return chain


def crash_event(exc: BaseException) -> dict[str, Any]:
    """A crash as the parent reads it: the user's frames (innermost last), the message, the traceback."""
    frames = []
    for fs in traceback.extract_tb(exc.__traceback__):
        if is_user_file(fs.filename):
            frames.append(
                {
                    "file": os.path.abspath(fs.filename),
                    "line": fs.lineno,
                    "end_line": getattr(fs, "end_lineno", None) or fs.lineno,
                    "col": getattr(fs, "colno", None),
                    "end_col": getattr(fs, "end_colno", None),
                    "function": fs.name,
                }
            )
    message = str(exc)
    return {
        "exc_type": type(exc).__name__,
        "exc_module": type(exc).__module__,
        "message": message[:4000],
        "frames": frames,
        "traceback": "".join(traceback.format_exception(exc))[-6000:],
    }

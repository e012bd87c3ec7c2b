"""The parent's side of the fork server (probe/forkserver.py): start it, ask it for
training processes, learn how they end.

One `ForkServer` per (interpreter, environment). It is thread-based rather than bound to
an event loop: one fork server serves a whole pytest session (many `asyncio.run` loops),
the language server's loop and the CLI's alike. A fork that cannot be had (the server
died, refused because its thread count grew, the interpreter cannot run it) is reported
as None and logged; the caller then starts a fresh process, as before the fork server.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("deeplocalize.forks")
# What a log line about the fork servers reports, as a field of its record (`fork_event`), so that
# what reads the log (the tests, a client) does not depend on its wording: a fork refused (its
# `threads` above the `baseline`), a server restarted, a run started in a fresh interpreter
# instead, a run lost with its server and run again in a fresh interpreter.
ForkEvent = Literal["refused", "restarted", "fresh_interpreter", "rerun_fresh"]


def fork_said(event: ForkEvent, **fields: Any) -> dict[str, Any]:
    """The `extra` of a log record about the fork servers."""
    return {"fork_event": event, **fields}


FORKSERVER = Path(__file__).resolve().parent / "probe" / "forkserver.py"
READY_TIMEOUT_S = 120.0  # an import of TensorFlow on a busy machine; a dead server answers at once


class ForkedProcess:
    """A training process forked by the fork server: not our child, so its end is learnt
    from the server (`exited`), or from the server's own death (its children die with it)."""

    def __init__(self, pid: int, ended: concurrent.futures.Future) -> None:
        self.pid = pid
        self._ended = ended

    @property
    def returncode(self) -> int | None:
        return self._ended.result() if self._ended.done() else None

    async def wait(self) -> int | None:
        # Shielded: cancelling a waiter must not cancel the shared future (others wait on it too).
        return await asyncio.shield(asyncio.wrap_future(self._ended))


class ForkServer:
    def __init__(self, python: str, env: dict[str, str]) -> None:
        self.python = python
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.info: dict[str, Any] | None = None  # the `ready` message: versions, pid, threads
        self.problem = ""  # why it cannot serve, once it cannot
        self._sock: socket.socket | None = None
        self._ready = concurrent.futures.Future()
        self._lock = threading.Lock()
        self._next_id = 0
        self._requests: dict[int, concurrent.futures.Future] = {}
        self._children: dict[int, concurrent.futures.Future] = {}
        self._output: collections.deque[str] = collections.deque(maxlen=40)
        self.started_at = 0.0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "ForkServer":
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [self.python, "-u", str(FORKSERVER), "--socket-fd", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True, env=self.env)
        except OSError as exc:
            ours.close()
            self._fail(f"cannot start {self.python}: {exc.strerror or exc}")
            return self
        finally:
            theirs.close()
        self._sock = ours
        self.started_at = time.monotonic()
        threading.Thread(target=self._read_messages, name="deeplocalize-forkserver", daemon=True).start()
        threading.Thread(target=self._read_output, name="deeplocalize-forkserver-output", daemon=True).start()
        return self

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        """Until TensorFlow is imported in the server; False if it cannot serve."""
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._ready)), timeout)
        except asyncio.TimeoutError:
            self._fail(f"TensorFlow was not imported within {timeout:g} s")
            return False

    @property
    def ready(self) -> bool:
        return self._ready.done() and self._ready.result() is True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and not self.problem

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def close(self) -> None:
        """Stop the server; it stops its children first (it sees its socket close)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if self.proc is not None and self.proc.poll() is None:
            try:
                # Still importing TensorFlow, it reads no socket: nothing of it to wait for.
                self.proc.wait(3 if self.ready else 0)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        self._fail("closed")
        self._settle_all()

    def kill(self) -> None:
        """Last resort (exit paths): no waiting."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    # ------------------------------------------------------------ forks
    async def fork(self, fds: tuple[int, int, int], env: dict[str, str] | None = None) -> ForkedProcess | None:
        """A training process with these (events, control, output) descriptors, or None when
        the server cannot give one now (say why in `problem` or the log)."""
        if not await self.wait_ready() or self._sock is None:
            return None
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            answer: concurrent.futures.Future = concurrent.futures.Future()
            self._requests[rid] = answer
        try:
            socket.send_fds(self._sock, [json.dumps({"op": "fork", "id": rid, "env": env or {}}).encode()], list(fds))
        except OSError as exc:
            with self._lock:
                self._requests.pop(rid, None)
            self._fail(f"the fork server is gone ({exc.strerror or exc})")
            return None
        try:
            msg = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(answer)), 30)
        except asyncio.TimeoutError:
            self._fail("the fork server did not answer a fork within 30 s")
            return None
        if msg is None or msg.get("type") != "forked":
            if msg is not None and msg.get("type") == "refused":
                log.warning(f"deeplocalize: the fork server refused to fork ({msg.get('reason')}); a new one serves the next run",
                            extra=fork_said("refused", threads=msg.get("threads"), baseline=msg.get("baseline")))
                self.problem = f"refused: {msg.get('reason')}"
            return None
        with self._lock:
            ended = self._children.setdefault(int(msg["pid"]), concurrent.futures.Future())
        return ForkedProcess(int(msg["pid"]), ended)

    # ------------------------------------------------------------ readers (threads)
    def _read_messages(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                break
            try:
                msg = json.loads(data)
            except json.JSONDecodeError:
                continue
            self._dispatch(msg)
        if not self.problem:
            code = self.proc.wait() if self.proc is not None else None
            tail = "\n".join(list(self._output)[-5:])
            self._fail(f"the fork server ended (exit code {code})" + (f":\n{tail}" if tail else ""))
        self._settle_all()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "ready":
            self.info = msg
            if not self._ready.done():
                self._ready.set_result(True)
        elif kind == "unsupported":
            self._fail(str(msg.get("message", "unsupported Keras")))
        elif kind in ("forked", "refused"):
            with self._lock:
                answer = self._requests.pop(int(msg.get("id", -1)), None)
                if kind == "forked":
                    self._children.setdefault(int(msg["pid"]), concurrent.futures.Future())
            if answer is not None and not answer.done():
                answer.set_result(msg)
        elif kind == "exited":
            with self._lock:
                ended = self._children.pop(int(msg["pid"]), None)
            if ended is not None and not ended.done():
                ended.set_result(msg.get("returncode"))

    def _read_output(self) -> None:
        """The server's own output (TensorFlow's start-up noise, an import error): kept for the log."""
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._output.append(raw.decode("utf-8", "replace").rstrip())

    def _fail(self, why: str) -> None:
        if not self.problem:
            self.problem = why
        if not self._ready.done():
            self._ready.set_result(False)

    def _settle_all(self) -> None:
        """The server is gone: so are its children (they die with it); nothing waits forever."""
        with self._lock:
            pending = list(self._requests.values()) + list(self._children.values())
            self._requests.clear()
            self._children.clear()
        for fut in pending:
            if not fut.done():
                fut.set_result(None)

    def output_tail(self, n: int = 5) -> list[str]:
        return list(self._output)[-n:]


class ForkServers:
    """The fork servers in use, one per (interpreter, environment): started on first use,
    replaced when one died or refused, all stopped by `close`."""

    def __init__(self) -> None:
        self._servers: dict[tuple, ForkServer] = {}
        self._lock = threading.Lock()
        self.closed = False

    def get(self, python: str, env: dict[str, str]) -> ForkServer | None:
        key = (python, tuple(sorted(env.items())))
        with self._lock:
            if self.closed:
                return None
            server = self._servers.get(key)
            if server is not None and not server.alive():
                if server.problem and server.problem != "closed":
                    log.info(f"deeplocalize: restarting the fork server for {python} ({server.problem.splitlines()[0]})",
                             extra=fork_said("restarted"))
                server.close()
                server = None
            if server is None:
                server = self._servers[key] = ForkServer(python, env).start()
            return server

    def pids(self) -> list[int]:
        return [s.pid for s in self._servers.values() if s.pid and s.alive()]

    def stop(self) -> None:
        """Stop every server now; the next `get` starts one again."""
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            server.close()

    def close(self) -> None:
        """Stop every server for good."""
        self.closed = True
        self.stop()

    def kill(self) -> None:
        for server in list(self._servers.values()):
            server.kill()

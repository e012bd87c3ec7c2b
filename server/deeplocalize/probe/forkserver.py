"""The fork server: one process per (interpreter, environment) that imports TensorFlow once
and forks a training process for each job.

Run by path (``python .../probe/forkserver.py --socket-fd N``) in the interpreter the user
picked, like child.py: nothing of ours needs installing there. It imports Keras, TensorFlow
and numpy and runs no TensorFlow operation, so its runtime (thread pools, devices) is never
started: a forked child gets the same untouched runtime a fresh process has, in about
0.1 s instead of the 4-12 s import. Forking a process whose TensorFlow runtime has started
its threads can deadlock the child, so before each fork the thread count is compared with
the one right after the imports, and a fork is refused (the parent then starts a fresh
process) when it grew.

Protocol, on a SOCK_SEQPACKET socket (one JSON object per message):
- server -> parent: ``ready`` (versions, pid, threads) or ``unsupported``; for each
  ``fork`` request ``forked`` (id, pid) or ``refused`` (id, reason); ``exited`` (pid,
  returncode) when a child ends.
- parent -> server: ``fork`` (id, env) with three descriptors attached: the
  events pipe, the control pipe and the output pipe of the child.
The parent's end closing (it exited, or was killed) stops every child and the server.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import select
import signal
import socket
import sys
from typing import Any

_SERVER_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _send(sock: socket.socket, kind: str, **payload: Any) -> None:
    try:
        sock.send(json.dumps({"type": kind, **payload}).encode())
    except OSError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket-fd", type=int, required=True)
    opts = parser.parse_args()
    sys.path.insert(0, _SERVER_DIR)  # our package, by path; each child removes it before the user's script
    sock = socket.socket(fileno=opts.socket_fd)

    from deeplocalize.probe import child, leftovers

    leftovers.set_name(leftovers.FORKSERVER_NAME)
    keras, problem = child.import_keras()
    if problem is not None:
        _send(sock, "unsupported", **problem)
        return 3
    import numpy  # noqa: F401 - imported once here, not in every child
    import tensorflow as tf

    from deeplocalize.probe import hooks  # noqa: F401 - Keras' internals the probe patches: imported, not run

    # What is imported now is shared with every child, copy-on-write: frozen, the garbage collector
    # of a child never walks it (walking writes to every object header, so each child would copy the
    # pages of all of TensorFlow's Python objects: measured, half of a small job's page faults and
    # about a fifth of its CPU time).
    gc.collect()
    gc.freeze()
    baseline = _threads()
    leftovers.become_subreaper()  # a child's orphans come here, and are stopped
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _send(sock, "ready", pid=os.getpid(), threads=baseline, keras=keras.__version__, tensorflow=tf.__version__,
          python=sys.version.split()[0])
    return _Server(sock, baseline, (wake_r, wake_w)).serve()


class _Server:
    def __init__(self, sock: socket.socket, baseline: int, wake: tuple[int, int]) -> None:
        self.sock = sock
        self.baseline = baseline
        self.wake = wake
        self.jobs: dict[int, int] = {}  # child pid -> request id
        self.orphans_possible = False

    def serve(self) -> int:
        while True:
            timeout = 0.5 if self.orphans_possible else None
            try:
                readable, _, _ = select.select([self.sock, self.wake[0]], [], [], timeout)
            except InterruptedError:
                readable = []
            if self.wake[0] in readable:
                try:
                    while os.read(self.wake[0], 512):
                        pass
                except OSError:
                    pass
            self.baseline = min(self.baseline, _threads())
            self._reap()
            if self.orphans_possible:
                self._stop_orphans()
            if self.sock in readable:
                try:
                    data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 4)
                except OSError:
                    data, fds = b"", []
                if not data:
                    self._shutdown()
                    return 0
                self._handle(json.loads(data), fds)

    def _handle(self, msg: dict, fds: list[int]) -> None:
        if msg.get("op") != "fork" or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            return
        threads = _threads()
        # Importing TensorFlow leaves a few short-lived threads: the fewest seen since is the
        # server's own count, and any thread above it is one that started later.
        self.baseline = min(self.baseline, threads)
        if threads > self.baseline:
            for fd in fds:
                os.close(fd)
            _send(self.sock, "refused", id=msg["id"], threads=threads, baseline=self.baseline,
                  reason=f"{threads} threads where it had {self.baseline}: a thread started after the imports, and a fork could hang")
            return
        pid = os.fork()
        if pid == 0:
            self._become_child(fds, msg.get("env") or {})
        for fd in fds:
            os.close(fd)
        self.jobs[pid] = msg["id"]
        _send(self.sock, "forked", id=msg["id"], pid=pid)

    def _become_child(self, fds: list[int], env: dict[str, str]) -> None:
        """In the forked child: the process a fresh `child.py` would be, without the import."""
        from deeplocalize.probe import child, leftovers

        code = 1
        try:
            events_fd, control_fd, output_fd = fds
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in self.wake:
                os.close(fd)
            self.sock.close()
            os.setsid()  # its own session and process group: one killpg stops the job
            leftovers.die_with_parent()
            os.dup2(output_fd, 1)
            os.dup2(output_fd, 2)
            os.close(output_fd)
            os.environ.update(env)
            code = child.serve(events_fd, control_fd)
        finally:
            os._exit(code)  # the real one again: the script has ended

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.jobs.pop(pid, None) is not None:
                self.orphans_possible = True  # its leftovers are re-parented here
                _send(self.sock, "exited", pid=pid, returncode=os.waitstatus_to_exitcode(status))

    def _stop_orphans(self) -> None:
        """A child that ended left processes (they are re-parented to this subreaper): the job
        is over, so they are leftovers, stopped with everything below them."""
        from deeplocalize.probe import leftovers

        me = os.getpid()
        table = leftovers.proc_table()
        orphans = [p for p, (ppid, _, _) in table.items() if ppid == me and p not in self.jobs]
        if not orphans:
            self.orphans_possible = False
            return
        for pid in orphans:
            leftovers.stop([pid, *leftovers.descendants(pid, table)], below=pid)

    def _shutdown(self) -> None:
        """The parent is gone or done: no child outlives the server."""
        from deeplocalize.probe import leftovers

        for pid in list(self.jobs):
            leftovers.stop([pid, *leftovers.descendants(pid)], below=pid)
        self._stop_orphans()
        self._reap()


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main())  # TensorFlow's interpreter teardown takes seconds and has nothing to do

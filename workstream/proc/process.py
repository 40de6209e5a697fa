"""A worker process as its supervisor holds it: the `Popen`, the parent's end of the socket
pair, and the thread that reads frames from it.

The reader hands every batch of frames to `on_frames` and, at EOF (the child exited, or
closed its end), waits for the exit (bounded; a child that closed its socket but lingers
is killed) and calls `on_exit(returncode)` once. Both callbacks run on the reader thread:
the supervisor turns them into messages to itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from workstream.proc.frames import FrameError, encode, read_batches
from workstream.proc.spec import ChildSpec

log = logging.getLogger("workstream.proc")

EXIT_WAIT = 5.0  # after EOF, how long a child may take to exit before it is killed
SEND_TIMEOUT = 10.0  # a child that reads nothing for this long is treated as broken

OnFrames = Callable[[list[dict[str, Any]]], None]
OnExit = Callable[[int], None]


def describe_exit(returncode: int) -> str:
    """`signal 9` or `exit code 1`: how `last_error` and the logs name a child's end."""
    if returncode < 0:
        return f"signal {-returncode}"
    return f"exit code {returncode}"


class ChildProcess:
    def __init__(
        self,
        *,
        spec: ChildSpec,
        on_frames: OnFrames,
        on_exit: OnExit,
        python: str = sys.executable,
    ) -> None:
        self.spec = spec
        self._on_frames = on_frames
        self._on_exit = on_exit
        self._python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self.pid = 0

    def start(self) -> int:
        """Spawn the child (a fresh interpreter, never a fork of this one) and send it its
        spec. Returns its pid. Raises OSError if it cannot be started."""
        mine, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [
                    self._python,
                    "-P",  # like the server, the working directory is searched last
                    "-m",
                    "workstream.proc.child",
                    "--fd",
                    str(theirs.fileno()),
                    "--parent",
                    str(os.getpid()),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                process_group=0,  # the terminal's Ctrl-C is for the server, not its children
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        mine.setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(SEND_TIMEOUT), 0)
        )
        self._sock = mine
        self.pid = self._proc.pid
        self._reader = threading.Thread(
            target=self._read, name=f"{self.spec.name}-reader", daemon=True
        )
        self._reader.start()
        self.send(encode(self.spec.to_wire()))
        return self.pid

    def send(self, data: bytes) -> bool:
        """Write frames; False if the child cannot take them (dead, or stuck for
        SEND_TIMEOUT): the reader will report its exit, or the caller kills it."""
        if self._sock is None:
            return False
        try:
            self._sock.sendall(data)
        except OSError:
            return False
        return True

    def close(self) -> None:
        """No more jobs: the child sees EOF and exits."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)

    def terminate(self) -> None:
        self._signal(lambda proc: proc.terminate())

    def kill(self) -> None:
        self._signal(lambda proc: proc.kill())

    def _signal(self, send: Callable[[subprocess.Popen[bytes]], None]) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(OSError):  # already gone
                send(self._proc)

    def join(self, timeout: float) -> bool:
        """Wait (bounded) until the reader has reported the exit."""
        if self._reader is None:
            return True
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def _read(self) -> None:
        assert self._sock is not None and self._proc is not None
        try:
            for batch in read_batches(self._sock):
                self._on_frames(batch)
        except (OSError, FrameError) as exc:
            log.warning(
                "worker process %s sent what cannot be read: %s; stopping it",
                self.pid,
                exc,
                extra={"event": "worker_process_error", "pid": self.pid},
            )
            self._proc.kill()
        try:
            code = self._proc.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait(EXIT_WAIT)
        self._sock.close()
        self._on_exit(code)

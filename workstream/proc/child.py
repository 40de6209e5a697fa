"""A worker process: `python -m workstream.proc.child --fd N --parent PID`.

Started by its supervisor with one end of a socket pair (never forked from the server: its
threads and connections would not survive a fork). It asks the kernel to kill it when the
parent dies, reads its spec (the first frame), imports JOB_HANDLERS and WORKER_MIDDLEWARE
itself, says `ready` (or `fatal`, naming the module, and exits 2), then runs the jobs it is
sent until the socket reaches EOF, and exits.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import socket
import sys

from workstream.errors import ConfigError
from workstream.handlers.builtin import handler_table
from workstream.handlers.middleware import MiddlewareChain, load_middleware
from workstream.logs import configure_logging
from workstream.proc import wire
from workstream.proc.frames import FrameError, read_batches
from workstream.proc.runner import Runner, send
from workstream.proc.spec import ChildSpec

log = logging.getLogger("workstream.proc")

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """SIGKILL when the parent dies (Linux), and exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # EOF on the socket still ends us
    if os.getppid() != parent:
        os._exit(1)


class _Identify(logging.Filter):
    """Every line a child logs says which child: its pid and its Worker's name."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._worker = name
        self._pid = os.getpid()

    def filter(self, record: logging.LogRecord) -> bool:
        record.pid = self._pid
        if not hasattr(record, "worker_process"):
            record.worker_process = self._worker
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workstream.proc.child")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # JOB_HANDLERS are found there, as the server finds them
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    sock = socket.socket(fileno=args.fd)
    batches = read_batches(sock)
    try:
        first = next(batches)
    except (StopIteration, OSError, FrameError):
        return 1  # the parent went away before saying anything
    spec = ChildSpec.from_wire(first[0])
    configure_logging(spec.log_level, spec.log_format)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Identify(spec.name))
    try:
        handlers = handler_table(spec.job_handlers, email=spec.email, webhook=spec.webhook)
        middleware = MiddlewareChain(load_middleware(spec.worker_middleware))
    except ConfigError as exc:
        send(sock, wire.fatal(str(exc)))
        return 2
    runner = Runner(
        sock=sock,
        name=spec.name,
        threads=spec.threads,
        handlers=handlers,
        middleware=middleware,
    )
    runner.start()
    send(sock, wire.ready(os.getpid(), spec.threads))
    try:
        _dispatch(runner, first[1:])
        for batch in batches:
            _dispatch(runner, batch)
    except (OSError, FrameError) as exc:
        log.error("worker process lost its parent's socket: %s", exc)
        return 1
    return 0  # EOF: the parent is done with us (or gone)


def _dispatch(runner: Runner, batch: list[dict[str, object]]) -> None:
    for message in batch:
        if message.get("op") == wire.RUN:
            runner.submit(int(message["slot"]), wire.job_from_wire(message["job"]))  # type: ignore[arg-type,call-overload]


if __name__ == "__main__":
    sys.exit(main())

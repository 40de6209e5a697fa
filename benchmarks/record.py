"""What every no-op task does, in WorkStream and in each peer: append one fixed-width line
`<client send time> <handler first line> <handler last line>` to a file of its process.

One `write` system call per job (a few microseconds, the same for every system), no
network round trip: the benchmark counts completions by the files' sizes (`RECORD_BYTES`
per job) and reads the times afterwards. The directory comes from `BENCH_RECORD_DIR`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

RECORD_BYTES = 54  # b"%17.6f %17.6f %17.6f\n"
ENV = "BENCH_RECORD_DIR"

_fd: int | None = None
_pid: int | None = None


def record(t0: float, started: float) -> None:
    """Called by a no-op task: `t0` is when the client sent it (0 when not timed),
    `started` the time taken at the handler's first line."""
    global _fd, _pid
    pid = os.getpid()
    if _fd is None or _pid != pid:  # a forked child (Celery prefork) opens its own file
        folder = os.environ[ENV]
        _fd = os.open(
            os.path.join(folder, f"{pid}.rec"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
        )
        _pid = pid
    os.write(_fd, b"%17.6f %17.6f %17.6f\n" % (t0, started, time.time()))


def count(folder: Path) -> int:
    """Jobs recorded so far (one stat per process file)."""
    total = 0
    for entry in os.scandir(folder):
        if entry.name.endswith(".rec"):
            total += entry.stat().st_size
    return total // RECORD_BYTES


def read(folder: Path) -> list[tuple[float, float, float]]:
    rows = []
    for path in folder.glob("*.rec"):
        for line in path.read_bytes().splitlines():
            a, b, c = line.split()
            rows.append((float(a), float(b), float(c)))
    return rows

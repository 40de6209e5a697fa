"""Where a `workstream serve` process spends its time, with py-spy (all threads, only the
thread holding the GIL sampled, so that the shares add up to the interpreter's time).

    pip install py-spy   # not a dependency of WorkStream or of the bench extra
    python -m benchmarks.profile drain [--jobs 30000]
    python -m benchmarks.profile submit [--seconds 6] [--connections 64] [--due]

`drain` stores N jobs and profiles the drain; `submit` profiles POST /jobs under wrk (or
the Python generator). Prints the inclusive share of the top frames and writes the raw
collapsed stacks (flame-graph input) beside them.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import httpload, record
from benchmarks.common import BIN
from benchmarks.wsrun import Server, preload


def summarise(raw: Path, top: int) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        seen = set()
        for frame in stack.split(";"):
            key = re.sub(r":\d+\)", ")", frame)
            if key not in seen:
                inclusive[key] += samples
                seen.add(key)
    print(f"{total} samples (GIL holder only); inclusive share:")
    for frame, samples in inclusive.most_common(top):
        print(f"  {samples / total:6.1%}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("drain", "submit"))
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--due", action="store_true", help="submit due jobs (default delayed)")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--out", type=Path, default=None, help="raw output (default: temp)")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(spy).exists():
        sys.exit("py-spy is not installed: pip install py-spy")
    folder = Path(tempfile.mkdtemp(prefix="wsprofile-"))
    records = folder / "records"
    records.mkdir()
    raw = args.out or folder / f"{args.what}.raw"
    if args.what == "drain":
        preload(folder / "workstream.db", args.jobs)
        server = Server(folder, records)
    else:
        server = Server(folder, records, JOB_QUEUE_CAPACITY="100000")
    server.start()
    server.wait_ready()
    sampler = subprocess.Popen(
        [spy, "record", "-p", str(server.pid), "-o", str(raw), "-f", "raw", "-r", "200",
         "--nonblocking", "--gil"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        started = time.time()
        if args.what == "drain":
            while record.count(records) < args.jobs:
                time.sleep(0.05)
            print(f"drained {args.jobs} jobs at {args.jobs / (time.time() - started):,.0f}/s")
        else:
            body: dict = {"type": "bench_noop", "payload": {}}
            if not args.due:
                body["delay"] = "1h"
            httpload.CONNECTIONS = args.connections
            load = httpload.run(server.port, "/jobs", json.dumps(body).encode(), args.seconds)
            kind = "due" if args.due else "delayed"
            print(
                f"POST /jobs: {load.requests_per_s:,.0f} req/s ({load.generator}, "
                f"{args.connections} connections, {kind} jobs)"
            )
    finally:
        sampler.send_signal(2)
        sampler.wait(30)
        server.stop()
    summarise(raw, args.top)
    print(f"raw stacks: {raw}")


if __name__ == "__main__":
    main()
